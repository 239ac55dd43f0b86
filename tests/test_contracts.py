"""Registry-driven contract tests: every registered component of every kind, tested the moment it registers.

- Descriptors: one generic matrix (shapes, unit rows, flat input -> all-zero rows, NaN/inf, empty batch,
  wrong shape, integer dtype, gradients), parametrised over ``list_registered("descriptor")``.
  ``DESCRIPTOR_KWARGS`` holds constructor keywords for the few that need some.
- Other kinds: a table of one minimal example per registered name (:data:`EXAMPLES`). A registered name
  without an example FAILS ``test_every_registered_name_has_an_example``: add its example here.
"""

from __future__ import annotations

import ast
import contextlib
import functools
import math
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import lookalike
from contract_examples import Example, contributed_examples
from lookalike._registry import get_entry
from lookalike.core.errors import DTypeError, LookalikeError, ShapeError, ValueRangeError
from lookalike.descriptors._base import InputSpec

# ============================================================================ descriptors
#: Constructor keywords the contract tests pass to descriptors that need some (default: none).
DESCRIPTOR_KWARGS: dict[str, dict[str, Any]] = {
    "ensemble": {"members": ("color-hist", "color-hist")},
    # the re-ID networks at CPU size (their ResNet-50 defaults take ~25 s per gradient check)
    "rga": {"backbone": "resnet18", "width": 0.25, "input_size": (64, 32)},
    "relation_net": {"backbone": "resnet18", "width": 0.25, "input_size": (64, 32), "parts": 4},
    "xqda": {"base": "stripe-hsv"},
}
DESCRIPTORS = lookalike.list_registered("descriptor")
METRICS = ("l2", "cosine", "hamming")


@functools.cache
def _built(name: str) -> Any:
    torch.manual_seed(0)
    return lookalike.create("descriptor", name, **DESCRIPTOR_KWARGS.get(name, {}))


@contextlib.contextmanager
def _model(name: str, *, train: bool = False):
    """The cached descriptor in the asked mode; its mode is restored and gradients cleared after."""
    model = _built(name)
    was = getattr(model, "training", False)
    if isinstance(model, torch.nn.Module):
        model.train(train)
    try:
        yield model
    finally:
        if isinstance(model, torch.nn.Module):
            model.train(was)
            model.zero_grad(set_to_none=True)


def _input(model: Any, batch: int, seed: int = 0) -> torch.Tensor:
    spec = getattr(model, "input_spec", None)
    if isinstance(spec, InputSpec):
        shape = spec.shape(batch)
    else:  # a descriptor that does not declare its input: let the attribute test fail, not this
        size = model.patch_size
        shape = (batch, getattr(model, "in_channels", 1), size, size)
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed))


def _binary(model: Any) -> bool:
    return getattr(model, "metric", "l2") == "hamming"


@pytest.mark.parametrize("name", DESCRIPTORS)
def test_descriptor_declares_the_contract(name):
    with _model(name) as model:
        assert isinstance(model.dim, int) and model.dim > 0
        assert isinstance(model.input_spec, InputSpec), "input_spec must be an InputSpec"
        assert isinstance(model.input_spec.describe(), str)
        extent = model.patch_extent
        assert extent is None or (isinstance(extent, float) and extent > 0)
        assert getattr(model, "metric", "l2") in METRICS
        assert isinstance(type(model).needs_weights, bool)
        # cli._common.require_trained reads the attribute on the registered factory: it must agree.
        factory = get_entry("descriptor", name).factory
        assert getattr(factory, "needs_weights", None) == type(model).needs_weights


@pytest.mark.parametrize("name", DESCRIPTORS)
def test_descriptor_output_shape_and_unit_rows(name):
    with _model(name) as model, torch.no_grad():
        out = model(_input(model, 5))
    assert tuple(out.shape) == (5, model.dim)
    if not _binary(model):
        assert out.is_floating_point() and torch.isfinite(out).all()
        torch.testing.assert_close(out.norm(dim=1).float(), torch.ones(5), atol=1e-4, rtol=0)


