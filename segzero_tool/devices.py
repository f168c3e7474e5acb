"""Device and dtype resolution. Parameters, never globals; torch is imported lazily."""

from __future__ import annotations

from typing import Any

from .errors import DeviceError

_DTYPES = {
    "bf16": "bfloat16",
    "bfloat16": "bfloat16",
    "fp16": "float16",
    "float16": "float16",
    "half": "float16",
    "fp32": "float32",
    "float32": "float32",
    "float": "float32",
}


def resolve_device(device: str | None = "auto") -> str:
    """Turn ``"auto"``/``None``/``"cpu"``/``"cuda"``/``"cuda:1"``/``"mps"`` into a usable device string.

    ``auto`` picks CUDA when available, else CPU. Asking for CUDA or MPS on a machine without one
    raises :class:`DeviceError` (instead of a deep torch error at the first tensor move).
    """
    import torch

    dev = "auto" if device is None else str(device).strip().lower()
    if dev == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if dev == "cpu":
        return "cpu"
    if dev.startswith("cuda"):
        if not torch.cuda.is_available():
            raise DeviceError(
                f"device {device!r} was requested but no CUDA GPU is available here; "
                "use --device cpu (or auto)"
            )
        if ":" in dev:
            try:
                index = int(dev.split(":", 1)[1])
            except ValueError:
                raise DeviceError(f"bad device {device!r}; use cuda, cuda:N, cpu, mps or auto") from None
            if index >= torch.cuda.device_count():
                raise DeviceError(
                    f"device {device!r} does not exist: {torch.cuda.device_count()} GPU(s) are visible"
                )
        return dev
    if dev == "mps":
        if not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
            raise DeviceError("device 'mps' was requested but MPS is not available; use cpu or auto")
        return dev
    raise DeviceError(f"unknown device {device!r}; use auto, cpu, cuda, cuda:N or mps")


def resolve_dtype(dtype: Any = "auto", device: str = "cpu") -> Any:
    """Return a ``torch.dtype``. ``auto``: bfloat16 on CUDA, float32 elsewhere."""
    import torch

    if isinstance(dtype, torch.dtype):
        return dtype
    name = "auto" if dtype is None else str(dtype).strip().lower().removeprefix("torch.")
    if name == "auto":
        return torch.bfloat16 if str(device).startswith("cuda") else torch.float32
    if name not in _DTYPES:
        raise ValueError(f"unknown dtype {dtype!r}; use auto, bf16, fp16 or fp32")
    return getattr(torch, _DTYPES[name])
