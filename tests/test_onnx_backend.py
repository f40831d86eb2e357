"""Tests for neunn.inference.onnx: export with its check, the ONNX Runtime engine, and --backend onnx everywhere."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from fastapi.testclient import TestClient

from neunn.checkpoint import read_checkpoint, save_checkpoint
from neunn.cli import main
from neunn.errors import NeunnError
from neunn.inference.export import export_onnx, onnx_path_for
from neunn.inference.onnx_engine import OnnxEngine
from neunn.inference.predictor import Predictor
from neunn.inference.int8 import int8_path_for, write_int8_model
from neunn.rundir import RunDir
from neunn.serve import create_app


@pytest.fixture(scope="module")
def onnx_run(trained_run, tmp_path_factory) -> Path:
    """A copy of the tiny trained run (this module writes RUN_DIR/export and rewrites a checkpoint)."""
    copy = tmp_path_factory.mktemp("onnx") / "run"
    shutil.copytree(trained_run, copy)
    return copy


@pytest.fixture(scope="module")
def test_images(onnx_run) -> list[Path]:
    data_dir = Path(RunDir(onnx_run).read_info()["data_dir"])
    split = json.loads((onnx_run / "splits.json").read_text())
    return [data_dir / e["path"] for e in split["splits"]["test"][:10]]


def test_export_checks_onnx_runtime_against_pytorch_on_test_images(onnx_run, tmp_path):
    report = export_onnx(onnx_run, tmp_path / "model.onnx")
    assert report["path"] == str(tmp_path / "model.onnx") and Path(report["path"]).stat().st_size > 1_000_000
    assert report["checked_on"].startswith(f"{report['n_checked']} test-split image(s)") and report["n_checked"] > 10
    assert 0.0 <= report["max_abs_diff"] < 1e-5 and report["same_top_class"] == 1.0
    model = onnx.load(report["path"])
    meta = json.loads({p.key: p.value for p in model.metadata_props}["neunn"])
    _, checkpoint_meta = read_checkpoint(onnx_run / "checkpoints" / "best")
    assert meta == checkpoint_meta
    assert model.graph.input[0].type.tensor_type.shape.dim[0].dim_param  # a dynamic batch dimension


def test_onnx_backend_matches_torch_and_exports_on_first_use(onnx_run, test_images):
    sources = [(p.name, p) for p in test_images]
    onnx_predictor = Predictor.from_run(onnx_run, backend="onnx")
    assert onnx_path_for(RunDir(onnx_run)).is_file()
    assert isinstance(onnx_predictor.engine, OnnxEngine)
    torch_results = Predictor.from_run(onnx_run).predict_sources(sources)
    onnx_results = onnx_predictor.predict_sources(sources + [("bad.txt", b"nope")])
    assert onnx_results[-1].error == "not an image file"
    for a, b in zip(torch_results, onnx_results):
        assert a.label == b.label and a.needs_review == b.needs_review and a.critical == b.critical
        assert np.abs(np.array(a.probs) - np.array(b.probs)).max() < 1e-5
    size = onnx_predictor.img_size
    assert onnx_predictor.engine.logits(torch.zeros((0, 3, size, size), dtype=torch.uint8)).shape == (0, 7)
    assert onnx_predictor.engine.logits(torch.zeros((70, 3, size, size), dtype=torch.uint8)).shape == (70, 7)


def test_a_stale_export_is_replaced_when_the_checkpoint_changes(onnx_run):
    path = onnx_path_for(RunDir(onnx_run))
    Predictor.from_run(onnx_run, backend="onnx")
    before = path.stat().st_mtime_ns
    tensors, meta = read_checkpoint(onnx_run / "checkpoints" / "best")
    save_checkpoint(onnx_run / "checkpoints" / "best", tensors, {**meta, "temperature": 2.5})
    predictor = Predictor.from_run(onnx_run, backend="onnx")
    after = path.stat().st_mtime_ns
    assert after != before
    assert predictor.temperature == 2.5 and predictor.meta["temperature"] == 2.5
    Predictor.from_run(onnx_run, backend="onnx")
    assert path.stat().st_mtime_ns == after  # now current: not exported again
    assert OnnxEngine.from_file(path).meta["temperature"] == 2.5


def test_foreign_or_broken_onnx_files_are_refused(tmp_path):
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"not a model")
    with pytest.raises(NeunnError, match="cannot be opened"):
        OnnxEngine.from_file(broken)
    foreign = tmp_path / "foreign.onnx"
    node = onnx.helper.make_node("Identity", ["x"], ["y"])
    graph = onnx.helper.make_graph([node], "g", [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1])],
                                   [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1])])
    onnx.save(onnx.helper.make_model(graph), foreign)
    with pytest.raises(NeunnError, match="not exported by NeuNN"):
        OnnxEngine.from_file(foreign)


def test_cli_export_checks_on_random_images_when_the_dataset_is_gone(onnx_run, tmp_path, capsys):
    moved = tmp_path / "run"
    shutil.copytree(onnx_run, moved)
    info = json.loads((moved / "run.json").read_text())
    (moved / "run.json").write_text(json.dumps({**info, "data_dir": str(tmp_path / "gone")}))
    assert main(["export", str(moved), "--onnx", str(tmp_path / "cli.onnx")]) == 0
    out = capsys.readouterr().out
    assert f"to {tmp_path / 'cli.onnx'}" in out
    assert "ONNX Runtime vs PyTorch on 32 random image(s) (the run's dataset is not available): largest " in out


def test_cli_predict_with_onnx_matches_torch(onnx_run, test_images, tmp_path):
    rows = {}
    for backend in ("torch", "onnx"):
        target = tmp_path / f"{backend}.json"
        assert main(["predict", str(onnx_run), *map(str, test_images[:4]), "--format", "json", "--out", str(target),
                     "--backend", backend]) == 0
        rows[backend] = json.loads(target.read_text())
    assert [r["label"] for r in rows["torch"]] == [r["label"] for r in rows["onnx"]]
    assert all(abs(a["probability"] - b["probability"]) < 1e-5 for a, b in zip(rows["torch"], rows["onnx"]))


def test_serving_with_onnx_backend_keeps_heatmaps(onnx_run, test_images):
    client = TestClient(create_app(Predictor.from_run(onnx_run, backend="onnx")))
    assert client.get("/api/v1/model").json()["backend"] == "onnx"
    image = ("cell.png", test_images[0].read_bytes())
    assert client.post("/api/v1/predict", files=[("files", image)]).json()["results"][0]["status"] == 200
    heatmap = client.post("/api/v1/heatmap", files={"file": image})
    assert heatmap.status_code == 200 and heatmap.headers["content-type"] == "image/png"


def test_int8_model_is_calibrated_checked_and_used_by_the_onnx_int8_backend(onnx_run, test_images, tmp_path):
    run = RunDir(onnx_run)
    with pytest.raises(NeunnError, match=r"changes the class of .*% of \d+ val-split image\(s\).*use --backend onnx"):
        write_int8_model(run, min_agreement=1.01)  # an impossible bar: refused, and nothing is left behind
    assert not int8_path_for(run).exists()
    report = write_int8_model(run, min_agreement=0.0)  # the tiny test model's margins are too thin for the real bar
    assert report["calibrated_on"].endswith("training-split image(s)") and 0.0 <= report["same_top_class"] <= 1.0
    assert sorted(p.name for p in int8_path_for(run).parent.iterdir()) == ["best.int8.onnx", "best.onnx"]
    ops = {n.op_type for n in onnx.load(str(int8_path_for(run))).graph.node}
    assert "QuantizeLinear" in ops and "DequantizeLinear" in ops
    int8 = Predictor.from_run(onnx_run, backend="onnx-int8")
    assert int8.backend == "onnx-int8" and int8.meta == Predictor.from_run(onnx_run).meta
    results = list(int8.predict_files(test_images))
    assert all(r.error is None and abs(sum(r.probs) - 1) < 1e-5 for r in results)
    # Its accuracy on the test split, beside PyTorch's (which it does not overwrite).
    assert main(["evaluate", str(onnx_run), "--backend", "onnx-int8"]) == 0
    metrics = json.loads((onnx_run / "eval" / "test-onnx-int8" / "metrics.json").read_text())
    assert metrics["backend"] == "onnx-int8" and metrics["n"] == len(json.loads(
        (onnx_run / "splits.json").read_text())["splits"]["test"])


def test_int8_needs_the_training_images_to_calibrate(onnx_run, tmp_path, capsys):
    copy = tmp_path / "run"
    shutil.copytree(onnx_run, copy)
    info = json.loads((copy / "run.json").read_text())
    (copy / "run.json").write_text(json.dumps({**info, "data_dir": str(tmp_path / "gone")}))
    (copy / "export" / "best.int8.onnx").unlink(missing_ok=True)
    assert main(["export", str(copy), "--int8"]) != 0
    err = capsys.readouterr().err
    assert "calibrates on the run's training images, and the dataset" in err and "gone is not available" in err
    assert not (copy / "export" / "best.int8.onnx").exists()
