"""Helpers of the service tests: encoded images, the oracle rows, an index built from files."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

PHOTOS = ["astronaut", "camera", "chelsea", "coffee", "coins", "rocket"]


def png_bytes(rgb: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, "PNG")
    return buf.getvalue()


def jpeg_bytes(rgb: np.ndarray, quality: int = 92) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def describe_files(paths: list[Path]) -> np.ndarray:
    """The oracle: color-hist rows of image files, L2-normalised."""
    import lookalike
    from lookalike.eval.protocols.retrieval import describe_images

    rows = describe_images(lookalike.create("descriptor", "color-hist"), paths).numpy()
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


class Built:
    """An index folder built from PNG files of the bundled photos."""

    def __init__(self, folder: Path, photos: dict[str, np.ndarray]) -> None:
        from lookalike.index.image_index import build_index

        self.images = folder / "images"
        self.images.mkdir(parents=True)
        for name, rgb in photos.items():
            (self.images / f"{name}.png").write_bytes(png_bytes(rgb))
        self.path = folder / "index"
        build_index(self.images, self.path, descriptor="color-hist")
        self.ids = [f"{name}.png" for name in photos]
        self.vectors = describe_files([self.images / i for i in self.ids])
