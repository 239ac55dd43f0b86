"""ArcFace and the label-smoothed classifier loss against hand-written loops (float64)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import lookalike
from conftest import gradcheck
from lookalike.core.errors import DTypeError, OptionError, ShapeError, ValueRangeError
from lookalike.losses.arcface import (
    ArcFaceLoss,
    CosFaceLoss,
    arcface_logits,
    arcface_loss,
    dynamic_margins,
)
from lookalike.losses.classifier import ClassifierCrossEntropy


def _arcface_loop(x, labels, w, s, m, k):
    """Per-sample loop: angles, the margin on the true class (with the wrap-around fallback), CE."""
    x, w = np.asarray(x, np.float64), np.asarray(w, np.float64)
    total = 0.0
    classes = w.shape[0] // k
    for i in range(x.shape[0]):
        xi = x[i] / np.linalg.norm(x[i])
        logits = []
        for c in range(classes):
            best = max(float(xi @ (w[c * k + j] / np.linalg.norm(w[c * k + j]))) for j in range(k))
            best = min(1.0, max(-1.0, best))
            if c == labels[i]:
                theta = math.acos(best)
                best = math.cos(theta + m) if theta + m < math.pi else best - m * math.sin(m)
            logits.append(s * best)
        top = max(logits)
        lse = top + math.log(sum(math.exp(v - top) for v in logits))
        total += lse - logits[labels[i]]
    return total / x.shape[0]


@pytest.mark.parametrize("k", [1, 3])
@pytest.mark.parametrize("s, m", [(30.0, 0.5), (10.0, 0.2), (64.0, 0.0), (5.0, 1.2)])
def test_arcface_matches_a_loop(k, s, m):
    gen = torch.Generator().manual_seed(k * 100 + int(s))
    x = torch.randn(9, 6, generator=gen, dtype=torch.float64)
    w = torch.randn(4 * k, 6, generator=gen, dtype=torch.float64)
    labels = torch.randint(0, 4, (9,), generator=gen)
    ours = arcface_loss(x, labels, w, scale=s, margin=m, sub_centers=k)
    assert ours.item() == pytest.approx(_arcface_loop(x, labels.tolist(), w, s, m, k), rel=1e-10)


def test_arcface_wraparound_fallback_is_used_past_pi_minus_m():
    x = torch.tensor([[1.0, 0.0]], dtype=torch.float64)
    w = torch.tensor([[-1.0, 0.05], [0.0, 1.0]], dtype=torch.float64)  # theta_0 close to pi
    logits = arcface_logits(x, torch.tensor([0]), w, scale=1.0, margin=0.5)
    cos0 = float(-1.0 / math.hypot(1.0, 0.05))
    assert logits[0, 0].item() == pytest.approx(cos0 - 0.5 * math.sin(0.5))


def test_arcface_gradcheck_and_no_nan_on_the_centre():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(5, 4, generator=gen)
    w = torch.randn(6, 4, generator=gen)
    labels = torch.tensor([0, 1, 2, 0, 1])
    assert gradcheck(
        lambda a, b: arcface_loss(a, labels, b, scale=4.0, margin=0.3, sub_centers=2), x, w
    )
    on_centre = torch.eye(3, dtype=torch.float64, requires_grad=True)
    arcface_loss(on_centre, torch.arange(3), torch.eye(3, dtype=torch.float64)).backward()
    assert torch.isfinite(on_centre.grad).all()


def test_arcface_module_holds_class_weights_and_is_registered():
    torch.manual_seed(0)
    crit = lookalike.create("loss", "arcface", num_classes=4, embedding_dim=8, sub_centers=2)
    assert isinstance(crit, ArcFaceLoss) and crit.weight.shape == (8, 8)
    assert [n for n, _ in crit.named_parameters()] == ["weight"]
    x, labels = torch.randn(6, 8), torch.tensor([0, 1, 2, 3, 0, 1])
    torch.testing.assert_close(
        crit(x, labels),
        arcface_loss(x, labels, crit.weight, scale=30.0, margin=0.5, sub_centers=2),
    )


def test_arcface_bad_input():
    x, w = torch.randn(3, 4), torch.randn(5, 4)
    with pytest.raises(ValueRangeError, match=r"labels: expected values in \[0, 5\)"):
        arcface_loss(x, torch.tensor([0, 1, 5]), w)
    with pytest.raises(ShapeError):
        arcface_loss(x, torch.tensor([0, 1, 2]), torch.randn(5, 3))
    with pytest.raises(DTypeError):
        arcface_loss(x, torch.tensor([0.0, 1.0, 2.0]), w)
    with pytest.raises(ValueRangeError, match="multiple of sub_centers=2"):
        arcface_loss(x, torch.tensor([0, 1, 1]), w, sub_centers=2)
    with pytest.raises(OptionError, match="margin"):
        ArcFaceLoss(num_classes=3, embedding_dim=4, margin=2.0)
    with pytest.raises(OptionError, match="num_classes"):
        ArcFaceLoss(num_classes=0, embedding_dim=4)


@pytest.mark.parametrize("eps", [0.0, 0.1, 0.3])
def test_classifier_cross_entropy_matches_a_loop(eps):
    torch.manual_seed(1)
    crit = ClassifierCrossEntropy(num_classes=5, embedding_dim=3, label_smoothing=eps).double()
    with torch.no_grad():
        crit.weight.normal_()
    x, labels = torch.randn(7, 3, dtype=torch.float64), torch.randint(0, 5, (7,))
    logits = (x @ crit.weight.T).detach().numpy()
    expected = 0.0
    for i, y in enumerate(labels.tolist()):
        logp = logits[i] - logits[i].max()
        logp = logp - math.log(np.exp(logp).sum())
        target = np.full(5, eps / 5)
        target[y] += 1 - eps
        expected -= float(target @ logp)
    assert crit(x, labels).item() == pytest.approx(expected / 7, rel=1e-10)
    with pytest.raises(OptionError, match="label_smoothing"):
        ClassifierCrossEntropy(num_classes=2, embedding_dim=2, label_smoothing=1.0)


# ------------------------------------------------------------------ dynamic margins, sub-centres, CosFace
def _pml_weights(ours, pml):
    """Copy our (C * k, D) centres into pytorch-metric-learning's (D, C * k) ``W``."""
    with torch.no_grad():
        pml.W.copy_(ours.weight.T)


