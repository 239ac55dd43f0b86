"""Load test of ``lookalike serve``: >= 10,000 mixed requests from another process, on loopback.

The script builds a small index of bundled photos (``color-hist`` by default, so the test measures
the service rather than a network), starts ``lookalike serve INDEX --allow-writes`` in a subprocess
with a bearer token for writes, and drives it from a thread pool (httpx) with a fixed mix of

- valid requests: searches by image upload and by JSON vector, item metadata and thumbnails,
  writes (``POST /items`` then ``DELETE /items/{id}`` with the token), ``/health``, ``/metrics``;
- invalid ones, each with its documented status (lookalike.service.app): unknown ids (404),
  writes without or with a wrong token (401), malformed JSON (400), bad vectors and ``k`` (422),
  wrong request content types (415), uploads whose declared type and bytes disagree or that are no
  image (415), truncated images (422), oversized uploads (413) and decompression bombs (413).

It checks that no answer is a 5xx and that every answer has the documented status of its request
type, samples the server's RSS (and reads its peak, ``VmHWM``), and prints p50/p99 latency and
throughput per request type. The client uses fewer threads than the server's
``--max-concurrency``, so a 503 (saturation) is a failure too. Exit code 1 on any failure.

Usage::

    .venv/bin/python benchmarks/load.py                      # 10,000 requests, 8 threads
    .venv/bin/python benchmarks/load.py --requests 20000 --threads 12 --max-rss-mb 1500
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
import zlib
from collections import Counter, defaultdict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import quote

import cv2
import httpx
import numpy as np
from rich.console import Console
from rich.table import Table

from lookalike.data import bundled_photos
from lookalike.data.images import write_image
from lookalike.index.image_index import build_index

MAX_UPLOAD_MB = 1


# ---------------------------------------------------------------------- payloads
def _encode(rgb: np.ndarray, suffix: str) -> bytes:
    ok, buf = cv2.imencode(suffix, np.ascontiguousarray(rgb[:, :, ::-1]))
    assert ok
    return buf.tobytes()


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    body = kind + data
    return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body) & 0xFFFFFFFF)


def bomb_png(side: int = 50_000) -> bytes:
    """A tiny PNG whose header announces ``side x side`` pixels (a decompression bomb)."""
    ihdr = struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 64)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", ihdr)
        + _png_chunk(b"IDAT", idat)
        + _png_chunk(b"IEND", b"")
    )


class Payloads:
    """Upload bodies, built once."""

    def __init__(self, photos: list[np.ndarray], dim: int) -> None:
        self.jpegs = [_encode(p, ".jpg") for p in photos]
        self.pngs = [_encode(p, ".png") for p in photos]
        self.dim = dim
        self.truncated = self.pngs[0][: max(200, len(self.pngs[0]) // 3)]
        rng = np.random.default_rng(0)
        self.oversized = _encode(rng.integers(0, 256, (900, 900, 3), dtype=np.uint8), ".png")
        assert len(self.oversized) > MAX_UPLOAD_MB * 2**20
        self.bomb = bomb_png()
        self.vectors = rng.normal(size=(64, dim)).astype(np.float32)


# ---------------------------------------------------------------------- request types
class Driver:
    """One callable per request type: ``name -> (expected statuses, send(client, i) -> [statuses])``."""

    def __init__(self, base: str, token: str, ids: list[str], payloads: Payloads) -> None:
        self.base, self.token, self.ids, self.p = base, token, ids, payloads
        self.auth = {"Authorization": f"Bearer {token}"}

    def item(self, i: int) -> str:
        return quote(self.ids[i % len(self.ids)], safe="")

    def kinds(self) -> dict[str, tuple[set[int], float, Callable[[httpx.Client, int], int]]]:
        """name -> (documented statuses, share of the mix, one request)."""
        p, b = self.p, self.base

        def upload(data: bytes, ctype: str, extra: dict | None = None) -> dict:
            return {"files": {"file": ("q", data, ctype)}, "data": extra or {}}

        return {
            "search image": ({200}, 0.26, lambda c, i: c.post(
                f"{b}/search", **upload(p.jpegs[i % len(p.jpegs)], "image/jpeg", {"k": "10"})
            ).status_code),
            "search png": ({200}, 0.06, lambda c, i: c.post(
                f"{b}/search?k=5", **upload(p.pngs[i % len(p.pngs)], "image/png")
            ).status_code),
            "search vector": ({200}, 0.22, lambda c, i: c.post(
                f"{b}/search", json={"vector": p.vectors[i % 64].tolist(), "k": 10}
            ).status_code),
            "get item": ({200}, 0.06, lambda c, i: c.get(f"{b}/items/{self.item(i)}").status_code),
            "thumbnail": ({200}, 0.04, lambda c, i: c.get(
                f"{b}/items/{self.item(i)}/thumbnail").status_code),
            "write add+delete": ({200}, 0.04, self._write),  # 201 checked inside
            "health": ({200}, 0.01, lambda c, i: c.get(f"{b}/health").status_code),
            "metrics": ({200}, 0.01, lambda c, i: c.get(f"{b}/metrics").status_code),
            "unknown id": ({404}, 0.04, lambda c, i: c.get(f"{b}/items/nope-{i}").status_code),
            "unknown delete": ({404}, 0.01, lambda c, i: c.delete(
                f"{b}/items/nope-{i}", headers=self.auth).status_code),
            "write no token": ({401}, 0.02, lambda c, i: c.post(
                f"{b}/items", **upload(p.jpegs[0], "image/jpeg", {"id": f"x{i}"})).status_code),
            "write bad token": ({401}, 0.01, lambda c, i: c.delete(
                f"{b}/items/{self.item(i)}", headers={"Authorization": "Bearer wrong"}
            ).status_code),
            "malformed json": ({400}, 0.03, lambda c, i: c.post(
                f"{b}/search", content=b'{"vector": [1, 2', headers={"content-type": "application/json"}
            ).status_code),
            "bad vector": ({422}, 0.03, lambda c, i: c.post(
                f"{b}/search", json={"vector": [1.0] * (p.dim + 1), "k": 3}).status_code),
            "bad k": ({422}, 0.02, lambda c, i: c.post(
                f"{b}/search", json={"vector": p.vectors[0].tolist(), "k": 0}).status_code),
            "wrong content type": ({415}, 0.03, lambda c, i: c.post(
                f"{b}/search", content=b"hello", headers={"content-type": "text/plain"}).status_code),
            "type/bytes mismatch": ({415}, 0.02, lambda c, i: c.post(
                f"{b}/search", **upload(p.pngs[0], "image/jpeg")).status_code),
            "not an image": ({415}, 0.02, lambda c, i: c.post(
                f"{b}/search", **upload(b"just some text, no image", "image/png")).status_code),
            "truncated image": ({422}, 0.02, lambda c, i: c.post(
                f"{b}/search", **upload(p.truncated, "image/png")).status_code),
            "oversized upload": ({413}, 0.02, lambda c, i: c.post(
                f"{b}/search", **upload(p.oversized, "image/png")).status_code),
            "decompression bomb": ({413}, 0.03, lambda c, i: c.post(
                f"{b}/search", **upload(p.bomb, "image/png")).status_code),
        }  # fmt: skip

    def _write(self, client: httpx.Client, i: int) -> int:
        """Add an item with the token, then delete it: the two statuses must be 201 and 200."""
        new = f"load-{i}-{secrets.token_hex(4)}"
        r = client.post(
            f"{self.base}/items",
            files={"file": ("q", self.p.jpegs[i % len(self.p.jpegs)], "image/jpeg")},
            data={"id": new, "metadata": json.dumps({"source": "load"})},
            headers=self.auth,
        )
        if r.status_code != 201:
            return r.status_code
        return client.delete(
            f"{self.base}/items/{quote(new, safe='')}", headers=self.auth
        ).status_code


# ---------------------------------------------------------------------- server
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_kb(pid: int, field: str = "VmRSS") -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


class RssSampler(threading.Thread):
    def __init__(self, pid: int, every: float = 0.05) -> None:
        super().__init__(daemon=True)
        self.pid, self.every, self.peak = pid, every, 0
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                self.peak = max(self.peak, rss_kb(self.pid))
            except OSError:
                return
            time.sleep(self.every)


def start_server(index: Path, port: int, token: str, args: argparse.Namespace) -> subprocess.Popen:
    env = {**os.environ, "LOAD_WRITE_TOKEN": token}
    cmd = [
        sys.executable, "-m", "lookalike", "serve", str(index), "--port", str(port),
        "--allow-writes", "--token-env", "LOAD_WRITE_TOKEN", "--max-upload-mb", str(MAX_UPLOAD_MB),
        "--max-concurrency", str(args.server_concurrency), "--log-level", "warning",
    ]  # fmt: skip
    with open(args.server_log, "w") as log:  # the child keeps its own copy of the handle
        server = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.time() + 120
    while time.time() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"the server exited with {server.returncode}; see {args.server_log}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                return server
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    server.kill()
    raise SystemExit(f"the server did not answer /health within 120 s; see {args.server_log}")


def stop_server(server: subprocess.Popen) -> None:
    server.send_signal(signal.SIGTERM)
    try:
        server.wait(timeout=20)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait()


# ---------------------------------------------------------------------- the run
def make_index(
    folder: Path, descriptor: str, copies: int
) -> tuple[Path, list[str], list[np.ndarray]]:
    """An image folder of bundled photos (and shifted crops of them) and its index."""
    images = folder / "images"
    images.mkdir()
    photos = [p.rgb[::2, ::2] for p in bundled_photos()]
    for i, rgb in enumerate(photos):
        sub = images / f"{i:02d}"
        sub.mkdir()
        for j in range(copies):  # shifted crops: near duplicates, as in a real collection
            write_image(sub / f"{j:03d}.jpg", np.ascontiguousarray(rgb[j * 4 :, j * 4 :]))
    report = build_index(images, folder / "index", descriptor=descriptor)
    ids = sorted(open_ids(folder / "index"))
    assert len(ids) == report.count
    return folder / "index", ids, photos


def open_ids(index: Path) -> list[str]:
    from lookalike.index import load_index

    return list(load_index(index))


def run_load(
    driver: Driver, n: int, threads: int, seed: int, skip: tuple[str, ...] = ()
) -> tuple[dict, float]:
    kinds = driver.kinds()
    unknown = sorted(set(skip) - set(kinds))
    if unknown:
        raise SystemExit(f"--skip: unknown request types {unknown}; known: {sorted(kinds)}")
    names = [k for k in kinds if k not in skip]
    shares = np.array([kinds[k][1] for k in names])
    plan = np.random.default_rng(seed).choice(len(names), size=n, p=shares / shares.sum())
    results: dict[str, list[tuple[float, int]]] = defaultdict(list)
    lock = threading.Lock()
    local = threading.local()

    def one(i: int) -> None:
        client = getattr(local, "client", None)
        if client is None:
            client = local.client = httpx.Client(timeout=60)
        name = names[plan[i]]
        start = time.perf_counter()
        try:
            status = kinds[name][2](client, i)
        except httpx.HTTPError as exc:  # a dropped connection counts as a failure
            status = -1
            print(f"{name}: {type(exc).__name__}: {exc}", file=sys.stderr)
        took = time.perf_counter() - start
        with lock:
            results[name].append((took, status))

    start = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(one, range(n)))
    return results, time.perf_counter() - start


def report(results: dict, wall: float, kinds: dict, console: Console) -> list[str]:
    pairs = len(results.get("write add+delete", []))  # two HTTP requests each
    http = sum(map(len, results.values())) + pairs
    table = Table(title=f"load test: {http:,} HTTP requests in {wall:.1f} s ({http / wall:.0f}/s)")
    for col in ("request", "n", "statuses", "expected", "p50 ms", "p99 ms", "req/s"):
        table.add_column(col, justify="left" if col in ("request", "statuses") else "right")
    failures = []
    for name in kinds:
        rows = results.get(name, [])
        if not rows:
            continue
        times = sorted(t for t, _ in rows)
        codes = Counter(s for _, s in rows)
        expected = kinds[name][0]
        bad = {c: k for c, k in codes.items() if c not in expected}
        if bad:
            failures.append(f"{name}: unexpected statuses {bad} (documented: {sorted(expected)})")
        table.add_row(
            name,
            str(len(rows)),
            ", ".join(f"{c}x{k}" for c, k in sorted(codes.items())),
            "/".join(map(str, sorted(expected))),
            f"{1000 * statistics.median(times):.1f}",
            f"{1000 * times[min(len(times) - 1, int(0.99 * len(times)))]:.1f}",
            f"{len(rows) / wall:.1f}",
        )
    every = sorted(t for rows in results.values() for t, _ in rows)
    table.add_row(
        "all", str(len(every)), "", "",
        f"{1000 * statistics.median(every):.1f}",
        f"{1000 * every[int(0.99 * (len(every) - 1))]:.1f}",
        f"{len(every) / wall:.1f}", style="bold",
    )  # fmt: skip
    console.print(table)
    fivexx = sum(1 for rows in results.values() for _, s in rows if s >= 500 or s < 0)
    if fivexx:
        failures.append(f"{fivexx} answers were 5xx or dropped connections")
    return failures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=10_000)
    parser.add_argument("--threads", type=int, default=8, help="client threads")
    parser.add_argument("--server-concurrency", type=int, default=16, help="--max-concurrency")
    parser.add_argument("--descriptor", default="color-hist")
    parser.add_argument("--copies", type=int, default=6, help="images per bundled photo")
    parser.add_argument("--max-rss-mb", type=float, default=2048, help="fail above this peak")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--skip", nargs="+", default=[], metavar="KIND", help="request types left out of the mix"
    )
    parser.add_argument(
        "--server-log", default=os.path.join(tempfile.gettempdir(), "load-serve.log")
    )
    args = parser.parse_args()
    if args.threads >= args.server_concurrency:
        parser.error("--threads must stay below --server-concurrency (a 503 counts as a failure)")
    console = Console(width=max(Console().width, 110))
    with tempfile.TemporaryDirectory() as tmp:
        index, ids, photos = make_index(Path(tmp), args.descriptor, args.copies)
        dim = json.loads((index / "manifest.json").read_text())["dim"]
        payloads = Payloads([p[::2, ::2] for p in photos], dim)
        port, token = free_port(), secrets.token_urlsafe(16)
        server = start_server(index, port, token, args)
        try:
            rss_start = rss_kb(server.pid)
            sampler = RssSampler(server.pid)
            sampler.start()
            driver = Driver(f"http://127.0.0.1:{port}", token, ids, payloads)
            results, wall = run_load(
                driver, args.requests, args.threads, args.seed, tuple(args.skip)
            )
            sampler.stop.set()
            peak = max(rss_kb(server.pid, "VmHWM"), sampler.peak)
            health = httpx.get(f"http://127.0.0.1:{port}/health").json()
            metrics = httpx.get(f"http://127.0.0.1:{port}/metrics").text
        finally:
            stop_server(server)
    console.print(
        f"index: {len(ids)} items ({args.descriptor}, dim {dim}); server RSS {rss_start / 1024:.0f} MB "
        f"at start, peak {peak / 1024:.0f} MB; {args.threads} client threads, server "
        f"--max-concurrency {args.server_concurrency}; count after the run {health['count']}"
    )
    failures = report(results, wall, driver.kinds(), console)
    if peak / 1024 > args.max_rss_mb:
        failures.append(f"peak RSS {peak / 1024:.0f} MB above --max-rss-mb {args.max_rss_mb:.0f}")
    if health["count"] != len(ids):
        failures.append(f"the index holds {health['count']} items after the run, not {len(ids)}")
    counted = sum(
        float(line.rsplit(" ", 1)[1])
        for line in metrics.splitlines()
        if line.startswith("lookalike_requests_total{")
    )
    console.print(f"/metrics: lookalike_requests_total sums to {counted:,.0f}")
    if not counted:
        failures.append("/metrics counts no request (lookalike_requests_total)")
    for line in failures:
        console.print(f"[red]FAIL[/red] {line}")
    if failures:
        raise SystemExit(1)
    console.print("[green]OK[/green]: no 5xx, every status as documented")


if __name__ == "__main__":
    main()
