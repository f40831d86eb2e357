"""Where and how tensors run: device choice and mixed precision, decided once from the config.

    device = resolve_device("auto");  dtype = autocast_dtype("auto", device)
    with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None): ...
"""

from __future__ import annotations

import torch

from neunn.errors import NeunnError


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` picks CUDA, then Apple MPS, then the CPU; an explicit device that is missing is an error."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise NeunnError(f"Unknown device '{name}'; use auto, cpu, cuda, cuda:N or mps.") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise NeunnError(f"Device '{name}' was asked for but PyTorch sees no CUDA GPU here; use device=cpu or auto.")
    return device


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for a precision setting, or None for full fp32."""
    if precision == "auto":
        return torch.bfloat16 if device.type == "cuda" else None
    if precision == "fp32":
        return None
    if device.type == "cpu" and precision == "fp16":
        raise NeunnError("precision=fp16 needs a GPU; use bf16 or fp32 on the CPU.")
    return {"bf16": torch.bfloat16, "fp16": torch.float16}[precision]


def use_fast_gpu_kernels(device: torch.device) -> None:
    """On a GPU: TF32 for float32 matrix products and convolutions, and cuDNN's search for the fastest convolution
    algorithm for each input shape (fixed in training). Results then vary in the last bits from run to run on a GPU."""
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True


def available_memory_bytes() -> int | None:
    """Memory the system can still give this process (Linux MemAvailable), or None where that is unknown."""
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None
