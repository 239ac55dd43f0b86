"""The keyword checks and backbone set-up GeM and DOLG share (``descriptors/image/_backbone.py``):
``check_counts`` by hand, bad keywords refused before any backbone is built, the stage channels of a
known backbone (ResNet-18: 256 at stage 3, 512 at stage 4)."""

from __future__ import annotations

import pytest

from lookalike.core.errors import OptionError
from lookalike.descriptors.image import _backbone
from lookalike.descriptors.image._backbone import check_counts
from lookalike.descriptors.image.dolg import DOLGDescriptor
from lookalike.descriptors.image.gem import GeMDescriptor


def test_check_counts_by_hand():
    check_counts(a=1, b=2048)
    check_counts(dim=None, optional=("dim",))
    for bad in (0, -3, 2.0, True, "4", None):
        with pytest.raises(OptionError, match=f"x: expected an integer >= 1, got {bad!r}"):
            check_counts(x=bad)
    with pytest.raises(OptionError, match="second"):
        check_counts(first=1, second=0)


@pytest.fixture
def no_backbone(monkeypatch):
    """Building a backbone fails the test: the checks must come first."""

    def refuse(*args, **kwargs):
        raise AssertionError("a backbone was built before the keywords were checked")

    monkeypatch.setattr(_backbone, "create_backbone", refuse)


@pytest.mark.parametrize(
    ("cls", "kwargs"),
    [
        (GeMDescriptor, {"dim": 0, "whitening": "fc"}),
        (GeMDescriptor, {"dim": True, "whitening": "fc"}),
        (GeMDescriptor, {"size_range": (64, 32)}),
        (DOLGDescriptor, {"local_dim": 0}),
        (DOLGDescriptor, {"atrous_hidden": 1.5}),
        (DOLGDescriptor, {"dim": -1}),
        (DOLGDescriptor, {"size_range": (0, 32)}),
    ],
)
def test_bad_keywords_are_refused_before_the_backbone(no_backbone, cls, kwargs):
    with pytest.raises(OptionError, match="expected"):
        cls(backbone="resnet18", **kwargs)


def test_setup_backbone_returns_the_stage_channels():
    gem = GeMDescriptor(backbone="resnet18", size_range=(32, 64), validate=False)
    assert gem.dim == 512 and gem.validate is False and gem.input_spec.size == (32, 64)
    dolg = DOLGDescriptor(backbone="resnet18", local_dim=8, atrous_hidden=4, dim=8)
    assert dolg.local_branch.branches[0].in_channels == 256
    assert dolg.global_conv[0].in_channels == 512 and dolg.validate is True
