"""Writers of tiny data sets in the exact public file formats, for reader tests (no real data needed).

- :func:`write_phototour`: a UBC PhotoTour subset (bmp sheets, info.txt, interest.txt, m50 pair file).
- :func:`write_hpatches_sequence`: an HPatches patch sequence folder (ref.png, e1..t5.png strips).
- :func:`write_amos_patch_file`: an AMOS Patches ``.pt`` file (the dict ``HardNet_MultiDataset`` saves).
- :func:`write_amos_view`: a registered AMOS view folder (aligned images).
- :func:`write_homography_sequence`: an HPatches-sequences folder (``1.ppm .. n.ppm``, ``H_1_k``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import cv2
import numpy as np
import torch


def write_phototour(
    folder: Path,
    patches: np.ndarray,
    point_ids: Sequence[int],
    *,
    image_ids: Sequence[int] | None = None,
    pairs: Sequence[tuple[int, int]] = (),
    pair_file: str = "m50_100000_100000_0.txt",
) -> Path:
    """Write ``(N, 64, 64)`` uint8 patches as 1024 x 1024 sheets (row-major, 16 x 16) plus the text files."""
    folder.mkdir(parents=True, exist_ok=True)
    n = len(patches)
    sheets = -(-n // 256)
    padded = np.zeros((sheets * 256, 64, 64), np.uint8)
    padded[:n] = patches
    for k in range(sheets):
        block = padded[k * 256 : (k + 1) * 256].reshape(16, 16, 64, 64).transpose(0, 2, 1, 3)
        cv2.imwrite(str(folder / f"patches{k:04d}.bmp"), block.reshape(1024, 1024))
    (folder / "info.txt").write_text("".join(f"{p} 0\n" for p in point_ids))
    if image_ids is not None:
        rng = np.random.default_rng(0)
        lines = [
            f"{img} {rng.uniform(0, 640):.2f} {rng.uniform(0, 480):.2f} {rng.uniform(-3, 3):.4f} "
            f"{rng.uniform(1, 9):.4f}\n"
            for img in image_ids
        ]
        (folder / "interest.txt").write_text("".join(lines))
    lines = [f"{a} {point_ids[a]} 0 {b} {point_ids[b]} 0 0\n" for a, b in pairs]
    (folder / pair_file).write_text("".join(lines))
    return folder


def write_hpatches_sequence(folder: Path, patches: Mapping[str, np.ndarray]) -> Path:
    """Write ``{"ref": (N, 65, 65) uint8, "e1": ..., ...}`` as vertical PNG strips ``<key>.png``."""
    folder.mkdir(parents=True, exist_ok=True)
    for key, value in patches.items():
        value = np.asarray(value, dtype=np.uint8)
        cv2.imwrite(str(folder / f"{key}.png"), value.reshape(-1, value.shape[-1]))
    return folder


def write_amos_patch_file(
    path: Path,
    patch_sets: np.ndarray,
    *,
    cam_idxs: Sequence[int] | None = None,
    lafs: np.ndarray | None = None,
    view_names: Sequence[str] | None = None,
    patches_mask: np.ndarray | None = None,
    extra: Mapping[str, object] | None = None,
) -> Path:
    """``torch.save`` the AMOS dict: ``patch_sets`` uint8 (N, V, 1, P, P), ``LAFs``, ``cam_idxs``, ..."""
    out: dict[str, object] = {
        "patch_sets": torch.from_numpy(np.asarray(patch_sets, dtype=np.uint8))
    }
    n = out["patch_sets"].shape[0]
    out["LAFs"] = torch.from_numpy(
        np.asarray(lafs if lafs is not None else np.zeros((n, 2, 3)))
    ).float()
    out["cam_idxs"] = torch.as_tensor(cam_idxs if cam_idxs is not None else [0] * n).long()
    if view_names is not None:
        out["view_names"] = list(view_names)
    if patches_mask is not None:
        out["patches_mask"] = torch.as_tensor(patches_mask, dtype=torch.bool)
    out.update(extra or {})
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(out, path)
    return path


def write_amos_view(folder: Path, images: Sequence[np.ndarray]) -> Path:
    """Write aligned uint8 images ``00000.png, 00001.png, ...`` of one registered view."""
    folder.mkdir(parents=True, exist_ok=True)
    for i, image in enumerate(images):
        cv2.imwrite(str(folder / f"{i:05d}.png"), np.asarray(image, dtype=np.uint8))
    return folder


def write_homography_sequence(
    folder: Path, reference: np.ndarray, homographies: Sequence[np.ndarray]
) -> Path:
    """Write ``1.ppm`` (the uint8 reference) and, per ``H``, ``<k>.ppm`` (the warped reference) and ``H_1_k``."""
    folder.mkdir(parents=True, exist_ok=True)
    h, w = reference.shape[:2]
    cv2.imwrite(str(folder / "1.ppm"), cv2.cvtColor(reference, cv2.COLOR_GRAY2BGR))
    for k, H in enumerate(homographies, start=2):
        warped = cv2.warpPerspective(reference, H, (w, h), flags=cv2.INTER_LINEAR)
        cv2.imwrite(str(folder / f"{k}.ppm"), cv2.cvtColor(warped, cv2.COLOR_GRAY2BGR))
        np.savetxt(folder / f"H_1_{k}", H)
    return folder
