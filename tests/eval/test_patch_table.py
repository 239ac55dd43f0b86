"""The descriptor table: toy sequence folders, oracles, the OpenCV/kornia adapters, real sequences."""

from __future__ import annotations

import io
import json
import math

import cv2
import numpy as np
import pytest
import torch

import lookalike
from data.formats import write_homography_sequence
from lookalike.core.errors import LookalikeError, OptionError, ShapeError
from lookalike.data.bundled import bundled_photos
from lookalike.data.hpatches_patches import PatchSequence
from lookalike.eval.protocols.describers import (
    OpenCVPatchDescriber,
    TorchPatchDescriber,
    area_resize,
    create_patch_describer,
    describe_sequence,
    resolve_describers,
    sift_keypoint_size,
)
from lookalike.eval.protocols.hpatches import (
    HPatchesOptions,
    describe_sequences,
    evaluate_described,
    evaluate_patch_descriptor,
)
from lookalike.eval.protocols.patch_table import (
    ALL,
    LEVELS,
    TASKS,
    evaluate_patch_table,
    run_patch_table,
)
from lookalike.eval.report.files import write_patch_table
from lookalike.eval.report.markdown import patch_table_markdown
from lookalike.eval.report.terminal import patch_table_rich

FAST = HPatchesOptions(n_pairs=400, n_queries=40)


def _homographies() -> list[np.ndarray]:
    c, s = math.cos(math.radians(12)), math.sin(math.radians(12))
    rot = np.array([[c, -s, 256 - c * 256 + s * 256], [s, c, 256 - s * 256 - c * 256], [0, 0, 1]])
    persp = np.array([[0.92, 0.04, 18.0], [-0.03, 0.95, 12.0], [8e-5, 4e-5, 1.0]])
    return [rot, persp]


@pytest.fixture(scope="module")
def toy_root(tmp_path_factory):
    """Two HPatches-layout sequences and one Oxford-layout sequence (img<k>.ppm, H1to<k>p)."""
    root = tmp_path_factory.mktemp("table")
    photos = {p.name: p for p in bundled_photos(["camera", "astronaut", "brick"])}
    for name in ("camera", "astronaut"):
        gray = (photos[name].gray_array * 255).astype(np.uint8)
        write_homography_sequence(root / "hpatches-sequences" / f"v_{name}", gray, _homographies())
    folder = write_homography_sequence(
        root / "oxford-affine" / "brick",
        (photos["brick"].gray_array * 255).astype(np.uint8),
        _homographies(),
    )
    for k in (1, 2, 3):
        (folder / f"{k}.ppm").rename(folder / f"img{k}.ppm")
    for k in (2, 3):
        (folder / f"H_1_{k}").rename(folder / f"H1to{k}p")
    return root


@pytest.fixture(scope="module")
def toy_table(toy_root):
    from lookalike.eval.protocols.describers import TorchPatchDescriber

    sift41 = TorchPatchDescriber(
        lookalike.create("descriptor", "sift", patch_size=41), name="sift-41"
    )
    return run_patch_table(
        toy_root,
        ["sift", "opencv-sift", "kornia-sift", sift41],
        HPatchesOptions(400, 40, seed=0),
        budget=60,
    )


def _noise_sets(n_seq=3, n=24, size=65, keys=("e1", "e2", "h1", "t1"), seed=0):
    """Sequences whose patch ``i`` stores its global 3D point id in pixel (0, 0), noise elsewhere."""
    rng = np.random.default_rng(seed)
    sets, next_id = [], 0
    for s in range(n_seq):
        ref = rng.integers(0, 256, (n, size, size), dtype=np.uint8)
        targets = {}
        for k in keys:
            t = rng.integers(0, 256, (n, size, size), dtype=np.uint8)
            t[:, 0, 0] = np.arange(next_id, next_id + n)
            targets[k] = t
        ref[:, 0, 0] = np.arange(next_id, next_id + n)
        next_id += n
        sets.append(PatchSequence(f"toy{s % 2}/s{s}", ref, targets))
    return sets


class Oracle:
    """The 3D point id of a patch (from pixel (0, 0)) as a one-hot descriptor."""

    name = "oracle"

    def __call__(self, patches: np.ndarray) -> np.ndarray:
        return np.eye(256, dtype=np.float32)[patches[:, 0, 0]]


