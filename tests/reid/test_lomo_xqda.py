"""LOMO pieces against brute-force loops; XQDA against explicit pair sums and the paper's two-view formula."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import lookalike
from lookalike.core.errors import EmptyInputError, ShapeError
from lookalike.core.weights import save_weights
from lookalike.descriptors.reid import LOMO_DIM, Lomo, LomoXQDA, StripeHSV, fit_xqda, xqda_distances
from lookalike.descriptors.reid.lomo import _max_occurrence, lomo_features, retinex, siltp
from lookalike.descriptors.reid.stripes import stripe_histograms
from lookalike.descriptors.reid.xqda import _pair_covariance
from reid.formats import crop


def test_siltp_equals_pixel_loop():
    rng = np.random.default_rng(0)
    gray = rng.random((2, 12, 9))
    codes = siltp(gray, tau=0.3, radius=2)
    h, w = gray.shape[1:]
    for b in range(2):
        for y in range(h):
            for x in range(w):
                centre, code = gray[b, y, x], 0
                for k, (dy, dx) in enumerate(((0, 2), (-2, 0), (0, -2), (2, 0))):
                    n = gray[b, min(max(y + dy, 0), h - 1), min(max(x + dx, 0), w - 1)]
                    code += (1 if n < 0.7 * centre else 2 if n > 1.3 * centre else 0) * 3**k
                assert codes[b, y, x] == code


def test_max_occurrence_equals_window_loop():
    rng = np.random.default_rng(1)
    codes = rng.integers(0, 6, (2, 33, 22))
    out = _max_occurrence(codes, 6)
    rows, cols = (33 - 10) // 5 + 1, (22 - 10) // 5 + 1
    expected = np.zeros((2, rows, 6))
    for b in range(2):
        for r in range(rows):
            for c in range(cols):
                window = codes[b, 5 * r : 5 * r + 10, 5 * c : 5 * c + 10]
                expected[b, r] = np.maximum(
                    expected[b, r], np.bincount(window.ravel(), minlength=6)
                )
    np.testing.assert_array_equal(out, expected.reshape(2, -1))


def test_lomo_layout():
    rgb = np.stack([crop(1, 0), crop(2, 0)]).astype(np.float64) / 255
    feats = lomo_features(rgb)
    assert feats.shape == (2, LOMO_DIM) == (2, 26960)
    np.testing.assert_allclose(np.linalg.norm(feats, axis=1), np.sqrt(3))
    out = Lomo()(torch.from_numpy(rgb).permute(0, 3, 1, 2).float())
    np.testing.assert_allclose(out.numpy(), feats / np.sqrt(3), atol=1e-6)
    with_retinex = lomo_features(rgb, use_retinex=True)
    assert with_retinex.shape == feats.shape and not np.allclose(with_retinex, feats)
    enhanced = retinex(rgb)
    assert enhanced.shape == rgb.shape and enhanced.min() >= 0 and enhanced.max() <= 1


def test_stripe_histograms_equal_loop():
    rgb = np.random.default_rng(2).random((1, 17, 10, 3)).astype(np.float32)
    import cv2

    hsv = cv2.cvtColor(rgb[0], cv2.COLOR_RGB2HSV)
    out = stripe_histograms(rgb)
    expected = np.zeros((8, 64))
    for y in range(16):
        for x in range(10):
            h, s, v = (min(int(c * 4), 3) for c in (hsv[y, x, 0] / 360, hsv[y, x, 1], hsv[y, x, 2]))
            expected[y // 2, (h * 4 + s) * 4 + v] += 1 / 20
    np.testing.assert_allclose(out[0], expected.ravel())
    assert StripeHSV()(torch.from_numpy(rgb).permute(0, 3, 1, 2)).shape == (1, 512)


def _toy(seed=0, n_ids=20, d=6):
    rng = np.random.default_rng(seed)
    ids = np.repeat(np.arange(n_ids), 2)
    cams = np.tile([0, 1], n_ids)
    x = rng.normal(size=(n_ids, d))[ids] + 0.4 * rng.normal(size=(2 * n_ids, d))
    x[cams == 1] += 0.5  # a camera shift
    return x, ids, cams


@pytest.mark.parametrize("same_id", [True, False])
def test_pair_covariance_equals_pair_loop(same_id):
    x, ids, cams = _toy(1, n_ids=5, d=3)
    ids, cams = ids.copy(), cams.copy()
    cams[:3] = 2  # three cameras
    cov, count = _pair_covariance(x, ids, cams, same_id)
    expected, n = np.zeros((3, 3)), 0
    for i in range(len(x)):
        for j in range(len(x)):
            if cams[i] != cams[j] and (ids[i] == ids[j]) == same_id:
                diff = x[i] - x[j]
                expected += np.outer(diff, diff)
                n += 1
    np.testing.assert_allclose(cov, expected, atol=1e-9)
    assert count == n


def _paper_xqda(gal, prob, lam=0.001):
    """XQDA.m for one image per person and view (gallery i and probe i are person i)."""
    n, d = gal.shape
    in_cov = (gal - prob).T @ (gal - prob) / n
    ex = [
        np.outer(gal[i] - prob[j], gal[i] - prob[j]) for i in range(n) for j in range(n) if i != j
    ]
    ex_cov = np.sum(ex, 0) / len(ex)
    in_cov = in_cov + lam * np.eye(d)
    u, s, _ = np.linalg.svd(np.linalg.solve(in_cov, ex_cov))
    v = u[:, : max(1, int((s > 1).sum()))]
    return v, np.linalg.inv(v.T @ in_cov @ v) - np.linalg.inv(v.T @ ex_cov @ v)


def test_fit_xqda_equals_the_two_view_formula():
    x, ids, cams = _toy(2)
    model = fit_xqda(x, ids, cams)
    w, m = _paper_xqda(x[cams == 0], x[cams == 1])
    q, g = x[cams == 1][:7], x[cams == 0]
    expected = np.array([[(a - b) @ w @ m @ w.T @ (a - b) for b in g] for a in q])
    np.testing.assert_allclose(xqda_distances(model, q, g), expected, rtol=1e-6, atol=1e-8)
    # the embedding gives the same distances where M is positive definite
    emb = model.embedding()
    if np.all(np.linalg.eigvalsh((model.metric + model.metric.T) / 2) > 0):
        d_emb = ((q @ emb)[:, None] - (g @ emb)[None]) ** 2
        np.testing.assert_allclose(d_emb.sum(-1), expected, rtol=1e-6, atol=1e-8)


def test_fit_xqda_reduces_wide_features_by_qr():
    x, ids, cams = _toy(3, n_ids=6, d=4)
    wide = x @ np.random.default_rng(0).normal(size=(4, 40))  # d = 40 > n = 12
    model = fit_xqda(wide, ids, cams)
    assert model.projection.shape[0] == 40
    d = xqda_distances(model, wide[:3], wide[3:])
    assert np.isfinite(d).all()


def test_fit_xqda_bad_input():
    x, ids, cams = _toy(0, n_ids=4)
    with pytest.raises(ShapeError):
        fit_xqda(x, ids[:-1], cams)
    with pytest.raises(EmptyInputError):
        fit_xqda(x, ids, np.zeros_like(cams))  # one camera: no cross-camera pairs


def test_lomo_xqda_fit_save_load(tmp_path):
    ids = np.repeat(np.arange(6), 2)
    cams = np.tile([0, 1], 6)
    images = torch.from_numpy(np.stack([crop(p, c) for p, c in zip(ids, cams)])).permute(0, 3, 1, 2)
    images = images.float() / 255
    model = lookalike.create("descriptor", "lomo-xqda")
    assert not model.fitted and model.dim == LOMO_DIM
    model.fit(images, ids, cams)
    assert model.fitted and 0 < model.dim <= 12
    out = model(images)
    assert out.shape == (12, model.dim)
    path = save_weights(model, tmp_path / "xqda.safetensors")
    loaded = lookalike.create("descriptor", "lomo-xqda", weights=str(path))
    assert loaded.fitted and loaded.dim == model.dim
    torch.testing.assert_close(loaded(images), out)
    fresh = LomoXQDA()
    fresh.load_state_dict(model.state_dict())
    torch.testing.assert_close(fresh(images), out)
