"""Host-side helpers shared by the Triton kernels of every op (installed as
`vidops.triton_kernels._common`): the dtype rule, the interpreter check, launch sizes and the
int64-offset test. Importing this module does not import triton (vidops asks `interpreter()`
before it decides to import triton at all).
"""
from __future__ import annotations

import os

import torch

# Enough programs to fill an H200 (132 SMs) several times over.
TARGET_PROGRAMS = 2048
# Programs are numbered on grid axis 0 (up to 2^31 - 1; axes 1 and 2 stop at 65535).
MAX_PROGRAMS = (1 << 31) - 1


def interpreter() -> bool:
    """Running under the Triton interpreter (TRITON_INTERPRET=1, read by triton at import)?"""
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


def acc_dtype(dtype: torch.dtype) -> torch.dtype:
    """The accumulation dtype of every kernel: float64 stays float64, the rest float32."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def tl_acc(dtype: torch.dtype):
    """acc_dtype as a Triton type."""
    import triton.language as tl

    return tl.float64 if dtype == torch.float64 else tl.float32


def acc_types(dtype: torch.dtype):
    """(Triton, torch) accumulation types of a tensor dtype."""
    return tl_acc(dtype), acc_dtype(dtype)


def next_pow2(v: int) -> int:
    return 1 << max(0, int(v) - 1).bit_length()


def needs_int64(*tensors) -> bool:
    """Whether an element offset inside one of the tensors (plus a margin for tail lanes) can
    reach 2^31: the kernels then compute their vector offsets in int64."""
    for t in tensors:
        span = sum((n - 1) * abs(st) for n, st in zip(t.shape, t.stride()) if n > 0)
        if span + (1 << 16) >= (1 << 31):
            return True
    return False


def grid(programs: int) -> int:
    """A 1-D launch grid of `programs` programs, or a clear error when it exceeds axis 0."""
    if programs > MAX_PROGRAMS:
        raise ValueError(f"vidops triton kernels: {programs} programs exceed the launch grid; "
                         f"split the batch")
    return programs
