"""Training configuration: one typed dataclass, resolved once from preset → YAML file → key=value overrides.

    cfg = resolve_config(preset="cpu-small", config_file=None, overrides=["epochs=3", "model=resnet18"])
    save_config(cfg, run_dir / "config.yaml")          # neunn.configfile, shared with the GAN config

Presets are YAML files shipped in ``neunn/presets``; every key of :class:`TrainConfig` can be set at each layer.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from neunn.configfile import dataclass_from_values, layered_values, list_presets, read_config_values
from neunn.errors import NeunnError
from neunn.inference.policy import DEFAULT_CRITICAL_CLASSES, DEFAULT_REVIEW_THRESHOLD, check_review_threshold

DEFAULT_PRESET = "cpu-small"
SELECT_BY = ("macro_f1", "loss", "auc", "ap", "last")
PRESETS = "presets"


@dataclass
class TrainConfig:
    """Everything that defines a training run; saved as RUN_DIR/config.yaml."""

    # model
    model: str = "efficientnet_b0"
    pretrained: bool = False  # explicit opt-in only; NeuNN trains from scratch by default
    img_size: int = 224
    crop: float = 1.0  # central fraction of each image side kept before resizing (the cell without its surroundings)
    init_from: str = ""  # a run folder whose best weights start this run (fine-tuning); its head too if classes match
    drop_rate: float = 0.2
    drop_path_rate: float = 0.1
    head_init_scale: float = 1.0  # multiplies the fresh classifier head's initial weights; 0 starts at uniform outputs
    # data
    split: tuple[float, float, float] = (0.7, 0.1, 0.2)
    mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    std: tuple[float, float, float] = (0.25, 0.25, 0.25)
    balance: str = "none"  # none | sampler | loss
    synthetic: tuple[str, ...] = ()  # "DIR" or "DIR:CLASS" folders of synthetic images, added to the training split only
    added_data: tuple[str, ...] = ()  # folder-per-class sets of more labelled cells (reviewed), training split only
    # auxiliary targets: a CSV of cell attributes (a `path` column, matched to images by file name; WBCAtt's layout),
    # one extra head per attribute trained beside the classes (neunn.training.attribute_heads); the model is unchanged
    attributes: str = ""
    attribute_columns: tuple[str, ...] = ()  # which columns; empty: all but `path` (leave out the one your classes are)
    attribute_weight: float = 0.5  # the attribute loss (mean over attributes) is added with this weight
    # augmentation (applied to batches as tensors, on the training device)
    aug_flip: bool = True
    aug_rot90: bool = True
    aug_affine: float = 0.1  # strength of the small random affine (scale/translate/rotate); 0 disables
    aug_color: float = 0.1  # strength of colour jitter (hue, saturation, brightness, contrast, channel gain); 0 disables
    aug_stain: float = 0.0  # strength of stain jitter (optical density scaled by 1 ± s, per channel 1 ± s/3); 0 disables
    # optimisation
    epochs: int = 10
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 0.05
    warmup_epochs: float = 1.0
    min_lr_ratio: float = 0.01
    label_smoothing: float = 0.1
    grad_clip: float = 2.0
    ema_decay: float = 0.0  # 0 disables the model EMA
    bn_clean_cells: int = 0  # after training, BatchNorm statistics re-estimated on N clean training cells; 0: off
    # which epoch's weights become the best checkpoint: the highest validation macro-F1 | the lowest validation loss |
    # the highest mean one-vs-rest ROC AUC or average precision over the classes | the last epoch's
    select_by: str = "macro_f1"  # macro_f1 | loss | auc | ap | last
    # execution
    device: str = "auto"  # auto | cpu | cuda | cuda:N | mps
    precision: str = "auto"  # auto (bf16 on CUDA, fp32 elsewhere) | fp32 | bf16 | fp16
    channels_last: bool = True  # used on CUDA only
    sync_bn: bool = False  # SyncBatchNorm across processes under torchrun
    compile: bool = False  # torch.compile the model (minutes of compilation, then faster steps on a GPU)
    workers: int = 2  # image-decoding threads for the in-memory set (worker processes when streaming)
    data_cache: str = "auto"  # memory: decode once into RAM | stream: decode batches from disk | auto: by size
    seed: int = 0
    threads: int = 0  # torch CPU threads; 0 leaves PyTorch's default
    eval_every: int = 1  # validate every N epochs (the last epoch always)
    # The model's default decision policy (neunn.inference.policy), stored in its checkpoint; predict, evaluate and
    # serve can override both for a lab without retraining.
    critical_classes: tuple[str, ...] = DEFAULT_CRITICAL_CLASSES  # predictions of these classes raise an alert
    review_threshold: float = DEFAULT_REVIEW_THRESHOLD  # calibrated confidence under this: "Unidentified — review"
    notes: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


def _validate(cfg: TrainConfig) -> None:
    from neunn.model import require_known_model  # imports timm, as every use of a training config does anyway

    require_known_model(cfg.model)
    _validate_ranges(cfg)
    if abs(sum(cfg.split) - 1.0) > 1e-6 or min(cfg.split) < 0 or cfg.split[0] <= 0:
        raise NeunnError(f"split must be three non-negative fractions (train, val, test) summing to 1, got {cfg.split}.")
    if cfg.balance not in ("none", "sampler", "loss"):
        raise NeunnError(f"balance must be one of none, sampler, loss, got '{cfg.balance}'.")
    if cfg.select_by not in SELECT_BY:
        raise NeunnError(f"select_by must be one of {', '.join(SELECT_BY)}, got '{cfg.select_by}'.")
    if cfg.data_cache not in ("auto", "memory", "stream"):
        raise NeunnError(f"data_cache must be one of auto, memory, stream, got '{cfg.data_cache}'.")
    if cfg.precision not in ("auto", "fp32", "bf16", "fp16"):
        raise NeunnError(f"precision must be one of auto, fp32, bf16, fp16, got '{cfg.precision}'.")
    for key in ("epochs", "batch_size", "img_size", "eval_every"):
        if getattr(cfg, key) < 1:
            raise NeunnError(f"{key} must be at least 1, got {getattr(cfg, key)}.")
    if not 0.2 <= cfg.crop <= 1.0:
        raise NeunnError(f"crop must be a fraction of the image side in [0.2, 1], got {cfg.crop}.")
    if cfg.img_size < 32:
        raise NeunnError(f"img_size must be at least 32 pixels, got {cfg.img_size}.")
    check_review_threshold(cfg.review_threshold)
    if not 0.0 <= cfg.ema_decay < 1.0:
        raise NeunnError(f"ema_decay must be in [0, 1), got {cfg.ema_decay}.")
    if cfg.bn_clean_cells < 0:
        raise NeunnError(f"bn_clean_cells must be 0 (off) or a number of training cells, got {cfg.bn_clean_cells}.")
    if cfg.attribute_weight < 0.0:
        raise NeunnError(f"attribute_weight must be 0 or more, got {cfg.attribute_weight}.")
    if cfg.attribute_columns and not cfg.attributes:
        raise NeunnError("attribute_columns names columns of an attribute table; set attributes=CSV as well.")
    if cfg.head_init_scale < 0.0:
        raise NeunnError(f"head_init_scale must be 0 or more, got {cfg.head_init_scale}.")
    if min(cfg.std) <= 0.0:
        raise NeunnError(f"std must be three positive numbers (one per channel), got {cfg.std}.")


# (key, lowest, highest, whether the lowest itself is refused): the ranges of the numeric keys, checked before training
# (lr=0 is allowed: it keeps the starting weights, e.g. to re-estimate statistics or to check a fine-tuning set-up)
_RANGES = (("lr", 0.0, math.inf, False), ("weight_decay", 0.0, math.inf, False),
           ("warmup_epochs", 0.0, math.inf, False), ("min_lr_ratio", 0.0, 1.0, False),
           ("grad_clip", 0.0, math.inf, False), ("aug_affine", 0.0, math.inf, False),
           ("aug_color", 0.0, math.inf, False), ("aug_stain", 0.0, math.inf, False),
           ("workers", 0, math.inf, False), ("threads", 0, math.inf, False))
_BELOW_ONE = ("drop_rate", "drop_path_rate", "label_smoothing")  # fractions in [0, 1)


def _validate_ranges(cfg: TrainConfig) -> None:
    """One sentence for a numeric key out of its range (a negative lr, ...), before any image is read."""
    for key, low, high, open_low in _RANGES:
        value = getattr(cfg, key)
        if not (low < value if open_low else low <= value) or value > high or math.isnan(value):
            bound = f"over {low:g}" if open_low else f"at least {low:g}"
            raise NeunnError(f"{key} must be {bound}{'' if high == math.inf else f' and at most {high:g}'}, "
                             f"got {value}.")
    for key in _BELOW_ONE:
        if not 0.0 <= getattr(cfg, key) < 1.0:
            raise NeunnError(f"{key} must be in [0, 1), got {getattr(cfg, key)}.")


def config_from_dict(values: dict[str, Any]) -> TrainConfig:
    """Build a validated config from a mapping of keys to (possibly string) values."""
    cfg = dataclass_from_values(TrainConfig, values)
    _validate(cfg)
    return cfg


def available_presets() -> list[str]:
    """Names of the training presets shipped with the package."""
    return list_presets(PRESETS)


def resolve_config(
    *, preset: str | None = None, config_file: str | Path | None = None, overrides: list[str] | None = None
) -> TrainConfig:
    """Layer the defaults, a preset, a YAML file and ``key=value`` overrides, in that order."""
    return config_from_dict(layered_values(PRESETS, preset or DEFAULT_PRESET, config_file=config_file,
                                           overrides=overrides))


def load_config(path: Path) -> TrainConfig:
    """Read a config saved by :func:`neunn.configfile.save_config`."""
    return config_from_dict(read_config_values(path))
