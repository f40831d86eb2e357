"""Two runs on the same cells: the paired difference, its interval, McNemar's test, and `neunn compare`."""

from __future__ import annotations

import pytest
from scipy.stats import binomtest

from neunn.cli import main
from neunn.errors import NeunnError
from neunn.evaluation.paired import paired_difference


def test_the_paired_difference_counts_discordant_cells():
    first = {f"c{i}": i < 60 for i in range(100)}             # right on c0..c59
    second = {f"c{i}": 10 <= i < 80 for i in range(100)}      # right on c10..c79
    result = paired_difference(first, second, n_boot=500)
    assert (result["n"], result["only_first_right"], result["only_second_right"]) == (100, 10, 20)
    assert result["difference"] == pytest.approx(0.10)
    assert result["mcnemar_p"] == pytest.approx(binomtest(10, 30, 0.5).pvalue)
    ci = result["difference_ci95"]
    assert ci["low"] < 0.10 < ci["high"] and ci["resamples"] == 500
    # 50 cells agree and 50 disagree the same way: the interval is far above zero
    assert paired_difference({f"c{i}": False for i in range(100)},
                             {f"c{i}": i % 2 == 0 for i in range(100)}, n_boot=500)["difference_ci95"]["low"] > 0.3


def test_different_cells_are_refused():
    with pytest.raises(NeunnError, match="do not score the same cells"):
        paired_difference({"a": True}, {"b": True})


def test_compare_reads_two_evaluations(trained_run, capsys):
    assert main(["compare", str(trained_run), str(trained_run), "--split", "train"]) == 2
    assert "has no evaluation of the train split" in capsys.readouterr().err
    assert main(["evaluate", str(trained_run), "--split", "train"]) == 0
    capsys.readouterr()
    assert main(["compare", str(trained_run), str(trained_run), "--split", "train"]) == 0
    out = capsys.readouterr().out
    assert "difference (B - A) +0.0 points" in out and "only A right on 0 cells, only B right on 0" in out
    assert "no difference shown" in out


def _pooled(folder, scores: dict[str, float]):
    """A cross-validation folder whose pooled predictions give each cell (named '<class>/<n>.png') a vacuolated score."""
    (folder / "pooled").mkdir(parents=True)
    (folder / "experiment.json").write_text("{}")
    lines = ["path,true,pred,prob_normal,prob_vacuolated"]
    for path, p in scores.items():
        true = path.split("/")[0]
        lines.append(f"{path},{true},{'vacuolated' if p >= 0.5 else 'normal'},{1 - p},{p}")
    (folder / "pooled" / "predictions.csv").write_text("\n".join(lines) + "\n")
    return folder


def test_compare_two_cross_validations_on_a_rare_class(tmp_path, capsys):
    cells = [f"normal/{i}.png" for i in range(90)] + [f"vacuolated/{i}.png" for i in range(10)]
    worst = {c: 0.3 - 0.001 * i for i, c in enumerate(cells)}                      # the vacuolated cells rank last
    good = {c: (0.4 + 0.001 * i if c.startswith("vacuolated") else 0.1 + 0.001 * i) for i, c in enumerate(cells)}
    a, b = _pooled(tmp_path / "a", worst), _pooled(tmp_path / "b", good)
    assert main(["compare", str(a), str(b), "--positive", "vacuolated"]) == 0
    out = capsys.readouterr().out
    assert f"A: {a / 'pooled' / 'predictions.csv'}" in out
    assert "'vacuolated' against the rest (10 of 100 cells)" in out
    assert "ROC AUC: A 0.0, B 100.0; difference (B - A) +100.0 points" in out and "B is better" in out

    assert main(["compare", str(a / "pooled" / "predictions.csv"), str(b), "--positive", "vacuolated"]) == 0
    assert "ROC AUC: A 0.0, B 100.0" in capsys.readouterr().out  # a predictions.csv itself, e.g. a re-evaluation

    assert main(["compare", str(a), str(b), "--positive", "eosinophil"]) == 2
    assert "'eosinophil' is not a class" in capsys.readouterr().err
    (b / "pooled" / "predictions.csv").unlink()
    assert main(["compare", str(a), str(b)]) == 2
    assert "experiment without pooled predictions yet" in capsys.readouterr().err


def test_rankings_of_different_cells_or_labels_are_refused():
    from neunn.evaluation.paired import paired_ranking_by_cell

    with pytest.raises(NeunnError, match="do not score the same cells"):
        paired_ranking_by_cell({"a": (True, 0.1)}, {"b": (True, 0.1)})
    with pytest.raises(NeunnError, match="different labels"):
        paired_ranking_by_cell({"a": (True, 0.1), "b": (False, 0.2)}, {"a": (False, 0.1), "b": (False, 0.2)})
