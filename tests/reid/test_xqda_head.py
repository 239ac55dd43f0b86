"""``xqda``: XQDA on any descriptor's rows, against lomo-xqda and a hand-written projection."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import lookalike
from lookalike.core.errors import EmptyInputError, LookalikeError, OptionError
from lookalike.core.weights import save_weights
from lookalike.descriptors.reid.xqda import fit_xqda
from lookalike.descriptors.reid.xqda_head import XQDAHead

TINY_NET = {"backbone": "resnet18", "width": 0.25, "input_size": (64, 32), "parts": 4}


def _crops(n_ids: int = 8, seed: int = 0) -> tuple[torch.Tensor, np.ndarray, np.ndarray]:
    """Two views (cameras 0 and 1) of ``n_ids`` people: random colours in 8 horizontal strips, plus noise."""
    g = torch.Generator().manual_seed(seed)
    people = (
        torch.rand(n_ids, 3, 8, 1, generator=g).repeat_interleave(8, dim=2).expand(-1, -1, -1, 32)
    )
    views = [(people + 0.15 * torch.rand(people.shape, generator=g)).clamp(0, 1) for _ in (0, 1)]
    ids = np.tile(np.arange(n_ids), 2)
    cams = np.repeat([0, 1], n_ids)
    return torch.cat(views), ids, cams


def test_on_lomo_it_ranks_like_lomo_xqda():
    images, ids, cams = _crops()
    # ``lomo`` rows are LOMO / sqrt(3) (unit rows): a ridge of lambda / 3 gives the same metric
    ours = XQDAHead(base="lomo", lambda_reg=0.001 / 3).fit(images, ids, cams)
    reference = lookalike.create("descriptor", "lomo-xqda", lambda_reg=0.001).fit(images, ids, cams)
    test = _crops(seed=1)[0]
    # the embedding's columns are defined up to sign: compare distances, not rows
    torch.testing.assert_close(
        torch.cdist(ours(test[:8]), ours(test[8:])),
        torch.cdist(reference(test[:8]), reference(test[8:])),
        atol=1e-4,
        rtol=1e-4,
    )


def test_rows_are_the_normalised_projection_of_the_base_rows():
    images, ids, cams = _crops()
    head = XQDAHead(base="stripe-hsv", lambda_reg=0.01)
    unfitted = head(images[:3])
    base = lookalike.create("descriptor", "stripe-hsv")
    torch.testing.assert_close(unfitted, base(images[:3]))  # before fitting: the base's rows
    head.fit(images, ids, cams)
    rows = base(images).double().numpy()
    embed = fit_xqda(rows, ids, cams, lambda_reg=0.01).embedding()
    expected = rows[:3] @ embed
    expected /= np.linalg.norm(expected, axis=1, keepdims=True)
    np.testing.assert_allclose(head(images[:3]).numpy(), expected, atol=1e-5)
    assert head.dim == embed.shape[1] and head.fitted


def test_fitted_head_ranks_the_other_view_first_more_often_than_chance():
    images, ids, cams = _crops(n_ids=12)
    head = XQDAHead(base="stripe-hsv").fit(images, ids, cams)
    test, _, _ = _crops(n_ids=12, seed=3)
    q, g = head(test[:12]), head(test[12:])
    rank1 = float((torch.cdist(q, g).argmin(dim=1) == torch.arange(12)).float().mean())
    assert rank1 > 0.5  # chance is 1/12


@pytest.mark.parametrize("features", ["rows", "strips"])
def test_save_and_load_round_trip_with_a_network_base(tmp_path, features):
    torch.manual_seed(0)
    net = lookalike.create("descriptor", "relation_net", **TINY_NET)
    net_file = save_weights(net, tmp_path / "net.safetensors")
    images, ids, cams = _crops()
    head = lookalike.create(
        "descriptor", "xqda", base=f"relation_net:{net_file}", features=features
    )
    assert head.crop_size == (64, 32) and not any(p.requires_grad for p in head.parameters())
    head.fit(images, ids, cams)
    head.train()
    assert not head.base.training  # the base stays frozen in eval mode
    head.eval()
    path = save_weights(head, tmp_path / "head.safetensors")
    loaded = lookalike.create("descriptor", "xqda", weights=str(path))
    assert loaded.fitted and loaded.dim == head.dim and loaded.features == features
    torch.testing.assert_close(loaded(images[:2]), head(images[:2]))


def test_on_strips_it_is_xqda_on_the_networks_strip_features(tmp_path):
    torch.manual_seed(0)
    net = lookalike.create("descriptor", "relation_net", **TINY_NET, flip_average=True)
    net_file = save_weights(net, tmp_path / "net.safetensors")
    images, ids, cams = _crops(n_ids=12)
    head = XQDAHead(base=f"relation_net:{net_file}", features="strips")
    torch.testing.assert_close(head(images[:3]), net.eval()(images[:3]))  # unfitted: the rows
    head.fit(images, ids, cams)
    strips = net.stage_strips(images).double().numpy()
    assert head.projection.shape[0] == strips.shape[1] > net.dim
    embed = fit_xqda(strips, ids, cams).embedding()
    test = _crops(n_ids=12, seed=2)[0]
    expected = torch.from_numpy(net.stage_strips(test).double().numpy() @ embed).float()
    # metric rows: Euclidean distances = XQDA distances on the strip features
    torch.testing.assert_close(
        torch.cdist(head.metric_rows(test[:12]), head.metric_rows(test[12:])),
        torch.cdist(expected[:12], expected[12:]),
        atol=1e-3,
        rtol=1e-4,
    )
    torch.testing.assert_close(head(test).norm(dim=1), torch.ones(24))


def test_bad_bases_and_inputs_are_refused():
    with pytest.raises(OptionError, match="base"):
        XQDAHead(base="")
    with pytest.raises(OptionError, match="another xqda"):
        XQDAHead(base="xqda")
    with pytest.raises(OptionError, match="without weights"):
        XQDAHead(base="relation_net")
    with pytest.raises(LookalikeError):
        XQDAHead(base="no-such-descriptor")
    with pytest.raises(OptionError, match="lambda_reg"):
        XQDAHead(base="stripe-hsv", lambda_reg=-1.0)
    with pytest.raises(OptionError, match="features"):
        XQDAHead(base="stripe-hsv", features="maps")
    with pytest.raises(OptionError, match="re-ID network"):
        XQDAHead(base="stripe-hsv", features="strips")
    head = XQDAHead(base="stripe-hsv")
    with pytest.raises(EmptyInputError):
        head.fit(torch.rand(0, 3, 64, 32), [], [])
    with pytest.raises(EmptyInputError):  # one camera only: no cross-view pair
        head.fit(torch.rand(4, 3, 64, 32), [0, 0, 1, 1], [0, 0, 0, 0])


def test_an_ensemble_fits_its_lomo_xqda_member_and_fuses_it_with_a_network(tmp_path):
    from lookalike.descriptors.image.ensemble import EnsembleDescriptor

    images, ids, cams = _crops()
    torch.manual_seed(0)
    net = lookalike.create("descriptor", "relation_net", **TINY_NET).eval()
    path = save_weights(net, tmp_path / "net.safetensors")
    fusion = lookalike.create(  # through the registry, so that its file records the members
        "descriptor",
        "ensemble",
        members=["lomo-xqda", f"relation_net:{path}"],
        family_weights=[1.0, 0.25],
    )
    assert not fusion.fitted and fusion.dim == 26960 + net.dim
    assert fusion.crop_size == (128, 48)  # the larger of LOMO's (128, 48) and the net's (64, 32)
    fusion.fit(images, ids, cams)
    reference = lookalike.create("descriptor", "lomo-xqda").fit(images, ids, cams)
    assert fusion.fitted and fusion.dim == reference.dim + net.dim
    test = _crops(seed=1)[0][:5]
    with torch.no_grad():
        expected = torch.cat([reference(test), 0.5 * net(test)], dim=1)  # sqrt(0.25) = 0.5
        torch.testing.assert_close(fusion(test), torch.nn.functional.normalize(expected, dim=1))
    saved = save_weights(fusion, tmp_path / "fusion.safetensors")  # the fitted projection travels
    loaded = lookalike.create("descriptor", f"ensemble:{saved}")
    assert loaded.fitted
    torch.testing.assert_close(loaded(test), fusion(test))
    with pytest.raises(OptionError, match="learned network without weights"):
        EnsembleDescriptor(members=["lomo-xqda", "relation_net"])  # a network cannot be fitted


def test_the_reid_protocol_and_cli_fit_an_ensemble_file_on_training_ids(tmp_path, capsys):
    from lookalike.cli.main import main
    from lookalike.data.reid import read_benchmark
    from lookalike.eval.protocols.reid import evaluate_reid
    from reid.formats import write_viper

    write_viper(tmp_path / "viper", n_ids=10)
    (tmp_path / "fusion.yaml").write_text(
        "members: [lomo-xqda, stripe-hsv]\nfamily_weights: [1.0, 0.5]\n"
    )
    bench = read_benchmark("viper", tmp_path / "viper", split=0)
    result = evaluate_reid(str(tmp_path / "fusion.yaml"), bench, max_rank=5)
    assert result.fit_seconds > 0 and result.descriptor.endswith("fusion.yaml")
    out = tmp_path / "out"
    args = ["evaluate", "reid", "--data", str(tmp_path), "--benchmark", "viper"]
    code = main([*args, "--descriptors", str(tmp_path / "fusion.yaml"), "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    assert (out / "results.md").is_file()


def test_metric_rows_give_the_xqda_distance_and_the_protocol_ranks_by_them(tmp_path, monkeypatch):
    from lookalike.data.reid import read_benchmark
    from lookalike.descriptors.reid.lomo import lomo_features, to_lomo_crops
    from lookalike.descriptors.reid.xqda import xqda_distances
    from lookalike.eval.metrics.reid import single_shot_cmc
    from lookalike.eval.protocols.reid import evaluate_reid, load_crops
    from reid.formats import write_viper

    images, ids, cams = _crops()
    test = _crops(seed=1)[0]
    model = lookalike.create("descriptor", "lomo-xqda")
    torch.testing.assert_close(model.metric_rows(test[:3]), model(test[:3]))  # unfitted: unit rows
    model.fit(images, ids, cams)
    # oracle: the paper's distance (x - y)^T W M W^T (x - y) from the fitted matrices
    fitted = fit_xqda(lomo_features(to_lomo_crops(images)), ids, cams)
    feats = lomo_features(to_lomo_crops(test))
    expected = xqda_distances(fitted, feats[:8], feats[8:])
    rows = model.metric_rows(test).double()
    got = (torch.cdist(rows[:8], rows[8:]) ** 2).numpy()
    assert np.linalg.eigvalsh(fitted.metric).min() > -1e-9  # M is PSD here: distances equal
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-6)

    bench = read_benchmark("viper", write_viper(tmp_path / "viper", n_ids=12), split=0)
    model = lookalike.create("descriptor", "lomo-xqda")
    calls = []
    original = type(model).metric_rows
    monkeypatch.setattr(
        type(model), "metric_rows", lambda self, x: calls.append(len(x)) or original(self, x)
    )
    result = evaluate_reid(model, bench, max_rank=6)
    assert sum(calls) == len(bench.query) + len(bench.gallery)  # every crop ranked by the metric
    q, g = (
        model.metric_rows(load_crops(part.paths, model.crop_size))
        for part in (bench.query, bench.gallery)
    )
    args = (bench.query.ids, bench.gallery.ids, bench.query.cams, bench.gallery.cams)
    ranked = single_shot_cmc(torch.cdist(q.double(), g.double()), *args, max_rank=6)
    np.testing.assert_allclose(result.scores.cmc, ranked.cmc)
