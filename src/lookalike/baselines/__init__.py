"""OpenCV and kornia descriptors registered like ours: one name vocabulary everywhere.

Every name below is a ``descriptor`` in the registry (``lookalike.create("descriptor", name)``), so the
matcher (``ImageMatcher("opencv-orb")``), the patch table (``create_patch_describer("kornia-mkd")``) and
the command line accept the same names.

======================  ================================================  =====  =======
name                    descriptor                                        D      metric
======================  ================================================  =====  =======
``opencv-sift``         OpenCV SIFT                                       128    l2
``opencv-rootsift``     OpenCV SIFT + RootSIFT                            128    l2
``opencv-vgg``          ``cv2.xfeatures2d.VGG``                           120    l2
``opencv-boostdesc``    ``cv2.xfeatures2d.BoostDesc`` (BinBoost)          256    hamming
``opencv-teblid``       ``cv2.xfeatures2d.TEBLID``                        256    hamming
``opencv-orb``          ``cv2.ORB`` (rBRIEF)                              256    hamming
``kornia-sift``         ``kornia.feature.SIFTDescriptor``                 128    l2
``kornia-rootsift``     the same, ``rootsift=True``                       128    l2
``kornia-mkd``          ``kornia.feature.MKDDescriptor``, no whitening    238    l2
======================  ================================================  =====  =======

Each object has ``dim``, ``metric``, ``patch_size``, ``patch_extent``, ``needs_weights = False`` and
``differentiable`` (False for OpenCV), a patch mode (``forward``: ``(B, 1, P, P)`` in [0, 1] ->
``(B, D)`` float) and, for OpenCV, a keypoint mode (``describe_keypoints(image, keypoints)``). The
conventions (keypoint sizes, binary bits, flat patches) are in :mod:`lookalike.baselines.opencv` and
:mod:`lookalike.baselines.kornia`.
"""

from lookalike.baselines._common import DescriptorUnavailableError, rootsift

__all__ = ["DescriptorUnavailableError", "rootsift"]
