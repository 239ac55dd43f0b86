"""Fixtures of the service tests: small indexes of bundled photos described with ``color-hist``.

The image index is built by the library (:func:`lookalike.index.image_index.build_index`, as
``lookalike index build`` does); the oracle vectors are computed independently here with
``describe_images`` on the same files.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

# (tests/ is put on sys.path by the root conftest's pytest_configure, which runs after this file is
# loaded: the helpers are imported inside the fixtures.)


@pytest.fixture(scope="session")
def photos() -> dict[str, np.ndarray]:
    from lookalike.data import bundled_photos
    from service.helpers import PHOTOS

    return {p.name: p.rgb for p in bundled_photos(PHOTOS)}


@pytest.fixture(scope="session")
def built(tmp_path_factory, photos):
    """A shared index (never written to)."""
    from service.helpers import Built

    return Built(tmp_path_factory.mktemp("service"), photos)


@pytest.fixture
def fresh(tmp_path, photos):
    """An index of one's own (for writes)."""
    from service.helpers import Built

    return Built(tmp_path, photos)


@pytest.fixture
def vector_index(tmp_path) -> Path:
    """A 4-d index without a descriptor (vector queries only)."""
    import lookalike

    index = lookalike.create("index", "flat", dim=4, metric="l2")
    x = np.eye(4, dtype=np.float32)
    index.add(["e0", "e1", "e2", "e3"], x, [{"axis": i} for i in range(4)])
    return index.save(tmp_path / "vectors")