def _small_angle_case(n=10, d=8, classes=5, k=1, seed=0):
    """Embeddings close to their class centre, so that theta + m < pi (no fallback: PML has none)."""
    gen = torch.Generator().manual_seed(seed)
    w = torch.randn(classes * k, d, generator=gen, dtype=torch.float64)
    labels = torch.randint(0, classes, (n,), generator=gen)
    x = w[labels * k] + 0.3 * torch.randn(n, d, generator=gen, dtype=torch.float64)
    return x, labels, w


@pytest.mark.parametrize("k", [1, 3])
def test_arcface_equals_pytorch_metric_learning(k):
    from pytorch_metric_learning import losses as pml_losses

    x, labels, w = _small_angle_case(k=k)
    ours = ArcFaceLoss(num_classes=5, embedding_dim=8, scale=45.0, margin=0.3, sub_centers=k)
    ours = ours.double()
    with torch.no_grad():
        ours.weight.copy_(w)
    if k == 1:
        pml = pml_losses.ArcFaceLoss(5, 8, margin=math.degrees(0.3), scale=45.0)
    else:
        pml = pml_losses.SubCenterArcFaceLoss(
            num_classes=5, embedding_size=8, margin=math.degrees(0.3), scale=45.0, sub_centers=k
        )
    pml = pml.double()
    _pml_weights(ours, pml)
    torch.testing.assert_close(ours(x, labels), pml(x, labels), rtol=1e-9, atol=1e-9)


def test_cosface_equals_pytorch_metric_learning_and_a_loop():
    from pytorch_metric_learning import losses as pml_losses

    x, labels, w = _small_angle_case(seed=3)
    ours = CosFaceLoss(num_classes=5, embedding_dim=8, scale=20.0, margin=0.35).double()
    with torch.no_grad():
        ours.weight.copy_(w)
    pml = pml_losses.CosFaceLoss(5, 8, margin=0.35, scale=20.0).double()
    _pml_weights(ours, pml)
    torch.testing.assert_close(ours(x, labels), pml(x, labels), rtol=1e-9, atol=1e-9)
    xn = (x / x.norm(dim=1, keepdim=True)).numpy()
    wn = (w / w.norm(dim=1, keepdim=True)).numpy()
    total = 0.0
    for i, y in enumerate(labels.tolist()):
        logits = 20.0 * (xn[i] @ wn.T)
        logits[y] -= 20.0 * 0.35
        total += math.log(np.exp(logits).sum()) - logits[y]
    assert ours(x, labels).item() == pytest.approx(total / len(labels), rel=1e-10)


