"""Checkpoints as safetensors weights plus a JSON sidecar; never pickle, so loading one can never run code.

    save_checkpoint(run_dir / "checkpoints" / "best", tensors, meta)   # best.safetensors + best.json
    tensors, meta = read_checkpoint(run_dir / "checkpoints" / "best.safetensors")

The sidecar is also embedded in the safetensors header, and the weights file is written atomically (temporary file, then
rename). That header copy is the truth: a run killed between the two renames still has a consistent checkpoint, and the
.json beside it is a readable copy for people and tools.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, safe_open, save_file

from neunn.atomic import write_atomic
from neunn.errors import NeunnError

CHECKPOINT_FORMAT = 1
_META_KEY = "neunn"


def save_checkpoint(stem: Path, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> Path:
    """Write ``stem.safetensors`` (tensors + embedded metadata) and ``stem.json``, each atomically."""
    stem.parent.mkdir(parents=True, exist_ok=True)
    meta = {"format": CHECKPOINT_FORMAT, **meta}
    header = json.dumps(meta, allow_nan=False)
    tensors = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    weights = stem.with_suffix(".safetensors")
    write_atomic(weights, lambda p: save_file(tensors, str(p), metadata={_META_KEY: header}))
    write_atomic(stem.with_suffix(".json"), lambda p: p.write_text(json.dumps(meta, indent=1, allow_nan=False)))
    return weights


def _refuse_unsafe(path: Path) -> None:
    with open(path, "rb") as fh:
        head = fh.read(9)
    # safetensors opens with its JSON header's length (8 bytes, little-endian), then the header: a length whose low byte
    # happens to be 0x80 (one file in 256) is not a pickle's PROTO opcode.
    if head[8:9] == b"{":
        return
    if head[:1] == b"\x80" or head[:2] == b"PK":
        raise NeunnError(
            f"{path} looks like a pickle or torch.save file; NeuNN only loads safetensors weights, never pickles."
        )


def read_checkpoint(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Load tensors and metadata from a .safetensors checkpoint (the path may omit the suffix)."""
    path = Path(path)
    if path.suffix != ".safetensors":
        path = path.with_suffix(".safetensors")
    if not path.is_file():
        raise NeunnError(f"Checkpoint {path} does not exist.")
    _refuse_unsafe(path)
    try:
        with safe_open(str(path), framework="pt") as fh:
            header = (fh.metadata() or {}).get(_META_KEY)
        tensors = load_file(str(path))
        meta = json.loads(header) if header else None
    except (SafetensorError, OSError, ValueError) as exc:
        raise NeunnError(f"Checkpoint {path} is corrupt or not a safetensors file ({exc.__class__.__name__}).") from None
    if not isinstance(meta, dict) or meta.get("format") != CHECKPOINT_FORMAT:
        raise NeunnError(f"Checkpoint {path} has no NeuNN metadata of format {CHECKPOINT_FORMAT}.")
    return tensors, meta


def read_checkpoint_meta(path: Path) -> dict[str, Any]:
    """Read only the metadata of a checkpoint, without loading its tensors."""
    path = Path(path).with_suffix(".safetensors")
    if not path.is_file():
        raise NeunnError(f"Checkpoint {path} does not exist.")
    _refuse_unsafe(path)
    try:
        with safe_open(str(path), framework="pt") as fh:
            return json.loads((fh.metadata() or {})[_META_KEY])
    except (SafetensorError, OSError, ValueError, KeyError) as exc:
        raise NeunnError(f"Checkpoint {path} is corrupt or not a NeuNN checkpoint ({exc.__class__.__name__}).") from None


def prefixed(prefix: str, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Namespace a state dict's keys, e.g. ``model.`` or ``ema.``."""
    return {f"{prefix}.{k}": v for k, v in state.items()}


def unprefixed(prefix: str, tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The tensors under ``prefix.``, with the prefix removed."""
    start = len(prefix) + 1
    return {k[start:]: v for k, v in tensors.items() if k.startswith(prefix + ".")}


def optimizer_to_tensors(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Split an optimizer's state dict into tensors (for safetensors) and JSON metadata."""
    state = optimizer.state_dict()
    tensors = {
        f"optim.{idx}.{name}": (value if torch.is_tensor(value) else torch.tensor(value))
        for idx, per_param in state["state"].items()
        for name, value in per_param.items()
    }
    return tensors, {"param_groups": state["param_groups"]}


def optimizer_from_tensors(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> dict[str, Any]:
    """Rebuild an optimizer state dict from :func:`optimizer_to_tensors` output."""
    state: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in unprefixed("optim", tensors).items():
        idx, name = key.split(".", 1)
        state.setdefault(int(idx), {})[name] = value
    return {"state": state, "param_groups": meta["param_groups"]}