@pytest.mark.parametrize("name", DESCRIPTORS)
def test_descriptor_flat_input_gives_all_zero_rows(name):
    with _model(name) as model, torch.no_grad():
        x = _input(model, 4)
        x[1], x[2], x[3] = 0.0, 0.5, 1.0
        out = model(x)
    assert out[1:].eq(0).all(), "the rule: a flat patch gives an all-zero row"
    assert out[0].ne(0).any()


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
@pytest.mark.parametrize("name", DESCRIPTORS)
def test_descriptor_non_finite_input_raises(name, value):
    with _model(name) as model:
        x = _input(model, 2)
        x[1, 0, 0, 0] = value
        with pytest.raises(ValueRangeError):
            model(x)


@pytest.mark.parametrize("name", DESCRIPTORS)
def test_descriptor_empty_batch(name):
    with _model(name) as model, torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("error")
        out = model(_input(model, 0))
    assert tuple(out.shape) == (0, model.dim)


@pytest.mark.parametrize("name", DESCRIPTORS)
def test_descriptor_wrong_shape_raises_shape_error(name):
    with _model(name) as model:
        x = _input(model, 2)
        for bad in (x[:, :, :-1], x[0], torch.cat([x, x[:, :1]], dim=1), x[..., None]):
            with pytest.raises(ShapeError):
                model(bad)


@pytest.mark.parametrize("dtype", [torch.uint8, torch.int64, torch.bool])
@pytest.mark.parametrize("name", DESCRIPTORS)
def test_descriptor_integer_input_raises_dtype_error(name, dtype):
    with _model(name) as model:
        x = (_input(model, 2) * 255).to(dtype)
        with pytest.raises(DTypeError):
            model(x)


@pytest.mark.parametrize("name", DESCRIPTORS)
def test_descriptor_gradients_reach_input_and_parameters(name):
    with _model(name, train=True) as model:
        if _binary(model) or not getattr(type(model), "differentiable", True):
            pytest.skip(f"{name} is not differentiable (binary or flagged differentiable = False)")
        x = _input(model, 6).requires_grad_(True)
        out = model(x)
        (out * torch.randn(out.shape, generator=torch.Generator().manual_seed(1))).sum().backward()
        params = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
        missing = [n for n, p in params if p.grad is None or not torch.isfinite(p.grad).all()]
        assert not missing, f"no (finite) gradient for {missing}"
        assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


# ============================================================================ other kinds
def _rows(n: int = 12, d: int = 16, seed: int = 0, noise: float = 0.0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=gen, dtype=torch.float64)
    return F.normalize(x + noise * torch.randn(n, d, generator=gen, dtype=torch.float64), dim=1)


def _pair_inputs(_: Path) -> tuple:
    return (_rows(), _rows(noise=0.3))


def _pair_bad(_: Path) -> tuple:
    return (_rows(12), _rows(11))


def _labelled_inputs(_: Path) -> tuple:
    return (_rows(12), torch.arange(4).repeat_interleave(3))


def _labelled_bad(_: Path) -> tuple:
    return (_rows(12), torch.arange(4).repeat_interleave(2))


def _fitted_pca(_: Path) -> Any:
    from lookalike.layers.pca import fit_pca

    pca = lookalike.create("layer", "pca", dim_in=16, dim_out=4, whiten_power=0.5)
    pca.load_state_dict(fit_pca(_rows(40, 16, seed=3), 4, whiten_power=0.5).state_dict())
    return pca


def _patch_sequences(_: Path) -> list:
    from lookalike.data.hpatches_patches import PatchSequence

    rng = np.random.default_rng(0)
    seqs = []
    for s in range(2):
        ref = rng.integers(0, 256, (20, 32, 32), dtype=np.uint8)
        targets = {k: ref.copy() for k in ("e1", "h1", "t1")}
        seqs.append(PatchSequence(f"v_{s}", ref, targets))
    return seqs


def _flat_describe(x: torch.Tensor) -> torch.Tensor:
    return F.normalize(x.flatten(1), dim=1)


def _write_phototour(root: Path, *, groups: bool = True) -> Path:
    from data.formats import write_phototour

    rng = np.random.default_rng(0)
    base = rng.integers(0, 256, (20, 64, 64), dtype=np.uint8)
    pairs = [(2 * i, 2 * i + 1) for i in range(10)] + [(2 * i, 2 * i + 3) for i in range(9)]
    return write_phototour(
        root / "liberty",
        np.repeat(base, 2, axis=0),
        np.repeat(np.arange(20), 2),
        image_ids=np.arange(40) // 10 if groups else None,
        pairs=pairs,
    )


