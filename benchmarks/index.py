"""Vector index speed and recall: our index API against raw faiss on the same index, one run.

(a) API overhead: ``FaissIndex.search`` (input checks, cosine normalisation, labels -> string ids)
    against raw ``faiss_index.search`` on the very same faiss index with the same parameters
    (N x D clustered vectors, default 100k x 128, 1,000 queries, k = 10), for Flat, IVF and HNSW.
    Goal: ours >= 0.95x raw QPS. Our exact torch index (``flat``) is timed beside them.
(b) Approximate search: recall@10 against exact search and QPS of IVF (several ``nprobe``) and HNSW
    (several ``ef_search``) on the same clustered data. Goal: recall@10 >= 0.95 at >= 30k QPS.
(c) ``--ivfpq-1m``: a 1M x 128 IVF-PQ index (``--ivfpq-factory``, default IVF4096,PQ32: 8-bit codes,
    32 bytes per vector) trained on a 100k-row sample with 10 k-means iterations (coarse quantizer
    and PQ codebooks), built and searched: build time, RSS growth and peak, index bytes, QPS and
    recall@10 against exact search for several ``nprobe``.
(d) ``--milvus``: Milvus Lite (embedded, FLAT) insert time, QPS and recall@10 beside faiss Flat.

Candidates are timed interleaved, round after round, so load from other processes hits them alike;
QPS is queries / median time, ratios are medians of per-round ratios.

Usage::

    .venv/bin/python benchmarks/index.py                           # 100k x 128, 1000 queries
    .venv/bin/python benchmarks/index.py --n 20000 --rounds 3 --milvus --milvus-n 20000
    .venv/bin/python benchmarks/index.py --ivfpq-1m                # adds the 1M IVF-PQ row
"""

from __future__ import annotations

import argparse
import resource
import statistics
import tempfile
import time

import faiss
import numpy as np
from _timing import interleaved
from rich.console import Console
from rich.table import Table

from lookalike.index.faiss import FaissIndex
from lookalike.index.flat import FlatIndex


def clustered(
    n: int, d: int, *, clusters: int = 1000, intrinsic: int = 16, seed: int = 0
) -> np.ndarray:
    """Rows around random unit centres, spread along a shared low-dimensional subspace, L2-normalised."""
    shared = np.random.default_rng(12345)
    centres = shared.normal(size=(clusters, d))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    basis = np.linalg.qr(shared.normal(size=(d, intrinsic)))[0].T
    rng = np.random.default_rng(seed)
    x = np.empty((n, d), dtype=np.float32)
    for start in range(0, n, 100_000):
        m = min(n, start + 100_000) - start
        z = rng.normal(size=(m, intrinsic)) @ basis * (0.4 / np.sqrt(intrinsic))
        z += centres[rng.integers(0, clusters, m)] + 0.02 * rng.normal(size=(m, d)) / np.sqrt(d)
        x[start : start + m] = z
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def recall(found: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([len(set(f) & set(t)) / truth.shape[1] for f, t in zip(found, truth)]))


def build(x: np.ndarray, factory: str, **kw: object) -> tuple[FaissIndex, float]:
    start = time.perf_counter()
    index = FaissIndex(dim=x.shape[1], metric="cosine", factory=factory, **kw)
    index.add([str(i) for i in range(x.shape[0])], x)
    return index, time.perf_counter() - start


def raw_params(index: FaissIndex, k: int) -> faiss.SearchParameters:
    return index._params(k, None, None)


def overhead(x, q, truth, args, console) -> None:
    table = Table(
        title=f"(a) our API vs raw faiss, same index and parameters ({len(x)} x {x.shape[1]}, {len(q)} queries, k=10)"
    )
    for col in ("index", "build s", "ours QPS", "raw faiss QPS", "ours / raw", "recall@10"):
        table.add_column(col, justify="right")
    for factory in args.factories:
        index, secs = build(x, factory)
        raw, params = index.faiss_index, raw_params(index, 10)
        times = interleaved(
            {
                "ours": lambda i=index: i.search(q, k=10),
                "raw": lambda r=raw, p=params: r.search(q, 10, params=p),
            },
            args.rounds,
        )
        ratio = statistics.median(r / o for o, r in zip(times["ours"], times["raw"]))
        found = index.search(q, k=10).labels
        table.add_row(
            factory,
            f"{secs:.1f}",
            f"{len(q) / statistics.median(times['ours']):,.0f}",
            f"{len(q) / statistics.median(times['raw']):,.0f}",
            f"{ratio:.3f}",
            f"{recall(found, truth):.3f}",
        )
    flat = FlatIndex(dim=x.shape[1], metric="cosine")
    flat.add([str(i) for i in range(len(x))], x)
    t = interleaved({"flat": lambda: flat.search(q, k=10)}, args.rounds)["flat"]
    table.add_row(
        "flat (torch)",
        "-",
        f"{len(q) / statistics.median(t):,.0f}",
        "-",
        "-",
        f"{recall(flat.search(q, k=10).labels, truth):.3f}",
    )
    console.print(table)


