"""Two training processes on the CPU through torchrun (Gloo): the run completes and its outputs are valid."""

import json
import os
import shutil
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest

from conftest import TINY_OVERRIDES
from neunn.checkpoint import read_checkpoint_meta
from neunn.distributed import Distributed, init_distributed, per_rank_batch
from neunn.errors import NeunnError
from neunn.evaluation.evaluate import evaluate_run
from neunn.inference.predict_files import predict_to_file


def test_world_size_must_divide_the_batch():
    assert per_rank_batch(32, Distributed(0, 4, 0)) == 8
    with pytest.raises(NeunnError, match="batch_size 32 is not divisible by the 3 training processes; use "
                                         "batch_size=30 or 33"):
        per_rank_batch(32, Distributed(0, 3, 0))


def test_more_processes_than_gpus_is_refused_with_what_to_change(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setattr("torch.cuda.device_count", lambda: 1)
    with pytest.raises(NeunnError, match=r"torchrun started process 1 on a node with 1 GPU\(s\); use "
                                         r"--nproc_per_node=1 or fewer, or run on the CPU"):
        init_distributed("cuda")


def test_sharded_predict_waits_a_week_for_the_slowest_rank(monkeypatch, tmp_path: Path):
    """Gloo's default 30-minute timeout would abort a sharded prediction whose ranks finish far apart."""
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    seen = {}

    def fake_init_process_group(**kwargs):
        seen.update(kwargs)
        raise RuntimeError("stop here")

    monkeypatch.setattr("torch.distributed.is_initialized", lambda: False)
    monkeypatch.setattr("torch.distributed.init_process_group", fake_init_process_group)
    with pytest.raises(RuntimeError, match="stop here"):
        predict_to_file("unused-run", [tmp_path], out=tmp_path / "out.csv")
    assert seen == {"backend": "gloo", "timeout": timedelta(days=7)}


@pytest.mark.skipif(shutil.which("torchrun", path=os.path.dirname(sys.executable)) is None,
                    reason="torchrun is not installed beside this Python")
@pytest.mark.parametrize("with_attributes", [False, True], ids=["plain", "attribute-heads"])
def test_two_process_training_on_cpu(phantom_dir: Path, tmp_path: Path, with_attributes: bool):
    run = tmp_path / "ddp"
    torchrun = shutil.which("torchrun", path=os.path.dirname(sys.executable))
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src"), "OMP_NUM_THREADS": "1"}
    extra = []
    if with_attributes:  # one attribute, known for half the cells: batches without a known value happen
        table = tmp_path / "attributes.csv"
        names = sorted(p.name for p in phantom_dir.rglob("*.png"))
        table.write_text("path,shade\n" + "".join(f"{n},{'dark' if i % 4 else 'pale'}\n"
                                                   for i, n in enumerate(names[::2])))
        extra = [f"attributes={table}"]
    result = subprocess.run([torchrun, "--standalone", "--nproc_per_node=2", "-m", "neunn", "train",  # Gloo, even
                             str(phantom_dir), "--out", str(run), *TINY_OVERRIDES, "epochs=2", "device=cpu",  # on GPUs
                             *extra], env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    if with_attributes:
        assert all("train_attribute_loss" in line for line in (run / "log.jsonl").read_text().splitlines())
        assert read_checkpoint_meta(run / "checkpoints" / "last")["attributes"] == {"shade": ["dark", "pale"]}
    assert result.stdout.count("trained 2 epochs") == 1  # rank 0 alone reports
    log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in log] == [1, 2]  # rank 0 alone logs
    assert all(0 <= r["train_accuracy"] <= 1 and r["train_loss"] > 0 for r in log)
    meta = read_checkpoint_meta(run / "checkpoints" / "best")
    assert meta["classes"] == ["BAC", "CRY", "DB", "GBI", "HJBLI", "HYP", "NEU"]
    metrics = evaluate_run(run, split="test")
    assert metrics["n"] == len(json.loads((run / "splits.json").read_text())["splits"]["test"])


@pytest.mark.skipif(shutil.which("torchrun", path=os.path.dirname(sys.executable)) is None,
                    reason="torchrun is not installed beside this Python")
def test_a_process_that_dies_stops_the_run_clearly_and_resume_finishes_it(phantom_dir: Path, tmp_path: Path):
    run = tmp_path / "ddp"
    torchrun = shutil.which("torchrun", path=os.path.dirname(sys.executable))
    tests = Path(__file__).resolve().parent
    env = {**os.environ, "PYTHONPATH": f"{tests.parent / 'src'}{os.pathsep}{tests}", "OMP_NUM_THREADS": "1",
           "DYING_RANK_STEPS": "3"}  # 58 training images, 8 per process: 3 steps an epoch
    args = [str(phantom_dir), "--out", str(run), *TINY_OVERRIDES, "epochs=3", "device=cpu"]
    died = subprocess.run([torchrun, "--standalone", "--nproc_per_node=2", "-m", "dying_rank", "1", "2", "train",
                           *args], env=env, capture_output=True, text=True, timeout=300)
    assert died.returncode != 0
    assert "Another training process stopped" in died.stderr and "with --resume" in died.stderr, died.stderr[-3000:]
    assert [json.loads(line)["epoch"] for line in (run / "log.jsonl").read_text().splitlines()] == [1]
    resumed = subprocess.run([torchrun, "--standalone", "--nproc_per_node=2", "-m", "neunn", "train",
                              str(phantom_dir), "--out", str(run), "--resume"],
                             env=env, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert [json.loads(line)["epoch"] for line in (run / "log.jsonl").read_text().splitlines()] == [1, 2, 3]
    assert read_checkpoint_meta(run / "checkpoints" / "last")["epoch"] == 3
