"""Run directories: every training or evaluation run keeps its config, metrics, version and log.

Layout of ``<root>/<YYYYmmdd-HHMMSS>-<name>/`` (``runs/`` by default, in ``.gitignore``)::

    config.yaml    the resolved config (after overrides)
    version.json   lookalike version, git revision of the working tree (if any), python and torch versions
    metrics.json   written by :meth:`Run.write_metrics` (merged on each call)
    run.log        everything logged under the ``lookalike`` logger while the run is open
"""

from __future__ import annotations

import json
import logging
import os
import platform
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = ["Run", "git_revision", "start_run"]


def git_revision(path: str | os.PathLike[str] | None = None) -> str | None:
    """Git revision (``sha[+dirty]``) of the checkout holding ``path`` (default: this package)."""
    where = Path(path) if path is not None else Path(__file__).resolve().parent
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=where, capture_output=True, text=True, timeout=5
        )
        if sha.returncode != 0:
            return None
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=where,
            capture_output=True,
            text=True,
            timeout=5,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return sha.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")


class Run:
    """An open run directory. Use as a context manager to capture the log into ``run.log``.

    Example:
        >>> import tempfile
        >>> with start_run(tempfile.mkdtemp(), "demo", {"lr": 0.1}) as run:
        ...     _ = run.write_metrics({"fpr95": 0.05})
        >>> sorted(p.name for p in run.path.iterdir())
        ['config.yaml', 'metrics.json', 'run.log', 'version.json']
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._handler: logging.Handler | None = None

    def file(self, name: str) -> Path:
        """Path of a file inside the run directory."""
        return self.path / name

    def write_metrics(self, metrics: Mapping[str, Any]) -> Path:
        """Merge ``metrics`` into ``metrics.json`` and return its path."""
        target = self.path / "metrics.json"
        current = json.loads(target.read_text()) if target.exists() else {}
        current.update(metrics)
        target.write_text(json.dumps(current, indent=2, sort_keys=True, default=str) + "\n")
        return target

    def __enter__(self) -> Run:
        handler = logging.FileHandler(self.path / "run.log")
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        handler.setLevel(logging.INFO)
        logger = logging.getLogger("lookalike")
        if logger.level == logging.NOTSET or logger.level > logging.INFO:
            logger.setLevel(logging.INFO)
        logger.addHandler(handler)
        self._handler = handler
        return self

    def __exit__(self, *exc: object) -> None:
        if self._handler is not None:
            logging.getLogger("lookalike").removeHandler(self._handler)
            self._handler.close()
            self._handler = None


def start_run(root: str | os.PathLike[str], name: str, config: Any) -> Run:
    """Create ``<root>/<YYYYmmdd-HHMMSS>-<name>`` holding the resolved config and version info.

    Folders sort by start time; a second run started in the same second gets a ``-2`` suffix.

    Args:
        root: parent folder of run directories.
        name: run name (recipe name).
        config: a config dataclass or mapping (written as YAML).

    Returns:
        The :class:`Run` (not yet capturing the log; use ``with``).
    """
    import yaml

    from lookalike._version import __version__
    from lookalike.core.config import to_dict

    stamp = time.strftime("%Y%m%d-%H%M%S")
    path = Path(root) / f"{stamp}-{name}"
    suffix = 1
    while path.exists():
        suffix += 1
        path = Path(root) / f"{stamp}-{name}-{suffix}"
    path.mkdir(parents=True)
    (path / "config.yaml").write_text(yaml.safe_dump(to_dict(config), sort_keys=False))
    try:
        import torch

        torch_version = torch.__version__
    except ImportError:  # pragma: no cover
        torch_version = None
    version = {
        "lookalike": __version__,
        "git": git_revision(),
        "python": platform.python_version(),
        "torch": torch_version,
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    (path / "version.json").write_text(json.dumps(version, indent=2) + "\n")
    return Run(path)
