"""A command line that never shows a traceback: every --help works, and each command's typical mistake gives one
sentence and a non-zero exit status."""

from __future__ import annotations

import argparse
import os
import pty
import select
import signal
import shutil
import sys
import time
from pathlib import Path

import pytest

import neunn.training.setup
import neunn.training.train
from neunn.cli import build_parser, main
from neunn.errors import NeunnError

SRC = Path(__file__).resolve().parents[1] / "src"
PHANTOM_CLASSES = "BAC, CRY, DB, GBI, HJBLI, HYP, NEU"


def _command_paths(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Every command and subcommand of the argparse tree, as the words that name it (``()`` for ``neunn`` itself)."""
    found = [path]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                found += _command_paths(child, (*path, name))
    return found


@pytest.mark.parametrize("path", _command_paths(build_parser()), ids=lambda path: " ".join(path) or "neunn")
def test_help_of_every_command_works(path, capsys):
    with pytest.raises(SystemExit) as info:
        build_parser().parse_args([*path, "--help"])
    assert info.value.code == 0
    assert capsys.readouterr().out.strip()


def _one_sentence(capsys, code: int, message: str, *, exit_code: int = 2, alone: bool = True) -> str:
    """The error printed, checked to be one line holding ``message``, with no traceback and the exit status; the only
    line printed, unless ``alone`` is False (a training run's progress comes before it)."""
    err = capsys.readouterr().err.strip()
    assert code == exit_code, err
    assert "Traceback" not in err
    assert len(err.splitlines()) == 1 or not alone, err
    last = err.splitlines()[-1]
    assert message in last, err
    return last


def _refused_by_argparse(argv: list[str], message: str, capsys) -> None:
    with pytest.raises(SystemExit) as info:
        main(argv)
    err = capsys.readouterr().err.strip()
    assert info.value.code == 2
    assert "Traceback" not in err
    assert err.splitlines()[-1].endswith(message), err


def _no_scan(*args, **kwargs):
    raise AssertionError("the dataset was read before the config was checked")


@pytest.mark.parametrize("override, message", [
    ("lr=-1", "lr must be at least 0, got -1.0."),
    ("epochs=0", "epochs must be at least 1, got 0."),
    ("batch_size=0", "batch_size must be at least 1, got 0."),
    ("weight_decay=-0.1", "weight_decay must be at least 0"),
    ("drop_rate=1.5", "drop_rate must be in [0, 1)"),
    ("model=notamodel", "Unknown model 'notamodel'"),
    ("critical_classes=[XYZ]", f"'XYZ', which is not a class of the dataset {{data}}; its classes are "
                               f"{PHANTOM_CLASSES}."),
])
def test_a_bad_training_config_is_one_sentence_before_any_image_is_read(override, message, phantom_dir: Path,
                                                                         tmp_path: Path, capsys, monkeypatch):
    monkeypatch.setattr(neunn.training.setup, "scan_dataset", _no_scan)
    out = tmp_path / "run"
    code = main(["train", str(phantom_dir), "--out", str(out), override])
    _one_sentence(capsys, code, message.replace("{data}", str(phantom_dir)))
    assert not out.exists()


def _fail_to_build_the_model(*args, **kwargs):
    raise NeunnError("The model could not be built (a test stands in for it).")


def test_a_run_that_fails_before_its_first_epoch_leaves_no_folder(phantom_dir: Path, tmp_path: Path, capsys,
                                                                   monkeypatch):
    monkeypatch.setattr(neunn.training.train, "classifier_for_config", _fail_to_build_the_model)
    out, empty = tmp_path / "run", tmp_path / "empty"
    empty.mkdir()
    for folder in (out, empty):
        code = main(["train", str(phantom_dir), "--out", str(folder), "model=resnet10t", "img_size=48", "workers=1"])
        _one_sentence(capsys, code, "could not be built", alone=False)
    assert not out.exists()
    assert empty.is_dir() and not any(empty.iterdir())  # a folder made before keeps being there, as empty as it was


def test_a_failed_resume_keeps_the_run(trained_run: Path, phantom_dir: Path, tmp_path: Path, capsys, monkeypatch):
    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    before = sorted(p.relative_to(run) for p in run.rglob("*"))
    monkeypatch.setattr(neunn.training.train, "classifier_for_config", _fail_to_build_the_model)
    code = main(["train", str(phantom_dir), "--out", str(run), "--resume"])
    _one_sentence(capsys, code, "could not be built", alone=False)
    assert sorted(p.relative_to(run) for p in run.rglob("*")) == before


def test_a_folder_holding_something_else_is_never_removed(phantom_dir: Path, tmp_path: Path, capsys):
    out = tmp_path / "busy"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    _one_sentence(capsys, main(["train", str(phantom_dir), "--out", str(out)]), "is not empty")
    assert (out / "notes.txt").read_text() == "mine"


def _interrupt(*args, **kwargs):
    raise KeyboardInterrupt


def test_ctrl_c_in_training_says_how_to_resume_and_keeps_the_folder(phantom_dir: Path, tmp_path: Path, capsys,
                                                                     monkeypatch):
    monkeypatch.setattr(neunn.training.train, "classifier_for_config", _interrupt)
    out = tmp_path / "run"
    code = main(["train", str(phantom_dir), "--out", str(out), "model=resnet10t", "img_size=48", "workers=1"])
    _one_sentence(capsys, code, "with --resume", exit_code=130, alone=False)
    assert (out / "config.yaml").is_file()  # what --resume continues from (epoch 1: no checkpoint was written)


def test_ctrl_c_elsewhere_says_only_interrupted(phantom_dir: Path, capsys, monkeypatch):
    monkeypatch.setattr("neunn.data.scan.scan_dataset", _interrupt)
    code = main(["data", "check", str(phantom_dir)])
    assert _one_sentence(capsys, code, "interrupted", exit_code=130) == "interrupted"


def test_predict_into_a_folder_is_one_sentence(trained_run: Path, phantom_dir: Path, tmp_path: Path, capsys):
    code = main(["predict", str(trained_run), str(phantom_dir / "GBI"), "--out", str(tmp_path)])
    _one_sentence(capsys, code, f"Cannot write {tmp_path}: it is a folder")


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs Linux's /proc, where no file can be made")
def test_predict_to_an_unwritable_place_is_one_sentence(trained_run: Path, phantom_dir: Path, capsys):
    code = main(["predict", str(trained_run), str(phantom_dir / "GBI"), "--out", "/proc/x.csv"])
    _one_sentence(capsys, code, "Cannot write /proc/x.csv (")


def test_predict_with_an_unknown_critical_class_names_the_classes(trained_run: Path, phantom_dir: Path, capsys):
    code = main(["predict", str(trained_run), str(phantom_dir / "GBI"), "--critical", "XYZ"])
    _one_sentence(capsys, code, f"Critical class 'XYZ' is not a class of this model; its classes are "
                                f"{PHANTOM_CLASSES}.")


@pytest.mark.parametrize("option, message", [
    (["--quantile", "2"], "The out-of-domain quantile must be between 0 and 1, got 2.0."),
    (["--method", "bogus"], "Unknown out-of-domain method 'bogus'"),
])
def test_fitting_the_out_of_domain_screen_checks_its_options_before_reading_images(option, message, trained_run: Path,
                                                                                    capsys, monkeypatch):
    monkeypatch.setattr("neunn.training.out_of_domain._decode_split", _no_scan)
    _one_sentence(capsys, main(["screen", "fit", "out-of-domain", str(trained_run), *option]), message)


@pytest.mark.parametrize("argv, message", [
    (["predict", "RUN", "x.png", "--batch-size", "0"], "argument --batch-size: must be at least 1, got 0"),
    (["predict", "RUN", "x.png", "--batch-size", "many"], "argument --batch-size: must be a whole number, got 'many'"),
    (["predict", "RUN", "x.png", "--review-threshold", "2"], "argument --review-threshold: must be in [0, 1], got 2"),
    (["serve", "RUN", "--port", "70000"], "argument --port: must be a port from 1 to 65535, got 70000"),
    (["experiment", "cv", "DATA", "--out", "EXP", "--folds", "1"], "argument --folds: must be at least 2, got 1"),
    (["gan", "sample", "GAN", "-n", "0", "--out", "S"], "argument -n: must be at least 1, got 0"),
    (["adapt", "RUN", "DATA", "--shots", "1", "--out", "A"], "argument --shots: must be at least 2, got 1"),
    (["data", "phantom", "P", "--per-class", "0"], "argument --per-class: must be at least 1, got 0"),
])
def test_bad_option_values_are_refused_when_parsing(argv, message, capsys):
    _refused_by_argparse(argv, message, capsys)


def test_serve_names_a_missing_run_first(tmp_path: Path, capsys):
    err = _one_sentence(capsys, main(["serve", str(tmp_path / "nonexistent"), "--store", str(tmp_path / "store")]),
                        "does not exist")
    assert "user" not in err
    assert not (tmp_path / "store").exists()


def test_serve_names_an_unknown_critical_class_before_the_store(trained_run: Path, tmp_path: Path, capsys):
    code = main(["serve", str(trained_run), "--critical", "XYZ", "--store", str(tmp_path / "store")])
    _one_sentence(capsys, code, f"its classes are {PHANTOM_CLASSES}.")
    assert not (tmp_path / "store").exists()


@pytest.mark.parametrize("argv", [["users", "list"], ["cases", "list"], ["users", "disable", "ana"],
                                  ["cases", "export", "--reviewed", "--out", "{tmp}/reviewed"]], ids=" ".join)
def test_read_only_commands_never_create_a_store(argv, tmp_path: Path, capsys, monkeypatch):
    monkeypatch.delenv("NEUNN_DB", raising=False)
    monkeypatch.setenv("NEUNN_STORE", str(tmp_path / "default-store"))
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    for where in ([], ["--store", str(tmp_path / "store")], ["--db", f"sqlite:///{tmp_path / 'x.sqlite'}"]):
        _one_sentence(capsys, main([*argv, *where]), "There is no case store at ")
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def _run_on_a_terminal(argv: list[str], keys: bytes, *, prompt: bytes, timeout: float = 120.0) -> tuple[int, str]:
    """Run ``python -m neunn ARGV`` on a pseudo-terminal, type ``keys`` at ``prompt``: (exit status, what it showed)."""
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    env.pop("NEUNN_DB", None)
    pid, fd = pty.fork()
    if pid == 0:  # the child: the terminal is its controlling terminal, as in a shell
        # and Ctrl-C interrupts it, as a shell's foreground job (an ignored SIGINT would be inherited through exec,
        # and a test run may have left it ignored)
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        os.execve(sys.executable, [sys.executable, "-m", "neunn", *argv], env)
    shown, typed, deadline = b"", False, time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            if not typed and prompt in shown:
                os.write(fd, keys)
                typed = True
            ready, _, _ = select.select([fd], [], [], 1.0)
            if not ready:
                continue
            try:
                chunk = os.read(fd, 4096)
            except OSError:  # the child closed the terminal: it ended
                break
            if not chunk:
                break
            shown += chunk
        else:
            os.kill(pid, 9)
            pytest.fail(f"neunn {' '.join(argv)} did not end on a terminal: {shown!r}")
    finally:
        os.close(fd)
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]), shown.decode(errors="replace")


@pytest.mark.parametrize("keys, code, message", [
    (b"\x04", 2, "error: No password was typed (the input ended); nothing was changed."),  # Ctrl-D: end of input
    (b"\x03", 130, "interrupted; nothing was changed"),  # Ctrl-C
], ids=["ctrl-d", "ctrl-c"])
def test_leaving_the_password_prompt_is_one_sentence(keys, code, message, tmp_path: Path):
    store = tmp_path / "store"
    status, shown = _run_on_a_terminal(["users", "add", "ana", "--store", str(store)], keys, prompt=b"password for ana")
    assert status == code, shown
    assert message in shown and "Traceback" not in shown and "--resume" not in shown
    assert not store.exists()
