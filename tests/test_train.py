"""Training end to end on tiny phantom data: outputs, reproducibility, and resuming after SIGKILL."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from safetensors.torch import load_file

from conftest import TINY_OVERRIDES
from neunn.checkpoint import read_checkpoint_meta
from neunn.training.config import resolve_config
from neunn.errors import NeunnError
from neunn.training.setup import open_training_run
from neunn.training.train import train

EPOCHS = 6
OVERRIDES = [*TINY_OVERRIDES, f"epochs={EPOCHS}", "eval_every=1", "ema_decay=0.9", "device=cpu"]


def _model_tensors(run: Path) -> dict:
    return {k: v for k, v in load_file(str(run / "checkpoints" / "last.safetensors")).items()
            if not k.startswith("optim.")}


def test_run_folder_follows_the_contract(trained_run: Path):
    for name in ("config.yaml", "splits.json", "run.json", "log.jsonl", "checkpoints/best.safetensors",
                 "checkpoints/best.json", "checkpoints/last.safetensors", "checkpoints/last.json"):
        assert (trained_run / name).is_file(), name
    log = [json.loads(line) for line in (trained_run / "log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in log] == [1, 2]
    assert {"train_loss", "val_loss", "val_accuracy", "val_macro_f1", "lr", "images_per_s"} <= set(log[-1])
    meta = read_checkpoint_meta(trained_run / "checkpoints" / "best")
    assert meta["classes"] == ["BAC", "CRY", "DB", "GBI", "HJBLI", "HYP", "NEU"]
    assert meta["arch"] == "resnet10t" and meta["img_size"] == 48 and meta["temperature"] > 0
    split = json.loads((trained_run / "splits.json").read_text())
    assert meta["split_digest"] == split["digest"]
    assert meta["epoch"] == max(log, key=lambda r: (r["val_macro_f1"], -r["val_loss"]))["epoch"]


def test_same_seed_same_weights_on_cpu(phantom_dir: Path, tmp_path: Path):
    cfg = resolve_config(overrides=[*TINY_OVERRIDES, "epochs=1", "device=cpu"])  # GPU kernels are autotuned: not exact
    train(open_training_run(phantom_dir, tmp_path / "a", cfg=cfg, progress=False))
    train(open_training_run(phantom_dir, tmp_path / "b", cfg=cfg, progress=False))
    a, b = _model_tensors(tmp_path / "a"), _model_tensors(tmp_path / "b")
    assert a.keys() == b.keys() and all((a[k] == b[k]).all() for k in a)


def test_sigkill_then_resume_matches_an_uninterrupted_run(phantom_dir: Path, tmp_path: Path):
    cfg = resolve_config(overrides=OVERRIDES)  # OVERRIDES pin the CPU, where runs are bit-reproducible
    train(open_training_run(phantom_dir, tmp_path / "whole", cfg=cfg, progress=False))

    killed = tmp_path / "killed"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")}
    proc = subprocess.Popen([sys.executable, "-m", "neunn", "train", str(phantom_dir), "--out", str(killed),
                             *OVERRIDES], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    sidecar, deadline = killed / "checkpoints" / "last.json", time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if sidecar.is_file() and json.loads(sidecar.read_text() or "{}").get("epoch", 0) >= 2:
            break
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = read_checkpoint_meta(killed / "checkpoints" / "last")["epoch"]
    assert 2 <= done < EPOCHS, "the run must be killed part-way for this test to mean anything"

    train(open_training_run(phantom_dir, killed, resume=True, progress=False))
    whole, resumed = _model_tensors(tmp_path / "whole"), _model_tensors(killed)
    assert whole.keys() == resumed.keys()
    assert all((whole[k] == resumed[k]).all() for k in whole)
    logs = [[json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
            for run in (tmp_path / "whole", killed)]
    assert [r["epoch"] for r in logs[1]] == list(range(1, EPOCHS + 1))
    assert [r["val_loss"] for r in logs[0]] == [r["val_loss"] for r in logs[1]]


def test_a_new_run_refuses_a_folder_that_holds_one(trained_run: Path, phantom_dir: Path):
    with pytest.raises(NeunnError, match="already holds a run"):
        train(open_training_run(phantom_dir, trained_run, cfg=resolve_config(overrides=TINY_OVERRIDES), progress=False))


def test_resume_without_a_run_is_a_clear_error(phantom_dir: Path, tmp_path: Path):
    with pytest.raises(NeunnError, match="no run to resume"):
        train(open_training_run(phantom_dir, tmp_path / "none", resume=True, progress=False))


def test_a_diverging_loss_stops_the_run_with_what_to_change(phantom_dir: Path, tmp_path: Path):
    cfg = resolve_config(overrides=[*TINY_OVERRIDES, "epochs=1", "lr=1e30", "warmup_epochs=0", "grad_clip=0"])
    with pytest.raises(NeunnError, match=r"The training loss became (nan|inf) by epoch 1, step \d+; lower lr"):
        train(open_training_run(phantom_dir, tmp_path / "diverged", cfg=cfg, progress=False))


def test_split_file_reuses_another_runs_test_set(trained_run: Path, phantom_dir: Path, tmp_path: Path):
    cfg = resolve_config(overrides=[*TINY_OVERRIDES, "epochs=1", "seed=9"])
    train(open_training_run(phantom_dir, tmp_path / "other", cfg=cfg, split_file=trained_run / "splits.json", progress=False))
    first = json.loads((trained_run / "splits.json").read_text())["splits"]
    second = json.loads((tmp_path / "other" / "splits.json").read_text())["splits"]
    assert first == second


def test_synthetic_images_join_the_training_split_only(phantom_dir: Path, tmp_path: Path):
    from neunn.data.phantom import write_phantom_dataset

    synth = tmp_path / "synth"
    write_phantom_dataset(synth, per_class={"GBI": 5}, seed=99, size=48)
    cfg = resolve_config(overrides=[*TINY_OVERRIDES, "epochs=1", f"synthetic=[{synth}:GBI]"])
    train(open_training_run(phantom_dir, tmp_path / "run", cfg=cfg, progress=False))
    info = json.loads((tmp_path / "run" / "run.json").read_text())
    assert info["synthetic"][0]["counts"] == {"GBI": 5}
    split = json.loads((tmp_path / "run" / "splits.json").read_text())
    assert all(not e["path"].startswith(str(synth)) for entries in split["splits"].values() for e in entries)


@pytest.mark.parametrize("select_by", ["loss", "ap", "last"])
def test_select_by_chooses_the_best_checkpoint_by_that_validation_figure(phantom_dir: Path, tmp_path: Path,
                                                                         select_by: str):
    cfg = resolve_config(overrides=[*TINY_OVERRIDES, "epochs=4", "eval_every=1", f"select_by={select_by}"])
    result = train(open_training_run(phantom_dir, tmp_path / "run", cfg=cfg, progress=False))
    log = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert all(0.0 <= r["val_ap"] <= 1.0 and 0.0 <= r["val_auc"] <= 1.0 for r in log)
    key = {"loss": lambda r: -r["val_loss"], "ap": lambda r: (r["val_ap"], -r["val_loss"]),
           "last": lambda r: r["epoch"]}[select_by]
    chosen = max(log, key=key)
    meta = read_checkpoint_meta(tmp_path / "run" / "checkpoints" / "best")
    assert meta["epoch"] == chosen["epoch"] == result.best_epoch
    assert result.select_by == select_by and result.best_val["val_loss"] == chosen["val_loss"]


def test_an_unknown_select_by_is_refused_in_one_sentence():
    with pytest.raises(NeunnError, match="select_by must be one of macro_f1, loss, auc, ap, last, got 'f2'"):
        resolve_config(overrides=[*TINY_OVERRIDES, "select_by=f2"])
