"""benchmarks/ensemble.py: averaged probabilities of several evaluations, cell by cell, whatever the row order."""

import importlib.util
from pathlib import Path

import pytest

from neunn.errors import NeunnError

_SPEC = importlib.util.spec_from_file_location("ensemble", Path(__file__).resolve().parents[1] / "benchmarks" /
                                               "ensemble.py")
ensemble = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(ensemble)


def _write(path: Path, rows: list[tuple[str, str, float]]) -> Path:
    """rows of (cell, true class, probability of class a); two classes a and b."""
    lines = ["path,true,pred,prob_a,prob_b"]
    lines += [f"{cell},{true},{'a' if pa >= 0.5 else 'b'},{pa},{1 - pa}" for cell, true, pa in rows]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_the_average_corrects_what_one_member_gets_wrong(tmp_path: Path):
    # member 1 misses cell 2 narrowly, member 2 misses cell 1 narrowly; each is 3/4 right, the average 4/4
    one = _write(tmp_path / "one.csv", [("c1", "a", 0.9), ("c2", "a", 0.45), ("c3", "b", 0.1), ("c4", "b", 0.2)])
    two = _write(tmp_path / "two.csv", [("c4", "b", 0.3), ("c3", "b", 0.2), ("c2", "a", 0.8), ("c1", "a", 0.4)])
    result = ensemble.ensemble_metrics([one, two])
    assert [m["accuracy"] for m in result["members"].values()] == [0.75, 0.75]
    assert result["ensemble"]["overall"]["accuracy"] == 1.0


def test_evaluations_of_different_cells_are_refused(tmp_path: Path):
    one = _write(tmp_path / "one.csv", [("c1", "a", 0.9), ("c2", "b", 0.1)])
    two = _write(tmp_path / "two.csv", [("c1", "a", 0.9), ("c3", "b", 0.1)])
    with pytest.raises(NeunnError, match="does not score the same cells and classes"):
        ensemble.ensemble_metrics([one, two])
