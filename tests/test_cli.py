"""The command line: every command documents an example, and errors are one sentence without a traceback."""

import subprocess
import sys
from pathlib import Path

import pytest

from neunn.cli import build_parser, main

COMMANDS = [["data", "check"], ["data", "phantom"], ["train"], ["evaluate"], ["predict"], ["demo"],
            ["experiment", "cv"], ["screen", "fit", "out-of-domain"], ["screen", "list"], ["adapt"]]


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_every_command_has_help_with_an_example(command, capsys):
    with pytest.raises(SystemExit) as info:
        build_parser().parse_args([*command, "--help"])
    assert info.value.code == 0
    assert "example:\n  neunn " + " ".join(command) in capsys.readouterr().out


@pytest.mark.parametrize("argv, message", [
    (["data", "check", "/no/such/folder"], "does not exist"),
    (["train", "/no/such/folder", "--out", "{tmp}/run"], "does not exist"),
    (["train", "{tmp}", "--out", "{tmp}/run", "epochs=0"], "epochs must be at least 1"),
    (["evaluate", "{tmp}"], "is not a trained NeuNN run"),
    (["predict", "{tmp}", "x.jpg"], "is not a trained NeuNN run"),
    (["screen", "fit", "out-of-domain", "{tmp}"], "is not a trained NeuNN run"),
    (["screen", "list", "{tmp}"], "is not a trained NeuNN run"),
    (["ood", "fit", "{tmp}"], "is now `neunn screen`"),
    (["adapt", "{tmp}", "{tmp}", "--shots", "5", "--out", "{tmp}/adapted"], "is not a trained NeuNN run"),
])
def test_errors_are_one_clear_sentence(argv, message, tmp_path: Path, capsys):
    code = main([a.replace("{tmp}", str(tmp_path)) for a in argv])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert err.startswith("error: ") and message in err and "Traceback" not in err
    assert len(err.splitlines()) == 1


def test_data_check_exit_code_follows_usability(phantom_dir: Path, tmp_path: Path, capsys):
    assert main(["data", "check", str(phantom_dir)]) == 0
    assert "Usable for training" in capsys.readouterr().out
    (tmp_path / "only").mkdir()
    (tmp_path / "only" / "a.txt").write_text("x")
    assert main(["data", "check", str(tmp_path)]) == 2


def test_python_dash_m_entry_point_runs():
    result = subprocess.run([sys.executable, "-m", "neunn", "--version"], capture_output=True, text=True,
                            env={"PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")})
    assert result.returncode == 0 and result.stdout.startswith("neunn ")
