"""VLAD: local descriptors aggregated into one vector, the maths and the module of the ``vlad`` baseline.

Jégou et al., "Aggregating local descriptors into a compact image representation", CVPR 2010, with
the normalisations of Arandjelović & Zisserman, "All about VLAD", CVPR 2013. Every local descriptor
of an image is assigned to its nearest codeword and the residuals ``x - c_k`` are summed per
codeword. The ``K x 128`` sums are intra-normalised (each codeword's block L2-normalised),
signed-square-rooted and L2-normalised as one vector (:func:`vlad_aggregate`).

Layering: this module knows nothing of keypoints. :class:`VLAD` gets its local descriptors from a
*front end* it is given (:data:`FrontEnd`: ``front_end(max_keypoints, max_size)`` returns a callable
from an image to its ``(M, 128)`` descriptors). The registered ``vlad`` descriptor, the RootSIFT
front end (DoG keypoints and our RootSIFT, through :class:`~lookalike.matching.ImageMatcher`) and the
codebook recipe (``fit_codebook``, ``write_bundled_codebook``) live one layer up, in
:mod:`lookalike.matching.vlad`; ``lookalike.create("descriptor", "vlad:bundled")`` builds it.

Convention:
    - An image without keypoints (flat, tiny) gives an all-zero row; so does a codeword block with
      no descriptor (it stays zero after intra-normalisation).
    - Nearest codewords by squared Euclidean distance, ties to the lower index.
    - Not differentiable (keypoint detection is discrete; ``differentiable = False``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from lookalike.core.check import check_finite, check_int, check_shape, check_tensor
from lookalike.core.errors import OptionError
from lookalike.core.weights import WeightSpec
from lookalike.descriptors._base import Descriptor, InputSpec

__all__ = [
    "LOCAL_DIM",
    "VLAD",
    "VLAD_WEIGHTS",
    "FrontEnd",
    "LocalDescriber",
    "kmeans",
    "vlad_aggregate",
]

#: RootSIFT dimension.
LOCAL_DIM = 128

#: Describes one image: a ``(3, H, W)`` float tensor in [0, 1] (CPU) to its ``(M, LOCAL_DIM)`` local
#: descriptors (``M = 0`` when it has no keypoint).
LocalDescriber = Callable[[torch.Tensor], torch.Tensor]
#: Builds the :data:`LocalDescriber` of a :class:`VLAD`: called once, as
#: ``front_end(max_keypoints, max_size)``, on the first forward.
FrontEnd = Callable[[int, int], LocalDescriber]


def vlad_aggregate(descriptors: torch.Tensor, centers: torch.Tensor) -> torch.Tensor:
    """``(K * D,)`` VLAD vector of ``(M, D)`` local descriptors over ``(K, D)`` codewords.

    Residual sums per nearest codeword, intra-normalisation, signed square root, L2 (module
    Convention for empty input and empty codewords).

    Example:
        >>> import torch
        >>> centers = torch.tensor([[0.0, 0.0], [10.0, 10.0]])
        >>> vlad_aggregate(torch.tensor([[1.0, 0.0], [0.0, 1.0], [10.0, 12.0]]), centers)
        tensor([0.5412, 0.5412, 0.0000, 0.6436])

        Residual sums ``(1, 1)`` and ``(0, 2)``; intra-normalised ``(0.707, 0.707)``, ``(0, 1)``;
        square roots ``(0.841, 0.841)``, ``(0, 1)``; divided by their norm 1.554.
    """
    dims = check_shape(centers, ["K", "D"], "centers")
    check_shape(descriptors, ["M", "D"], "descriptors", dims)
    k, d = centers.shape
    x, c = descriptors.to(centers.dtype), centers
    if x.shape[0] == 0:
        return torch.zeros(k * d, dtype=c.dtype, device=c.device)
    dist = (x * x).sum(1, keepdim=True) - 2.0 * x @ c.T + (c * c).sum(1)[None]
    assign = dist.argmin(dim=1)  # ties: the first (lower) index
    sums = torch.zeros_like(c).index_add_(0, assign, x - c[assign])
    sums = F.normalize(sums, dim=1)  # intra-normalisation; zero blocks stay zero
    sums = sums.sign() * sums.abs().sqrt()
    return F.normalize(sums.flatten(), dim=0)


#: The codebook shipped with the package (64 codewords, 14 bundled training photos); reproduce
#: with :func:`lookalike.matching.vlad.write_bundled_codebook`. Registered with ``vlad`` in
#: :mod:`lookalike.matching.vlad`.
VLAD_WEIGHTS = {
    "bundled": WeightSpec(
        file="vlad_bundled.safetensors",
        sha256="ad75940664102e07784c9f13055ed3078290e9161dbfae0e3fd4f90e1db46bd3",
        description="RootSIFT k-means codebook (64 words) of scikit-image's bundled training photos",
    ),
}


class VLAD(Descriptor):
    """VLAD of local descriptors over a ``clusters x 128`` codebook (``clusters * 128`` values).

    Args:
        clusters: codewords ``K`` (the shipped ``vlad:bundled`` has 64).
        max_keypoints: keypoints per image (strongest first), handed to ``front_end``.
        max_size: longest image side keypoints are detected on, handed to ``front_end``.
        size_range: accepted input sides ``(min, max)``.
        validate: check for NaN / infinite input.
        front_end: the :data:`FrontEnd` that describes each image. ``None`` (a module built only to
            hold or write a codebook) refuses to run; the registered ``vlad``
            (:func:`lookalike.matching.vlad.vlad`) passes the RootSIFT front end.

    Without weights the codebook is random (unit rows of ``torch.rand``: meaningless); use
    ``vlad:bundled`` or a file written by :func:`lookalike.matching.vlad.write_bundled_codebook`.

    Example:
        >>> import lookalike, torch
        >>> model = lookalike.create("descriptor", "vlad:bundled")
        >>> model(torch.rand(1, 3, 96, 128)).shape
        torch.Size([1, 8192])
    """

    needs_weights = True
    differentiable = False
    input_name = "images"

    def __init__(
        self,
        *,
        clusters: int = 64,
        max_keypoints: int = 1024,
        max_size: int = 640,
        size_range: Sequence[int] = (64, 8192),
        validate: bool = True,
        front_end: FrontEnd | None = None,
    ) -> None:
        super().__init__()
        if front_end is not None and not callable(front_end):
            raise OptionError(f"front_end: expected a callable or None, got {front_end!r}")
        self.clusters = check_int(clusters, "clusters", 1)
        self.max_keypoints = check_int(max_keypoints, "max_keypoints", 1)
        self.max_size = check_int(max_size, "max_size", 16)
        self.input_spec = InputSpec(
            channels=3, size=tuple(size_range), normalization="gray, DoG + RootSIFT, VLAD"
        )
        self.validate = validate
        self.dim = self.clusters * LOCAL_DIM
        self.register_buffer("centers", F.normalize(torch.rand(self.clusters, LOCAL_DIM), dim=1))
        self.front_end = front_end
        self._describer: LocalDescriber | None = None

    def set_codebook(self, centers: torch.Tensor) -> VLAD:
        """Use ``(clusters, 128)`` finite ``centers`` as the codebook (returns ``self``)."""
        check_tensor(centers, "centers")
        check_shape(centers, [str(self.clusters), str(LOCAL_DIM)], "centers")
        check_finite(centers, "centers")
        with torch.no_grad():
            self.centers.copy_(centers.to(self.centers))
        return self

    def describer(self) -> LocalDescriber:
        """The local describer, built by ``front_end`` on first use.

        Raises:
            OptionError: the module has no front end.
        """
        if self._describer is None:
            if self.front_end is None:
                raise OptionError(
                    "front_end: expected a front end to describe images, got None (build the "
                    "descriptor with lookalike.create('descriptor', 'vlad...'), or pass one)"
                )
            self._describer = self.front_end(self.max_keypoints, self.max_size)
        return self._describer

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        describe = self.describer()
        centers = self.centers.float().cpu()
        rows = []
        for image in x.detach().float().clamp(0.0, 1.0).cpu():
            rows.append(vlad_aggregate(describe(image).float().cpu(), centers))
        return torch.stack(rows).to(x.device)


# ----------------------------------------------------------------------------------- codebook
def kmeans(
    x: np.ndarray, k: int, *, iterations: int = 100, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Deterministic k-means (k-means++ seeding, Lloyd iterations) in float64.

    Args:
        x: ``(M, D)`` points, ``M >= k``.
        k: clusters.
        iterations: at most this many Lloyd steps (stops when assignments no longer change).
        seed: seed of the k-means++ draws.

    Returns:
        ``(centers (k, D) float64, assignment (M,) int64)``; a cluster that empties is re-seeded at
        the point farthest from its centre.

    Example:
        >>> import numpy as np
        >>> x = np.array([[0.0], [0.2], [10.0], [10.4]])
        >>> centers, assign = kmeans(x, 2)
        >>> sorted(centers.ravel().round(2).tolist()), bool(assign[0] != assign[2])
        ([0.1, 10.2], True)
    """
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] < check_int(k, "k", 1) or not np.isfinite(x).all():
        raise OptionError(f"x: expected (M, D) finite points with M >= k={k}, got {x.shape}")
    rng = np.random.default_rng(seed)
    centers = [x[rng.integers(len(x))]]
    closest = ((x - centers[0]) ** 2).sum(1)
    for _ in range(1, k):
        total = closest.sum()
        pick = rng.choice(len(x), p=closest / total) if total > 0 else rng.integers(len(x))
        centers.append(x[pick])
        closest = np.minimum(closest, ((x - x[pick]) ** 2).sum(1))
    c = np.stack(centers)
    assign = np.full(len(x), -1, dtype=np.int64)
    for _ in range(check_int(iterations, "iterations", 1)):
        dist = (x * x).sum(1)[:, None] - 2.0 * x @ c.T + (c * c).sum(1)[None]
        new = dist.argmin(1)
        if np.array_equal(new, assign):
            break
        assign = new
        for j in range(k):
            members = x[assign == j]
            if len(members):
                c[j] = members.mean(0)
            else:
                far = int(dist[np.arange(len(x)), assign].argmax())
                c[j] = x[far]
    return c, assign