def test_dynamic_margins_hand_computed():
    # n^-1/4 of 1, 16, 81, 10000 = 1, 1/2, 1/3, 1/10; minmax = 1, 4/9, 7/27, 0.
    m = dynamic_margins([1, 16, 81, 10000])
    expected = [0.45 + 0.05, 0.45 * 4 / 9 + 0.05, 0.45 * 7 / 27 + 0.05, 0.05]
    torch.testing.assert_close(m, torch.tensor(expected), rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(dynamic_margins([7, 7], a=0.2, b=0.1), torch.tensor([0.2, 0.2]))
    with pytest.raises(ValueRangeError, match="counts >= 1"):
        dynamic_margins([0, 3])
    with pytest.raises(OptionError, match="a \\+ b"):
        dynamic_margins([1, 2], a=1.0, b=0.6)


def test_dynamic_margin_loss_applies_each_class_margin():
    # Toy case: 2 classes on the axes, embeddings at 30 degrees from their centre.
    t = math.radians(30)
    x = torch.tensor([[math.cos(t), math.sin(t)], [math.sin(t), math.cos(t)]], dtype=torch.float64)
    w = torch.eye(2, dtype=torch.float64)
    crit = ArcFaceLoss(
        num_classes=2, embedding_dim=2, scale=45.0, margin="dynamic", class_counts=[1, 10000]
    ).double()
    with torch.no_grad():
        crit.weight.copy_(w)
    logits = crit.logits(x, torch.tensor([0, 1]))
    # class 0 is the rarest: m = 0.5; class 1 the most frequent: m = 0.05.
    expected = 45.0 * torch.tensor(
        [[math.cos(t + 0.5), math.sin(t)], [math.sin(t), math.cos(t + 0.05)]], dtype=torch.float64
    )
    torch.testing.assert_close(logits, expected)
    per_class = arcface_logits(x, torch.tensor([0, 1]), w, scale=45.0, margin=crit.margins.double())
    torch.testing.assert_close(per_class, expected)
    assert "margins" in crit.state_dict()


def test_subcenter_takes_the_best_centre():
    x = torch.tensor([[0.0, 1.0]], dtype=torch.float64)
    w = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [-1.0, 0.1]], dtype=torch.float64)
    logits = arcface_logits(x, torch.tensor([1]), w, scale=1.0, margin=0.0, sub_centers=2)
    # class 0 = centres 0 and 1 (best cosine 1), class 1 = centres 2 and 3 (best 0.1/|(-1, 0.1)|).
    torch.testing.assert_close(
        logits, torch.tensor([[1.0, 0.1 / math.hypot(1.0, 0.1)]], dtype=torch.float64)
    )


@pytest.mark.parametrize("name", ["arcface", "cosface"])
def test_optimiser_updates_the_class_weights(name):
    torch.manual_seed(0)
    crit = lookalike.create("loss", name, num_classes=3, embedding_dim=4, sub_centers=2)
    before = crit.weight.detach().clone()
    opt = torch.optim.SGD(crit.parameters(), lr=0.1)
    x, labels = torch.randn(6, 4), torch.tensor([0, 1, 2, 0, 1, 2])
    first = crit(x, labels)
    first.backward()
    opt.step()
    assert not torch.equal(before, crit.weight.detach())
    assert crit(x, labels).item() < first.item()


def test_margin_losses_bad_options():
    with pytest.raises(OptionError, match="class_counts"):
        ArcFaceLoss(num_classes=2, embedding_dim=4, margin="dynamic")
    fixed = ArcFaceLoss(num_classes=2, embedding_dim=4, class_counts=[1, 2])  # counts unused
    assert fixed.margins is None and fixed.margin == 0.5
    with pytest.raises(ShapeError, match="expected 3 counts"):
        ArcFaceLoss(num_classes=3, embedding_dim=4, margin="dynamic", class_counts=[1, 2])
    with pytest.raises(OptionError, match="'dynamic'"):
        ArcFaceLoss(num_classes=2, embedding_dim=4, margin="adaptive")
    with pytest.raises(ShapeError, match="per-class"):
        arcface_logits(
            torch.randn(2, 4), torch.tensor([0, 1]), torch.randn(3, 4), margin=torch.zeros(2)
        )
    with pytest.raises(OptionError, match="margin"):
        CosFaceLoss(num_classes=2, embedding_dim=4, margin=-0.1)
