"""Constructor-argument checks shared by the modules: "vidops.nn.<Module>: <arg> must ..., got ..."."""
from __future__ import annotations

import math


def positive_int(module: str, name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"vidops.nn.{module}: {name} must be a positive int, got {value!r}")
    return value


def odd_size(module: str, name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1 or value % 2 == 0:
        raise ValueError(f"vidops.nn.{module}: {name} must be a positive odd int, got {value!r}")
    return value


def positive_number(module: str, name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"vidops.nn.{module}: {name} must be a positive finite number, got {value!r}")
    return value


def kernel3(module: str, kernel) -> tuple:
    """An odd 3-D kernel size: one int for all three axes, or (kt, kh, kw)."""
    ks = (kernel,) * 3 if isinstance(kernel, int) else tuple(kernel)
    if len(ks) != 3 or any(isinstance(k, bool) or not isinstance(k, int) or k < 1 or k % 2 == 0 for k in ks):
        raise ValueError(f"vidops.nn.{module}: kernel must be 3 odd sizes (kt, kh, kw), got {kernel!r}")
    return ks


def band_pass_init(module: str, channels, sigma, kernel_size) -> None:
    """The arguments of a LoG-initialised band-pass filter (MotionBandPass, BusyQuietSplit)."""
    positive_int(module, "channels", channels)
    positive_number(module, "sigma", sigma)
    odd_size(module, "kernel_size", kernel_size)
