"""Patch-family ablation (issue 14): HardNet vs +SE, +CBAM, +attention pooling, STN-HardNet, multi-scale.

Every row is trained with the same recipe and budget (``configs/ablation/<row>.yaml``: the bundled recipe of
``configs/hardnet_bundled.yaml`` shortened to 250 steps of 256 pairs, seed 0), then all rows and the shipped
``hardnet:bundled`` are evaluated together, on the same keypoints and patches, with
``lookalike evaluate patches`` and ``lookalike evaluate matching``. One table:

- validation FPR95 on the synthetic validation split (held-out bundled photos; the ONLY number to select on),
- patch-table matching mAP (easy / hard / tough),
- image matching MMA@3 and homography accuracy H@3 per data set,
- parameters, and describe time per 1000 patches (eval mode, 2 threads, all rows timed interleaved in one
  process; the ratio is to the first row, the shipped HardNet: a noisy machine slows every row alike).

The budget (``--steps``, ``--batch-size``) is the same for every row; the defaults are the configs' 250 × 256.

Trained runs are reused (the newest ``weights.safetensors`` under ``<runs>/s<steps>b<batch>/<row>/``) unless
``--retrain``; ``--train-only`` stops after training.
Heavy steps can be serialised with other jobs through ``--lock FILE`` (each train / evaluate command runs
under ``flock FILE``).

Usage::

    python benchmarks/ablation_patch.py --data /work/shared/data               # train what is missing, evaluate
    python benchmarks/ablation_patch.py --data DIR --rows hardnet,hardnet_se   # some rows only
    python benchmarks/ablation_patch.py --data DIR --lock /tmp/cpu.lock --out runs/ablation/table
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "configs" / "ablation"
#: Rows in table order (config file stems); the reference row first.
ROWS = ("hardnet", "hardnet_se", "hardnet_cbam", "hardnet_attnpool", "stn_hardnet", "hardnet_ms")
SHIPPED = "hardnet:bundled"
LEVELS = ("easy", "hard", "tough")


def _command(args: list[str], lock: str | None) -> list[str]:
    return (["flock", lock] if lock else []) + args


def _run(args: list[str], lock: str | None, log: Path) -> None:
    """Run a command (under the lock), its output to ``log``; stop the script if it fails."""
    cmd = _command(args, lock)
    print(f"$ {' '.join(cmd)}  > {log}", flush=True)
    start = time.perf_counter()
    with log.open("w") as out:
        rc = subprocess.call(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)
    print(f"  rc {rc} in {time.perf_counter() - start:.0f} s", flush=True)
    if rc:
        sys.exit(f"failed ({rc}): see {log}")


def _newest_weights(folder: Path) -> Path | None:
    found = sorted(folder.glob("*/weights.safetensors"))
    return found[-1] if found else None


def train_rows(
    rows: list[str], runs: Path, budget: tuple[int, int], *, retrain: bool, lock: str | None
) -> dict[str, Path]:
    """Train every row whose weights are missing (all with ``retrain``); row -> weights path.

    ``budget`` is ``(steps, batch_size)``, the same for every row; runs go to
    ``<runs>/s<steps>b<batch>/<row>/``.
    """
    steps, batch = budget
    weights = {}
    for row in rows:
        folder = runs / f"s{steps}b{batch}" / row
        found = None if retrain else _newest_weights(folder)
        if found is None:
            folder.mkdir(parents=True, exist_ok=True)
            cli = [sys.executable, "-m", "lookalike", "train", "--config"]
            cli += [str(CONFIGS / f"{row}.yaml"), "--quiet", f"out_dir={folder}"]
            cli += [f"steps={steps}", f"batch_size={batch}", f"val_every={max(1, steps // 4)}"]
            _run(cli, lock, folder / "train.log")
            found = _newest_weights(folder)
        if found is None:
            sys.exit(f"no weights for {row} under {folder}")
        weights[row] = found
    return weights


def validation_fpr95(specs: dict[str, str]) -> dict[str, float]:
    """FPR95 of every spec on the recipe's synthetic validation split (every held-out point)."""
    import torch

    import lookalike
    from lookalike._registry import build_component, split_spec
    from lookalike.core.config import load_config
    from lookalike.train.recipe import TrainRecipe
    from lookalike.train.report import validate
    from lookalike.train.tasks import build_task

    torch.set_num_threads(2)
    recipe = load_config(TrainRecipe, CONFIGS / "hardnet.yaml", [])
    task = build_task(recipe.task.name, **recipe.task.kwargs)
    data = build_component(recipe.data, "dataset", **task.data_kwargs(recipe))
    val = data.validation_set(n_points=recipe.val_points)
    out = {}
    for label, spec in specs.items():
        name, weights = split_spec(spec)
        model = lookalike.create("descriptor", name, weights=weights)
        out[label] = validate(model, val, torch.device("cpu"))
    return out


