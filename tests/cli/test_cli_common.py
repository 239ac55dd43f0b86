"""The argument set-up the evaluation commands share (``cli/_common.py``): ``--data``, ``--out`` /
``--runs``, comma lists, the output check and the run folder; and the commands that use them."""

from __future__ import annotations

import argparse

import pytest

from lookalike.cli._common import (
    OutputPathError,
    UntrainedModelError,
    add_data_argument,
    add_output_arguments,
    check_run_output,
    check_trained,
    result_dir,
    split_list,
)


def test_split_list_by_hand():
    assert split_list("a, b ,,c:d ") == ["a", "b", "c:d"]
    assert split_list(None) == [] and split_list("") == [] and split_list(" , ") == []


def test_shared_arguments_parse_and_say_their_defaults():
    parser = argparse.ArgumentParser()
    add_data_argument(parser, "folder of things")
    add_output_arguments(parser, "evaluate-things")
    args = parser.parse_args([])
    assert (args.data, args.out, args.runs) == (None, None, "runs")
    args = parser.parse_args(["--data", "d", "--out", "o", "--runs", "r"])
    assert (args.data, args.out, args.runs) == ("d", "o", "r")
    helps = {a.dest: a.help for a in parser._actions}
    assert helps["data"] == (
        "folder of things (default: LOOKALIKE_DATA, else ~/.cache/lookalike/data)"
    )
    assert helps["out"] == "output folder (default: runs/<timestamp>-evaluate-things)"


def test_check_run_output_and_result_dir(tmp_path):
    assert check_run_output(tmp_path / "new", tmp_path) == tmp_path / "new"
    assert check_run_output(None, tmp_path / "runs") is None  # may be created later
    (tmp_path / "file").write_text("x")
    with pytest.raises(OutputPathError, match=r"--out.*is a file"):
        check_run_output(tmp_path / "file", tmp_path)
    with pytest.raises(OutputPathError, match=r"--runs.*is a file"):
        check_run_output(None, tmp_path / "file")
    assert not (tmp_path / "new").exists()  # nothing created by the checks
    assert result_dir(tmp_path / "given", tmp_path, "cmd", {}) == tmp_path / "given"
    made = result_dir(None, tmp_path / "runs", "evaluate-x", {"k": 1})
    assert made.parent == tmp_path / "runs" and made.name.endswith("-evaluate-x")
    assert "k: 1" in (made / "config.yaml").read_text()


def test_check_trained_refuses_only_learned_registered_names():
    check_trained(["sift", "opencv-sift", "hardnet:bundled"], allow_random=False)
    check_trained(["hardnet"], allow_random=True)
    with pytest.raises(UntrainedModelError, match="hardnet"):
        check_trained(["sift", "hardnet"], allow_random=False)


@pytest.mark.parametrize(
    ("protocol", "command"),
    [
        ("matching", "evaluate-matching"),
        ("patches", "evaluate-patches"),
        ("retrieval", "evaluate-retrieval"),
    ],
)
def test_evaluate_commands_take_the_shared_arguments(protocol, command):
    from lookalike.cli.evaluate import add_commands

    parser = argparse.ArgumentParser()
    add_commands(parser.add_subparsers(dest="command"))
    extra = ["--benchmark", "ukbench"] if protocol == "retrieval" else []
    args = parser.parse_args(["evaluate", protocol, *extra])
    assert (args.data, args.out, args.runs, args.allow_random) == (None, None, "runs", False)
    sub = parser._subparsers._group_actions[0].choices["evaluate"]
    sub = sub._subparsers._group_actions[0].choices[protocol]
    helps = {a.dest: a.help for a in sub._actions}
    assert helps["out"] == f"output folder (default: runs/<timestamp>-{command})"
    assert "LOOKALIKE_DATA" in helps["data"]
