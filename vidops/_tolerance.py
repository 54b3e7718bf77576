"""The accuracy rule of vidops: a result is compared with the float64 reference, and the error it
may have is set by the noise of the PyTorch reference run in the result's own dtype.

A result `out` passes when
    max|out - ref64| <= factor * max|ref_same - ref64| + 8 * eps(dtype) * max(abs_scale)
where ref64 is the float64 reference, ref_same the reference run in out's dtype (the noise any
implementation in that dtype has), factor 2 by default, and abs_scale the magnitude of the summed
terms (the reference applied to |inputs| and |weights|, which bounds the rounding error of any
summation order), never less than max|ref64|. The second term keeps the bound from collapsing
when the same-dtype reference happens to be exact.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch


def eps(dtype: torch.dtype) -> float:
    return torch.finfo(dtype).eps


@dataclass
class Comparison:
    name: str
    err: float
    bound: float
    noise: float
    scale: float
    dtype: torch.dtype
    problem: str = ""  # shape mismatch or non-finite values

    @property
    def ok(self) -> bool:
        return not self.problem and self.err <= self.bound

    @property
    def ratio(self) -> float:
        """error / tolerance (<= 1 passes)."""
        if self.problem:
            return float("inf")
        return self.err / self.bound if self.bound > 0 else (0.0 if self.err == 0 else float("inf"))

    def message(self) -> str:
        if self.problem:
            return f"{self.name}: {self.problem}"
        return (f"{self.name}: max abs error {self.err:.3e} > bound {self.bound:.3e} "
                f"(reference noise {self.noise:.3e}, scale {self.scale:.3e}, dtype {self.dtype})")


def compare(out, ref64, ref_same=None, abs_scale=None, name="output", factor=2.0) -> Comparison:
    """The rule above, as a Comparison (never raises on a mismatch)."""
    if tuple(out.shape) != tuple(ref64.shape):
        return Comparison(name, float("inf"), 0.0, 0.0, 0.0, out.dtype,
                          f"shape {tuple(out.shape)} != reference {tuple(ref64.shape)}")
    if out.numel() and not torch.isfinite(out).all():
        return Comparison(name, float("inf"), 0.0, 0.0, 0.0, out.dtype, "non-finite values")
    if out.numel() == 0:
        return Comparison(name, 0.0, 0.0, 0.0, 0.0, out.dtype)
    ref64 = ref64.detach().to("cpu", torch.float64)
    err = (out.detach().to("cpu", torch.float64) - ref64).abs().max().item()
    noise = 0.0 if ref_same is None else (ref_same.detach().to("cpu", torch.float64) - ref64).abs().max().item()
    scale_t = abs_scale if abs_scale is not None else ref64.abs()
    scale = scale_t.detach().to("cpu", torch.float64).abs().max().item() if scale_t.numel() else 0.0
    # never below the result's own magnitude: a few ulps of |ref64| are not an error
    scale = max(scale, ref64.abs().max().item())
    bound = factor * noise + 8 * eps(out.dtype) * max(scale, 1e-30)
    return Comparison(name, err, bound, noise, scale, out.dtype)


def assert_close_to_reference(out, ref64, ref_same=None, abs_scale=None, name="output", factor=2.0):
    c = compare(out, ref64, ref_same, abs_scale, name, factor)
    assert c.ok, c.message()
