"""``ensemble``: several descriptors as one, the 2021 landmark-retrieval winners' recipe.

Members are registry specs (``"dolg:run1.safetensors"``, ``"gem:bundled"``, ``"color-hist"``). The
rows of the members of one family (one registered name) are averaged; the families' averages are
concatenated (each times ``sqrt(w)`` for a family weight ``w``, default 1) and the result
L2-normalised. A YAML file lists the members and, optionally, the family weights::

    members: [dolg:a.safetensors, dolg:b.safetensors, hybrid_swin:c.safetensors]
    family_weights: [1.0, 0.5]

(or the bare list). With unit member rows, the inner product of two ensemble rows is then the
``w``-weighted sum of the families' inner products (over the norms): a weighted score fusion.

A member that learns from labelled data by a ``fit(images, ids, cams)`` method (``lomo-xqda``) may
be given without weights: :meth:`EnsembleDescriptor.fit` fits it (re-ID protocols call ``fit`` on
the training identities, e.g. ``members: [lomo-xqda, relation_net:W]`` fuses LOMO+XQDA with a
network).
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from lookalike._registry import check_component_spec, create, get_entry, register, split_spec
from lookalike.core.errors import DataNotFoundError, OptionError, ShapeError
from lookalike.descriptors._base import Descriptor, InputSpec

__all__ = [
    "GEM_COLOR_MEMBERS",
    "GEM_TCH_MEMBERS",
    "EnsembleDescriptor",
    "GemColor",
    "GemTransformedColor",
    "load_ensemble",
    "read_members",
]

#: Members of ``gem-color``, the default global descriptor (:mod:`lookalike.descriptors.image.shipped`).
GEM_COLOR_MEMBERS: tuple[str, ...] = ("gem:bundled", "color-hist")
#: Members of ``gem-tch`` (the transformed colour histogram instead of the HSV one).
GEM_TCH_MEMBERS: tuple[str, ...] = ("gem:bundled", "transformed-color-hist")


def read_members(path: str | os.PathLike[str]) -> list[str]:
    """The member specs of an ensemble YAML file (a list, or a mapping with ``members``).

    Raises:
        DataNotFoundError: no such file.
        OptionError: the file holds no list of spec strings.
    """
    return _read_file(path)[0]


def _read_file(path: str | os.PathLike[str]) -> tuple[list[str], Any]:
    """``(members, family_weights or None)`` of an ensemble YAML file."""
    import yaml

    file = Path(path).expanduser()
    if not file.is_file():
        raise DataNotFoundError(f"ensemble file not found: {file}")
    data = yaml.safe_load(file.read_text())
    members = data.get("members") if isinstance(data, dict) else data
    if not isinstance(members, list) or not members or not all(isinstance(m, str) for m in members):
        raise OptionError(
            f"{file}: expected a non-empty list of descriptor specs (members: [...]), got {data!r}"
        )
    weights = data.get("family_weights") if isinstance(data, dict) else None
    return members, weights


def load_ensemble(
    path: str | os.PathLike[str], *, allow_random: bool = False
) -> EnsembleDescriptor:
    """Build an :class:`EnsembleDescriptor` from a YAML file (``members``, optional ``family_weights``)."""
    members, weights = _read_file(path)
    return create(
        "descriptor",
        "ensemble",
        members=members,
        family_weights=weights,
        allow_random=allow_random,
    )


def _fittable(spec: str) -> bool:
    """Whether the member ``spec`` names, without weights, a descriptor that fits on labelled data."""
    name, weights = split_spec(spec)
    return weights is None and callable(getattr(get_entry("descriptor", name).factory, "fit", None))


def _check_weights(weights: Any, n: int) -> list[float]:
    if weights is None:
        return [1.0] * n
    if (
        not isinstance(weights, (list, tuple))
        or len(weights) != n
        or not all(
            isinstance(w, (int, float)) and not isinstance(w, bool) and math.isfinite(w) and w > 0
            for w in weights
        )
    ):
        raise OptionError(
            f"family_weights: expected {n} positive numbers (one per family), got {weights!r}"
        )
    return [float(w) for w in weights]


def _intersect(specs: Sequence[InputSpec]) -> InputSpec:
    channels = {s.channels for s in specs}
    if len(channels) != 1:
        raise ShapeError(f"members: expected one input channel count, got {sorted(channels)}")
    low = max(s.size_range[0] for s in specs)
    high = min(s.size_range[1] for s in specs)
    if low > high:
        raise ShapeError("members: their accepted input sizes do not overlap")
    return InputSpec(channels=channels.pop(), size=(low, high), normalization="per member")


@register("descriptor", "ensemble")
class EnsembleDescriptor(Descriptor):
    """Average the rows within a family, concatenate families, L2-normalise.

    Args:
        members: registry specs ``name`` or ``name:weights`` (required, at least one). A member that
            fits on labelled data (``lomo-xqda``) may come without weights; see :meth:`fit`.
        family_weights: one positive weight per family, in order of first appearance (default:
            all 1); a family's part is scaled by ``sqrt(w)``.
        allow_random: accept learned members without weights (random initialisation).
        validate: check for NaN / infinite input.

    Attributes:
        families: the family names in order, each with its member indices.
        specs: the member specs.

    Convention:
        The members are in eval mode after construction when built with weights (as
        :func:`lookalike.create` returns them). ``differentiable`` is ``False`` at the class level
        because a member may not be.

    Example:
        >>> import torch
        >>> ens = EnsembleDescriptor(members=["color-hist", "color-hist"])
        >>> ens.dim, list(ens.families)
        (512, ['color-hist'])
        >>> torch.allclose(ens(torch.rand(2, 3, 32, 32)).norm(dim=1), torch.ones(2))
        True
    """

    needs_weights = False
    differentiable = False
    input_name = "images"

    def __init__(
        self,
        *,
        members: Sequence[str],
        family_weights: Sequence[float] | None = None,
        allow_random: bool = False,
        validate: bool = True,
    ) -> None:
        super().__init__()
        if isinstance(members, str) or not members or not all(isinstance(m, str) for m in members):
            raise OptionError(
                f"members: expected a non-empty list of descriptor specs, got {members!r}"
            )
        for spec in members:
            check_component_spec(
                spec,
                kind="descriptor",
                field="members",
                container="ensemble",
                allow_random=allow_random or _fittable(spec),
            )
        self.members = nn.ModuleList(create("descriptor", spec) for spec in members)
        self.specs = list(members)
        self.families: dict[str, list[int]] = {}
        for i, spec in enumerate(members):
            self.families.setdefault(split_spec(spec)[0], []).append(i)
        self._check_family_sizes()
        self.family_weights = _check_weights(family_weights, len(self.families))
        self.input_spec = _intersect([m.input_spec for m in self.members])
        self.validate = validate

    def _check_family_sizes(self) -> None:
        for family, index in self.families.items():
            dims = {self.members[i].dim for i in index}
            if len(dims) != 1:
                raise ShapeError(
                    f"members of family {family!r}: expected one descriptor size, got {sorted(dims)}"
                )

    @property
    def dim(self) -> int:  # type: ignore[override]
        """Sum of the families' sizes (a fittable member's size changes when it is fitted)."""
        return sum(int(self.members[index[0]].dim) for index in self.families.values())

    @property
    def fitted(self) -> bool:
        """Whether every member that fits on labelled data is fitted (``True`` when none does)."""
        return all(getattr(m, "fitted", True) for m in self.members)

    @property
    def crop_size(self) -> tuple[int, int] | None:
        """``(height, width)`` re-ID crops are read at: the largest of the members' (area), if any."""
        sizes = [tuple(m.crop_size) for m in self.members if getattr(m, "crop_size", None)]
        return max(sizes, key=lambda s: s[0] * s[1]) if sizes else None  # type: ignore[return-value]

    def fit(self, images: torch.Tensor, ids: Any, cams: Any, **kwargs: Any) -> EnsembleDescriptor:
        """Fit every member that has a ``fit`` method and is not fitted yet, on the same labelled
        ``images`` ``(n, 3, H, W)`` (re-ID: identities and cameras); the others are untouched.
        """
        self.check_input(images)
        for member in self.members:
            if callable(getattr(member, "fit", None)) and not getattr(member, "fitted", True):
                member.fit(images, ids, cams, **kwargs)
        self._check_family_sizes()
        return self

    def adapt_state_dict(self, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Let members adapt to a saved file (a fitted member takes its saved projection's size)."""
        for i, member in enumerate(self.members):
            adapt = getattr(member, "adapt_state_dict", None)
            if callable(adapt):
                prefix = f"members.{i}."
                own = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
                rest = {k: v for k, v in state.items() if not k.startswith(prefix)}
                state = {**rest, **{prefix + k: v for k, v in adapt(own).items()}}
        return state

    def weights_files(self) -> list[Path]:
        """The weights file of every member built with weights, in member order (for checksums)."""
        from lookalike._registry import resolve_weights

        files = []
        for spec in self.specs:
            name, weights = split_spec(spec)
            if weights is not None:
                files.append(resolve_weights(get_entry("descriptor", name), weights))
        return files

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        parts = []
        for index, w in zip(self.families.values(), self.family_weights, strict=True):
            rows = [self.members[i](x).to(x.dtype) for i in index]
            part = torch.stack(rows).mean(dim=0)
            parts.append(part if w == 1.0 else part * math.sqrt(w))
        return torch.cat(parts, dim=1)


class _ShippedComposite(EnsembleDescriptor):
    """An ensemble of fixed shipped members, registered under its own name (no weights file of its own).

    :func:`lookalike._registry.is_shipped` counts it as shipped when its members' weights are.
    """

    MEMBERS: tuple[str, ...] = ()

    def __init__(self, *, validate: bool = True) -> None:
        super().__init__(members=list(self.MEMBERS), validate=validate)


@register("descriptor", "gem-color")
class GemColor(_ShippedComposite):
    """``gem:bundled`` fused with ``color-hist`` (HSV, equal weights): the default global descriptor.

    The shipped network is trained to ignore colour (colour jitter, grayscale); the histogram keeps
    exactly what it drops. Chosen on whole held-out photos (``benchmarks/held_out_retrieval.py``: nine
    bundled photos as colour scenes under five nuisances, scored with a ``gem`` trained without them by
    ``configs/gem_bundled_leave_out.yaml``; never evaluation data): mAP .762 against .711 for the
    network alone and .689 with the transformed histogram (``gem-tch``); .857 / .842 / .780 with
    spatial verification. Same rows as the ensemble file ``configs/ensembles/gem_color.yaml``.

    Args:
        validate: check for NaN / infinite input.

    Example:
        >>> default = GemColor()
        >>> default.specs, default.dim
        (['gem:bundled', 'color-hist'], 1024)
    """

    MEMBERS = GEM_COLOR_MEMBERS


@register("descriptor", "gem-tch")
class GemTransformedColor(_ShippedComposite):
    """``gem:bundled`` fused with ``transformed-color-hist`` (equal weights).

    The transformed colour histogram keeps the colour layout while ignoring lighting (a gain and an
    offset per RGB channel). It was the default global descriptor until stop 35, chosen on the region
    views of ``bundled_instances`` (regions of chelsea, coffee and gravel, colour-jittered like the
    training views): mAP .531 against .474 for ``gem:bundled`` alone. On whole held-out photos
    (``benchmarks/held_out_retrieval.py``) it scores below the network alone (.689 against .711) and
    below ``gem-color`` (.762). Same rows as the ensemble file ``configs/ensembles/gem_tch.yaml``.

    Args:
        validate: check for NaN / infinite input.

    Example:
        >>> fused = GemTransformedColor()
        >>> fused.specs, fused.dim
        (['gem:bundled', 'transformed-color-hist'], 1024)
    """

    MEMBERS = GEM_TCH_MEMBERS
