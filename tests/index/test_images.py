"""Image files to index rows (lookalike.index.images) and resumable index folders (image_index).

Oracles: every photo read by OpenCV directly and described by ``color_histogram`` one at a time
(independent of ``read_rgb``/``describe_images`` batching), and a brute-force cosine loop over those
rows (tests/index/oracle.py).
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import faiss
import numpy as np
import pytest
import torch

from index.oracle import assert_knn_equal, brute_knn
from lookalike.core.errors import DataNotFoundError, EmptyInputError, OptionError
from lookalike.core.weights import save_weights
from lookalike.data import bundled_photos
from lookalike.data.images import ImageError, write_image
from lookalike.descriptors.image.color_hist import color_histogram
from lookalike.descriptors.image.shipped import best_shipped_global_descriptor
from lookalike.eval.protocols import retrieval
from lookalike.index.base import IndexMismatchError, TooFewVectorsError
from lookalike.index.image_index import (
    add_images,
    build_index,
    index_factory,
    open_image_index,
    read_settings,
)
from lookalike.index.images import (
    describe_query,
    image_id,
    iter_describe,
    list_images,
    load_descriptor,
)

NAMES = ["astronaut", "camera", "chelsea", "coffee", "coins", "moon", "rocket", "retina"]


def write_photos(folder: Path, names=NAMES, *, broken: bool = True) -> dict[str, Path]:
    """Small copies of bundled photos (every other one in ``sub/``, alternating PNG / JPEG), one
    unreadable ``.jpg``, a text file and a hidden image (both ignored). Returns id -> file."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "sub").mkdir(exist_ok=True)
    files = {}
    for i, photo in enumerate(bundled_photos(names)):
        rel = f"{'sub/' if i % 2 else ''}{photo.name}.{'png' if i % 3 else 'jpg'}"
        files[rel] = write_image(folder / rel, np.ascontiguousarray(photo.rgb[::4, ::4]))
    if broken:
        (folder / "broken.jpg").write_bytes(b"this is not a JPEG")
    (folder / "notes.txt").write_text("not an image")
    write_image(folder / ".hidden.png", np.zeros((8, 8, 3), np.uint8))
    return files


def oracle_row(path: Path) -> np.ndarray:
    """color-hist of the file read by OpenCV (no resize needed: the photos are below 512 px)."""
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    x = torch.from_numpy(bgr[:, :, ::-1].copy()).permute(2, 0, 1).float()[None] / 255.0
    return color_histogram(x)[0].numpy()


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    folder = tmp_path_factory.mktemp("photos")
    return folder, write_photos(folder)


@pytest.fixture(scope="module")
def desc():
    return load_descriptor("color-hist")


# ---------------------------------------------------------------------- files, ids, types
def test_list_images_recursive_sorted_and_filtered(photos):
    folder, files = photos
    found = [p.relative_to(folder).as_posix() for p in list_images(folder)]
    assert found == sorted([*files, "broken.jpg"])
    with pytest.raises(DataNotFoundError, match="not an existing folder"):
        list_images(folder / "missing")


def test_image_id_relative_inside_absolute_outside(tmp_path):
    assert image_id(tmp_path / "a" / "b.png", tmp_path) == "a/b.png"
    assert image_id(tmp_path / "b.png", tmp_path / "a") == (tmp_path / "b.png").as_posix()
    assert image_id(tmp_path / "b.png", None) == (tmp_path / "b.png").as_posix()


@pytest.mark.parametrize(
    ("kind", "n", "dim", "expected"),
    [
        ("flat", 1, 512, "Flat"),
        ("hnsw", 3, 512, "HNSW32"),
        ("ivf", 156, 512, "IVF4,Flat"),
        ("ivf", 10_000, 512, "IVF256,Flat"),
        ("ivf", 1_000_000, 128, "IVF4096,Flat"),
        ("ivfpq", 9_984, 512, "IVF256,PQ64"),
        ("ivfpq", 1_000_000, 2048, "IVF4096,PQ256"),
        ("ivfpq", 100_000, 100, "IVF1024,PQ10"),
    ],
)
def test_index_factory_sizes_build_in_faiss(kind, n, dim, expected):
    factory = index_factory(kind, n, dim)
    assert factory == expected
    faiss.index_factory(dim, factory, faiss.METRIC_INNER_PRODUCT)  # a valid string
    if kind in ("ivf", "ivfpq"):  # at least 39 training vectors per list
        assert n >= 39 * int(factory.split(",")[0][3:])


