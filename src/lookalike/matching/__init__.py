"""Image matching: keypoints → local affine frames → patches → descriptors → matches → RANSAC.

The main entry points::

    from lookalike.matching import match_images
    result = match_images("a.jpg", "b.jpg", descriptor="sift", matcher="smnn")
    result.num_inliers, result.model

Modules: :mod:`~lookalike.matching.keypoints` (detection), :mod:`~lookalike.matching.patches`
(LAFs and pyramid patches), :mod:`~lookalike.matching.describe` (every registered
descriptor, ours and the :mod:`lookalike.baselines`, on keypoints), :mod:`~lookalike.matching.matchers` (NN/MNN/SNN/SMNN), :mod:`~lookalike.matching.geometry`
(USAC/MAGSAC homography, fundamental matrix, essential matrix and relative pose), :mod:`~lookalike.matching.pipeline`,
:mod:`~lookalike.matching.draw` (pictures of matches).
"""

from lookalike.matching.describe import Features, create_describer
from lookalike.matching.draw import draw_matches
from lookalike.matching.geometry import (
    GeometryResult,
    RelativePose,
    estimate_fundamental,
    estimate_homography,
    estimate_relative_pose,
)
from lookalike.matching.keypoints import Keypoints, detect_keypoints
from lookalike.matching.matchers import Matches, match_descriptors
from lookalike.matching.patches import SIFT_EXTENT, extract_patches, keypoints_to_laf
from lookalike.matching.pipeline import (
    DEFAULT_DESCRIPTOR,
    ImageMatcher,
    MatchResult,
    best_shipped_descriptor,
    match_images,
)

__all__ = [
    "DEFAULT_DESCRIPTOR",
    "SIFT_EXTENT",
    "Features",
    "GeometryResult",
    "ImageMatcher",
    "Keypoints",
    "MatchResult",
    "Matches",
    "RelativePose",
    "best_shipped_descriptor",
    "create_describer",
    "detect_keypoints",
    "draw_matches",
    "estimate_fundamental",
    "estimate_homography",
    "estimate_relative_pose",
    "extract_patches",
    "keypoints_to_laf",
    "match_descriptors",
    "match_images",
]
