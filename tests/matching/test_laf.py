"""LAF conversions live below keypoints and patches: no import cycle between the two."""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import torch

from lookalike.matching.keypoints import Keypoints, laf_to_keypoints
from lookalike.matching.laf import keypoints_to_laf, laf_geometry


def _imports(module) -> set[str]:
    tree = ast.parse(Path(module.__file__).read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return names


def test_keypoints_and_laf_do_not_import_patches():
    import lookalike.matching.keypoints as keypoints
    import lookalike.matching.laf as laf

    assert "lookalike.matching.patches" not in _imports(keypoints)
    assert not {"lookalike.matching.patches", "lookalike.matching.keypoints"} & _imports(laf)


def test_round_trip_against_hand_computed_laf():
    kps = Keypoints.from_arrays([[5.0, 7.0], [1.0, 2.0]], size=[4.0, 2.0], angle=[90.0, 30.0])
    lafs = keypoints_to_laf(kps, extent=1.0, dtype=torch.float64)
    # angle 90 clockwise -> kornia orientation -90: A = 2 * [[cos, sin], [-sin, cos]] at -90 degrees
    np.testing.assert_allclose(lafs[0, 0].numpy(), [[0.0, -2.0, 5.0], [2.0, 0.0, 7.0]], atol=1e-12)
    back = laf_to_keypoints(lafs, extent=1.0)
    np.testing.assert_allclose(back.xy, kps.xy)
    np.testing.assert_allclose(back.size, kps.size)
    np.testing.assert_allclose(back.angle, kps.angle)
    xy, size, angle = laf_geometry(lafs, extent=1.0)
    np.testing.assert_allclose(xy, kps.xy)
    np.testing.assert_allclose(size, kps.size)
    np.testing.assert_allclose(angle, [90.0, 30.0])
