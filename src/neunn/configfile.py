"""Typed configs from YAML: the one way NeuNN resolves, validates, saves and loads a dataclass config.

    values = layered_values("presets", "cpu-small", config_file=None, overrides=["epochs=3"])
    cfg = dataclass_from_values(TrainConfig, values, what="config")        # coerced to the declared types
    save_config(cfg, run.config);  cfg = load_config(TrainConfig, run.config, what="config")

Layers, in order: the dataclass defaults, a preset shipped in ``neunn/presets`` (or ``presets/gan``), an optional
YAML file, then ``key=value`` overrides from the command line. Every error is one sentence naming the key or file.
Used by :mod:`neunn.training.config` and :mod:`neunn.gan.config`.
"""

from __future__ import annotations

import dataclasses
import typing
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar

import yaml

from neunn.atomic import write_text_atomic
from neunn.errors import NeunnError

C = TypeVar("C")


def list_presets(folder: str = "presets") -> list[str]:
    """Names of the YAML presets shipped in a package folder (``presets`` for training, ``presets/gan`` for GANs)."""
    files = resources.files("neunn").joinpath(*folder.split("/"))
    return sorted(p.name[: -len(".yaml")] for p in files.iterdir() if p.name.endswith(".yaml"))


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


def layered_values(folder: str, preset: str, *, config_file: str | Path | None = None,
                   overrides: list[str] | None = None, what: str = "preset") -> dict[str, Any]:
    """A preset's values, then a YAML file's, then ``key=value`` overrides; ``notes`` defaults to the preset's name."""
    values = read_preset(folder, preset, what)
    if config_file is not None:
        path = Path(config_file)
        if not path.is_file():
            raise NeunnError(f"Config file {path} does not exist.")
        values.update(read_yaml(path.read_text(), f"Config file {path}"))
    values.update(parse_overrides(overrides))
    values.setdefault("notes", f"preset {preset}")
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


def dataclass_from_values(cls: type[C], values: dict[str, Any], *, what: str = "config") -> C:
    """An instance of the dataclass ``cls`` with ``values`` coerced to its declared types (unknown keys refused)."""
    types = typing.get_type_hints(cls)
    return cls(**{k: coerce_value(types, k, v, what=what) for k, v in values.items()})


def config_to_dict(cfg: Any) -> dict[str, Any]:
    """Plain, YAML/JSON-friendly view of a dataclass config (tuples become lists)."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(cfg).items()}


def save_config(cfg: Any, path: Path) -> None:
    """Write a resolved dataclass config as YAML, atomically."""
    write_text_atomic(Path(path), yaml.safe_dump(config_to_dict(cfg), sort_keys=False))


def read_config_values(path: Path, *, what: str = "config") -> dict[str, Any]:
    """The mapping saved by :func:`save_config`, with a one-sentence error when the file is missing or damaged."""
    path = Path(path)
    if not path.is_file():
        raise NeunnError(f"The {what} file {path} does not exist.")
    return read_yaml(path.read_text(), f"{what.capitalize()} file {path}")
