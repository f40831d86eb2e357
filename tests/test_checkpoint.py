import json
import pickle
from pathlib import Path

import pytest
import torch

from neunn.checkpoint import read_checkpoint, read_checkpoint_meta, save_checkpoint
from neunn.training.config import resolve_config
from neunn.errors import NeunnError
from neunn.model import classifier_for_config, classifier_from_checkpoint, create_classifier


def test_round_trip_rebuilds_an_identical_model(tmp_path: Path):
    torch.manual_seed(0)
    model = create_classifier("resnet10t", 7).eval()
    meta = {"arch": "resnet10t", "classes": list("ABCDEFG"), "img_size": 32}
    save_checkpoint(tmp_path / "best", model.state_dict(), meta)
    tensors, loaded = read_checkpoint(tmp_path / "best.safetensors")
    assert loaded["classes"] == meta["classes"] and loaded["format"] == 1
    assert json.loads((tmp_path / "best.json").read_text()) == loaded  # readable sidecar matches the embedded header
    again = classifier_from_checkpoint(tensors, loaded)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(model(x), again(x))
    assert not list(tmp_path.glob(".*tmp*"))  # no temporary files left behind


def test_embedded_header_is_the_truth_when_the_sidecar_is_stale(tmp_path: Path):
    save_checkpoint(tmp_path / "last", {"w": torch.ones(2)}, {"epoch": 2})
    (tmp_path / "last.json").write_text(json.dumps({"format": 1, "epoch": 1}))  # as if killed between renames
    assert read_checkpoint_meta(tmp_path / "last")["epoch"] == 2


@pytest.mark.parametrize("writer", ["pickle", "torch.save"])
def test_pickle_files_are_refused_without_being_unpickled(tmp_path: Path, writer):
    path = tmp_path / "evil.safetensors"
    if writer == "pickle":
        path.write_bytes(pickle.dumps({"w": [1, 2]}))
    else:
        torch.save({"w": torch.ones(1)}, path)
    with pytest.raises(NeunnError, match="never pickles"):
        read_checkpoint(path)


def test_a_header_length_ending_in_the_pickle_opcode_byte_still_loads(tmp_path: Path):
    # safetensors opens with the header's length: one file in 256 starts with 0x80, the byte pickles start with.
    for pad in range(256):
        save_checkpoint(tmp_path / "best", {"w": torch.ones(2)}, {"note": "x" * pad})
        if (tmp_path / "best.safetensors").read_bytes()[:1] == b"\x80":
            break
    assert (tmp_path / "best.safetensors").read_bytes()[:1] == b"\x80"
    tensors, meta = read_checkpoint(tmp_path / "best")
    assert torch.equal(tensors["w"], torch.ones(2)) and meta["note"] == "x" * pad


def test_corrupt_or_missing_checkpoints_fail_clearly(tmp_path: Path):
    (tmp_path / "bad.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{garbage")
    with pytest.raises(NeunnError, match="corrupt"):
        read_checkpoint(tmp_path / "bad.safetensors")
    with pytest.raises(NeunnError, match="does not exist"):
        read_checkpoint(tmp_path / "none.safetensors")


def test_weights_that_do_not_fit_the_architecture_are_refused(tmp_path: Path):
    model = create_classifier("resnet10t", 3)
    with pytest.raises(NeunnError, match="do not match"):
        classifier_from_checkpoint(model.state_dict(), {"arch": "resnet10t", "classes": list("ABCDE")})


def test_unknown_architecture_suggests_names():
    with pytest.raises(NeunnError, match="Unknown model 'efficientnet_b99'.*efficientnet"):
        create_classifier("efficientnet_b99", 7)


def test_head_init_scale_zero_starts_from_uniform_predictions():
    torch.manual_seed(0)
    x = torch.randn(4, 3, 64, 64)
    timm_init = create_classifier("efficientnet_b0", 8).train()  # batch statistics, as in the first training steps
    zero_head = create_classifier("efficientnet_b0", 8, head_init_scale=0.0).train()
    with torch.no_grad():
        assert timm_init(x).std() > 1.0  # timm's ±1/sqrt(8) head: large logits for a few classes
        assert torch.equal(zero_head(x), torch.zeros(4, 8))  # softmax = 1/8 for every class
    torch.manual_seed(1)
    again = create_classifier("efficientnet_b0", 8)
    torch.manual_seed(1)
    halved = create_classifier("efficientnet_b0", 8, head_init_scale=0.5)
    assert torch.equal(halved.get_classifier().weight, 0.5 * again.get_classifier().weight)


def test_classifier_for_config_builds_what_the_config_says():
    # neunn train and benchmarks/train_throughput.py build their model here, so the benchmark times the trained model
    cfg = resolve_config(preset="neunn-b7", overrides=["model=efficientnet_b0", "drop_rate=0.3", "drop_path_rate=0.1",
                                                       "head_init_scale=0"])
    model = classifier_for_config(cfg, 5)
    assert model.drop_rate == 0.3 and model.get_classifier().out_features == 5
    assert any(type(m).__name__ == "DropPath" for m in model.modules())
    assert not model.get_classifier().weight.any() and not model.get_classifier().bias.any()
