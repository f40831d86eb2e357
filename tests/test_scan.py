"""Tests for neunn.data.scan: the one dataset scanner (listing, bad files, duplicates, problems, summary)."""

from __future__ import annotations

import hashlib
import os
import random
import time
from pathlib import Path

import pytest

from broken_images import encode, jpeg_bytes, noise_rgb, write_broken_corpus, write_convertible_corpus
from neunn.data import scan as scan_module
from neunn.data.scan import BadFile, DatasetScan, ImageRecord, scan_dataset
from neunn.errors import NeunnError

PBC_DEV = Path(__file__).resolve().parents[2] / "shared/data/pbc-dev"


def write_class(root: Path, label: str, count: int, first_seed: int, size=(24, 20)) -> None:
    """Write `count` distinct noise JPEGs into root/label."""
    (root / label).mkdir(parents=True, exist_ok=True)
    for i in range(count):
        (root / label / f"img_{i:02d}.jpg").write_bytes(jpeg_bytes(*size, seed=first_seed + i))


@pytest.fixture
def messy_root(tmp_path) -> Path:
    """A dataset with good, nested, converted, broken, duplicated and ignorable files."""
    root = tmp_path / "dataset"
    write_class(root, "NEU", 3, first_seed=100)
    write_class(root, "HYP", 2, first_seed=200, size=(30, 30))
    (root / "NEU" / "slide2" / "deeper").mkdir(parents=True)
    (root / "NEU" / "slide2" / "deeper" / "nested.png").write_bytes(encode(noise_rgb(24, 20, seed=300), "PNG"))
    (root / "HYP" / "copy_of_neu.jpg").write_bytes((root / "NEU" / "img_00.jpg").read_bytes())
    (root / "NEU" / "img_00_again.jpg").write_bytes((root / "NEU" / "img_00.jpg").read_bytes())
    (root / "HYP" / "copy_of_hyp.jpg").write_bytes((root / "HYP" / "img_01.jpg").read_bytes())
    write_broken_corpus(root / "BAC")
    write_convertible_corpus(root / "BAC")
    (root / "README.txt").write_text("root-level notes")
    (root / "NEU" / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    (root / "NEU" / "._img_00.jpg").write_bytes(b"\0\5\26\7")
    (root / "HYP" / "Thumbs.db").write_bytes(b"thumbs")
    (root / ".cache").mkdir()
    (root / ".cache" / "x.jpg").write_bytes(jpeg_bytes(seed=1))
    (root / "__MACOSX").mkdir()
    return root


def test_messy_dataset_is_fully_described(messy_root):
    scan = scan_dataset(messy_root, workers=2)
    assert scan.root == messy_root
    assert scan.classes == ["BAC", "HYP", "NEU"]
    assert scan.counts() == {"BAC": 5, "HYP": 4, "NEU": 5}
    assert [bad.path for bad in scan.bad_files] == [
        "BAC/bomb.png", "BAC/corrupt_idat.png", "BAC/text_named.jpg",
        "BAC/truncated.jpg", "BAC/truncated.png", "BAC/zero_bytes.jpg",
    ]
    reasons = write_broken_corpus(messy_root.parent / "reference")
    for bad in scan.bad_files:
        assert reasons[bad.path.removeprefix("BAC/")] in bad.reason
    assert scan.ignored == [
        ".cache", "HYP/Thumbs.db", "NEU/.DS_Store", "NEU/._img_00.jpg", "README.txt", "__MACOSX",
    ]
    assert [record.path for record in scan.images] == sorted(record.path for record in scan.images)


def test_records_carry_label_hash_size_mode_and_note(messy_root):
    records = {record.path: record for record in scan_dataset(messy_root).images}
    nested = records["NEU/slide2/deeper/nested.png"]
    expected_hash = hashlib.sha256((messy_root / nested.path).read_bytes()).hexdigest()
    assert nested == ImageRecord(nested.path, "NEU", expected_hash, 24, 20, "RGB", None)
    assert (records["HYP/img_00.jpg"].width, records["HYP/img_00.jpg"].height) == (30, 30)
    notes = write_convertible_corpus(messy_root.parent / "reference")
    for name, expected in notes.items():
        assert expected in records[f"BAC/{name}"].note
    assert records["BAC/sixteen_bit.png"].mode == "I;16"
    assert records["BAC/cmyk.jpg"].mode == "CMYK"


def test_duplicates_are_grouped_within_and_across_classes(messy_root):
    scan = scan_dataset(messy_root)
    assert scan.duplicates == [
        ["HYP/copy_of_hyp.jpg", "HYP/img_01.jpg"],
        ["HYP/copy_of_neu.jpg", "NEU/img_00.jpg", "NEU/img_00_again.jpg"],
    ]
    summary = scan.summary()
    assert "2 groups of identical files, 1 of them across classes" in summary
    assert "HYP/copy_of_neu.jpg = NEU/img_00.jpg = NEU/img_00_again.jpg  [across classes]" in summary
    assert "HYP/copy_of_hyp.jpg = HYP/img_01.jpg\n" in summary


def test_summary_reports_counts_sizes_conversions_bad_and_ignored_files(messy_root):
    summary = scan_dataset(messy_root).summary()
    assert summary.startswith(f"Dataset {messy_root}: 3 classes, 14 readable images, 6 unreadable files, 6 ignored.")
    assert "Class  Images\nBAC         5\nHYP         4\nNEU         5\nTotal      14" in summary
    assert "Image sizes (width x height): 24x20 (6), 8x8 (3), 30x30 (3), 16x16 (1), 4x2 (1)\n" in summary
    assert "Modes: RGB (9), CMYK (1), L (1), P (1), RGBA (1), I;16 (1)\n" in summary
    assert "1 x converted from CMYK to RGB" in summary
    assert "BAC/zero_bytes.jpg: empty file" in summary
    assert "BAC/truncated.jpg: truncated or corrupt JPEG" in summary
    assert "Ignored 6 (hidden, outside class folders or symlinked folders): .cache, HYP/Thumbs.db" in summary
    assert summary.endswith("Usable for training.")


def test_order_does_not_depend_on_thread_scheduling(messy_root, monkeypatch):
    reference = scan_dataset(messy_root, workers=1)
    real_load = scan_module.load_rgb
    delays = random.Random(0)

    def jittery_load(data):
        time.sleep(delays.random() * 0.005)
        return real_load(data)

    monkeypatch.setattr(scan_module, "load_rgb", jittery_load)
    assert scan_dataset(messy_root, workers=8) == reference


def test_good_dataset_has_no_problems(tmp_path):
    write_class(tmp_path, "NEU", 2, first_seed=0)
    write_class(tmp_path, "GBI", 1, first_seed=10)
    scan = scan_dataset(tmp_path)
    assert scan.problems() == []
    scan.require_usable()
    assert (scan.bad_files, scan.duplicates, scan.ignored) == ([], [], [])


def test_empty_root_has_no_class_folders(tmp_path):
    scan = scan_dataset(tmp_path)
    assert scan == DatasetScan(tmp_path, [], [], [], [], [])
    assert scan.counts() == {}
    assert len(scan.problems()) == 1 and "no class folders" in scan.problems()[0]
    assert "Not usable for training" in scan.summary()
    with pytest.raises(NeunnError, match="no class folders") as caught:
        scan.require_usable()
    assert_one_sentence(str(caught.value))


def test_single_class_is_not_enough(tmp_path):
    write_class(tmp_path, "NEU", 2, first_seed=0)
    problems = scan_dataset(tmp_path).problems()
    assert problems == ["it has a single class folder (NEU) and at least 2 are needed"]


def test_class_without_readable_images_is_a_problem(tmp_path):
    write_class(tmp_path, "NEU", 2, first_seed=0)
    write_broken_corpus(tmp_path / "BAC")
    (tmp_path / "HJBLI").mkdir()
    scan = scan_dataset(tmp_path)
    assert scan.counts() == {"BAC": 0, "HJBLI": 0, "NEU": 2}
    assert scan.problems() == [
        "class BAC has no readable image (all 6 of its files are unreadable)",
        "class HJBLI has no readable image (it is empty)",
    ]
    with pytest.raises(NeunnError) as caught:
        scan.require_usable()
    message = str(caught.value)
    assert_one_sentence(message)
    assert message.startswith(f"Dataset folder {tmp_path} cannot be used for training: class BAC")


def assert_one_sentence(message: str) -> None:
    assert "\n" not in message and message.endswith(".") and message.count(". ") == 0


def test_missing_or_file_root_is_a_user_error(tmp_path):
    with pytest.raises(NeunnError, match=r"Dataset folder .*nowhere does not exist\."):
        scan_dataset(tmp_path / "nowhere")
    (tmp_path / "file.jpg").write_bytes(jpeg_bytes())
    with pytest.raises(NeunnError, match="is a file, not a folder"):
        scan_dataset(tmp_path / "file.jpg")


def test_unreadable_and_exploding_files_become_bad_files(tmp_path, monkeypatch):
    write_class(tmp_path, "NEU", 3, first_seed=0)
    real_read = Path.read_bytes
    real_load = scan_module.load_rgb

    def read_bytes(path: Path) -> bytes:
        if path.name == "img_01.jpg":
            raise PermissionError(13, "Permission denied", str(path))
        return real_read(path)

    def load(data: bytes):
        if data == real_read(tmp_path / "NEU" / "img_02.jpg"):
            raise RuntimeError("decoder bug")
        return real_load(data)

    monkeypatch.setattr(Path, "read_bytes", read_bytes)
    monkeypatch.setattr(scan_module, "load_rgb", load)
    scan = scan_dataset(tmp_path)
    assert [record.path for record in scan.images] == ["NEU/img_00.jpg"]
    assert scan.bad_files == [
        BadFile("NEU/img_01.jpg", "permission denied"),
        BadFile("NEU/img_02.jpg", "unexpected error while decoding (RuntimeError: decoder bug)"),
    ]


@pytest.mark.skipif(not hasattr(os, "symlink") or not hasattr(os, "mkfifo"), reason="needs POSIX links and FIFOs")
def test_links_and_special_files_are_handled_without_following_folders(tmp_path):
    outside = tmp_path / "outside"
    write_class(outside, "elsewhere", 2, first_seed=50)
    root = tmp_path / "root"
    write_class(root, "NEU", 1, first_seed=0)
    write_class(root, "HYP", 1, first_seed=1)
    os.symlink(outside / "elsewhere", root / "LINKED")  # a symlinked class folder
    os.symlink(outside / "elsewhere", root / "NEU" / "linked_dir")
    os.symlink(outside / "elsewhere" / "img_00.jpg", root / "NEU" / "linked_file.jpg")
    os.symlink(tmp_path / "gone.jpg", root / "NEU" / "dangling.jpg")
    os.mkfifo(root / "HYP" / "pipe.jpg")  # reading it would block forever
    scan = scan_dataset(root)
    assert scan.classes == ["HYP", "NEU"]
    assert [record.path for record in scan.images] == ["HYP/img_00.jpg", "NEU/img_00.jpg", "NEU/linked_file.jpg"]
    assert scan.ignored == ["LINKED", "NEU/linked_dir"]
    assert scan.bad_files == [
        BadFile("HYP/pipe.jpg", "not a regular file"),
        BadFile("NEU/dangling.jpg", "broken symbolic link"),
    ]


def test_progress_bar_goes_to_stderr(tmp_path, capsys):
    write_class(tmp_path, "NEU", 2, first_seed=0)
    write_class(tmp_path, "HYP", 2, first_seed=9)
    scan_dataset(tmp_path, progress=True)
    captured = capsys.readouterr()
    assert "Scanning images" in captured.err and "4/4" in captured.err
    assert captured.out == ""
    scan_dataset(tmp_path)
    assert capsys.readouterr().err == ""


def test_worker_count_must_be_positive(tmp_path):
    with pytest.raises(ValueError, match="at least 1"):
        scan_dataset(tmp_path, workers=0)


@pytest.mark.skipif(not PBC_DEV.is_dir(), reason="real dataset shared/data/pbc-dev is not present")
def test_real_pbc_dev_dataset_scans_clean():
    scan = scan_dataset(PBC_DEV)
    assert len(scan.classes) == 8
    assert len(scan.images) == 4277
    assert scan.bad_files == []
    assert scan.problems() == []
    assert sum(scan.counts().values()) == 4277
    assert all(record.mode == "RGB" and record.note is None for record in scan.images)