# ---------------------------------------------------------------- the table on a toy folder
def test_table_rows_groups_and_files(toy_table, tmp_path):
    table = toy_table
    assert [r.name for r in table.rows] == ["sift", "opencv-sift", "kornia-sift", "sift-41"]
    assert table.groups == ["hpatches-sequences", "oxford-affine"]
    assert sorted(table.sequences) == [
        "hpatches-sequences/v_astronaut",
        "hpatches-sequences/v_camera",
        "oxford-affine/brick",
    ]
    for row in table.rows:
        assert row.dim == 128 and row.ms_per_1000 > 0 and not row.skipped
        assert row.n_patches == 7 * sum(table.sequences.values())  # ref + e/h/t x 2 targets
        assert set(row.results) == {ALL, *table.groups}
        for group in row.results:
            for task in TASKS:
                for level in LEVELS:
                    assert 0.0 <= row.value(task, level, group) <= 1.0
        assert row.value("matching", "easy") > 0.3  # a real descriptor on mild warps
        assert row.value("matching", "easy") >= row.value("matching", "tough")
    # our SIFT at kornia's 41 pixels is kornia's SIFT: same numbers
    ours, theirs = table.row("sift-41"), table.row("kornia-sift")
    for key, value in ours.results[ALL].items():
        assert theirs.results[ALL][key] == pytest.approx(value, abs=2e-3), key
    paths = write_patch_table(table, tmp_path / "out")
    data = json.loads(paths["json"].read_text())
    assert [r["name"] for r in data["rows"]] == ["sift", "opencv-sift", "kornia-sift", "sift-41"]
    assert data["rows"][1]["results"]["oxford-affine"]["matching/easy"] == pytest.approx(
        table.row("opencv-sift").value("matching", "easy", "oxford-affine")
    )
    assert data["config"]["budget"] == 60 and data["config"]["opencv"] == cv2.__version__
    md = paths["markdown"].read_text()
    assert "## all sequences (3 sequences" in md and "## oxford-affine (1 sequences" in md
    header = next(line for line in md.splitlines() if line.startswith("| descriptor"))
    assert len(header.split("|")) - 2 == 2 + 16 + 1  # name, dim, 4 tasks x (e, h, t, mean), time
    assert md.count("| opencv-sift |") == 3 and "**" in md


def test_rich_table(toy_table):
    from rich.console import Console

    console = Console(record=True, width=200)
    console.print(patch_table_rich(toy_table))
    console.print(patch_table_rich(toy_table, "oxford-affine"))
    text = console.export_text()
    assert "opencv-sift" in text and "matching mAP" in text
    with pytest.raises(OptionError):
        patch_table_rich(toy_table, "evd")


def test_groups_filter_and_unknown_group(toy_root):
    table = run_patch_table(toy_root, ["sift"], FAST, groups=["oxford"], budget=60)
    assert table.groups == ["oxford-affine"] and list(table.sequences) == ["oxford-affine/brick"]
    assert table.row("sift").results["oxford-affine"] is table.row("sift").results[ALL]
    assert "inter" not in " ".join(table.row("sift").results[ALL])  # a single sequence
    with pytest.raises(OptionError, match="present: \\['hpatches-sequences', 'oxford-affine'\\]"):
        run_patch_table(toy_root, ["sift"], groups=["evd"])


def test_unknown_descriptor_lists_choices_before_any_work(tmp_path):
    with pytest.raises(LookalikeError) as info:
        run_patch_table(tmp_path / "nowhere", ["sift", "surf"])
    message = str(info.value)
    assert "'surf'" in message
    for choice in ("opencv-sift", "opencv-teblid", "kornia-mkd", "rootsift", "hardnet"):
        assert choice in message
    with pytest.raises(OptionError):
        resolve_describers([42])


def test_missing_opencv_descriptor_is_a_note(monkeypatch):
    import lookalike.baselines.opencv as opencv

    real = opencv.available_opencv_descriptors
    monkeypatch.setattr(opencv, "available_opencv_descriptors", lambda: {**real(), "vgg": False})
    table = evaluate_patch_table(_noise_sets(), ["opencv-vgg", Oracle()], FAST)
    vgg = table.row("opencv-vgg")
    assert vgg.skipped and vgg.value("matching") is None and "VGG_create" in vgg.note
    assert not table.row("oracle").skipped
    assert "opencv-vgg: skipped" in patch_table_markdown(table)
    assert table.to_dict()["rows"][0]["skipped"] is True


# ---------------------------------------------------------------- oracles
def test_perfect_descriptor_gets_map_one():
    table = evaluate_patch_table(_noise_sets(), [Oracle()], FAST)
    row = table.row("oracle")
    assert table.groups == ["toy0", "toy1"]
    for group in (ALL, "toy0", "toy1"):
        for level in LEVELS:
            assert row.value("fpr95", level, group) == 0.0
            for task in ("verification", "matching", "retrieval"):
                assert row.value(task, level, group) == pytest.approx(1.0), (task, level, group)
    assert row.results[ALL]["verification/easy/inter"] == pytest.approx(1.0)


