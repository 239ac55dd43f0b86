"""The search app through FastAPI's TestClient: every endpoint and every documented error code.

Oracle for ``/search``: brute-force cosine of color-hist rows computed here from the same files.
"""

from __future__ import annotations

import json
import threading

import cv2
import numpy as np
import pytest
from fastapi.testclient import TestClient

from lookalike.index import load_index
from lookalike.index.base import IndexMismatchError
from lookalike.service import create_app
from service.helpers import describe_files, jpeg_bytes, png_bytes


def _client(path, **kwargs) -> TestClient:
    return TestClient(create_app(path, **kwargs))


@pytest.fixture(scope="module")
def client(built):
    with _client(built.path) as c:
        yield c


def _upload(data: bytes, kind: str = "image/png", name: str = "q.png") -> dict:
    return {"file": (name, data, kind)}


def _oracle(built, query_rows: np.ndarray, k: int):
    scores = built.vectors @ query_rows
    order = np.argsort(-scores, kind="stable")[:k]
    return [built.ids[i] for i in order], scores[order]


# ---------------------------------------------------------------------------- reads
def test_health(client, built):
    h = client.get("/health").json()
    assert h["status"] == "ok" and h["count"] == len(built.ids) and h["dim"] == 512
    assert h["metric"] == "cosine" and h["descriptor"] == "color-hist" and h["backend"] == "faiss"
    assert h["writes"] is False and h["read_token"] is False and h["max_k"] == 100


