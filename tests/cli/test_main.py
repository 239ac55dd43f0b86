from __future__ import annotations

import json
import subprocess
import sys

import pytest

from lookalike.cli.main import main


def test_help_lists_info(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0
    assert "info" in capsys.readouterr().out


def test_version(capsys):
    import lookalike

    with pytest.raises(SystemExit):
        main(["--version"])
    assert capsys.readouterr().out.strip() == f"lookalike {lookalike.__version__}"


def test_info_json(capsys):
    assert main(["info", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["threads"] >= 1 and "descriptor" in info["registered"]
    assert info["packages"]["torch"]


def test_info_table(capsys):
    assert main(["info"]) == 0
    assert "data root" in capsys.readouterr().out


def test_bad_subcommand_is_one_line_and_nonzero(capsys):
    with pytest.raises(SystemExit) as info:
        main(["frobnicate"])
    assert info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "invalid choice: 'frobnicate'" in err[0]


def test_errors_are_one_line_without_traceback(monkeypatch, capsys):
    from lookalike.cli import info as info_cmd
    from lookalike.core.errors import DataNotFoundError

    def broken():
        raise DataNotFoundError("data set 'x' not found: looked in /nowhere")

    monkeypatch.setattr(info_cmd, "collect_info", broken)
    assert main(["info"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["lookalike: error: data set 'x' not found: looked in /nowhere"]
    with pytest.raises(DataNotFoundError):
        main(["--debug", "info"])


def test_console_script_runs():
    out = subprocess.run(
        [sys.executable, "-m", "lookalike.cli.main", "--version"], capture_output=True, text=True
    )
    assert out.returncode == 0 and out.stdout.startswith("lookalike ")


def test_import_is_light():
    code = "import sys, lookalike; print(sorted(m for m in ('cv2','faiss','timm','torch') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