def _phototour(root: Path, *, pairs: Any = "m50_100000_100000_0.txt", groups: bool = True) -> Any:
    folder = _write_phototour(root, groups=groups)
    return lookalike.create("dataset", "phototour", path=folder, patch_size=32, pairs=pairs)


def _phototour_inputs(tmp: Path) -> tuple:
    return (lookalike.create("descriptor", "sift", patch_size=32), _phototour(tmp))


def _phototour_without_pairs(tmp: Path) -> tuple:
    return (lookalike.create("descriptor", "sift", patch_size=32), _phototour(tmp, pairs=None))


def _class_inputs(_: Path) -> tuple:
    return (_rows(8, 16), torch.tensor([0, 1, 2, 3, 0, 1, 2, 3]))


def _class_bad(_: Path) -> tuple:
    return (_rows(8, 16), torch.tensor([0, 1, 2, 3]))


def _write_hpatches(root: Path) -> Path:
    from data.formats import write_hpatches_sequence
    from lookalike.data.hpatches_patches import HPATCHES_TYPES

    rng = np.random.default_rng(0)
    files = {k: rng.integers(0, 256, (4, 65, 65), dtype=np.uint8) for k in HPATCHES_TYPES}
    write_hpatches_sequence(root / "hpatches-release" / "v_toy", files)
    return root


def _write_amos(root: Path) -> Path:
    from data.formats import write_amos_patch_file

    sets = np.random.default_rng(0).integers(0, 256, (4, 3, 1, 96, 96), dtype=np.uint8)
    return write_amos_patch_file(root / "train_patches.pt", sets)


def _write_sequences(root: Path) -> Path:
    from data.formats import write_homography_sequence
    from lookalike.data.bundled import bundled_photos

    gray = (bundled_photos(["camera"])[0].gray_array * 255).astype(np.uint8)
    shift = np.array([[1.0, 0.0, 6.0], [0.0, 1.0, 4.0], [0.0, 0.0, 1.0]])
    write_homography_sequence(root / "v_toy", gray, [np.eye(3), shift])
    return root


def _small_sequences(root: Path) -> Path:
    import cv2

    from data.formats import write_homography_sequence
    from lookalike.data.bundled import bundled_photos

    gray = (bundled_photos(["camera"])[0].gray_array * 255).astype(np.uint8)
    gray = cv2.resize(gray, (192, 192), interpolation=cv2.INTER_AREA)
    shift = np.array([[1.0, 0.0, 5.0], [0.0, 1.0, 3.0], [0.0, 0.0, 1.0]])
    write_homography_sequence(root / "hpatches-sequences-release" / "v_toy", gray, [shift])
    return root


