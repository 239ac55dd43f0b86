"""Data: bundled photos, data-set readers and generators (kind ``dataset``)."""

from lookalike.data.bundled import (
    BUNDLED_PHOTOS,
    HELD_OUT_PHOTOS,
    Photo,
    bundled_photos,
    list_bundled_photos,
    stereo_pair,
)

__all__ = [
    "BUNDLED_PHOTOS",
    "HELD_OUT_PHOTOS",
    "Photo",
    "bundled_photos",
    "list_bundled_photos",
    "stereo_pair",
]
