"""Training configuration: one typed dataclass, resolved once from preset → YAML file → key=value overrides.

    cfg = resolve_config(preset="cpu-small", config_file=None, overrides=["epochs=3", "model=resnet18"])
    save_config(cfg, run_dir / "config.yaml")

Presets are YAML files shipped in ``neunn/presets``; every key of :class:`TrainConfig` can be set at each layer.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from neunn.errors import NeunnError

DEFAULT_PRESET = "cpu-small"


@dataclass
class TrainConfig:
    """Everything that defines a training run; saved as RUN_DIR/config.yaml."""

    # model
    model: str = "efficientnet_b0"
    pretrained: bool = False  # explicit opt-in only; NeuNN trains from scratch by default
    img_size: int = 224
    drop_rate: float = 0.2
    drop_path_rate: float = 0.1
    head_init_scale: float = 1.0  # multiplies the fresh classifier head's initial weights; 0 starts at uniform outputs
    # data
    split: tuple[float, float, float] = (0.7, 0.1, 0.2)
    mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    std: tuple[float, float, float] = (0.25, 0.25, 0.25)
    balance: str = "none"  # none | sampler | loss
    synthetic: tuple[str, ...] = ()  # "DIR" or "DIR:CLASS" folders of synthetic images, added to the training split only
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
    critical_classes: tuple[str, ...] = ("GBI", "BAC")  # predictions of these classes raise an alert
    review_threshold: float = 0.6  # calibrated confidence under this sends a cell to "Unidentified — review"
    notes: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


_TYPES = typing.get_type_hints(TrainConfig)


def list_presets(folder: str = "presets") -> list[str]:
    """Names of the YAML presets shipped in a package folder (``presets`` for training, ``presets/gan`` for GANs)."""
    files = resources.files("neunn").joinpath(*folder.split("/"))
    return sorted(p.name[: -len(".yaml")] for p in files.iterdir() if p.name.endswith(".yaml"))


def available_presets() -> list[str]:
    """Names of the training presets shipped with the package."""
    return list_presets("presets")


def read_preset(folder: str, name: str, what: str = "preset") -> dict[str, Any]:
    """The mapping stored in a shipped preset, or a one-sentence error naming the available ones."""
    names = list_presets(folder)
    if name not in names:
        raise NeunnError(f"Unknown {what} '{name}'; available: {', '.join(names)}.")
    text = resources.files("neunn").joinpath(*folder.split("/"), f"{name}.yaml").read_text()
    return read_yaml(text, f"{what.capitalize()} {name}")


def read_yaml(text: str, where: str) -> dict[str, Any]:
    """Parse a YAML mapping, with a one-sentence error saying ``where`` it came from."""
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise NeunnError(f"{where} is not valid YAML ({exc.__class__.__name__}).") from None
    if not isinstance(data, dict):
        raise NeunnError(f"{where} must hold a mapping of config keys to values.")
    return data


def parse_overrides(items: list[str] | None) -> dict[str, Any]:
    """``["epochs=3", "lr=2e-4"]`` as a mapping of keys to YAML-parsed values."""
    values: dict[str, Any] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise NeunnError(f"Override '{item}' must look like key=value.")
        values[key.strip()] = yaml.safe_load(value) if value.strip() else ""
    return values


def coerce_value(types: dict[str, Any], key: str, value: Any, *, what: str = "config") -> Any:
    """Convert ``value`` to the declared type of ``key`` in ``types``, with a one-sentence error when it does not fit."""
    if key not in types:
        raise NeunnError(f"Unknown {what} key '{key}'; valid keys are: {', '.join(sorted(types))}.")
    kind = types[key]
    origin = typing.get_origin(kind)
    try:
        if kind is bool:
            if isinstance(value, str):
                if value.lower() not in ("true", "false", "1", "0", "yes", "no"):
                    raise ValueError
                return value.lower() in ("true", "1", "yes")
            return bool(value)
        if kind in (int, float, str):
            if kind is int and isinstance(value, float) and not value.is_integer():
                raise ValueError
            return kind(value)
        if origin is tuple:
            items = value.split(",") if isinstance(value, str) else list(value)
            args = typing.get_args(kind)
            if args[-1] is Ellipsis:
                return tuple(args[0](v.strip() if isinstance(v, str) else v) for v in items if v != "")
            if len(items) != len(args):
                raise ValueError
            return tuple(t(v.strip() if isinstance(v, str) else v) for t, v in zip(args, items))
        if origin is dict:
            if not isinstance(value, dict):
                raise ValueError
            return dict(value)
    except (TypeError, ValueError):
        raise NeunnError(f"{what.capitalize()} key '{key}' expects {getattr(kind, '__name__', str(kind))}, "
                         f"got {value!r}.") from None
    return value


def _validate(cfg: TrainConfig) -> None:
    if abs(sum(cfg.split) - 1.0) > 1e-6 or min(cfg.split) < 0 or cfg.split[0] <= 0:
        raise NeunnError(f"split must be three non-negative fractions (train, val, test) summing to 1, got {cfg.split}.")
    if cfg.balance not in ("none", "sampler", "loss"):
        raise NeunnError(f"balance must be one of none, sampler, loss, got '{cfg.balance}'.")
    if cfg.data_cache not in ("auto", "memory", "stream"):
        raise NeunnError(f"data_cache must be one of auto, memory, stream, got '{cfg.data_cache}'.")
    if cfg.precision not in ("auto", "fp32", "bf16", "fp16"):
        raise NeunnError(f"precision must be one of auto, fp32, bf16, fp16, got '{cfg.precision}'.")
    for key in ("epochs", "batch_size", "img_size", "eval_every"):
        if getattr(cfg, key) < 1:
            raise NeunnError(f"{key} must be at least 1, got {getattr(cfg, key)}.")
    if cfg.img_size < 32:
        raise NeunnError(f"img_size must be at least 32 pixels, got {cfg.img_size}.")
    if not 0.0 <= cfg.review_threshold <= 1.0:
        raise NeunnError(f"review_threshold must be in [0, 1], got {cfg.review_threshold}.")
    if not 0.0 <= cfg.ema_decay < 1.0:
        raise NeunnError(f"ema_decay must be in [0, 1), got {cfg.ema_decay}.")
    if cfg.head_init_scale < 0.0:
        raise NeunnError(f"head_init_scale must be 0 or more, got {cfg.head_init_scale}.")


def config_from_dict(values: dict[str, Any]) -> TrainConfig:
    """Build a validated config from a mapping of keys to (possibly string) values."""
    cfg = TrainConfig(**{k: coerce_value(_TYPES, k, v) for k, v in values.items()})
    _validate(cfg)
    return cfg


def resolve_config(
    *, preset: str | None = None, config_file: str | Path | None = None, overrides: list[str] | None = None
) -> TrainConfig:
    """Layer the defaults, a preset, a YAML file and ``key=value`` overrides, in that order."""
    name = preset or DEFAULT_PRESET
    values = read_preset("presets", name)
    if config_file is not None:
        path = Path(config_file)
        if not path.is_file():
            raise NeunnError(f"Config file {path} does not exist.")
        values.update(read_yaml(path.read_text(), f"Config file {path}"))
    values.update(parse_overrides(overrides))
    values.setdefault("notes", f"preset {name}")
    return config_from_dict(values)


def config_to_dict(cfg: TrainConfig) -> dict[str, Any]:
    """Plain, YAML/JSON-friendly view of a config (tuples become lists)."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(cfg).items()}


def save_config(cfg: TrainConfig, path: Path) -> None:
    """Write the resolved config as YAML."""
    path.write_text(yaml.safe_dump(config_to_dict(cfg), sort_keys=False))


def load_config(path: Path) -> TrainConfig:
    """Read a config saved by :func:`save_config`."""
    return config_from_dict(read_yaml(path.read_text(), f"Config file {path}"))