EXAMPLES: dict[str, dict[str, Example]] = {
    "loss": {
        "hardnet": Example(inputs=_pair_inputs, bad=_pair_bad),
        "sos": Example(inputs=_pair_inputs, bad=_pair_bad),
        "batch_hard_triplet": Example(inputs=_labelled_inputs, bad=_labelled_bad),
        "arcface": Example(
            kwargs={"num_classes": 4, "embedding_dim": 16}, inputs=_class_inputs, bad=_class_bad
        ),
        "cross_entropy": Example(
            kwargs={"num_classes": 4, "embedding_dim": 16}, inputs=_class_inputs, bad=_class_bad
        ),
    },
    "layer": {
        "pca": Example(
            build=_fitted_pca,
            inputs=lambda _: (_rows(5, 16, seed=4),),
            bad=lambda _: (_rows(5, 15),),
            out_shape=(5, 4),
        ),
    },
    "protocol": {
        "fpr95": Example(inputs=_phototour_inputs, bad=_phototour_without_pairs),
        "brown_snn_map": Example(
            inputs=_phototour_inputs,
            bad=lambda tmp: (_flat_describe, _phototour(tmp, groups=False)),  # no interest.txt
        ),
        "phototour": Example(inputs=_phototour_inputs, bad=_phototour_without_pairs),
        "homography_matching": Example(
            kwargs={"options": {"max_keypoints": 200}},
            inputs=lambda tmp: ("sift", _small_sequences(tmp)),
            bad=lambda tmp: ("sift", tmp / "missing"),
        ),
        "hpatches": Example(
            kwargs={"n_pairs": 50, "n_queries": 5},
            inputs=lambda tmp: (_flat_describe, _patch_sequences(tmp)),
            bad=lambda _: (_flat_describe, []),
        ),
    },
    "dataset": {
        "phototour": Example(
            build=lambda tmp: _phototour(tmp),
            bad_build=lambda tmp: lookalike.create("dataset", "phototour", root=tmp),
        ),
        "hpatches_patches": Example(
            build=lambda tmp: lookalike.create(
                "dataset", "hpatches_patches", root=_write_hpatches(tmp)
            ),
            bad_build=lambda tmp: lookalike.create("dataset", "hpatches_patches", root=tmp),
        ),
        "amos_patches": Example(
            build=lambda tmp: lookalike.create(
                "dataset", "amos_patches", path=_write_amos(tmp), patch_size=32
            ),
            bad_build=lambda tmp: lookalike.create("dataset", "amos_patches", path=tmp / "no.pt"),
        ),
        "sequence_patches": Example(
            build=lambda tmp: lookalike.create(
                "dataset", "sequence_patches", root=_write_sequences(tmp)
            ),
            bad_build=lambda tmp: lookalike.create("dataset", "sequence_patches", root=tmp),
        ),
        "bundled_classes": Example(
            build=lambda _: lookalike.create(
                "dataset", "bundled_classes", photos=["camera"], grid=2, samples_per_class=2
            ),
            bad_build=lambda _: lookalike.create("dataset", "bundled_classes", photos=["no-such"]),
        ),
        "bundled_pairs": Example(
            build=lambda _: lookalike.create(
                "dataset", "bundled_pairs", batch_size=8, photos=["camera"]
            ),
            bad_build=lambda _: lookalike.create("dataset", "bundled_pairs", photos=["no-such"]),
        ),
    },
    "index": {},
    # Rerankers contribute their examples in tests/contract_examples/ (inputs -> a call that returns finite
    # scores, bad -> a LookalikeError).
    "reranker": {},
    "task": {
        "pairs": Example(bad_build=lambda _: lookalike.create("task", "pairs", k=2)),
        "labelled": Example(bad_build=lambda _: lookalike.create("task", "labelled", k=2)),
        "pk": Example(kwargs={"k": 2}, bad_build=lambda _: lookalike.create("task", "pk", k=1)),
    },
}
# Examples contributed by the families' own modules in tests/contract_examples/ (one file per area).
for _kind, _table in contributed_examples().items():
    EXAMPLES.setdefault(_kind, {}).update(_table)
OTHER_KINDS = [kind for kind in lookalike.KINDS if kind != "descriptor"]


def _registered(kind: str) -> list[str]:
    return lookalike.list_registered(kind)


def _example(kind: str, name: str) -> Example:
    example = EXAMPLES.get(kind, {}).get(name)
    if example is None:
        pytest.fail(f"{kind} {name!r} is registered but has no example in tests/test_contracts.py")
    return example


def _component(kind: str, name: str, example: Example, tmp_path: Path) -> Any:
    if example.build is not None:
        return example.build(tmp_path)
    return lookalike.create(kind, name, **example.kwargs)


def test_every_kind_has_an_example_table():
    assert set(OTHER_KINDS) <= set(EXAMPLES)


@pytest.mark.parametrize("kind", OTHER_KINDS)
def test_every_registered_name_has_an_example(kind):
    missing = sorted(set(_registered(kind)) - set(EXAMPLES[kind]))
    assert not missing, f"registered {kind} names without a contract example: {missing}"
    stale = sorted(set(EXAMPLES[kind]) - set(_registered(kind)))
    assert not stale, f"examples for {kind} names that are no longer registered: {stale}"


def _tensors(obj: Any) -> list[torch.Tensor]:
    """Every tensor or numeric array in a (nested) sample, as tensors."""
    if isinstance(obj, torch.Tensor):
        return [obj]
    if isinstance(obj, np.ndarray) and obj.dtype.kind in "biuf":
        return [torch.from_numpy(obj)]
    if isinstance(obj, (tuple, list)):
        return [t for item in obj for t in _tensors(item)]
    if isinstance(obj, dict):
        return [t for item in obj.values() for t in _tensors(item)]
    if hasattr(obj, "__dict__"):
        return [t for item in vars(obj).values() for t in _tensors(item)]
    return []


