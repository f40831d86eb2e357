"""More labelled cells added to the training split only (``neunn train DATA --add EXTRA``): the dataset's split stays as
it is, unknown classes and copies of held-out images are refused or left out, and the run records what it learnt from."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
import yaml

from conftest import TINY_OVERRIDES
from neunn.checkpoint import read_checkpoint_meta
from neunn.cli import main
from neunn.data.phantom import write_phantom_dataset
from neunn.errors import NeunnError
from neunn.training.config import resolve_config
from neunn.training.images import training_images
from neunn.training.setup import open_training_run

ADDED = {"GBI": 3, "NEU": 2}


@pytest.fixture
def reviewed(tmp_path: Path) -> Path:
    """A case export: cells of two of the dataset's classes, a corrupt file, and the export's manifest.csv."""
    root = tmp_path / "reviewed"
    write_phantom_dataset(root, per_class=ADDED, seed=7, size=48)
    (root / "GBI" / "broken.png").write_bytes(b"not an image")
    (root / "manifest.csv").write_text("file,case,reviewer,model_label,final_label\nGBI/a.png,1,ana,NEU,GBI\n")
    return root


def _open(data: Path, out: Path, *overrides: str, **kwargs):
    return open_training_run(data, out, resolve_config(overrides=[*TINY_OVERRIDES, *overrides]), progress=False,
                             **kwargs)


def _split(run: Path) -> dict:
    return json.loads((run / "splits.json").read_text())


def test_added_cells_join_training_only_and_leave_the_split_as_it_was(phantom_dir, reviewed, tmp_path, capsys):
    _open(phantom_dir, tmp_path / "plain")
    setup = _open(phantom_dir, tmp_path / "added", f"added_data=[{reviewed}]")
    assert _split(tmp_path / "added") == _split(tmp_path / "plain")
    err = capsys.readouterr().err
    assert f"skipped {reviewed / 'GBI' / 'broken.png'}" in err and "manifest" not in err

    train_set, val_set = training_images(setup, torch.device("cpu"), progress=False)
    split = setup.split.splits
    assert len(train_set) == len(split["train"]) + sum(ADDED.values()) and len(val_set) == len(split["val"])
    gbi = setup.split.classes.index("GBI")
    assert int((train_set.labels == gbi).sum()) == sum(e.label == "GBI" for e in split["train"]) + ADDED["GBI"]

    info = json.loads((tmp_path / "added" / "run.json").read_text())
    record = info["added"][0]
    assert record["source"] == str(reviewed.resolve()) and record["counts"] == ADDED
    assert len(record["files"]) == 5 and record["dropped_copies_of_val_or_test"] == []
    assert len(record["manifest_sha256"]) == 64 and info["synthetic"] == []


def test_a_class_the_dataset_lacks_is_one_clear_error(phantom_dir, reviewed, tmp_path):
    shutil.copytree(reviewed / "NEU", reviewed / "MONO")
    with pytest.raises(NeunnError, match=r"Added dataset .*reviewed has class folder\(s\) that the dataset does not: "
                                         r"MONO \(its classes must be some of BAC, "):
        _open(phantom_dir, tmp_path / "run", f"added_data=[{reviewed}]")
    assert not (tmp_path / "run").exists()


def test_copies_of_test_images_are_left_out_and_reported(phantom_dir, reviewed, tmp_path, capsys):
    _open(phantom_dir, tmp_path / "plain")
    split = _split(tmp_path / "plain")["splits"]
    test_cell, train_cell = (next(e for e in split[part] if e["label"] in ADDED) for part in ("test", "train"))
    shutil.copy(phantom_dir / test_cell["path"], reviewed / test_cell["label"] / "copy_of_test.png")
    shutil.copy(phantom_dir / train_cell["path"], reviewed / train_cell["label"] / "copy_of_train.png")

    setup = _open(phantom_dir, tmp_path / "added", f"added_data=[{reviewed}]")
    assert "left out 1 image(s) byte-identical to validation or test images" in capsys.readouterr().err
    added = setup.extra[0]
    assert added.dropped == [f"{test_cell['label']}/copy_of_test.png"]
    paths = [r.path for r in added.images]
    assert f"{train_cell['label']}/copy_of_train.png" in paths and len(paths) == sum(ADDED.values()) + 1
    record = json.loads((tmp_path / "added" / "run.json").read_text())["added"][0]
    assert record["dropped_copies_of_val_or_test"] == added.dropped


def test_resume_reuses_the_added_folders_and_refuses_them_changed(phantom_dir, reviewed, tmp_path):
    _open(phantom_dir, tmp_path / "run", f"added_data=[{reviewed}]")
    resumed = open_training_run(phantom_dir, tmp_path / "run", resume=True, progress=False)
    assert resumed.cfg.added_data == (str(reviewed),) and resumed.extra[0].counts() == ADDED
    shutil.copy(reviewed / "GBI" / "phantom_GBI_00000.png", reviewed / "NEU" / "relabelled.png")
    with pytest.raises(NeunnError, match="changed since the run started"):
        open_training_run(phantom_dir, tmp_path / "run", resume=True, progress=False)


def test_fine_tuning_keeps_the_source_runs_split_with_split_file(phantom_dir, reviewed, tmp_path, capsys):
    _open(phantom_dir, tmp_path / "source")
    capsys.readouterr()
    _open(phantom_dir, tmp_path / "reshuffled", "seed=9", f"init_from={tmp_path / 'source'}")
    assert "were training images of init_from" in capsys.readouterr().err
    _open(phantom_dir, tmp_path / "tuned", "seed=9", f"init_from={tmp_path / 'source'}", f"added_data=[{reviewed}]",
          split_file=tmp_path / "source" / "splits.json")
    assert "init_from" not in capsys.readouterr().err
    assert _split(tmp_path / "tuned") == _split(tmp_path / "source")


def test_cli_trains_with_add_and_records_it(phantom_dir, reviewed, tmp_path, capsys):
    out = tmp_path / "run"
    argv = ["train", str(phantom_dir), "--out", str(out), "--add", str(reviewed), *TINY_OVERRIDES, "epochs=1"]
    assert main(argv) == 0
    assert yaml.safe_load((out / "config.yaml").read_text())["added_data"] == [str(reviewed)]
    assert read_checkpoint_meta(out / "checkpoints" / "best")["config"]["added_data"] == [str(reviewed)]
    assert "train " in capsys.readouterr().err
    assert main(["train", str(phantom_dir), "--out", str(out), "--resume", "--add", str(reviewed)]) == 2
    assert "--add" in capsys.readouterr().err
