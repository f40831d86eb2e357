"""Attributes as auxiliary targets (`attributes=CSV`): the table, training with the heads, what the checkpoints hold,
and an exact resume."""

import csv
from pathlib import Path

import pytest
import torch

import neunn.training.train as train_module
from conftest import TINY_OVERRIDES
from neunn.checkpoint import read_checkpoint
from neunn.data.attribute_table import read_attribute_table
from neunn.errors import NeunnError
from neunn.model import classifier_from_checkpoint
from neunn.training.config import resolve_config
from neunn.training.setup import open_training_run
from neunn.training.train import train


def _write_table(path: Path, phantom_dir: Path, *, shades=("dark", "pale")) -> Path:
    """Two attributes for every phantom image but the NEU ones: `shade` follows the class, `spots` alternates."""
    images = sorted(p for p in phantom_dir.rglob("*.png") if p.parent.name != "NEU")
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["path", "shade", "spots"])
        for i, image in enumerate(images):
            writer.writerow([f"elsewhere/{image.name}", shades[image.parent.name in ("GBI", "HYP")], "yes" if i % 2
                             else "no"])
    return path


def test_the_table_is_read_with_sorted_values_and_matched_by_file_name(tmp_path: Path):
    table_file = tmp_path / "attributes.csv"
    table_file.write_text("path,size,vacuole\nmonocyte/MO_1.jpg,big,yes\nmonocyte/MO_2.jpg,small,\n"
                          "lymphocyte/LY_3.jpg,small,no\n")
    table = read_attribute_table(table_file)
    assert table.spec() == {"size": ["big", "small"], "vacuole": ["no", "yes"]}
    targets = table.targets(["monocyte_vacuolated/MO_1.jpg", "MO_2.jpg", "other/NE_9.jpg"])
    assert targets.tolist() == [[0, 1], [1, -1], [-1, -1]]
    assert read_attribute_table(table_file, ["vacuole"]).spec() == {"vacuole": ["no", "yes"]}


@pytest.mark.parametrize("text, columns, message", [
    ("file,size\nA.jpg,big\n", (), "has no 'path' column"),
    ("path,size\nA.jpg,big\n", ("colour",), "has no column 'colour'; it has size"),
    ("path,size\nx/A.jpg,big\ny/A.jpg,small\n", (), "two different rows for the file name 'A.jpg'"),
])
def test_a_bad_table_is_refused_in_one_sentence(tmp_path: Path, text: str, columns, message: str):
    table_file = tmp_path / "attributes.csv"
    table_file.write_text(text)
    with pytest.raises(NeunnError, match=message):
        read_attribute_table(table_file, columns)


def test_training_with_attribute_heads_keeps_the_model_plain_and_resumes_exactly(phantom_dir: Path, tmp_path: Path,
                                                                                   monkeypatch):
    table = _write_table(tmp_path / "attributes.csv", phantom_dir)
    overrides = [*TINY_OVERRIDES, "epochs=3", "device=cpu", f"attributes={table}", "attribute_weight=1.0"]
    train(open_training_run(phantom_dir, tmp_path / "whole", cfg=resolve_config(overrides=overrides), progress=False))

    log = [row for row in (tmp_path / "whole").joinpath("log.jsonl").read_text().splitlines()]
    assert all('"train_attribute_loss"' in row for row in log)
    last, meta = read_checkpoint(tmp_path / "whole" / "checkpoints" / "last")
    assert meta["attributes"] == {"shade": ["dark", "pale"], "spots": ["no", "yes"]}
    heads = {k: v.shape for k, v in last.items() if k.startswith("attributes.")}
    assert heads == {"attributes.0.weight": (2, 512), "attributes.0.bias": (2,),
                     "attributes.1.weight": (2, 512), "attributes.1.bias": (2,)}
    best, best_meta = read_checkpoint(tmp_path / "whole" / "checkpoints" / "best")
    assert not any(k.startswith("attributes") for k in best)
    classifier_from_checkpoint(best, best_meta)  # strict: the best checkpoint is an ordinary classifier

    finish_epoch = train_module._finish_epoch

    def stop_after_epoch_2(loop, row, t0):
        finish_epoch(loop, row, t0)
        if row["epoch"] == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(train_module, "_finish_epoch", stop_after_epoch_2)
    cut = tmp_path / "cut"
    with pytest.raises(KeyboardInterrupt):
        train(open_training_run(phantom_dir, cut, cfg=resolve_config(overrides=overrides), progress=False))
    monkeypatch.setattr(train_module, "_finish_epoch", finish_epoch)

    _write_table(table, phantom_dir, shades=("dark", "light"))  # the table changed: the heads no longer fit
    with pytest.raises(NeunnError, match="other columns or values than when this run started"):
        train(open_training_run(phantom_dir, cut, resume=True, progress=False))
    _write_table(table, phantom_dir)
    train(open_training_run(phantom_dir, cut, resume=True, progress=False))
    resumed, _ = read_checkpoint(cut / "checkpoints" / "last")
    weights = [k for k in last if not k.startswith("optim.")]
    assert all(torch.equal(last[k], resumed[k]) for k in weights)


def test_a_table_that_describes_no_training_image_is_refused(phantom_dir: Path, tmp_path: Path):
    table = tmp_path / "attributes.csv"
    table.write_text("path,shade\nsomeone_else.png,dark\n")
    cfg = resolve_config(overrides=[*TINY_OVERRIDES, "epochs=1", f"attributes={table}"])
    with pytest.raises(NeunnError, match="None of the .* training images has a row in the attribute table"):
        train(open_training_run(phantom_dir, tmp_path / "run", cfg=cfg, progress=False))