def parameters(specs: dict[str, str]) -> dict[str, int]:
    import lookalike
    from lookalike._registry import split_spec

    out = {}
    for label, spec in specs.items():
        name, weights = split_spec(spec)
        model = lookalike.create("descriptor", name, weights=weights)
        out[label] = sum(p.numel() for p in model.parameters())
    return out


def speed(specs: dict[str, str], rounds: int = 5, n: int = 1024) -> dict[str, float]:
    """Median ms per 1000 patches of every spec (eval mode, 2 threads), timed interleaved round by round."""
    import statistics

    import torch
    from _timing import interleaved

    import lookalike
    from lookalike._registry import split_spec

    torch.set_num_threads(2)
    x = torch.rand(n, 1, 32, 32, generator=torch.Generator().manual_seed(0))
    fns = {}
    for label, spec in specs.items():
        name, weights = split_spec(spec)
        model = lookalike.create("descriptor", name, weights=weights).eval()
        fns[label] = lambda model=model: _no_grad(model, x)
    times = interleaved(fns, rounds)
    return {label: 1000 * statistics.median(t) * 1000 / n for label, t in times.items()}


def _no_grad(model, x):
    import torch

    with torch.no_grad():
        return model(x)


def evaluate(
    specs: dict[str, str], data: str, out: Path, lock: str | None, options: dict[str, list[str]]
) -> dict[str, dict]:
    """``lookalike evaluate patches`` and ``matching`` on all specs at once; protocol -> results.json."""
    joined = ",".join(specs.values())
    results = {}
    for protocol in ("patches", "matching"):
        folder = out / protocol
        if folder.exists():
            shutil.rmtree(folder)
        cli = [sys.executable, "-m", "lookalike", "evaluate", protocol, "--data", data]
        cli += ["--descriptors", joined, "--out", str(folder)]
        cli += options[protocol]
        _run(cli + (["--quiet"] if protocol == "patches" else []), lock, out / f"{protocol}.log")
        results[protocol] = json.loads((folder / "results.json").read_text())
    return results


def _patch_row(results: dict, spec: str, index: int) -> dict:
    from lookalike.eval.protocols.describers import _label

    row = results["rows"][index]
    if row["name"] not in (spec, _label(spec)):
        sys.exit(f"patch table row {index} is {row['name']!r}, expected {spec!r}")
    return row


