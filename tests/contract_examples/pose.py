"""Contract example of the ``relative_pose`` protocol, and the hand-built two-view scenes its tests use."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from contract_examples import Example

K_SYNTH = np.array([[500.0, 0.0, 319.5], [0.0, 500.0, 239.5], [0.0, 0.0, 1.0]])


def rotation(axis: str, degrees: float) -> np.ndarray:
    """A rotation about ``x``, ``y`` or ``z`` by ``degrees``."""
    c, s = np.cos(np.radians(degrees)), np.sin(np.radians(degrees))
    i, j = {"x": (1, 2), "y": (2, 0), "z": (0, 1)}[axis]
    R = np.eye(3)
    R[i, i], R[i, j], R[j, i], R[j, j] = c, -s, s, c
    return R


def relative_pose(R: np.ndarray, t: np.ndarray) -> np.ndarray:
    """``4 x 4`` ``T_0to1`` from ``R``, ``t`` (``X1 = R X0 + t``)."""
    T = np.eye(4)
    T[:3, :3], T[:3, 3] = R, t
    return T


def two_view_points(
    n: int = 200, seed: int = 0, R: np.ndarray | None = None, t: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Exact matches of random 3D points seen by two cameras: ``(points0, points1, T_0to1)`` in pixels
    of two 640 x 480 images with intrinsics :data:`K_SYNTH`."""
    rng = np.random.default_rng(seed)
    R = rotation("y", 10.0) @ rotation("x", -5.0) if R is None else R
    t = np.array([0.4, 0.05, 0.1]) if t is None else t
    X0 = rng.uniform([-2.0, -1.5, 4.0], [2.0, 1.5, 8.0], (n, 3))
    X1 = X0 @ R.T + t

    def project(X: np.ndarray) -> np.ndarray:
        x = X @ K_SYNTH.T
        return x[:, :2] / x[:, 2:]

    return project(X0), project(X1), relative_pose(R, t)


def write_two_view_scene(folder: Path) -> Path:
    """A ScanNet-style folder: a textured plane seen by two cameras with a known relative pose."""
    import cv2
    from skimage import data as skdata

    photo = cv2.resize(skdata.astronaut()[..., 1], (640, 480), interpolation=cv2.INTER_AREA)
    R, t = rotation("y", 8.0), np.array([0.3, 0.0, 0.05])
    normal, depth = np.array([0.0, 0.0, 1.0]), 4.0  # the plane z = 4 in camera 0
    H = K_SYNTH @ (R + np.outer(t, normal) / depth) @ np.linalg.inv(K_SYNTH)
    other = cv2.warpPerspective(photo, H, (640, 480), borderMode=cv2.BORDER_REFLECT)
    images = folder / "scannet_sample_images"
    images.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(images / "a.png"), photo)
    cv2.imwrite(str(images / "b.png"), other)
    k = " ".join(f"{v:g}" for v in K_SYNTH.reshape(-1))
    pose = " ".join(f"{v:.9g}" for v in relative_pose(R, t).reshape(-1))
    (folder / "scannet_sample_pairs_with_gt.txt").write_text(f"a.png b.png 0 0 {k} {k} {pose}\n")
    return folder


EXAMPLES = {
    "protocol": {
        "relative_pose": Example(
            kwargs={"options": {"max_keypoints": 300}},
            inputs=lambda tmp: ("sift", write_two_view_scene(tmp)),
            bad=lambda tmp: ("sift", tmp / "missing"),
        ),
    },
}