@pytest.mark.parametrize("name", _registered("loss"))
def test_loss_contract(name, tmp_path):
    example = _example("loss", name)
    loss = _component("loss", name, example, tmp_path)
    args = [
        a.clone().requires_grad_(True) if torch.is_tensor(a) and a.is_floating_point() else a
        for a in example.inputs(tmp_path)
    ]
    value = loss(*args)
    assert torch.is_tensor(value) and value.ndim == 0 and torch.isfinite(value)
    value.backward()
    grads = [a.grad for a in args if torch.is_tensor(a) and a.requires_grad]
    assert grads and all(g is not None and torch.isfinite(g).all() for g in grads)
    assert any(g.abs().sum() > 0 for g in grads), "no gradient reaches the inputs"
    with pytest.raises(LookalikeError):
        loss(*example.bad(tmp_path))


@pytest.mark.parametrize("name", _registered("layer"))
def test_layer_contract(name, tmp_path):
    example = _example("layer", name)
    layer = _component("layer", name, example, tmp_path)
    (x, *rest) = example.inputs(tmp_path)
    x = x.clone().requires_grad_(True)
    out = layer(x, *rest)
    assert torch.isfinite(out).all()
    if example.out_shape is not None:
        assert tuple(out.shape) == example.out_shape
    out.sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    with pytest.raises(LookalikeError):
        layer(*example.bad(tmp_path))


def _scores(result: Any) -> list[float]:
    values = list(result.values()) if isinstance(result, dict) else [result]
    return [float(v) for v in values if isinstance(v, (int, float, np.floating))]


@pytest.mark.parametrize("name", _registered("protocol"))
def test_protocol_contract(name, tmp_path):
    example = _example("protocol", name)
    protocol = _component("protocol", name, example, tmp_path)
    scores = _scores(protocol(*example.inputs(tmp_path / "ok")))
    assert scores and all(math.isfinite(s) for s in scores)
    with pytest.raises(LookalikeError):
        protocol(*example.bad(tmp_path / "bad"))


@pytest.mark.parametrize("name", _registered("reranker"))
def test_reranker_contract(name, tmp_path):
    example = _example("reranker", name)
    reranker = _component("reranker", name, example, tmp_path)
    out = reranker(*example.inputs(tmp_path / "ok"))
    arrays = _tensors(out)
    assert arrays, f"reranker {name} returned no scores"
    assert all(torch.isfinite(a.double()).all() for a in arrays)
    with pytest.raises(LookalikeError):
        reranker(*example.bad(tmp_path / "bad"))


@pytest.mark.parametrize("name", _registered("dataset"))
def test_dataset_contract(name, tmp_path):
    example = _example("dataset", name)
    data = _component("dataset", name, example, tmp_path / "ok")
    sample = next(iter(data))
    arrays = _tensors(sample)
    assert arrays, f"the first sample of {name} holds no tensor or array"
    assert all(torch.isfinite(a.double()).all() for a in arrays)
    with pytest.raises(LookalikeError):
        example.bad_build(tmp_path / "missing")


@pytest.mark.parametrize("name", _registered("index"))
def test_index_contract(name, tmp_path):
    example = _example("index", name)
    index = _component("index", name, example, tmp_path)
    assert index is not None


# ============================================================================ layering
_CORE = sorted((Path(lookalike.__file__).parent / "core").glob("*.py"))
_CORE_IMPORT_TODO: dict[str, str] = {}


def _imports_above_core(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        names = []
        if isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        for module in names:
            parts = module.split(".")
            if parts[0] == "lookalike" and parts[1:2] not in (["core"], ["_version"]):
                found.append(module)
    return found


@pytest.mark.parametrize(
    "path",
    [
        pytest.param(p, marks=pytest.mark.xfail(strict=True, reason=_CORE_IMPORT_TODO[p.name]))
        if p.name in _CORE_IMPORT_TODO
        else p
        for p in _CORE
    ],
    ids=lambda p: p.name,
)
def test_core_imports_nothing_above_core(path):
    assert _imports_above_core(path) == []


@pytest.mark.parametrize("name", _registered("task"))
def test_task_contract(name, tmp_path):
    from lookalike.train.tasks import Task

    example = _example("task", name)
    task = _component("task", name, example, tmp_path)
    assert isinstance(task, Task) and task.name == name
    with pytest.raises(LookalikeError):
        example.bad_build(tmp_path)