def test_progress_bars_and_single_table():
    from rich.console import Console
    from rich.progress import Progress

    sets = _noise_sets()
    with Progress(console=Console(file=io.StringIO())) as bar:
        table = evaluate_patch_table(sets, [Oracle()], FAST, progress=bar, per_group=False)
    assert bar.tasks[0].completed == len(sets)
    assert set(table.row("oracle").results) == {ALL}
    assert "## toy0" not in patch_table_markdown(table)  # no per-group numbers: no per-group table
    quiet = evaluate_patch_table(sets, [Oracle()], FAST, progress=True)
    assert (
        quiet.row("oracle").results[ALL]
        == evaluate_patch_table(sets, [Oracle()], FAST).row("oracle").results[ALL]
    )


def test_evaluate_described_equals_protocol():
    sets = _noise_sets(seed=3)

    def fn(x):
        return torch.nn.functional.normalize(x[:, :, ::8, ::8].flatten(1), dim=1)

    opts = HPatchesOptions(n_pairs=300, n_queries=30, seed=5)
    expected = evaluate_patch_descriptor(fn, sets, opts, patch_size=65)
    assert evaluate_described(describe_sequences(fn, sets, patch_size=65), opts) == expected


def test_registered_protocol_and_table_give_the_same_numbers():
    """One describe path (area resize): the ``hpatches`` protocol equals the table's row."""
    sets = _noise_sets(seed=4, n=16)
    opts = HPatchesOptions(n_pairs=300, n_queries=20, seed=3)
    for spec in ("sift", "hardnet"):  # 65 -> 32 px: the resize matters
        torch.manual_seed(0)  # the same random network in both
        table = evaluate_patch_table(sets, [spec], opts, per_group=False)
        torch.manual_seed(0)
        model = lookalike.create("descriptor", spec)
        protocol = lookalike.create("protocol", "hpatches", options=opts)(model, sets)
        for key, value in table.row(spec).results[ALL].items():
            assert protocol[key] == pytest.approx(value, abs=1e-6), (spec, key)


def test_opencv_sift_equals_single_patch_hpatches_code():
    # the HPatches benchmark's extract_opencv_sift: one image per patch, keypoint (c, c) with
    # c = 65 / 2 and size 2 c / 5.303; cv2 rounds the centre to pixel 32, our (P - 1) / 2. The
    # benchmark leaves cv2.KeyPoint's default angle -1 (read by SIFT as 361 degrees); ours is upright.
    gray = (bundled_photos(["camera"])[0].gray_array * 255).astype(np.uint8)
    rng = np.random.default_rng(0)
    corners = rng.integers(0, 512 - 65, (12, 2))
    patches = np.stack([gray[y : y + 65, x : x + 65] for x, y in corners])
    sift = cv2.SIFT_create()
    expected = []
    for patch in patches:
        kp = cv2.KeyPoint()
        kp.pt, kp.size, kp.angle = (32.5, 32.5), 2 * 32.5 / 5.303, 0.0
        _, d = sift.compute(patch, [kp])
        expected.append(d[0])
    expected = np.array(expected)
    got = OpenCVPatchDescriber("sift")(patches)
    unit = expected / np.linalg.norm(expected, axis=1, keepdims=True)
    # 5.303 is rounded: one unit of OpenCV's uint8-scaled bins (1 / 512) may flip
    np.testing.assert_allclose(got, unit, atol=3e-3)
    # with the unrounded size, exact for SIFT and RootSIFT
    kp = cv2.KeyPoint(32.0, 32.0, sift_keypoint_size(65), 0.0)
    exact = np.array([sift.compute(patch, [kp])[1][0] for patch in patches])
    np.testing.assert_allclose(got, exact / np.linalg.norm(exact, axis=1, keepdims=True), atol=1e-6)
    root = np.sqrt(exact / exact.sum(axis=1, keepdims=True))
    np.testing.assert_allclose(OpenCVPatchDescriber("rootsift")(patches), root, atol=1e-6)
    assert sift_keypoint_size(65) == pytest.approx(2 * 32.5 / 5.303, rel=1e-4)


