from pathlib import Path

import pytest

from neunn.configfile import save_config
from neunn.training.config import TrainConfig, available_presets, load_config, resolve_config
from neunn.errors import NeunnError


def test_shipped_presets_resolve_to_their_declared_models():
    assert {"cpu-small", "cpu-robust", "cpu-robust-160", "neunn-b7"} <= set(available_presets())
    robust = resolve_config(preset="cpu-robust")  # the documented pbc-dev recipe: cpu-small, longer, colour-robust
    assert (robust.model, robust.img_size, robust.epochs, robust.aug_color, robust.aug_stain) == \
        ("resnet10t", 128, 30, 0.3, 0.3)
    at_160 = resolve_config(preset="cpu-robust-160")  # the pbc-dev accuracy recipe: cpu-robust at 160 px, nothing else
    assert {k: v for k, v in vars(at_160).items() if v != vars(robust)[k]} == {"img_size": 160,
                                                                               "notes": "preset cpu-robust-160"}
    # The vacuole recipe of docs/results.md section 6 was run as cpu-robust-160 with these overrides.
    rare = resolve_config(preset="rare-finding")
    measured = resolve_config(preset="cpu-robust-160", overrides=["img_size=128", "crop=0.5", "epochs=15",
                                                                  "balance=sampler", "lr=0.001", "aug_color=0",
                                                                  "aug_stain=0"])
    assert {k: v for k, v in vars(rare).items() if v != vars(measured)[k]} == {"notes": "preset rare-finding"}
    b7 = resolve_config(preset="neunn-b7")
    assert (b7.model, b7.img_size, b7.pretrained) == ("efficientnet_b7", 360, False)
    assert resolve_config().model == resolve_config(preset="cpu-small").model


def test_layers_apply_in_order_preset_file_overrides(tmp_path: Path):
    file = tmp_path / "exp.yaml"
    file.write_text("epochs: 7\nlr: 0.01\nsplit: [0.8, 0.1, 0.1]\n")
    cfg = resolve_config(preset="neunn-b7", config_file=file, overrides=["lr=2e-4", "aug_flip=false",
                                                                          "critical_classes=GBI"])
    assert cfg.model == "efficientnet_b7"  # from the preset
    assert cfg.epochs == 7  # from the file
    assert cfg.lr == pytest.approx(2e-4)  # the override wins over the file
    assert cfg.aug_flip is False
    assert cfg.split == (0.8, 0.1, 0.1)
    assert cfg.critical_classes == ("GBI",)


@pytest.mark.parametrize("override, message", [
    ("epoch=3", "Unknown config key 'epoch'"),
    ("epochs=many", "expects int"),
    ("epochs=2.5", "expects int"),
    ("aug_flip=maybe", "expects bool"),
    ("split=0.5,0.1,0.1", "summing to 1"),
    ("balance=magic", "balance must be"),
    ("head_init_scale=-1", "head_init_scale must be 0 or more"),
    ("novalue", "must look like key=value"),
])
def test_bad_overrides_fail_with_one_sentence(override, message):
    with pytest.raises(NeunnError, match=message) as info:
        resolve_config(overrides=[override])
    assert "\n" not in str(info.value)


def test_unknown_preset_lists_the_available_ones():
    with pytest.raises(NeunnError, match="cpu-small"):
        resolve_config(preset="nope")


def test_saved_config_round_trips(tmp_path: Path):
    cfg = resolve_config(overrides=["epochs=3", "synthetic=[/tmp/gan:GBI]", "mean=0.1,0.2,0.3"])
    save_config(cfg, tmp_path / "config.yaml")
    again = load_config(tmp_path / "config.yaml")
    assert again == cfg
    assert isinstance(again, TrainConfig) and again.synthetic == ("/tmp/gan:GBI",)