def test_index_factory_refuses_too_few_and_bad_options():
    with pytest.raises(TooFewVectorsError, match=r"at least 156 images.*--type flat"):
        index_factory("ivf", 155, 64)
    with pytest.raises(TooFewVectorsError, match="at least 9984 images"):
        index_factory("ivfpq", 9_983, 64)
    with pytest.raises(OptionError, match="index type"):
        index_factory("lsh", 100, 64)


# ---------------------------------------------------------------------- describing
def test_iter_describe_matches_the_opencv_oracle_and_skips_unreadable(photos, desc):
    folder, files = photos
    chunks = list(iter_describe(desc, list_images(folder), root=folder, batch_size=3))
    assert [len(c) + len(c.skipped) for c in chunks] == [3, 3, 3]
    ids = [i for c in chunks for i in c.ids]
    assert ids == sorted(files)
    rows = np.concatenate([c.rows for c in chunks])
    np.testing.assert_allclose(rows, [oracle_row(files[i]) for i in ids], atol=1e-6)
    skipped = [s for c in chunks for s in c.skipped]
    assert [Path(p).name for p, _ in skipped] == ["broken.jpg"]
    assert "cannot read image" in skipped[0][1]
    meta = {i: m for c in chunks for i, m in zip(c.ids, c.metadata)}
    for i, file in files.items():
        h, w = cv2.imread(str(file)).shape[:2]
        assert meta[i] == {"path": file.as_posix(), "width": w, "height": h}


def test_describe_query_bytes_and_path_agree_with_the_index_rows(photos, desc):
    _, files = photos
    file = files["sub/camera.png"]
    by_path = describe_query(desc, file)
    by_bytes = describe_query(desc, file.read_bytes())
    by_spec = describe_query("color-hist", str(file))
    np.testing.assert_allclose(by_path, oracle_row(file), atol=1e-6)
    np.testing.assert_array_equal(by_path, by_bytes)
    np.testing.assert_array_equal(by_path, by_spec)
    assert by_path.shape == (desc.dim,) and by_path.dtype == np.float32
    with pytest.raises(ImageError):
        describe_query(desc, b"GIF89a broken")
    with pytest.raises(OptionError, match="expected bytes or a path"):
        describe_query(desc, 3)


def test_load_descriptor_defaults_and_refusals(tmp_path):
    assert load_descriptor().spec == best_shipped_global_descriptor()
    with pytest.raises(OptionError, match="global image descriptor"):
        load_descriptor("sift")  # a patch descriptor
    weights = save_weights(load_descriptor("color-hist").model, tmp_path / "w.safetensors")
    d = load_descriptor(f"color-hist:{weights}")
    assert d.spec == f"color-hist:{weights.resolve().as_posix()}" and len(d.sha256) == 64


def test_a_composite_default_is_checksummed_over_its_members_weights():
    import hashlib

    from lookalike.core.weights import sha256_file

    d = load_descriptor("gem-color")  # gem:bundled + color-hist, no file of its own
    (gem_file,) = d.model.weights_files()
    assert d.sha256 == hashlib.sha256(sha256_file(gem_file).encode()).hexdigest()
    assert d.sha256 != sha256_file(gem_file) and load_descriptor("color-hist").sha256 is None


# ---------------------------------------------------------------------- index folders
def _all_rows(files):
    ids = sorted(files)
    return ids, np.stack([oracle_row(files[i]) for i in ids])


def test_build_equals_brute_force_cosine(photos, tmp_path):
    folder, files = photos
    report = build_index(folder, tmp_path / "idx", descriptor="color-hist", batch_size=4)
    assert (report.found, report.present, report.added, report.count) == (9, 0, 8, 8)
    assert [Path(p).name for p, _ in report.skipped] == ["broken.jpg"]
    assert (tmp_path / "idx" / "skipped.txt").read_text().startswith(str(folder / "broken.jpg"))
    settings = read_settings(tmp_path / "idx")
    assert settings["root"] == folder.as_posix() and settings["skipped"] == 1
    opened = open_image_index(tmp_path / "idx")
    ids, rows = _all_rows(files)
    result = opened.index.search(rows, k=5)
    assert_knn_equal(result.ids, result.scores, *brute_knn(rows, rows, 5, "cosine"), ids)
    manifest = json.loads((tmp_path / "idx" / "manifest.json").read_text())
    assert manifest["descriptor"] == "color-hist" and manifest["count"] == 8


