"""``ensemble``: several descriptors as one, the 2021 landmark-retrieval winners' recipe.

Members are registry specs (``"dolg:run1.safetensors"``, ``"gem:bundled"``, ``"color-hist"``). The
rows of the members of one family (one registered name) are averaged; the families' averages are
concatenated and the result L2-normalised. A YAML file lists the members::

    members: [dolg:a.safetensors, dolg:b.safetensors, hybrid_swin:c.safetensors]

(or the bare list).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from lookalike._registry import check_component_spec, create, register, split_spec
from lookalike.core.errors import DataNotFoundError, OptionError, ShapeError
from lookalike.descriptors._base import Descriptor, InputSpec

__all__ = ["EnsembleDescriptor", "load_ensemble", "read_members"]


def read_members(path: str | os.PathLike[str]) -> list[str]:
    """The member specs of an ensemble YAML file (a list, or a mapping with ``members``).

    Raises:
        DataNotFoundError: no such file.
        OptionError: the file holds no list of spec strings.
    """
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
    return members


def load_ensemble(
    path: str | os.PathLike[str], *, allow_random: bool = False
) -> EnsembleDescriptor:
    """Build an :class:`EnsembleDescriptor` from a YAML file (see :func:`read_members`)."""
    return create("descriptor", "ensemble", members=read_members(path), allow_random=allow_random)


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
        members: registry specs ``name`` or ``name:weights`` (required, at least one).
        allow_random: accept learned members without weights (random initialisation).
        validate: check for NaN / infinite input.

    Attributes:
        families: the family names in order, each with its member indices.

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
                allow_random=allow_random,
            )
        self.members = nn.ModuleList(create("descriptor", spec) for spec in members)
        self.specs = list(members)
        self.families: dict[str, list[int]] = {}
        for i, spec in enumerate(members):
            self.families.setdefault(split_spec(spec)[0], []).append(i)
        for family, index in self.families.items():
            dims = {self.members[i].dim for i in index}
            if len(dims) != 1:
                raise ShapeError(
                    f"members of family {family!r}: expected one descriptor size, got {sorted(dims)}"
                )
        self.input_spec = _intersect([m.input_spec for m in self.members])
        self.dim = sum(self.members[index[0]].dim for index in self.families.values())
        self.validate = validate

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        parts = []
        for index in self.families.values():
            rows = [self.members[i](x).to(x.dtype) for i in index]
            parts.append(torch.stack(rows).mean(dim=0))
        return torch.cat(parts, dim=1)
