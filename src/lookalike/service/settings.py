"""Settings of the search service: limits, tokens, folders; checked once when the app is made.

Convention:
    - Sizes are in bytes, image sizes in pixels (``width * height``), times in seconds.
    - ``token`` guards writes; ``read_token`` (when set) guards reads too, and the write token is
      accepted for reads as well. Tokens are compared in constant time.
    - ``images_root``: item metadata ``path`` values that are relative are resolved against it (and
      must stay inside it; default: the image folder the index was built from); absolute paths, as
      ``lookalike index build`` stores them, are used as they are. Either way the path comes from
      the server's own index data, never from a request.
    - How uploads are shrunk before describing (``max_size``) is not a setting: the index records
      it at build time and the server uses that.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from lookalike.core.check import check_int
from lookalike.core.errors import OptionError

__all__ = ["DEFAULT_MAX_PIXELS", "DEFAULT_MAX_UPLOAD_BYTES", "ServiceSettings"]

DEFAULT_MAX_UPLOAD_BYTES = 10 * 1024 * 1024
DEFAULT_MAX_PIXELS = 40_000_000
#: Room for the multipart framing and the small form fields around an upload, in bytes.
FORM_OVERHEAD_BYTES = 64 * 1024


def _optional_token(value: object, name: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise OptionError(f"{name}: expected a non-empty string or None, got {value!r}")
    return value


@dataclass(frozen=True)
class ServiceSettings:
    """What a search app serves and how much it accepts.

    Args:
        index_dir: the index directory (``lookalike index build --out``).
        descriptor: the descriptor spec to describe uploads with; ``None`` uses the one the index
            manifest names. A different name than the manifest's is refused.
        allow_writes: enable ``POST /items`` and ``DELETE /items/{id}``.
        token: bearer token required for writes (``None``: writes need no token).
        read_token: bearer token required for reads (``None``: reads are open).
        max_upload_bytes: largest uploaded image file.
        max_pixels: largest uploaded image, ``width * height``.
        max_concurrency: requests handled at once; more are answered 503 at once.
        max_k: largest ``k`` a search may ask for.
        thumbnail_size: longer side of thumbnails, in pixels.
        images_root: folder that relative metadata paths are resolved against (see Convention).
        thumbnails_dir: where images added through ``POST /items`` keep their thumbnail (default
            ``INDEX/thumbnails``).
        device: torch device that runs the descriptor.
    """

    index_dir: Path
    descriptor: str | None = None
    allow_writes: bool = False
    token: str | None = None
    read_token: str | None = None
    max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES
    max_pixels: int = DEFAULT_MAX_PIXELS
    max_concurrency: int = 8
    max_k: int = 100
    thumbnail_size: int = 256
    images_root: Path | None = None
    thumbnails_dir: Path | None = None
    device: str = "cpu"

    def __post_init__(self) -> None:
        if not isinstance(self.index_dir, (str, os.PathLike)):
            raise OptionError(f"index_dir: expected a path, got {type(self.index_dir).__name__}")
        object.__setattr__(self, "index_dir", Path(self.index_dir).expanduser())
        if self.descriptor is not None and (
            not isinstance(self.descriptor, str) or not self.descriptor
        ):
            raise OptionError(
                f"descriptor: expected a registry spec or None, got {self.descriptor!r}"
            )
        if not isinstance(self.allow_writes, bool):
            raise OptionError(f"allow_writes: expected a bool, got {self.allow_writes!r}")
        _optional_token(self.token, "token")
        _optional_token(self.read_token, "read_token")
        for name in ("max_upload_bytes", "max_pixels", "max_concurrency", "max_k"):
            check_int(getattr(self, name), name)
        if check_int(self.thumbnail_size, "thumbnail_size") < 16:
            raise OptionError(
                f"thumbnail_size: expected at least 16 pixels, got {self.thumbnail_size}"
            )
        for name in ("images_root", "thumbnails_dir"):
            value = getattr(self, name)
            if value is not None:
                if not isinstance(value, (str, os.PathLike)):
                    raise OptionError(f"{name}: expected a path or None, got {value!r}")
                object.__setattr__(self, name, Path(value).expanduser().resolve())
        if self.images_root is not None and not self.images_root.is_dir():
            raise OptionError(f"images_root: expected an existing folder, got {self.images_root}")
        if self.thumbnails_dir is None:
            object.__setattr__(self, "thumbnails_dir", (self.index_dir / "thumbnails").resolve())

    @property
    def max_body_bytes(self) -> int:
        """Largest request body accepted: one upload plus the form around it."""
        return self.max_upload_bytes + FORM_OVERHEAD_BYTES
