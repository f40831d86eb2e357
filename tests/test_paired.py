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
