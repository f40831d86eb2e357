"""Tests for the out-of-domain score: the scorers against direct computations, the threshold, the file beside the
checkpoint (fitted at training time and by ``neunn screen fit out-of-domain``), and the flag from every backend."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import timm
import torch
from PIL import Image
from sklearn.covariance import ledoit_wolf

from neunn.checkpoint import read_checkpoint, save_checkpoint
from neunn.cli import main
from neunn.errors import NeunnError
from neunn.evaluation.evaluate import evaluate_run
from neunn.evaluation.out_of_domain import flag_report
from neunn.inference.forward import batched_outputs, logits_and_features
from neunn.inference.onnx_engine import OnnxEngine
from neunn.inference.out_of_domain import fit_scorer, load_out_of_domain, ood_path_for
from neunn.inference.predict_files import predict_to_file
from neunn.inference.predictor import Predictor
from neunn.inference.screens.out_of_domain import OutOfDomainScreen
from neunn.rundir import RunDir
from neunn.training.out_of_domain import fit_run_out_of_domain


@pytest.fixture(scope="module")
def run_copy(trained_run, tmp_path_factory) -> Path:
    """A copy of the tiny trained run (this module refits, exports and rewrites its files)."""
    copy = tmp_path_factory.mktemp("ood") / "run"
    shutil.copytree(trained_run, copy)
    return copy


def _gaussians(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    labels = torch.arange(3).repeat_interleave(40)
    centres = torch.tensor([[0.0] * 6, [4.0] + [0.0] * 5, [0.0, 4.0] + [0.0] * 4])
    return centres[labels] + torch.randn(len(labels), 6, generator=gen), labels


def test_features_path_gives_the_models_own_logits():
    model = timm.create_model("resnet10t", num_classes=4).eval()
    x = torch.randn(3, 3, 48, 48)
    logits, features = logits_and_features(model, x)
    assert torch.allclose(logits, model(x), atol=1e-5) and features.shape == (3, model.num_features)
    pixels = torch.randint(0, 256, (5, 3, 48, 48), dtype=torch.uint8)
    out, feats = batched_outputs(model, pixels, mean=[0.5] * 3, std=[0.25] * 3, batch_size=2)
    assert out.shape == (5, 4) and feats.shape == (5, model.num_features)


def test_mahalanobis_is_the_distance_to_the_nearest_class_mean():
    features, labels = _gaussians()
    scorer = fit_scorer("mahalanobis", features, labels)
    f = features.numpy().astype(np.float64)
    means = np.stack([f[labels.numpy() == c].mean(0) for c in range(3)])
    covariance, shrinkage = ledoit_wolf(f - means[labels.numpy()], assume_centered=True)
    precision = np.linalg.inv(covariance)
    queries = np.array([[0.0] * 6, [4.0, 0.1] + [0.0] * 4, [20.0] * 6])
    expected = [min((q - m) @ precision @ (q - m) for m in means) for q in queries]
    got = scorer.score(torch.zeros(3, 3), torch.tensor(queries, dtype=torch.float32))
    assert got == pytest.approx(expected, rel=1e-4)
    assert scorer.info["shrinkage"] == pytest.approx(shrinkage, rel=1e-6) and got[2] > 100 * got[0]


def test_knn_energy_and_max_logit_scores():
    features, labels = _gaussians()
    scorer = fit_scorer("knn", features, labels, k=5)
    query = torch.tensor([[1.0, 2.0, 0.0, 0.0, 0.0, 0.5]])
    bank = torch.nn.functional.normalize(features.double(), dim=1)
    distances = (torch.nn.functional.normalize(query.double(), dim=1) - bank).norm(dim=1).sort().values
    assert scorer.score(torch.zeros(1, 3), query)[0] == pytest.approx(float(distances[4]), rel=1e-5)
    logits = torch.tensor([[2.0, 0.0, -1.0], [0.1, 0.2, 0.0]])
    energy = fit_scorer("energy", None, labels).score(logits, None)
    assert energy == pytest.approx((-torch.logsumexp(logits.double(), 1)).numpy())
    assert fit_scorer("max_logit", None, labels).score(logits, None) == pytest.approx([-2.0, -0.2])
    with pytest.raises(NeunnError, match="Unknown out-of-domain method"):
        fit_scorer("odin", features, labels)


def test_threshold_flags_the_chosen_share_of_validation_cells():
    features, labels = _gaussians()
    held_out, _ = _gaussians(seed=1)
    scorer = fit_scorer("mahalanobis", features, labels)
    scores = scorer.score(torch.zeros(len(held_out), 3), held_out)
    scorer = scorer.with_threshold(scores, quantile=0.95)
    assert scorer.flags(scores).sum() == 6 and scorer.info["n_threshold"] == 120  # 5 % of 120
    assert scorer.flags(scorer.score(torch.zeros(1, 3), torch.full((1, 6), 30.0))).all()


def test_training_fits_the_score_beside_the_checkpoint_and_ood_fit_refits_it_the_same(run_copy):
    run = RunDir(run_copy)
    path = ood_path_for(run)
    tensors, meta = read_checkpoint(path)
    assert meta["method"] == "mahalanobis" and meta["quantile"] == 0.95 and set(tensors) == {"means", "precision"}
    assert json.loads(path.with_name("best.ood.json").read_text())["threshold"] == meta["threshold"]
    best, _ = read_checkpoint(run.checkpoint("best"))
    assert not set(best) & set(tensors)  # the weights file is unchanged: still loaded strictly by the model
    split = json.loads((run_copy / "splits.json").read_text())
    assert meta["n_fit"] == len(split["splits"]["train"]) and meta["n_threshold"] == len(split["splits"]["val"])
    report = fit_run_out_of_domain(run_copy)
    assert report["threshold"] == pytest.approx(meta["threshold"], rel=1e-5)
    assert main(["screen", "fit", "out-of-domain", str(run_copy), "--method", "knn"]) == 0
    assert load_out_of_domain(run).method == "knn"
    fit_run_out_of_domain(run_copy)  # back to the default for the tests below


def test_predictions_carry_the_score_and_strange_cells_are_flagged(run_copy, phantom_dir):
    predictor = Predictor.from_run(run_copy)
    cells = [(p.name, p) for p in sorted(phantom_dir.rglob("*.png"))[:20]]
    noise = torch.randint(0, 256, (48, 48, 3), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)
    noise_path = run_copy / "noise.png"
    Image.fromarray(noise.numpy()).save(noise_path)
    results = predictor.predict_sources(cells + [("noise", noise_path)])
    assert all(r.ood_score is not None and r.out_of_domain == (r.ood_score > predictor.ood.threshold) for r in results)
    assert results[-1].out_of_domain and results[-1].ood_score > 2 * predictor.ood.threshold
    assert sum(r.out_of_domain for r in results[:-1]) <= 4  # in-domain cells: few flagged
    assert results[0].as_dict()["out_of_domain"] is not None
    tta = Predictor.from_run(run_copy, tta=True).predict_sources(cells[:3])
    assert [r.ood_score for r in tta] == pytest.approx([r.ood_score for r in results[:3]], rel=1e-4)


def test_onnx_gives_the_same_score_and_old_files_simply_have_none(run_copy, phantom_dir):
    cells = [(p.name, p) for p in sorted(phantom_dir.rglob("*.png"))[:8]]
    torch_results = Predictor.from_run(run_copy).predict_sources(cells)
    onnx_predictor = Predictor.from_run(run_copy, backend="onnx")
    assert onnx_predictor.engine.output_names == ["logits", "features"]
    onnx_results = onnx_predictor.predict_sources(cells)
    for a, b in zip(torch_results, onnx_results):
        assert b.ood_score == pytest.approx(a.ood_score, rel=1e-3) and a.out_of_domain == b.out_of_domain
    # int8 features carry quantization noise, which lengthens distances on average (more cells flagged: on pbc-dev
    # 10.5 % instead of 6.4 %, docs/results.md); the score is there for every cell.
    int8 = Predictor.from_run(run_copy, backend="onnx-int8").predict_sources(cells)
    assert all(b.ood_score is not None and b.out_of_domain is not None for b in int8)
    # An ONNX file with logits only (exported before the features output) scores cells with no flag, never an error.
    engine = Predictor.from_run(run_copy).engine
    old = run_copy / "old.onnx"
    prog = torch.onnx.export(engine.model, (torch.zeros(2, 3, 48, 48),), None, input_names=["pixels"],
                             output_names=["logits"], dynamo=True, external_data=False,
                             dynamic_shapes=({0: torch.export.Dim("batch", min=1, max=64)},), verbose=False)
    prog.model.metadata_props["neunn"] = json.dumps(engine.meta)
    prog.save(str(old))
    old_engine = OnnxEngine.from_file(old)
    assert not old_engine.has_features and old_engine.outputs(torch.zeros(1, 3, 48, 48, dtype=torch.uint8))[1] is None
    legacy = Predictor(old_engine, screens=[OutOfDomainScreen(load_out_of_domain(RunDir(run_copy)))]).predict_sources(cells[:2])
    assert [r.label for r in legacy] == [r.label for r in torch_results[:2]]
    assert all(r.out_of_domain is None and r.ood_score is None for r in legacy)


def test_a_stale_or_missing_score_gives_no_flag(run_copy, phantom_dir, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(run_copy, copy)
    tensors, meta = read_checkpoint(copy / "checkpoints" / "best")
    save_checkpoint(copy / "checkpoints" / "best", tensors, {**meta, "temperature": 2.0})  # other weights file
    cell = [("a", next(phantom_dir.rglob("*.png")))]
    assert load_out_of_domain(RunDir(copy)) is None
    assert Predictor.from_run(copy).predict_sources(cell)[0].out_of_domain is None
    ood_path_for(RunDir(copy)).unlink()
    assert Predictor.from_run(copy).predict_sources(cell)[0].ood_score is None


def test_flag_report_counts_flags_and_the_wrong_cells_they_miss():
    scorer = fit_scorer("energy", None, torch.zeros(1)).with_threshold(np.array([0.0, 1.0]))
    rows = [  # true, pred, needs_review, out_of_domain
        *[{"true": "A", "pred": "A", "needs_review": False, "out_of_domain": False}] * 5,
        {"true": "A", "pred": "B", "needs_review": False, "out_of_domain": False},  # wrong, unflagged
        {"true": "A", "pred": "B", "needs_review": True, "out_of_domain": False},  # wrong, under review
        {"true": "A", "pred": "B", "needs_review": False, "out_of_domain": True},  # wrong, flagged
    ]
    report = flag_report(rows, scorer)
    assert report["n"] == 8 and report["n_flagged"] == 1 and report["share_flagged"] == 1 / 8
    assert report["accuracy"] == 5 / 8 and report["accuracy_unflagged"] == 5 / 6
    assert report["accuracy_in_domain"] == 5 / 7 and report["share_flagged_or_review"] == 2 / 8
    assert report["wrong_and_unflagged_share"] == 1 / 8 and report["wrong_and_unreviewed_share"] == 2 / 8
    assert report["threshold"] == scorer.threshold and json.dumps(report)
    without = flag_report([{**r, "out_of_domain": None} for r in rows], None)
    assert not without["available"] and without["threshold"] is None and "n_flagged" not in without


def test_evaluate_and_predict_write_the_flag(run_copy, tmp_path):
    metrics = evaluate_run(run_copy, split="test")
    with open(run_copy / "eval" / "test" / "predictions.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    flagged = [r["out_of_domain"] == "yes" for r in rows]
    assert metrics["out_of_domain"]["available"] and metrics["out_of_domain"]["n_flagged"] == sum(flagged)
    threshold = metrics["out_of_domain"]["threshold"]
    assert all((float(r["ood_score"]) > threshold) == f for r, f in zip(rows, flagged))
    html = (run_copy / "eval" / "test" / "report.html").read_text()
    flagged_share = f"{100 * metrics['out_of_domain']['share_flagged']:.1f}"
    assert 'id="out-of-domain"' in html and f"<td>Cells flagged out of domain</td><td>{flagged_share}</td>" in html
    data_dir = Path(RunDir(run_copy).read_info()["data_dir"])
    noise = tmp_path / "noise.png"
    Image.fromarray(np.random.default_rng(1).integers(0, 256, (48, 48, 3), dtype=np.uint8)).save(noise)
    out = tmp_path / "preds.csv"
    summary = predict_to_file(run_copy, [data_dir / rows[0]["path"], noise], out=out, show_progress=False)
    with open(out, newline="") as fh:
        written = list(csv.DictReader(fh))
    assert written[1]["out_of_domain"] == "yes" and float(written[1]["ood_score"]) > threshold
    assert written[0]["ood_score"] and summary.out_of_domain[-1] == str(noise)
