"""Contract examples of the re-ID data sets and the ``reid`` protocol (descriptors need none)."""

from __future__ import annotations

from pathlib import Path

import lookalike
from contract_examples import Example


def _market(root: Path) -> Path:
    from reid.formats import write_market_style

    write_market_style(root / "Market-1501-v15.09.15")
    return root


def _duke(root: Path) -> Path:
    from reid.formats import write_market_style

    write_market_style(root / "DukeMTMC-reID", duke=True)
    return root


def _cuhk03(root: Path) -> Path:
    from reid.formats import write_market_style

    write_market_style(root / "cuhk03-np" / "labeled")
    return root


def _msmt(root: Path) -> Path:
    from reid.formats import write_msmt17

    write_msmt17(root / "MSMT17_V1")
    return root


def _viper(root: Path) -> Path:
    from reid.formats import write_viper

    write_viper(root / "viper")
    return root


def _folder(root: Path) -> Path:
    from reid.formats import write_reid_folder

    return write_reid_folder(root / "people")


def _dataset(name: str, writer) -> Example:
    return Example(
        build=lambda tmp: lookalike.create("dataset", name, root=writer(tmp), size=(64, 32)),
        bad_build=lambda tmp: lookalike.create("dataset", name, root=tmp),
    )


def _viper_bench(tmp: Path):
    from lookalike.data.reid import read_benchmark

    return read_benchmark("viper", _viper(tmp), split=0)


def _empty_query(tmp: Path):
    from dataclasses import replace

    bench = _viper_bench(tmp)
    return replace(bench, query=bench.query.subset(bench.query.ids < 0))


EXAMPLES = {
    "dataset": {
        "market1501": _dataset("market1501", _market),
        "dukemtmc_reid": _dataset("dukemtmc_reid", _duke),
        "cuhk03": _dataset("cuhk03", _cuhk03),
        "msmt17": _dataset("msmt17", _msmt),
        "viper": _dataset("viper", _viper),
        "reid_folder": _dataset("reid_folder", _folder),
    },
    "protocol": {
        "reid": Example(
            inputs=lambda tmp: ("stripe-hsv", _viper_bench(tmp)),
            bad=lambda tmp: ("stripe-hsv", _empty_query(tmp)),
        ),
    },
}