def approximate(x, q, truth, args, console) -> None:
    table = Table(title="(b) approximate search on clustered data: recall@10 vs exact, QPS (ours)")
    for col in ("index", "param", "recall@10", "QPS", "build s"):
        table.add_column(col, justify="right")
    runs = [(args.ivf, "nprobe", args.nprobes), (args.hnsw, "ef_search", args.efs)]
    for factory, name, values in runs:
        index, secs = build(x, factory)
        for v in values:
            fn = lambda i=index, n=name, v=v: i.search(q, k=10, **{n: v})  # noqa: E731
            t = statistics.median(interleaved({"s": fn}, args.rounds)["s"])
            table.add_row(
                factory,
                f"{name}={v}",
                f"{recall(fn().labels, truth):.3f}",
                f"{len(q) / t:,.0f}",
                f"{secs:.1f}",
            )
    console.print(table)


def _rss_bytes() -> int:
    """Current resident set size of this process (Linux ``/proc/self/statm``)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize()


def ivfpq_1m(args, console) -> None:
    """1M x 128 IVF-PQ: coarse k-means and 8-bit PQ codebooks trained on a sample, bounded iterations.

    8-bit PQ training was slow here: faiss's IVF-PQ does polysemous training by default (a
    simulated-annealing reordering of the codes, only used by polysemous search; about two minutes
    on a 20k sample with PQ32 here), which is switched off. The index trains on ``--train-size``
    random rows with ``--kmeans-iters`` iterations for both the coarse quantizer and the PQ
    codebooks, then adds all 1M rows.
    """
    x = clustered(1_000_000, 128, seed=1)
    q = clustered(args.queries, 128, seed=2)
    start = time.perf_counter()
    exact = faiss.IndexFlatIP(128)
    exact.add(x)
    truth = exact.search(q, 10)[1]
    exact_secs = time.perf_counter() - start
    del exact
    rss0 = _rss_bytes()
    start = time.perf_counter()
    index = FaissIndex(
        dim=128, metric="cosine", factory=args.ivfpq_factory, train_size=args.train_size
    )
    ivf = faiss.downcast_index(faiss.extract_index_ivf(index.faiss_index))
    ivf.cp.niter = args.kmeans_iters  # coarse quantizer
    if hasattr(ivf, "pq"):
        ivf.pq.cp.niter = args.kmeans_iters  # PQ codebooks
        ivf.do_polysemous_training = False  # minutes of code reordering only polysemous search uses
    index.add([str(i) for i in range(x.shape[0])], x)
    secs = time.perf_counter() - start
    grown = _rss_bytes() - rss0
    with tempfile.TemporaryDirectory() as tmp:
        folder = index.save(f"{tmp}/ivfpq")
        size = sum(p.stat().st_size for p in folder.iterdir())
    table = Table(
        title=f"(c) 1M x 128 IVF-PQ ({args.ivfpq_factory}, trained on {args.train_size:,} rows, "
        f"{args.kmeans_iters} k-means iterations; exact search for the truth {exact_secs:.0f} s)"
    )
    for col in ("index", "nprobe", "build s", "QPS", "recall@10", "RSS growth GB", "peak RSS GB"):
        table.add_column(col, justify="right")
    table.add_column("files MB", justify="right")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    for nprobe in args.ivfpq_nprobes:
        index.search(q[:10], k=10, nprobe=nprobe)  # warm-up
        start = time.perf_counter()
        found = index.search(q, k=10, nprobe=nprobe).labels
        t = time.perf_counter() - start
        table.add_row(
            args.ivfpq_factory,
            str(nprobe),
            f"{secs:.0f}",
            f"{len(q) / t:,.0f}",
            f"{recall(found, truth):.3f}",
            f"{grown / 2**30:.2f}",
            f"{peak / 2**30:.2f}",
            f"{size / 2**20:.0f}",
        )
    console.print(table, width=max(console.width, 132))


def milvus(args, console) -> None:
    from lookalike.index.milvus import MilvusIndex

    x = clustered(args.milvus_n, 128, seed=1)
    q = clustered(args.queries, 128, seed=2)
    truth = faiss.IndexFlatIP(128)
    truth.add(x)
    gt = truth.search(q, 10)[1]
    table = Table(title=f"(d) Milvus Lite (FLAT) vs faiss Flat, {len(x)} x 128, {len(q)} queries")
    for col in ("index", "insert s", "QPS", "recall@10", "QPS / faiss QPS"):
        table.add_column(col, justify="right")
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        mil = MilvusIndex(dim=128, metric="cosine", uri=f"{tmp}/m.db")
        mil.add([str(i) for i in range(len(x))], x)
        insert = time.perf_counter() - start
        fai, fsecs = build(x, "Flat")
        times = interleaved(
            {"milvus": lambda: mil.search(q, k=10), "faiss": lambda: fai.search(q, k=10)},
            args.rounds,
        )
        ratio = statistics.median(f / m for m, f in zip(times["milvus"], times["faiss"]))
        m_found = [[int(i) for i in row] for row in mil.search(q, k=10).ids]
        table.add_row(
            "milvus-lite",
            f"{insert:.1f}",
            f"{len(q) / statistics.median(times['milvus']):,.0f}",
            f"{recall(np.array(m_found), gt):.3f}",
            f"{ratio:.3f}",
        )
        table.add_row(
            "faiss Flat",
            f"{fsecs:.1f}",
            f"{len(q) / statistics.median(times['faiss']):,.0f}",
            f"{recall(fai.search(q, k=10).labels, gt):.3f}",
            "1",
        )
        mil.close()
    console.print(table)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument(
        "--threads", type=int, default=0, help="faiss OpenMP threads (0: faiss's default)"
    )
    parser.add_argument("--factories", nargs="+", default=["Flat", "IVF1024,Flat", "HNSW32"])
    parser.add_argument("--ivf", default="IVF1024,Flat")
    parser.add_argument("--nprobes", type=int, nargs="+", default=[16, 32, 64])
    parser.add_argument("--hnsw", default="HNSW32")
    parser.add_argument("--efs", type=int, nargs="+", default=[32, 64, 128])
    parser.add_argument(
        "--ivfpq-1m", action="store_true", help="add the 1M x 128 IVF-PQ build (slow)"
    )
    parser.add_argument(
        "--ivfpq-factory", default="IVF4096,PQ32", help="8-bit PQ: 32 bytes per vector"
    )
    parser.add_argument("--train-size", type=int, default=100_000, help="IVF-PQ training sample")
    parser.add_argument(
        "--kmeans-iters", type=int, default=10, help="k-means iterations (coarse and PQ)"
    )
    parser.add_argument("--ivfpq-nprobes", type=int, nargs="+", default=[64, 256])
    parser.add_argument(
        "--milvus", action="store_true", help="add Milvus Lite (needs pymilvus, milvus-lite)"
    )
    parser.add_argument("--milvus-n", type=int, default=100_000)
    parser.add_argument("--skip-main", action="store_true", help="only the optional parts")
    args = parser.parse_args()
    if args.threads:
        faiss.omp_set_num_threads(args.threads)
    console = Console()
    console.print(f"faiss {faiss.__version__}, {faiss.omp_get_max_threads()} threads")
    if not args.skip_main:
        x = clustered(args.n, args.dim, seed=1)
        q = clustered(args.queries, args.dim, seed=2)
        exact = faiss.IndexFlatIP(args.dim)
        exact.add(x)
        truth = exact.search(q, 10)[1]
        overhead(x, q, truth, args, console)
        approximate(x, q, truth, args, console)
    if args.ivfpq_1m:
        ivfpq_1m(args, console)
    if args.milvus:
        milvus(args, console)


if __name__ == "__main__":
    main()