class _Interrupt:
    """A progress hook that interrupts the build once ``after`` images were processed."""

    def __init__(self, after: int) -> None:
        self.after = after

    def __call__(self, done: int, total: int) -> None:
        if done >= self.after:
            raise KeyboardInterrupt


@pytest.fixture
def described(monkeypatch):
    """Every path the describing path described (recorded only when the model ran on it)."""
    seen: list[str] = []
    original = retrieval.describe_images

    def spy(model, paths, **kw):
        rows = original(model, paths, **kw)
        seen.extend(str(p) for p in paths)
        return rows

    monkeypatch.setattr(retrieval, "describe_images", spy)
    return seen


def test_interrupted_build_resumes_without_describing_twice(photos, tmp_path, described):
    folder, files = photos
    out = tmp_path / "idx"
    with pytest.raises(KeyboardInterrupt):
        build_index(folder, out, descriptor="color-hist", batch_size=3, progress=_Interrupt(3))
    # the first batch (astronaut, broken, chelsea) was saved on the interrupt
    assert sorted(open_image_index(out).index) == ["astronaut.jpg", "chelsea.png"]
    report = build_index(folder, out, batch_size=3)  # same folder: options from the index
    assert (report.present, report.added, report.count) == (2, 6, 8)
    assert sorted(described) == sorted(str(f) for f in files.values())  # each exactly once
    once = build_index(folder, tmp_path / "once", descriptor="color-hist", batch_size=3)
    a, b = open_image_index(out).index, open_image_index(tmp_path / "once").index
    assert sorted(a) == sorted(b) == sorted(files)
    ids, rows = _all_rows(files)
    ra, rb = a.search(rows, k=8), b.search(rows, k=8)
    assert ra.ids == rb.ids
    np.testing.assert_array_equal(ra.scores, rb.scores)
    assert [a.get_metadata(i) for i in ids] == [b.get_metadata(i) for i in ids]
    assert once.count == report.count


def test_rerun_on_a_grown_folder_describes_only_new_images(tmp_path, described):
    folder = tmp_path / "photos"
    first = write_photos(folder, NAMES[:4], broken=False)
    build_index(folder, tmp_path / "idx", descriptor="color-hist")
    more = write_photos(folder, NAMES, broken=False)
    described.clear()
    report = build_index(folder, tmp_path / "idx")
    assert (report.present, report.added, report.count) == (4, 4, 8)
    assert sorted(described) == sorted(str(more[i]) for i in more if i not in first)


def test_resume_with_other_options_is_refused(photos, tmp_path):
    folder, _ = photos
    build_index(folder, tmp_path / "idx", descriptor="color-hist")
    weights = save_weights(load_descriptor("color-hist").model, tmp_path / "w.safetensors")
    for kwargs, what in [
        ({"kind": "hnsw"}, "index type 'flat', not 'hnsw'"),
        ({"max_size": 256}, "max size '512', not '256'"),
        ({"descriptor": f"color-hist:{weights}"}, "descriptor 'color-hist', not 'color-hist:"),
    ]:
        with pytest.raises(IndexMismatchError, match=what):
            build_index(folder, tmp_path / "idx", **kwargs)
    with pytest.raises(IndexMismatchError, match="image folder"):
        build_index(folder / "sub", tmp_path / "idx")


def test_changed_weights_are_detected_by_sha256(photos, tmp_path):
    folder, _ = photos
    model = load_descriptor("color-hist").model
    weights = save_weights(model, tmp_path / "w.safetensors")
    build_index(folder, tmp_path / "idx", descriptor=f"color-hist:{weights}")
    assert open_image_index(tmp_path / "idx").descriptor.sha256 is not None
    save_weights(model, weights, training={"retrained": True})  # same name, other bytes
    with pytest.raises(IndexMismatchError, match="descriptor_sha256"):
        open_image_index(tmp_path / "idx")


def test_add_images_round_trip(photos, tmp_path, described):
    folder, _ = photos
    build_index(folder / "sub", tmp_path / "idx", descriptor="color-hist")
    outside = tmp_path / "extra"
    extra = write_photos(outside, ["moon", "brick"], broken=False)
    described.clear()
    report = add_images(tmp_path / "idx", [folder / "sub", *extra.values()])
    assert (report.present, report.added) == (len(list_images(folder / "sub")), 2)
    index = open_image_index(tmp_path / "idx").index
    for file in extra.values():  # outside the image folder: absolute ids
        assert file.as_posix() in index
    assert sorted(described) == sorted(str(f) for f in extra.values())
    with pytest.raises(DataNotFoundError, match="not found"):
        add_images(tmp_path / "idx", [tmp_path / "missing.png"])


