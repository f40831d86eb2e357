"""`neunn predict` under torchrun: ranks share the files, rank 0 merges the parts into the one-process output."""

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch.distributed as dist

from broken_images import write_broken_corpus
from neunn.cli import main
from neunn.distributed import Distributed
from neunn.errors import NeunnError
from neunn.inference.predict_files import (iter_input_files, merge_parts, part_path, predict_to_file, rank_device, shard,
                           write_part)
from neunn.inference.predictor import Predictor

TORCHRUN = shutil.which("torchrun", path=os.path.dirname(sys.executable))


@pytest.fixture(scope="module")
def inputs(phantom_dir: Path, tmp_path_factory) -> Path:
    """Two phantom classes and a few unreadable files, so that error rows are merged too."""
    root = tmp_path_factory.mktemp("predict-inputs")
    for name in ("BAC", "NEU"):
        shutil.copytree(phantom_dir / name, root / "cells" / name)
    write_broken_corpus(root / "broken")
    return root


def test_shard_deals_files_round_robin_and_lazily():
    assert [list(shard(range(7), rank, 3)) for rank in range(3)] == [[0, 3, 6], [1, 4], [2, 5]]
    assert list(shard(range(2), 2, 3)) == []
    endless = iter(int, 1)  # never ends: shard must not materialise it
    assert next(shard(endless, 1, 2)) == 0
    assert part_path(Path("out/p.csv"), 1, 4) == Path("out/p.csv.part-1-of-4")


def test_each_rank_gets_its_own_gpu_only_when_asked_for_one(monkeypatch):
    ctx = Distributed(rank=3, world_size=4, local_rank=1)
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    assert rank_device("auto", ctx) == "auto"
    monkeypatch.setattr("torch.cuda.is_available", lambda: True)
    monkeypatch.setattr("torch.cuda.device_count", lambda: 2)
    assert rank_device("cpu", ctx) == "cpu"
    assert rank_device("cuda:0", ctx) == "cuda:0"  # an explicit GPU stays as given
    assert rank_device("cuda", Distributed()) == "cuda"
    assert rank_device("auto", ctx) == "cuda:1"
    monkeypatch.setattr("torch.cuda.device_count", lambda: 1)
    with pytest.raises(NeunnError, match="torchrun started process 1 on a node with 1 GPU"):
        rank_device("cuda", ctx)


def test_standard_output_is_refused_under_torchrun(monkeypatch, tmp_path: Path, capsys):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    with pytest.raises(NeunnError, match="needs --out when launched with torchrun"):
        predict_to_file(tmp_path / "no-run", [tmp_path])
    assert main(["predict", str(tmp_path / "no-run"), str(tmp_path)]) == 2
    assert "needs --out when launched with torchrun" in capsys.readouterr().err
    assert not dist.is_initialized()


@pytest.mark.parametrize("fmt", ["csv", "json"])
def test_parts_of_uneven_shares_merge_into_the_one_process_output(trained_run: Path, inputs: Path, tmp_path: Path,
                                                                  fmt: str):
    single = predict_to_file(trained_run, [inputs], out=tmp_path / f"single.{fmt}", fmt=fmt, batch_size=5)
    predictor = Predictor.from_run(trained_run)
    out, world = tmp_path / f"merged.{fmt}", 4
    n_files = sum(1 for _ in iter_input_files([inputs]))
    assert n_files % world  # uneven shares: the first parts hold one row more
    for rank in range(world):
        files = shard(iter_input_files([inputs]), rank, world)
        write_part(predictor.predict_files(files, batch_size=5), part_path(out, rank, world), fmt, predictor.policy,
                   predictor.classes)
    merged = merge_parts([part_path(out, rank, world) for rank in range(world)], out, fmt)
    if fmt == "csv":
        _assert_same_rows(out, tmp_path / f"single.{fmt}")
    else:
        _assert_same_records(out, tmp_path / f"single.{fmt}")
    assert merged == single and len(merged.failed) == 6
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"merged.{fmt}", f"single.{fmt}"]


def test_parts_that_do_not_fit_together_are_refused(tmp_path: Path):
    parts = [tmp_path / "a", tmp_path / "b"]
    parts[0].write_text('{"record": "x", "path": "1", "label": "A", "critical": false, "error": null}\n' * 3)
    parts[1].write_text('{"record": "y", "path": "2", "label": "A", "critical": false, "error": null}\n')
    with pytest.raises(NeunnError, match="uneven shares"):
        merge_parts(parts, tmp_path / "out.csv", "csv")
    assert not (tmp_path / "out.csv").exists() and all(p.exists() for p in parts)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temporary file left


def _same_but_for_rounding(a, b) -> bool:
    """Equal values, floats to 1e-4 of their size: the same cells scored in other batches (or thread counts) round
    their last digits differently (the out-of-domain distance amplifies it most)."""
    if isinstance(a, float) and isinstance(b, float):
        return a == pytest.approx(b, rel=1e-4, abs=1e-7)
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same_but_for_rounding(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same_but_for_rounding(x, y) for x, y in zip(a, b))
    return a == b


def _assert_same_records(merged: Path, single: Path) -> None:
    """The same JSON records in the same order, every field equal but for float rounding (_same_but_for_rounding)."""
    records_a, records_b = json.loads(merged.read_text()), json.loads(single.read_text())
    assert len(records_a) == len(records_b)
    for a, b in zip(records_a, records_b):
        assert _same_but_for_rounding(a, b), (a, b)


def _assert_same_rows(merged: Path, single: Path) -> None:
    """The same rows in the same order, byte for byte but for the last digits of ood_score: a distance that amplifies
    the float rounding of other batches and thread counts (about 1e-6 of its value)."""
    with merged.open(newline="") as a, single.open(newline="") as b:
        rows_a, rows_b = list(csv.DictReader(a)), list(csv.DictReader(b))
    assert len(rows_a) == len(rows_b)
    for row_a, row_b in zip(rows_a, rows_b):
        score_a, score_b = row_a.pop("ood_score"), row_b.pop("ood_score")
        assert row_a == row_b and (score_a == score_b == "" or float(score_a) == pytest.approx(float(score_b), rel=1e-4))


@pytest.mark.skipif(TORCHRUN is None, reason="torchrun is not installed beside this Python")
def test_two_process_prediction_on_cpu(trained_run: Path, inputs: Path, tmp_path: Path):
    expected = predict_to_file(trained_run, [inputs], out=tmp_path / "single.csv")
    out = tmp_path / "ddp" / "preds.csv"
    out.parent.mkdir()
    part_path(out, 1, 2).write_text("left by a failed run\n")  # a rerun overwrites it, and the merge removes it
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src"), "OMP_NUM_THREADS": "1"}
    result = subprocess.run([TORCHRUN, "--standalone", "--nproc_per_node=2", "-m", "neunn", "predict",
                             str(trained_run), str(inputs), "--out", str(out), "--batch-size", "8",
                             "--device", "cpu"],
                            env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    _assert_same_rows(out, tmp_path / "single.csv")
    assert [p.name for p in out.parent.iterdir()] == ["preds.csv"]  # parts and temporary file removed
    counts = ", ".join(f"{c} {n}" for c, n in sorted(expected.counts.items()))
    summary = f"predicted {expected.n_ok} file(s) ({counts}); 6 could not be read; output in {out}"
    assert result.stderr.count("predicted ") == 1 and summary in result.stderr  # rank 0 alone reports