def test_search_upload_matches_brute_force(client, built, photos, tmp_path):
    query = jpeg_bytes(photos["chelsea"][20:280, 30:420])  # a crop, re-encoded as JPEG
    (tmp_path / "q.jpg").write_bytes(query)
    want_ids, want_scores = _oracle(built, describe_files([tmp_path / "q.jpg"])[0], 4)
    r = client.post("/search", files=_upload(query, "image/jpeg", "q.jpg"), data={"k": "4"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert [h["id"] for h in body["results"]] == want_ids
    assert want_ids[0] == "chelsea.png"
    np.testing.assert_allclose([h["score"] for h in body["results"]], want_scores, atol=1e-5)
    top = body["results"][0]
    assert top["metadata"]["path"].endswith("images/chelsea.png")
    assert (top["metadata"]["width"], top["metadata"]["height"]) == (451, 300)
    assert top["thumbnail"] == "/items/chelsea.png/thumbnail"
    assert body["took_ms"] > 0


def test_search_vector_json_and_k(client, built):
    q = built.vectors[2] + 0.05 * built.vectors[4]
    want_ids, want_scores = _oracle(built, q / np.linalg.norm(q), 3)
    r = client.post("/search", json={"vector": q.tolist(), "k": 3})
    assert r.status_code == 200, r.text
    assert [h["id"] for h in r.json()["results"]] == want_ids
    np.testing.assert_allclose([h["score"] for h in r.json()["results"]], want_scores, atol=1e-5)
    assert len(client.post("/search?k=2", json={"vector": q.tolist()}).json()["results"]) == 2
    both = client.post("/search?k=2", json={"vector": q.tolist(), "k": 5}).json()  # body wins
    assert len(both["results"]) == 5
    default = client.post("/search", json={"vector": q.tolist()}).json()  # 10 asked, 6 held
    assert [h["id"] for h in default["results"]] == _oracle(built, q / np.linalg.norm(q), 6)[0]


@pytest.mark.parametrize("k", ["0", "101", "abc", "2.5", "-1"])
def test_bad_k_is_422(client, built, photos, k):
    vector = built.vectors[0].tolist()
    assert client.post(f"/search?k={k}", json={"vector": vector}).status_code == 422
    raw = json.loads(k) if k not in ("abc",) else k
    assert client.post("/search", json={"vector": vector, "k": raw}).status_code == 422
    r = client.post("/search", files=_upload(png_bytes(photos["coins"])), data={"k": k})
    assert r.status_code == 422 and "k: expected an integer from 1 to 100" in r.json()["detail"]


@pytest.mark.parametrize(
    "body",
    [{"vector": [1.0, 2.0]}, {"vector": "x"}, {"k": 3}, {"vector": [True] * 512}, [1, 2, 3]],
)
def test_bad_vector_is_422(client, body):
    assert client.post("/search", json=body).status_code == 422


def test_non_finite_vector_is_422(client):
    raw = "[" + ",".join(["NaN"] + ["0.1"] * 511) + "]"
    r = client.post(
        "/search", content=f'{{"vector": {raw}}}', headers={"content-type": "application/json"}
    )
    assert r.status_code == 422 and "finite" in r.json()["detail"]


def test_malformed_bodies_are_400(client):
    r = client.post("/search", content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 400 and "malformed JSON" in r.json()["detail"]
    r = client.post(
        "/search", content=b"garbage", headers={"content-type": "multipart/form-data; boundary=x"}
    )
    assert r.status_code in (400, 422)  # a form without the 'file' field at best


def test_items_and_thumbnails(client, built, photos):
    r = client.get("/items/rocket.png")
    assert r.status_code == 200
    height, width = photos["rocket"].shape[:2]
    assert r.json()["id"] == "rocket.png"
    assert (r.json()["metadata"]["width"], r.json()["metadata"]["height"]) == (width, height)
    assert r.json()["thumbnail"] == "/items/rocket.png/thumbnail"
    t = client.get("/items/astronaut.png/thumbnail")
    assert t.status_code == 200 and t.headers["content-type"] == "image/jpeg"
    thumb = cv2.imdecode(np.frombuffer(t.content, np.uint8), cv2.IMREAD_COLOR)
    assert thumb.shape == (256, 256, 3)  # 512 x 512 shrunk to the 256 thumbnail size
    source = cv2.imread(str(built.images / "astronaut.png"))
    small = cv2.resize(source, (256, 256), interpolation=cv2.INTER_AREA)
    assert np.abs(thumb.astype(int) - small).mean() < 4  # the same picture, JPEG-compressed
    coffee = client.get("/items/coffee.png/thumbnail").content  # 600 x 400 keeps its aspect
    assert cv2.imdecode(np.frombuffer(coffee, np.uint8), cv2.IMREAD_COLOR).shape == (171, 256, 3)


@pytest.mark.parametrize(
    "path",
    [
        "/items/nope",
        "/items/nope/thumbnail",
        "/items/..%2F..%2Fetc%2Fpasswd/thumbnail",
        "/items/%2Fetc%2Fpasswd/thumbnail",
        "/no/such/route",
    ],
)
def test_unknown_is_404(client, path):
    assert client.get(path).status_code == 404


@pytest.mark.parametrize(
    ("headers", "content"),
    [
        ({"content-type": "text/plain"}, b"hello"),
        ({"content-type": "application/x-www-form-urlencoded"}, b"k=3"),
        ({}, b""),
    ],
)
def test_request_type_415(client, headers, content):
    r = client.post("/search", content=content, headers=headers)
    assert r.status_code == 415 and "multipart/form-data" in r.json()["detail"]


def test_upload_type_and_signature_415(client, photos):
    png = png_bytes(photos["coins"])
    assert client.post("/search", files=_upload(png, "image/gif")).status_code == 415
    assert client.post("/search", files=_upload(png, "image/jpeg")).status_code == 415
    text = client.post("/search", files=_upload(b"just some text, not an image", "image/png"))
    assert text.status_code == 415 and "signature" in text.json()["detail"]


def test_unreadable_and_missing_file_422(client):
    broken = b"\x89PNG\r\n\x1a\n" + b"\x00broken" * 20
    r = client.post("/search", files=_upload(broken))
    assert r.status_code == 422 and "unreadable" in r.json()["detail"]
    png = png_bytes(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8))
    r = client.post("/search", files=_upload(png[: len(png) // 2]))  # a valid header, cut short
    assert r.status_code == 422 and "unreadable" in r.json()["detail"]
    assert "lookalike-serve" not in r.json()["detail"]  # the server's temporary name is not shown
    r = client.post("/search", data={"k": "3"}, files={"other": ("x", b"1", "text/plain")})
    assert r.status_code == 422 and "'file'" in r.json()["detail"]


def test_size_and_pixel_limits_413(built, photos):
    from service.test_uploads import bomb_png

    png = png_bytes(photos["astronaut"])
    with _client(built.path, max_upload_bytes=len(png) - 1, max_pixels=300 * 300) as c:
        r = c.post("/search", files=_upload(png))  # file over the limit, body within the slack
        assert r.status_code == 413 and "upload too large" in r.json()["detail"]
        big = b"\x89PNG" + b"\x00" * (len(png) + 70_000)  # the body itself over the limit
        r = c.post("/search", files=_upload(big))
        assert r.status_code == 413 and "request body too large" in r.json()["detail"]

        def stream():  # no Content-Length: cut off while streaming
            for _ in range(40):
                yield b"\x00" * 16_384

        r = c.post(
            "/search", content=stream(), headers={"content-type": "multipart/form-data; boundary=b"}
        )
        assert r.status_code == 413 and "more than" in r.json()["detail"]
        r = c.post("/search", files=_upload(bomb_png(20_000, 20_000)))
        assert r.status_code == 413 and "400000000 pixels" in r.json()["detail"]
        small = png_bytes(photos["coins"][:200, :200])  # within both limits
        assert c.post("/search", files=_upload(small)).status_code == 200


def test_openapi_documents_the_endpoints(client):
    spec = client.get("/openapi.json").json()
    paths = spec["paths"]
    assert {
        "/search",
        "/items",
        "/items/{item_id}",
        "/items/{item_id}/thumbnail",
        "/health",
    } <= set(paths)
    search = paths["/search"]["post"]
    assert set(search["requestBody"]["content"]) == {"multipart/form-data", "application/json"}
    assert {"413", "415", "422", "503"} <= set(search["responses"])
    assert client.get("/docs").status_code == 200


def test_page_and_static_files(client):
    page = client.get("/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert '<input id="file"' in page.text
    for name in ("app.js", "style.css"):
        r = client.get(f"/static/{name}")
        assert r.status_code == 200 and r.content
    assert "http" not in page.text.replace("http-equiv", "")  # no external (CDN) assets
    assert client.get("/static/../engine.py").status_code == 404


def test_metrics_count_requests(built):
    with _client(built.path) as c:
        sent = {("GET", "/health", 200): 3, ("GET", "/items/{item_id}", 404): 2}
        for _ in range(3):
            c.get("/health")
        for _ in range(2):
            c.get("/items/unknown")
        c.post("/search", content=b"x", headers={"content-type": "text/plain"})
        text = c.get("/metrics")
    assert text.headers["content-type"].startswith("text/plain")
    from service.test_metrics import parse

    samples = parse(text.text)
    for (method, route, status), n in sent.items():
        key = frozenset({("method", method), ("route", route), ("status", str(status))})
        assert samples[("lookalike_requests_total", key)] == n
    key = frozenset({("method", "POST"), ("route", "/search"), ("status", "415")})
    assert samples[("lookalike_requests_total", key)] == 1
    count = frozenset({("method", "GET"), ("route", "/health")})
    assert samples[("lookalike_request_duration_seconds_count", count)] == 3
    assert samples[("lookalike_index_items", frozenset())] == len(built.ids)


# ---------------------------------------------------------------------------- writes and auth
def test_writes_disabled_403(client, photos):
    r = client.post("/items", files=_upload(png_bytes(photos["coins"])), data={"id": "x"})
    assert r.status_code == 403 and "--allow-writes" in r.json()["detail"]
    assert client.delete("/items/coins.png").status_code == 403
    assert client.get("/items/coins.png").status_code == 200


def test_add_search_delete_persist(fresh, photos):
    cat = photos["chelsea"][::2, ::2].copy()  # not in the index as such
    with _client(fresh.path, allow_writes=True) as c:
        r = c.post(
            "/items",
            files=_upload(png_bytes(cat)),
            data={"id": "cats/small cat", "metadata": '{"who": "chelsea"}'},
        )
        assert r.status_code == 201, r.text
        assert r.json() == {"id": "cats/small cat", "count": 7}
        reopened = load_index(fresh.path)  # saved before answering
        assert "cats/small cat" in reopened and reopened.get_metadata("cats/small cat") == {
            "who": "chelsea"
        }
        item = c.get("/items/cats%2Fsmall%20cat").json()
        assert item["metadata"] == {"who": "chelsea"}
        assert item["thumbnail"] == "/items/cats%2Fsmall%20cat/thumbnail"
        thumb = c.get(item["thumbnail"])
        assert thumb.status_code == 200 and thumb.content[:3] == b"\xff\xd8\xff"
        hits = c.post("/search", files=_upload(png_bytes(cat))).json()["results"]
        assert hits[0]["id"] == "cats/small cat" and hits[0]["score"] == pytest.approx(1, abs=1e-5)
        again = c.post("/items", files=_upload(png_bytes(cat)), data={"id": "cats/small cat"})
        assert again.status_code == 409
        r = c.delete("/items/cats%2Fsmall%20cat")
        assert r.status_code == 200 and r.json() == {"id": "cats/small cat", "count": 6}
        assert c.get("/items/cats%2Fsmall%20cat").status_code == 404
        assert c.get("/items/cats%2Fsmall%20cat/thumbnail").status_code == 404
        assert c.delete("/items/cats%2Fsmall%20cat").status_code == 404
        assert c.delete("/items/chelsea.png").status_code == 200
    reopened = load_index(fresh.path)
    assert set(reopened) == set(fresh.ids) - {"chelsea.png"}
    assert not any((fresh.path / "thumbnails").iterdir())


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"id": "a", "metadata": '{"path": "/etc/passwd"}'}, "reserved"),
        ({"id": "a", "metadata": "[1, 2]"}, "JSON object"),
        ({"id": "a", "metadata": "{broken"}, "JSON object"),
        ({"id": "a", "metadata": '{"x": NaN}'}, "JSON"),
        ({"id": ""}, "id"),
        ({"metadata": "{}"}, "'id'"),
    ],
)
def test_bad_item_writes_422(fresh, photos, data, message):
    with _client(fresh.path, allow_writes=True) as c:
        r = c.post("/items", files=_upload(png_bytes(photos["coins"])), data=data)
        assert r.status_code == 422 and message in r.json()["detail"], r.text
        assert c.get("/health").json()["count"] == len(fresh.ids)


def test_add_needs_a_form_415(fresh):
    with _client(fresh.path, allow_writes=True) as c:
        assert c.post("/items", json={"id": "x"}).status_code == 415


def test_write_token_401(fresh, photos):
    png = png_bytes(photos["coins"][:100, :100])
    with _client(fresh.path, allow_writes=True, token="s3cret") as c:
        assert c.post("/items", files=_upload(png), data={"id": "a"}).status_code == 401
        wrong = {"Authorization": "Bearer nope"}
        r = c.post("/items", files=_upload(png), data={"id": "a"}, headers=wrong)
        assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
        assert (
            c.delete("/items/coins.png", headers={"Authorization": "Basic s3cret"}).status_code
            == 401
        )
        ok = {"Authorization": "Bearer s3cret"}
        assert c.post("/items", files=_upload(png), data={"id": "a"}, headers=ok).status_code == 201
        assert c.delete("/items/a", headers=ok).status_code == 200
        assert c.get("/items/coins.png").status_code == 200  # reads stay open


def test_read_token_401(built, photos):
    with _client(built.path, token="w", read_token="r") as c:
        assert c.post("/search", json={"vector": built.vectors[0].tolist()}).status_code == 401
        assert c.get("/items/coins.png").status_code == 401
        assert c.get("/items/coins.png/thumbnail").status_code == 401
        for token in ("r", "w"):
            h = {"Authorization": f"Bearer {token}"}
            assert c.get("/items/coins.png", headers=h).status_code == 200
        assert c.get("/health").status_code == 200 and c.get("/health").json()["read_token"]
        assert c.get("/metrics").status_code == 200 and c.get("/").status_code == 200


def test_saturated_server_answers_503(built, photos):
    app = create_app(built.path, max_concurrency=1)
    entered, release = threading.Event(), threading.Event()
    engine = app.state.engine
    original = engine.search_vector

    def slow(*args):
        entered.set()
        release.wait(10)
        return original(*args)

    engine.search_vector = slow
    results = {}
    with TestClient(app) as c:
        vector = built.vectors[0].tolist()
        first = threading.Thread(
            target=lambda: results.update(first=c.post("/search", json={"vector": vector}))
        )
        first.start()
        assert entered.wait(10)
        busy = c.post("/search", json={"vector": vector})
        assert busy.status_code == 503 and busy.headers["retry-after"] == "1"
        assert "server busy" in busy.json()["detail"]
        assert c.get("/health").status_code == 200  # monitoring is never refused
        assert "lookalike_requests_in_flight 1" in c.get("/metrics").text
        release.set()
        first.join(10)
        assert results["first"].status_code == 200
        assert c.post("/search", json={"vector": vector}).status_code == 200


def test_failed_save_rolls_back(fresh, photos, monkeypatch):
    app = create_app(fresh.path, allow_writes=True)
    engine = app.state.engine

    def broken_save(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(engine.image_index, "save", broken_save)
    with TestClient(app, raise_server_exceptions=False) as c:
        r = c.post("/items", files=_upload(png_bytes(photos["coins"])), data={"id": "new"})
        assert r.status_code == 500
        assert "new" not in engine.index and len(engine.index) == len(fresh.ids)
        assert c.get("/items/new").status_code == 404
        assert not (fresh.path / "thumbnails").exists() or not any(
            (fresh.path / "thumbnails").iterdir()
        )
        assert c.get("/health").json()["count"] == len(fresh.ids)


# ---------------------------------------------------------------------------- other indexes
def test_vector_only_index(vector_index):
    with _client(vector_index) as c:
        h = c.get("/health").json()
        assert h["descriptor"] is None and h["metric"] == "l2" and h["dim"] == 4
        r = c.post("/search", json={"vector": [0.9, 0.1, 0.0, 0.0], "k": 2})
        hits = r.json()["results"]
        assert [x["id"] for x in hits] == ["e0", "e1"]  # L2 distances, smaller first
        assert hits[0]["score"] == pytest.approx(np.hypot(0.1, 0.1), abs=1e-6)
        assert hits[1]["score"] == pytest.approx(np.hypot(0.9, 0.9), abs=1e-6)
        png = png_bytes(np.zeros((8, 8, 3), np.uint8))
        r = c.post("/search", files=_upload(png))
        assert r.status_code == 422 and "only be searched with vectors" in r.json()["detail"]
        assert c.get("/items/e1/thumbnail").status_code == 404  # no image path
        assert c.get("/items/e1").json()["metadata"] == {"axis": 1}


def test_mismatched_descriptor_and_bad_settings(built, vector_index, tmp_path):
    from lookalike.core.errors import DataNotFoundError, OptionError

    with pytest.raises(IndexMismatchError, match="color-hist"):
        create_app(built.path, descriptor="gem")
    with pytest.raises(IndexMismatchError):
        create_app(vector_index, descriptor="color-hist")
    create_app(built.path, descriptor="color-hist")  # the same one is fine
    with pytest.raises(DataNotFoundError):
        create_app(tmp_path / "missing")
    with pytest.raises(OptionError, match="max_concurrency"):
        create_app(built.path, max_concurrency=0)
    with pytest.raises(OptionError, match="unknown keywords"):
        create_app(built.path, max_uploads=3)
    with pytest.raises(OptionError, match="token"):
        create_app(built.path, token="")


def test_no_pickle_in_the_service():
    import re
    from pathlib import Path

    import lookalike.service

    use = re.compile(
        r"import (c?pickle|dill|joblib)|from (c?pickle|dill|joblib) import|torch\.load"
    )
    root = Path(lookalike.service.__file__).parent
    for file in [*root.rglob("*.py"), Path(lookalike.__file__).parent / "cli" / "serve.py"]:
        assert not use.search(file.read_text()), file
