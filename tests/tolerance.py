"""Tolerances relative to the noise of the PyTorch reference in the same dtype.

A kernel's result `out` passes when
    max|out - ref64| <= 2 * max|ref_same - ref64| + 8 * eps(dtype) * max(abs_scale)
where ref64 is the float64 reference, ref_same the reference run in the kernel's dtype, and
abs_scale the same formula applied to |inputs| and |weights| (the magnitude of the summed terms,
which bounds the rounding error of any summation order). The second term keeps the bound from
collapsing when the same-dtype reference happens to be exact.
"""
import torch


def eps(dtype: torch.dtype) -> float:
    return torch.finfo(dtype).eps


def assert_close_to_reference(out, ref64, ref_same=None, abs_scale=None, name="output", factor=2.0):
    assert out.shape == ref64.shape, f"{name}: shape {tuple(out.shape)} != reference {tuple(ref64.shape)}"
    assert torch.isfinite(out).all(), f"{name}: non-finite values"
    if out.numel() == 0:
        return
    err = (out.double() - ref64).abs().max().item()
    noise = 0.0 if ref_same is None else (ref_same.double() - ref64).abs().max().item()
    scale = (abs_scale if abs_scale is not None else ref64.abs()).double().abs().max().item()
    bound = factor * noise + 8 * eps(out.dtype) * max(scale, 1e-30)
    assert err <= bound, (f"{name}: max abs error {err:.3e} > bound {bound:.3e} "
                          f"(reference noise {noise:.3e}, scale {scale:.3e}, dtype {out.dtype})")