@pytest.mark.parametrize("kind", ["boostdesc", "teblid"])
def test_binary_descriptors_give_hamming_distances(kind):
    patches = np.random.default_rng(1).integers(0, 256, (6, 65, 65), dtype=np.uint8)
    describer = OpenCVPatchDescriber(kind)
    assert describer.keypoint_size(65) == pytest.approx(65 / 6.75)
    bits = describer(patches)
    assert bits.shape == (6, 256) and set(np.unique(bits)) <= {0.0, 1.0}
    kp = cv2.KeyPoint(32.0, 32.0, 65 / 6.75, 0.0)
    factory = {"boostdesc": "BoostDesc_create", "teblid": "TEBLID_create"}[kind]
    extractor = getattr(cv2.xfeatures2d, factory)(scale_factor=6.75)
    _, packed = extractor.compute(list(patches), [[kp] for _ in patches])
    packed = np.concatenate(packed)
    hamming = np.unpackbits(packed[:, None] ^ packed[None], axis=2).sum(2)
    squared = ((bits[:, None] - bits[None]) ** 2).sum(2)
    np.testing.assert_array_equal(squared, hamming)


def test_vgg_is_unit_length():
    patches = np.random.default_rng(2).integers(0, 256, (4, 65, 65), dtype=np.uint8)
    desc = create_patch_describer("opencv-vgg")(patches)
    assert desc.shape == (4, 120)
    np.testing.assert_allclose(np.linalg.norm(desc, axis=1), 1.0, rtol=1e-5)


# ---------------------------------------------------------------- adapters
@pytest.mark.parametrize("size", [32, 41, 48, 64])
def test_area_resize_matches_cv2_inter_area(size):
    x = np.random.default_rng(size).random((3, 65, 65)).astype(np.float32)
    got = area_resize(torch.from_numpy(x)[:, None], size)[:, 0].numpy()
    expected = np.stack([cv2.resize(p, (size, size), interpolation=cv2.INTER_AREA) for p in x])
    np.testing.assert_allclose(got, expected, atol=1e-5)


def test_area_resize_identity_enlarge_and_bad_shape():
    x = torch.rand(2, 1, 8, 8)
    assert area_resize(x, 8) is x
    assert area_resize(x, 12).shape == (2, 1, 12, 12)
    assert area_resize(torch.ones(1, 1, 65, 65, dtype=torch.float64), 32).dtype == torch.float64
    with pytest.raises(ShapeError):
        area_resize(torch.rand(1, 8, 8), 4)


def test_torch_describer_resizes_restores_mode_and_checks_input():
    model = lookalike.create("descriptor", "hardnet").train()
    describer = TorchPatchDescriber(model, name="hardnet", batch_size=5)
    patches = np.random.default_rng(0).integers(0, 256, (7, 65, 65), dtype=np.uint8)
    desc = describer(patches)
    assert desc.shape == (7, 128) and desc.dtype == np.float32 and model.training
    np.testing.assert_allclose(desc, describer(patches), atol=1e-6)  # eval mode inside
    with pytest.raises(OptionError):
        describer(patches.astype(np.float32))
    with pytest.raises(ShapeError):
        describer(patches[:, :, :64])
    assert "untrained" in create_patch_describer("hardnet").note
    assert create_patch_describer("sift").note == ""
    mkd = create_patch_describer("kornia-mkd")
    assert mkd(patches).shape == (7, 238)


def test_describe_sequence_layout_and_bad_describer():
    seq = _noise_sets(n_seq=1, n=5)[0]
    described, seconds = describe_sequence(Oracle(), seq)
    assert seconds >= 0 and described.ref.shape == (5, 256)
    np.testing.assert_array_equal(described.targets["h1"].argmax(1), seq.ref[:, 0, 0])

    class Broken:
        name = "broken"

        def __call__(self, patches):
            return np.zeros((3, 4))

    with pytest.raises(ShapeError):
        describe_sequence(Broken(), seq)


# ---------------------------------------------------------------- real sequences
@pytest.mark.data
def test_real_sequences(data_root, tmp_path):
    table = run_patch_table(
        data_root,
        ["opencv-sift", "sift"],
        HPatchesOptions(n_pairs=3000, n_queries=100),
        sequences=["v_graffiti", "oxford-affine/bikes"],
        budget=150,
        out_dir=tmp_path,
    )
    assert table.groups == ["hpatches-sequences", "oxford-affine"]
    for row in table.rows:
        assert 0.3 < row.value("matching", "easy") <= 1.0
        assert row.value("matching", "easy") > row.value("matching", "tough")
        assert row.value("fpr95", "easy") < row.value("fpr95", "tough")
    assert (tmp_path / "results.md").is_file() and (tmp_path / "results.json").is_file()
