"""Writers of tiny image-retrieval data sets in their public layouts (class folders, GLDv2, UKBench,
revisited Oxford/Paris), with one dominant colour per class so that a colour histogram separates them."""

from __future__ import annotations

import pickle
from pathlib import Path

import cv2
import numpy as np

#: RGB colours of the fixture classes (distinct hues).
COLOURS = [
    (220, 40, 40),
    (40, 200, 60),
    (50, 60, 220),
    (230, 200, 30),
    (160, 40, 200),
    (30, 200, 210),
]


def coloured_image(label: int, seed: int, size: tuple[int, int] = (48, 64)) -> np.ndarray:
    """An ``(H, W, 3)`` uint8 RGB image: the class colour plus noise and a random darker square."""
    rng = np.random.default_rng(seed)
    h, w = size
    img = np.clip(
        np.array(COLOURS[label % len(COLOURS)], float) + rng.normal(0, 12, (h, w, 3)), 0, 255
    )
    y, x = rng.integers(0, h // 2), rng.integers(0, w // 2)
    img[y : y + h // 3, x : x + w // 3] *= 0.6
    return img.astype(np.uint8)


def _write(path: Path, rgb: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    return path


def write_image_folders(root: Path, classes: int = 3, per_class: int = 4) -> Path:
    for c in range(classes):
        for i in range(per_class):
            _write(root / f"class_{c}" / f"{i}.jpg", coloured_image(c, 100 * c + i))
    return root


def write_gldv2(root: Path, landmarks=(7, 42, 1000), per_class: int = 3, missing: int = 1) -> Path:
    rows = ["id,landmark_id"]
    for c, lid in enumerate(landmarks):
        for i in range(per_class):
            image_id = f"{c:x}{i:x}{c + i:x}{lid:06d}{i}"
            rows.append(f"{image_id},{lid}")
            _write(
                root / "train" / image_id[0] / image_id[1] / image_id[2] / f"{image_id}.jpg",
                coloured_image(c, 10 * c + i),
            )
    for m in range(missing):
        rows.append(f"fff{m:05d},{landmarks[0]}")
    (root / "train.csv").write_text("\n".join(rows) + "\n")
    return root


def write_ukbench(root: Path, groups: int = 4) -> Path:
    folder = root / "ukbench" / "ukbench_sample"
    for g in range(groups):
        for i in range(4):
            _write(folder / f"ukbench{4 * g + i:05d}.jpg", coloured_image(g, 1000 + 4 * g + i))
    return root


def write_revisited(
    root: Path, name: str = "roxford5k", classes: int = 3, per_class: int = 4
) -> Path:
    folder = root / name
    imlist, labels = [], []
    for c in range(classes):
        for i in range(per_class):
            stem = f"db_{c}_{i}"
            _write(folder / "jpg" / f"{stem}.jpg", coloured_image(c, 500 + 10 * c + i))
            imlist.append(stem)
            labels.append(c)
    qimlist, gnd = [], []
    for c in range(classes):
        stem = f"q_{c}"
        _write(folder / "jpg" / f"{stem}.jpg", coloured_image(c, 900 + c))
        qimlist.append(stem)
        same = [i for i, lab in enumerate(labels) if lab == c]
        gnd.append(
            {
                "bbx": [0.0, 0.0, 10.0, 10.0],
                "easy": np.array(same[:2]),
                "hard": np.array(same[2:3]),
                "junk": np.array(same[3:]),
            }
        )
    with open(folder / f"gnd_{name}.pkl", "wb") as fh:
        pickle.dump({"imlist": imlist, "qimlist": qimlist, "gnd": gnd}, fh)
    return root


def write_scenes(root: Path, scenes: int = 3, images: int = 3) -> Path:
    """HPatches-layout homography sequences (identity homographies), one colour per scene."""
    for s in range(scenes):
        folder = root / "hpatches-sequences" / f"v_scene{s}"
        for k in range(1, images + 1):
            _write(folder / f"{k}.ppm", coloured_image(s, 700 + 10 * s + k, size=(64, 80)))
            if k > 1:
                np.savetxt(folder / f"H_1_{k}", np.eye(3))
    return root


def write_gldv2_retrieval(root: Path, classes: int = 3, per_class: int = 3) -> Path:
    """GLDv2 retrieval layout: ``index/``, ``test/``, ``index.csv`` and ``retrieval_solution_v2.1.csv``."""
    index_ids, rows = [], ["id,images,Usage"]
    for c in range(classes):
        ids = [f"{c:x}{i:x}0idx{c}{i}" for i in range(per_class)]
        for i, image_id in enumerate(ids):
            _write(
                root / "index" / image_id[0] / image_id[1] / image_id[2] / f"{image_id}.jpg",
                coloured_image(c, 300 + 10 * c + i),
            )
        index_ids += ids
        query = f"{c:x}00tst{c}"
        _write(
            root / "test" / query[0] / query[1] / query[2] / f"{query}.jpg",
            coloured_image(c, 400 + c),
        )
        rows.append(f"{query},{' '.join(ids)},Private")
    distractor = "fffnolandmark"
    _write(root / "test" / "f" / "f" / "f" / f"{distractor}.jpg", coloured_image(0, 999))
    rows.append(f"{distractor},None,Ignored")
    (root / "index.csv").write_text("id\n" + "\n".join(index_ids) + "\n")
    (root / "retrieval_solution_v2.1.csv").write_text("\n".join(rows) + "\n")
    return root
