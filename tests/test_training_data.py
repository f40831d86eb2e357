"""Where training images live: decoded in memory or streamed from disk, with the same result; clear memory errors."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from broken_images import write_broken_corpus
from conftest import TINY_OVERRIDES
from neunn.training import images as training_images_module
from neunn.training import train as train_module
from neunn.training.config import resolve_config
from neunn.data.scan import ImageRecord
from neunn.data.streamed import streamed_images
from neunn.errors import NeunnError
from neunn.training.setup import open_training_run
from neunn.training.train import train


def _weights(run: Path) -> dict[str, torch.Tensor]:
    return load_file(str(run / "checkpoints" / "last.safetensors"))


def test_streaming_from_disk_trains_exactly_like_the_in_memory_set(phantom_dir: Path, tmp_path: Path, capsys):
    for cache in ("memory", "stream"):
        cfg = resolve_config(overrides=[*TINY_OVERRIDES, "epochs=1", f"data_cache={cache}", "device=cpu"])
        train(open_training_run(phantom_dir, tmp_path / cache, cfg=cfg, progress=False))
    out = capsys.readouterr().err
    assert "decoded once into host memory" in out and "stream from disk (1 decoding processes)" in out
    a, b = _weights(tmp_path / "memory"), _weights(tmp_path / "stream")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)  # same batches, same draws


def test_auto_streams_when_the_decoded_set_would_not_fit(phantom_dir: Path, tmp_path: Path, monkeypatch, capsys):
    monkeypatch.setattr(training_images_module, "available_memory_bytes", lambda: 100_000)  # 100 kB free
    cfg = resolve_config(overrides=[*TINY_OVERRIDES, "epochs=1"])
    train(open_training_run(phantom_dir, tmp_path / "auto", cfg=cfg, progress=False))
    assert "stream from disk" in capsys.readouterr().err


def test_a_streamed_file_that_breaks_is_left_out_and_named_once(phantom_dir: Path, tmp_path: Path):
    data = tmp_path / "data"
    shutil.copytree(phantom_dir / "GBI", data / "GBI")
    broken = write_broken_corpus(data / "GBI")
    entries = [ImageRecord(path=p.relative_to(data).as_posix(), label="GBI", sha256="", width=0, height=0,
                           mode="RGB", note=None) for p in sorted((data / "GBI").iterdir())]
    images = streamed_images(data, entries, ["GBI"], size=32, jpeg_draft=True, workers=1)
    heard: list[str] = []
    for _ in range(2):  # two epochs: each broken file is named once
        order = torch.arange(len(images))
        got = list(images.batches(order, per_batch=5, steps=len(images) // 5 + 1,
                                  on_skip=lambda path, reason: heard.append(path)))
        assert sum(len(labels) for _, labels, _ in got) == len(images) - len(broken)
        assert all(px.shape[1:] == (3, 32, 32) and px.dtype == torch.uint8 for px, _, _ in got if len(px))
        kept = [images.paths[i] for _, _, index in got for i in index.tolist()]  # the index names each kept image
        assert sorted(kept) == sorted(p for p in images.paths if p.split("/")[-1] not in broken)
    assert sorted(heard) == sorted(f"GBI/{name}" for name in broken)


def test_out_of_memory_says_what_to_change(phantom_dir: Path, tmp_path: Path, monkeypatch):
    def exhausted(*args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(train_module, "augment_batch", exhausted)
    cfg = resolve_config(overrides=[*TINY_OVERRIDES, "epochs=1"])
    with pytest.raises(NeunnError, match=r"Out of memory .* batch_size 16 .* img_size 48.*batch_size=8"):
        train(open_training_run(phantom_dir, tmp_path / "oom", cfg=cfg, progress=False))