def table(
    specs: dict[str, str],
    val: dict[str, float],
    params: dict[str, int],
    ms: dict[str, float],
    results: dict[str, dict],
) -> str:
    """The ablation table in markdown."""
    matching = results["matching"]
    thresholds = matching["thresholds"]
    at3 = thresholds.index(3)
    groups = sorted({g for d in matching["descriptors"].values() for g in d["groups"]})
    head = ["row", "val FPR95 (synthetic) ↓", "params"]
    head += [f"patch mAP {level}" for level in LEVELS] + ["ms / 1k patches"]
    reference = next(iter(ms.values()))
    for group in [*groups, "all"]:
        head += [f"MMA@3 {group}", f"H@3 {group}"]
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for index, (label, spec) in enumerate(specs.items()):
        patch = _patch_row(results["patches"], spec, index)
        mat = matching["descriptors"][spec]
        cells = [label, f"{100 * val[label]:.2f} %", f"{params[label]:,}"]
        cells += [f"{patch['results']['all'][f'matching/{level}']:.3f}" for level in LEVELS]
        cells.append(f"{ms[label]:.0f} ({ms[label] / reference:.2f}×)")
        for summary in [*(mat["groups"][g] for g in groups), mat["overall"]]:
            cells += [f"{summary['mma'][at3]:.3f}", f"{summary['homography_accuracy']['3']:.3f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="evaluation sequences (evaluation only)")
    parser.add_argument("--rows", default=",".join(ROWS), help="comma-separated config stems")
    parser.add_argument("--runs", default="runs/ablation", help="parent of the training runs")
    parser.add_argument("--out", default="runs/ablation/table", help="evaluation results folder")
    parser.add_argument("--sequences", default=None, help="evaluate only these (a quick check)")
    parser.add_argument("--steps", type=int, default=250, help="training steps of every row")
    parser.add_argument("--batch-size", type=int, default=256, help="pairs per step, every row")
    parser.add_argument("--budget", type=int, default=1000, help="evaluate patches --budget")
    parser.add_argument("--max-keypoints", type=int, default=2048, help="evaluate matching option")
    parser.add_argument("--train-only", action="store_true", help="stop after training")
    parser.add_argument("--retrain", action="store_true", help="train every row again")
    parser.add_argument("--lock", default=None, help="run each heavy command under flock LOCK")
    args = parser.parse_args()
    rows = [r.strip() for r in args.rows.split(",") if r.strip()]
    unknown = sorted(set(rows) - set(ROWS))
    if unknown:
        sys.exit(f"--rows: unknown {unknown}; choose from {list(ROWS)}")
    runs, out = (ROOT / args.runs).resolve(), (ROOT / args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    budget = (args.steps, args.batch_size)
    trained = train_rows(rows, runs, budget, retrain=args.retrain, lock=args.lock)
    if args.train_only:
        return
    specs = {"hardnet:bundled (shipped, 800×512)": SHIPPED}
    for row, weights in trained.items():
        copy = out / "weights" / f"{row}.safetensors"
        copy.parent.mkdir(exist_ok=True)
        shutil.copyfile(weights, copy)
        specs[f"{row} ({args.steps}×{args.batch_size})"] = f"{_model_name(row)}:{copy}"
    val = validation_fpr95(specs)
    for label, weights in zip(list(specs)[1:], trained.values()):
        logged = json.loads((weights.parent / "metrics.json").read_text())["val_fpr95"]
        print(f"{label}: validation FPR95 {val[label]:.4f} (training run logged {logged:.4f})")
    params = parameters(specs)
    ms = speed(specs)
    picked = ["--sequences", args.sequences] if args.sequences else []
    options = {
        "patches": [*picked, "--budget", str(args.budget)],
        "matching": [*picked, "--max-keypoints", str(args.max_keypoints)],
    }
    results = evaluate(specs, args.data, out, args.lock, options)
    text = table(specs, val, params, ms, results)
    (out / "ablation.md").write_text(text + "\n")
    (out / "ablation.json").write_text(
        json.dumps(
            {"specs": specs, "val_fpr95": val, "params": params, "ms_per_1000": ms}, indent=1
        )
    )
    print(text)
    print(f"\nwrote {out / 'ablation.md'}")


def _model_name(row: str) -> str:
    """The registered descriptor a row's config trains."""
    import yaml

    return yaml.safe_load((CONFIGS / f"{row}.yaml").read_text())["model"]["name"]


if __name__ == "__main__":
    main()
