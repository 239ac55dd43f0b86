"""Contract examples of the re-ID training pieces: the augmented training set (the networks ``rga`` and
``relation_net`` are descriptors: the registry-wide descriptor contract exercises them as they are)."""

from __future__ import annotations

from pathlib import Path

import lookalike
from contract_examples import Example


def _viper(root: Path) -> Path:
    from reid.formats import write_viper

    write_viper(root / "viper")
    return root


EXAMPLES = {
    "dataset": {
        "reid_augmented": Example(
            build=lambda tmp: lookalike.create(
                "dataset", "reid_augmented", dataset="viper", root=_viper(tmp), size=(64, 32)
            ),
            bad_build=lambda tmp: lookalike.create(
                "dataset", "reid_augmented", dataset="viper", root=tmp
            ),
        ),
    },
}
