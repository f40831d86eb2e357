import hashlib
import json
from collections import Counter
from pathlib import Path

import pytest

from neunn.data.scan import DatasetScan, ImageRecord
from neunn.data.split import load_split, save_split, stratified_split, verify_split, verify_split_files
from neunn.errors import NeunnError

from conftest import image_records


def _scan(records) -> DatasetScan:
    return DatasetScan(root=Path("."), classes=sorted({r.label for r in records}), images=list(records),
                       bad_files=[], duplicates=[], ignored=[])


def test_split_is_stratified_disjoint_complete_and_seeded():
    records = image_records({"NEU": 200, "GBI": 30, "BAC": 7})
    split = stratified_split(records, fractions=(0.7, 0.1, 0.2), seed=3)
    counts = split.counts()
    assert counts["train"]["NEU"] == 140 and counts["val"]["NEU"] == 20 and counts["test"]["NEU"] == 40
    assert counts["test"]["GBI"] == 6 and counts["val"]["GBI"] == 3
    assert all(counts[s]["BAC"] >= 1 for s in ("train", "val", "test"))  # a small class still reaches every split
    paths = [e.path for entries in split.splits.values() for e in entries]
    assert len(paths) == len(set(paths)) == len(records)
    assert stratified_split(records, seed=3).splits == split.splits
    assert stratified_split(records, seed=4).splits != split.splits


def test_one_class_growing_does_not_reshuffle_another():
    a = stratified_split(image_records({"NEU": 50, "GBI": 20}), seed=0)
    b = stratified_split(image_records({"NEU": 80, "GBI": 20}), seed=0)
    assert [e for e in a.splits["test"] if e.label == "GBI"] == [e for e in b.splits["test"] if e.label == "GBI"]


def test_exact_duplicates_never_straddle_splits():
    records = image_records({"NEU": 40, "HYP": 40})
    # Ten pairs of byte-identical files, some across classes.
    dupes = [ImageRecord(f"HYP/copy{i}.jpg", "HYP", records[i].sha256, 10, 10, "RGB", None) for i in range(10)]
    split = stratified_split(records + dupes, seed=0)
    where = {e.path: name for name, entries in split.splits.items() for e in entries}
    for i in range(10):
        assert where[records[i].path] == where[f"HYP/copy{i}.jpg"]


def test_save_load_round_trip_keeps_digest(tmp_path: Path):
    split = stratified_split(image_records({"A": 10, "B": 12}), seed=1)
    save_split(split, tmp_path / "splits.json")
    again = load_split(tmp_path / "splits.json")
    assert again.splits == split.splits and again.digest() == split.digest()
    data = json.loads((tmp_path / "splits.json").read_text())
    assert data["digest"] == split.digest() and set(data["splits"]) == {"train", "val", "test"}
    assert all({"path", "label", "sha256"} == set(e) for e in data["splits"]["test"])


def test_changed_or_missing_files_are_reported_not_resplit():
    records = image_records({"A": 10, "B": 10})
    split = stratified_split(records, seed=0)
    assert verify_split(split, _scan(records)) == []
    test_path = split.splits["test"][0].path
    changed = [r if r.path != test_path else ImageRecord(r.path, r.label, "other", 10, 10, "RGB", None)
               for r in records]
    with pytest.raises(NeunnError, match="1 changed"):
        verify_split(split, _scan(changed))
    with pytest.raises(NeunnError, match="1 file\\(s\\) missing"):
        verify_split(split, _scan([r for r in records if r.path != test_path]))
    # Only the named split is checked: a missing training file does not block evaluating the test split.
    train_path = split.splits["train"][0].path
    assert verify_split(split, _scan([r for r in records if r.path != train_path]), names=("test",)) == []
    extra = records + [ImageRecord("A/new.jpg", "A", "new", 10, 10, "RGB", None)]
    assert "1 image(s) of the dataset are in no split" in verify_split(split, _scan(extra))[0]


def test_one_split_is_verified_on_disk_by_hash_alone(tmp_path: Path):
    records = []
    for c in ("A", "B"):
        (tmp_path / c).mkdir()
        for i in range(10):
            data = f"{c}{i}".encode()  # content, not an image: only hashes are compared, nothing is decoded
            (tmp_path / c / f"{i}.jpg").write_bytes(data)
            records.append(ImageRecord(f"{c}/{i}.jpg", c, hashlib.sha256(data).hexdigest(), 1, 1, "RGB", None))
    split = stratified_split(records, seed=0)
    verify_split_files(split, tmp_path, names=("test",))  # unchanged: no error
    (tmp_path / split.splits["train"][0].path).unlink()  # another split's file: not checked
    verify_split_files(split, tmp_path, names=("test",))
    test_a, test_b = (e.path for e in split.splits["test"][:2])
    (tmp_path / test_a).write_bytes(b"edited")
    (tmp_path / test_b).unlink()
    with pytest.raises(NeunnError, match=r"1 file\(s\) missing and 1 changed"):
        verify_split_files(split, tmp_path, names=("test",))


def test_corrupt_split_file_is_a_clear_error(tmp_path: Path):
    (tmp_path / "splits.json").write_text("{not json")
    with pytest.raises(NeunnError, match="not a valid NeuNN splits.json"):
        load_split(tmp_path / "splits.json")
    with pytest.raises(NeunnError, match="does not exist"):
        load_split(tmp_path / "none.json")


def test_every_class_keeps_training_images_even_when_tiny():
    split = stratified_split(image_records({"A": 1, "B": 2, "C": 3}), seed=0)
    train = Counter(e.label for e in split.splits["train"])
    assert train["A"] == 1 and train["B"] >= 1 and train["C"] >= 1
