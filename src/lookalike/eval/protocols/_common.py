"""What the matching-based protocols share: options from a mapping, a matcher from a describer."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

T = TypeVar("T")

__all__ = ["detector_key", "matcher_for", "options_from"]


def options_from(options: T | Mapping[str, Any] | None, cls: type[T]) -> T:
    """``cls(**options)`` for a mapping, ``cls()`` for None, the options themselves otherwise."""
    if options is None:
        return cls()
    if isinstance(options, Mapping):
        return cls(**options)
    return options


def matcher_for(describer: Any, matcher_kwargs: Mapping[str, Any]) -> Any:
    """A configured :class:`~lookalike.matching.pipeline.ImageMatcher` as is, else a new one.

    ``describer`` is a descriptor spec (``"sift"``, ``"opencv-sift"``, ``"hardnet:bundled"``), a patch
    descriptor module, or an ``ImageMatcher`` (whose own settings are then kept).
    """
    from lookalike.matching.pipeline import ImageMatcher

    if isinstance(describer, ImageMatcher):
        return describer
    return ImageMatcher(describer, **matcher_kwargs)


def detector_key(matcher: Any) -> tuple:
    """What decides a matcher's keypoints: matchers with equal keys can share detected keypoints.

    Detector, keypoint budget, upright flag, ``max_size`` (keypoints found on a downscaled copy
    differ) and the detector options.
    """
    options = tuple(sorted((k, repr(v)) for k, v in matcher.detector_options.items()))
    return (matcher.detector, matcher.max_keypoints, matcher.upright, matcher.max_size, options)
