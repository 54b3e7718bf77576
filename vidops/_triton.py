"""Whether Triton kernels can run here, and the import of `vidops.triton_kernels`.

Triton kernels run on CUDA tensors, and on CPU tensors only under the Triton interpreter
(`TRITON_INTERPRET=1`, set before triton is imported), which the tests use.
"""
from __future__ import annotations

import functools
import importlib
import importlib.util
import os
from typing import Optional

import torch


@functools.lru_cache(None)
def _import_error() -> Optional[str]:
    try:
        import triton  # noqa: F401
    except Exception as exc:
        return f"triton is not importable ({type(exc).__name__}: {exc}); pip install triton"
    return None


def interpreter() -> bool:
    """TRITON_INTERPRET=1 (the rule of vidops.triton_kernels._common, which imports no triton)."""
    try:
        from .triton_kernels._common import interpreter as rule
    except ImportError:  # an install without the Triton kernels
        return os.environ.get("TRITON_INTERPRET", "0") == "1"
    return rule()


def unavailable_reason(device: torch.device) -> Optional[str]:
    """Why Triton cannot run on `device` (None when it can); vidops._dispatch caches the answer
    per device type."""
    err = _import_error()
    if err:
        return err
    if device.type == "cuda":
        return None
    if device.type == "cpu" and interpreter():
        return None
    return (f"Triton kernels run on CUDA tensors (or on CPU under TRITON_INTERPRET=1), "
            f"got a {device.type} tensor")


def has_module(module: str) -> bool:
    try:
        return importlib.util.find_spec(f"vidops.triton_kernels.{module}") is not None
    except ModuleNotFoundError:
        return False


def kernels(module: str):
    """Import `vidops.triton_kernels.<module>` (lazily: importing triton costs seconds)."""
    return importlib.import_module(f"vidops.triton_kernels.{module}")
