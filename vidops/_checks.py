"""Input checks shared by the ops: each error names the op, the argument, what was expected and
what came: "vidops.<op>: <argument> must ..., got ...". The argument types themselves (a Tensor
where a Tensor belongs, dense, no bool for a number) are checked by the op skeleton (vidops._op)."""
from __future__ import annotations

import contextlib
import threading
from typing import Iterable, Optional

import torch

FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def tensor(op: str, name: str, t, ndim: Optional[int] = None, shape_hint: str = "") -> None:
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"vidops.{op}: {name} must be a torch.Tensor, got {type(t).__name__}")
    if t.layout != torch.strided:
        raise TypeError(f"vidops.{op}: {name} must be a dense (strided) tensor, got a {t.layout} tensor")
    if ndim is not None and t.dim() != ndim:
        hint = f" {shape_hint}" if shape_hint else ""
        raise ValueError(f"vidops.{op}: {name} must be {ndim}-D{hint}, got shape {tuple(t.shape)}")
    if t.dtype not in FLOAT_DTYPES:
        raise TypeError(f"vidops.{op}: {name} must be a floating tensor (float16, bfloat16, float32 "
                        f"or float64), got {t.dtype}")


def same_device(op: str, ref_name: str, ref: torch.Tensor, **others: torch.Tensor) -> None:
    for name, t in others.items():
        if t.device != ref.device:
            raise ValueError(f"vidops.{op}: {name} is on {t.device} but {ref_name} is on {ref.device}; "
                             f"all tensors must be on one device")


def weight_dtype(op: str, x: torch.Tensor, x_name: str = "x", **weights: torch.Tensor) -> None:
    """Weights match x's dtype, or are float32 when x is half precision (fp32 master weights)."""
    for name, w in weights.items():
        ok = w.dtype == x.dtype or (x.dtype in (torch.float16, torch.bfloat16) and w.dtype == torch.float32)
        if not ok:
            raise TypeError(f"vidops.{op}: {name} must have {x_name}'s dtype {x.dtype}"
                            f"{' or float32' if x.dtype in (torch.float16, torch.bfloat16) else ''}, got {w.dtype}")


def choice(op: str, name: str, value, allowed: Iterable) -> None:
    allowed = tuple(allowed)
    if value not in allowed:
        raise ValueError(f"vidops.{op}: {name} must be one of {allowed}, got {value!r}")


def positive_int(op: str, name: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"vidops.{op}: {name} must be a positive int, got {value!r}")


_data_checks = threading.local()


@contextlib.contextmanager
def no_data_checks():
    """Skip the data-dependent checks (`finite`) while tracing a graph that cannot raise (the
    ONNX decomposition of an op): a non-finite input then propagates as NaN."""
    before = getattr(_data_checks, "off", False)
    _data_checks.off = True
    try:
        yield
    finally:
        _data_checks.off = before


def finite(op: str, name: str, t: torch.Tensor) -> None:
    """Data-dependent check (a device sync): only used where a non-finite value would give a
    silently wrong answer rather than a propagated NaN."""
    if getattr(_data_checks, "off", False):
        return
    if t.numel() and not bool(torch.isfinite(t).all()):
        raise ValueError(f"vidops.{op}: {name} must be finite, got NaN or Inf values")