def test_empty_or_unreadable_folders_write_nothing(tmp_path):
    with pytest.raises(EmptyInputError, match="no image files"):
        build_index(tmp_path, tmp_path / "idx", descriptor="color-hist")
    (tmp_path / "bad.png").write_bytes(b"\x89PNG broken")
    with pytest.raises(EmptyInputError, match=r"no readable image.*1 skipped"):
        build_index(tmp_path, tmp_path / "idx", descriptor="color-hist")
    assert not (tmp_path / "idx").exists()


def test_ivf_build_trains_on_all_images_and_matches_exact_search(tmp_path):
    folder = tmp_path / "crops"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i, photo in enumerate(bundled_photos(NAMES) * 20):
        y, x = rng.integers(0, 200, 2)
        write_image(
            folder / f"{i:03d}.png", np.ascontiguousarray(photo.rgb[y : y + 24, x : x + 24])
        )
    with pytest.raises(KeyboardInterrupt):  # interrupted before it could train: nothing saved
        build_index(
            folder,
            tmp_path / "idx",
            descriptor="color-hist",
            kind="ivf",
            batch_size=32,
            save_every=10,
            progress=_Interrupt(64),
        )
    assert not (tmp_path / "idx" / "manifest.json").exists()
    report = build_index(
        folder, tmp_path / "idx", descriptor="color-hist", kind="ivf", batch_size=32, save_every=10
    )
    opened = open_image_index(tmp_path / "idx")
    assert opened.index.factory == "IVF4,Flat" and opened.type == "ivf"
    assert report.count == 160 and opened.index.nprobe == 4  # every list: exact
    ids = sorted(p.name for p in folder.iterdir())
    rows = np.stack([oracle_row(folder / i) for i in ids])
    result = opened.index.search(rows[:20], k=5)
    assert_knn_equal(result.ids, result.scores, *brute_knn(rows, rows[:20], 5, "cosine"), ids)


def test_a_learned_descriptor_needs_weights_or_allow_random():
    with pytest.raises(OptionError, match="learned network and no weights"):
        load_descriptor("gem")


@pytest.mark.slow
def test_random_weights_are_the_same_for_the_build_and_the_queries():
    a, b = load_descriptor("gem", allow_random=True), load_descriptor("gem", allow_random=True)
    assert a.random_weights and b.random_weights
    for (name, x), y in zip(a.model.state_dict().items(), b.model.state_dict().values()):
        assert torch.equal(x, y), name


def test_query_bytes_leave_no_temporary_file(photos, desc, tmp_path, monkeypatch):
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    _, files = photos
    describe_query(desc, files["sub/camera.png"].read_bytes())
    with pytest.raises(ImageError):
        describe_query(desc, b"\x89PNG\r\n\x1a\n broken")
    assert list(tmp_path.iterdir()) == []


def test_saves_every_n_images_or_every_tenth_of_the_index(tmp_path):
    folder = tmp_path / "tiles"
    folder.mkdir()
    rng = np.random.default_rng(1)
    for i in range(40):
        write_image(folder / f"{i:02d}.png", rng.integers(0, 256, (8, 8, 3), dtype=np.uint8))
    build_index(folder, tmp_path / "idx", descriptor="color-hist", batch_size=1, save_every=1)
    saves, count, pending = 0, 0, 0  # the documented rule, one image at a time
    for _ in range(40):
        pending += 1
        if pending >= max(1, count // 10):
            saves, count, pending = saves + 1, count + pending, 0
    saves += pending > 0
    manifest = json.loads((tmp_path / "idx" / "manifest.json").read_text())
    assert manifest["version"] == saves < 40 and manifest["count"] == 40


def test_an_index_folder_inside_the_images_is_not_indexed(tmp_path):
    folder = tmp_path / "photos"
    files = write_photos(folder, NAMES[:3], broken=False)
    build_index(folder, folder / "idx", descriptor="color-hist")
    (folder / "idx" / "thumbnails").mkdir()  # e.g. thumbnails the service keeps
    write_image(folder / "idx" / "thumbnails" / "t.jpg", np.zeros((16, 16, 3), np.uint8))
    report = build_index(folder, folder / "idx")
    assert (report.found, report.added) == (3, 0)
    assert sorted(open_image_index(folder / "idx").index) == sorted(files)
