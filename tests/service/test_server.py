"""End to end: ``lookalike serve`` in a subprocess (uvicorn on a free loopback port), driven over HTTP and
from the web page in headless Chromium (Playwright with Debian's ``/usr/bin/chromium``)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from service.helpers import describe_files, jpeg_bytes

CHROMIUM = Path("/usr/bin/chromium")

pytestmark = pytest.mark.slow  # starting a server process takes several seconds


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(built, tmp_path_factory):
    """``lookalike serve`` on the shared index; yields its base URL."""
    import httpx

    port = _free_port()
    log = tmp_path_factory.mktemp("server") / "server.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "lookalike", "serve", str(built.path), "--port", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    try:
        while True:
            if proc.poll() is not None:
                pytest.fail(f"the server exited with {proc.returncode}:\n{log.read_text()}")
            try:
                if httpx.get(url + "/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"the server did not answer within 120 s:\n{log.read_text()}")
            time.sleep(0.3)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


@pytest.fixture(scope="module")
def query(built, photos, tmp_path_factory):
    """A query file (a JPEG crop of the cat) and the brute-force ranking of the index for it."""
    path = tmp_path_factory.mktemp("query") / "cat.jpg"
    path.write_bytes(jpeg_bytes(photos["chelsea"][10:290, 40:400]))
    scores = built.vectors @ describe_files([path])[0]
    order = np.argsort(-scores, kind="stable")
    return path, [built.ids[i] for i in order], scores[order]


def test_http_end_to_end(server, query):
    import httpx

    path, want_ids, want_scores = query
    with httpx.Client(base_url=server, timeout=30) as c:
        health = c.get("/health").json()
        assert health["count"] == len(want_ids) and health["descriptor"] == "color-hist"
        files = {"file": ("cat.jpg", path.read_bytes(), "image/jpeg")}
        r = c.post("/search", files=files, data={"k": "3"})
        assert r.status_code == 200, r.text
        hits = r.json()["results"]
        assert [h["id"] for h in hits] == want_ids[:3]
        np.testing.assert_allclose([h["score"] for h in hits], want_scores[:3], atol=1e-5)
        thumb = c.get(hits[0]["thumbnail"])
        assert thumb.status_code == 200 and thumb.headers["content-type"] == "image/jpeg"
        assert c.post("/items", files=files, data={"id": "x"}).status_code == 403
        assert (
            c.post("/search", content=b"x", headers={"content-type": "text/plain"}).status_code
            == 415
        )
        metrics = c.get("/metrics").text
        assert 'lookalike_requests_total{method="POST",route="/search",status="200"} 1' in metrics
        assert 'lookalike_requests_total{method="POST",route="/search",status="415"} 1' in metrics


def _browser():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("playwright is not installed (CI installs it: pip install playwright)")
    if not CHROMIUM.is_file():
        pytest.skip(f"{CHROMIUM} is absent (CI installs Debian's chromium package with apt)")
    return sync_playwright


def test_web_page_in_headless_chromium(server, query, tmp_path):
    sync_playwright = _browser()
    path, want_ids, want_scores = query
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=str(CHROMIUM), args=["--no-sandbox"], headless=True
        )
        try:
            page = browser.new_page()
            page.goto(server + "/")
            page.wait_for_function(
                "document.getElementById('summary').textContent.includes('items')"
            )
            assert page.locator("#summary").inner_text().startswith(f"{len(want_ids)} items")
            page.fill("#k", "4")
            page.set_input_files("#file", str(path))
            page.wait_for_selector("#results li.result", timeout=60_000)
            items = page.locator("#results li.result")
            assert items.count() == 4
            first = items.first
            assert first.get_attribute("data-id") == want_ids[0] == "chelsea.png"
            assert first.locator(".id").inner_text() == want_ids[0]
            assert first.locator(".score").inner_text() == f"score {want_scores[0]:.4f}"
            shown = [items.nth(i).locator(".id").inner_text() for i in range(4)]
            assert shown == want_ids[:4]
            page.wait_for_function(
                "[...document.querySelectorAll('#results img')]"
                ".every(img => img.complete && img.naturalWidth > 0)"
            )
            assert "results in" in page.locator("#status").inner_text()
            # an error is shown as text: a text file picked as the query
            bad = tmp_path / "notes.txt"
            bad.write_text("not an image")
            page.set_input_files("#file", str(bad))
            page.wait_for_function(
                "document.getElementById('status').textContent.startsWith('error')"
            )
            status = page.locator("#status")
            assert status.inner_text().startswith("error 415:")
            assert "error" in (status.get_attribute("class") or "")
        finally:
            browser.close()
