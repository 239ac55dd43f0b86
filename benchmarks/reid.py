"""Re-ID evaluation speed and memory at Market-1501 scale: ours against torchreid, one run.

(a) CMC + mAP of a 3,368 x 15,913 distance matrix (random 2048-d unit features, Market-like ids and
    cameras: 750 ids + distractors, 6 cameras): :func:`lookalike.eval.metrics.reid.reid_metrics`
    against torchreid's Python ``eval_market1501``; the numbers must be identical (checked).
(b) k-reciprocal re-ranking (k1 = 20, k2 = 6, lambda = 0.3) of the same features:
    :func:`lookalike.index.rerank.k_reciprocal_rerank` against torchreid's ``re_ranking`` (the authors'
    reference implementation); the largest difference and the share of rows that differ are printed
    (float32 ties in the neighbour order are broken differently by NumPy's unstable argsort).

Every candidate runs in its own process; its peak memory is the growth of the peak resident set after
the inputs were built. torchreid is read from its installed files (``pip install torchreid``; importing
the package itself needs more dependencies). The machine may be shared: ratios are what to read.

Usage::

    .venv/bin/python benchmarks/reid.py                 # Market scale (the reference needs ~9 GB)
    .venv/bin/python benchmarks/reid.py --scale 0.25    # a quarter of the queries and gallery
"""

from __future__ import annotations

import argparse
import importlib.util
import multiprocessing as mp
import resource
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path

import numpy as np

QUERIES, GALLERY, DIM = 3368, 15913, 2048


def _torchreid(relative: str):
    for f in metadata.files("torchreid") or []:
        if str(f).endswith(f"torchreid/reid/{relative}"):
            spec = importlib.util.spec_from_file_location(f"_tr_{relative}", f.locate())
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            return module
    raise SystemExit(f"torchreid's {relative} not found: pip install torchreid")


def _inputs(q: int, g: int, seed: int = 0):
    import torch

    gen = torch.Generator().manual_seed(seed)
    x = torch.nn.functional.normalize(torch.randn(q + g, DIM, generator=gen), dim=1)
    rng = np.random.default_rng(seed)
    gids = rng.integers(0, 751, g)  # 0 = distractor
    qids = rng.choice(np.unique(gids[gids > 0]), q)
    qcams, gcams = rng.integers(1, 7, q), rng.integers(1, 7, g)
    return x, qids, gids, qcams, gcams


def _peak_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6  # kB on Linux


def _child(task: str, q: int, g: int, out: str, queue) -> None:
    import torch

    torch.set_num_threads(max(1, torch.get_num_threads()))
    x, qids, gids, qcams, gcams = _inputs(q, g)
    qg = torch.cdist(x[:q], x[q:])
    if task.startswith(
        "metrics"
    ):  # float64: float32 distances tie often, and ties order arbitrarily
        qg = torch.cdist(x[:q].double(), x[q:].double())
    if task.startswith("rerank"):
        qq, gg = torch.cdist(x[:q], x[:q]), torch.cdist(x[q:], x[q:])
    del x
    from lookalike.eval.metrics.reid import reid_metrics
    from lookalike.index.rerank import k_reciprocal_rerank

    modules = {"metrics-torchreid": "metrics/rank.py", "rerank-reference": "utils/rerank.py"}
    reference = _torchreid(modules[task]) if task in modules else None
    base = _peak_gb()
    start = time.perf_counter()
    if task == "metrics-ours":
        s = reid_metrics(qg, qids, gids, qcams, gcams, max_rank=50)
        result = (s.cmc, s.mean_ap)
    elif task == "metrics-torchreid":
        cmc, m_ap = reference.eval_market1501(qg.numpy(), qids, gids, qcams, gcams, 50)
        result = (np.asarray(cmc, np.float64), float(m_ap))
    elif task == "rerank-ours":
        np.save(out, k_reciprocal_rerank(qg, qq, gg).numpy())
        result = None
    else:
        np.save(out, reference.re_ranking(qg.numpy(), qq.numpy(), gg.numpy()))
        result = None
    queue.put((time.perf_counter() - start, _peak_gb() - base, result))


def run(task: str, q: int, g: int, out: str):
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_child, args=(task, q, g, out, queue))
    proc.start()
    value = queue.get()
    proc.join()
    return value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", type=float, default=1.0, help="fraction of queries and gallery")
    parser.add_argument("--skip-reference-rerank", action="store_true", help="ours only for (b)")
    parser.add_argument("--only", choices=("metrics", "rerank"), help="run one part")
    args = parser.parse_args(argv)
    q, g = max(10, int(QUERIES * args.scale)), max(50, int(GALLERY * args.scale))
    print(f"{q} queries x {g} gallery, {DIM}-d random unit features")
    if args.only != "rerank":
        _metrics(q, g)
    if args.only != "metrics":
        _rerank(q, g, args.skip_reference_rerank)
    return 0


def _metrics(q: int, g: int) -> None:
    t_ours, m_ours, (cmc, m_ap) = run("metrics-ours", q, g, "")
    t_ref, m_ref, (cmc_ref, m_ap_ref) = run("metrics-torchreid", q, g, "")
    same = np.allclose(cmc, cmc_ref, atol=1e-6) and abs(m_ap - m_ap_ref) < 1e-9
    print(
        f"(a) CMC+mAP  ours {t_ours:.2f} s ({m_ours:.2f} GB)  torchreid {t_ref:.2f} s ({m_ref:.2f} GB)"
        f"  ratio {t_ref / t_ours:.1f}x  identical numbers: {same} (rank-1 {cmc[0]:.4f}, mAP {m_ap:.4f})"
    )


def _rerank(q: int, g: int, skip_reference: bool) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        ours_file, ref_file = str(Path(tmp) / "ours.npy"), str(Path(tmp) / "ref.npy")
        t_ours, m_ours, _ = run("rerank-ours", q, g, ours_file)
        print(f"(b) re-ranking  ours {t_ours:.1f} s, peak +{m_ours:.2f} GB")
        if not skip_reference:
            t_ref, m_ref, _ = run("rerank-reference", q, g, ref_file)
            ours, ref = np.load(ours_file), np.load(ref_file)
            diff = np.abs(ours - ref)
            rows = float((diff.max(1) > 1e-5).mean())
            print(
                f"    reference {t_ref:.1f} s, peak +{m_ref:.2f} GB  ratio {t_ref / t_ours:.1f}x  "
                f"max |diff| {diff.max():.2e}, rows differing > 1e-5: {100 * rows:.2f} %"
            )


if __name__ == "__main__":
    sys.exit(main())
