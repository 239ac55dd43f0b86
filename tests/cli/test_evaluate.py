"""``lookalike evaluate``: missing data says how to point at it; untrained networks are refused."""

from __future__ import annotations

import pytest

from lookalike.cli.main import main


@pytest.mark.parametrize("protocol", ["matching", "patches"])
def test_missing_data_folder_says_how_to_fix_it(protocol, tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("LOOKALIKE_DATA", raising=False)
    monkeypatch.setenv("LOOKALIKE_HOME", str(tmp_path / "home"))
    code = main(
        ["evaluate", protocol, "--descriptors", "opencv-sift", "--out", str(tmp_path / "o")]
    )
    err = capsys.readouterr().err
    assert code == 1
    assert f"no such folder: {tmp_path / 'home' / 'data'}" in err
    assert "LOOKALIKE_DATA" in err and "--data" in err
    for layout in ("hpatches-sequences/", "oxford-affine/", "evd/"):
        assert layout in err
    assert not (tmp_path / "o").exists()


def test_empty_data_folder_lists_the_layouts(tmp_path, capsys):
    code = main(["evaluate", "matching", "--data", str(tmp_path), "--descriptors", "opencv-sift"])
    err = capsys.readouterr().err
    assert code == 1 and "no homography sequence" in err and "oxford-affine/" in err


@pytest.mark.parametrize("protocol", ["matching", "patches"])
def test_untrained_network_is_refused(protocol, tmp_path, monkeypatch, capsys):
    from lookalike._registry import get_entry

    monkeypatch.setattr(
        get_entry("descriptor", "hardnet").factory, "needs_weights", True, raising=False
    )
    args = ["evaluate", protocol, "--data", str(tmp_path), "--descriptors", "hardnet"]
    assert main(args) == 1
    assert "--allow-random" in capsys.readouterr().err
    # with --allow-random the check passes and the (empty) data folder is the next error
    assert main([*args, "--allow-random"]) == 1
    assert "no homography sequence" in capsys.readouterr().err


def test_matching_options_are_choices(capsys):
    from lookalike.cli.main import main

    for option in (["--matcher", "bogus"], ["--detector", "bogus"]):
        with pytest.raises(SystemExit) as exc:
            main(["evaluate", "matching", *option])
        assert exc.value.code == 2
        assert "invalid choice" in capsys.readouterr().err
