"""``lookalike serve``: options reach the app, errors come before the port is bound (uvicorn stubbed)."""

from __future__ import annotations

import pytest

from lookalike.cli.main import main


@pytest.fixture
def ran(monkeypatch):
    """Replace uvicorn.run: record what it was given instead of serving."""
    import uvicorn

    calls = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: calls.append((app, kw)))
    return calls


def test_serve_builds_the_app_and_runs_uvicorn(built, ran, monkeypatch):
    monkeypatch.setenv("TEST_WRITE_TOKEN", "abc")
    code = main(
        [
            "serve",
            str(built.path),
            "--port",
            "8123",
            "--allow-writes",
            "--token-env",
            "TEST_WRITE_TOKEN",
            "--max-upload-mb",
            "0.5",
            "--max-concurrency",
            "3",
            "--max-k",
            "7",
        ]
    )
    assert code == 0 and len(ran) == 1
    app, kw = ran[0]
    assert kw["host"] == "127.0.0.1" and kw["port"] == 8123 and kw["workers"] == 1
    s = app.state.settings
    assert s.allow_writes and s.token == "abc" and s.read_token is None
    assert s.max_upload_bytes == 512 * 1024 and s.max_concurrency == 3 and s.max_k == 7
    assert len(app.state.engine.index) == len(built.ids)


def test_missing_token_variable_fails_before_serving(built, ran, monkeypatch, capsys):
    monkeypatch.delenv("NO_SUCH_TOKEN_VAR", raising=False)
    code = main(["serve", str(built.path), "--read-token-env", "NO_SUCH_TOKEN_VAR"])
    assert code == 1 and not ran
    assert "NO_SUCH_TOKEN_VAR is unset or empty" in capsys.readouterr().err


def test_bad_index_fails_before_serving(tmp_path, ran, capsys):
    assert main(["serve", str(tmp_path / "nothing")]) == 1 and not ran
    assert "no index at" in capsys.readouterr().err


@pytest.mark.parametrize(
    "args", [["--max-upload-mb", "0"], ["--max-concurrency", "-2"], ["--max-k", "x"]]
)
def test_bad_options_are_usage_errors(built, ran, args):
    with pytest.raises(SystemExit) as info:
        main(["serve", str(built.path), *args])
    assert info.value.code == 2 and not ran
