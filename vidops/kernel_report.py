"""Ahead-of-time compile report of every GPU kernel of vidops, on a machine without a GPU.

Triton: each op's Triton launchers are run at the benchmark's GPU shapes on fake CUDA tensors
(torch's FakeTensorMode: shapes, strides and dtypes, no data), with the kernel launch replaced by a
recorder. Every distinct launch (kernel, argument specialisation, constexprs, warps, stages) is
then compiled by Triton's own JIT path (`JITFunction.warmup`) for a stand-in driver that reports
the target GPU (sm_90 = H100/H200, sm_80 = A100), so each kernel is specialised exactly as a real
launch would specialise it. From the compiled kernel: shared memory (`metadata.shared`, against
the target's per-block limit), registers, stack and local memory (`cuobjdump
--dump-resource-usage`), spill traffic (LDL/STL in the SASS) and the matrix instructions
(HGMMA = wgmma, HMMA = mma.sync).

CUDA C++: the same resource figures for every kernel of the nvcc build (vidops/_C.so or the
build's object files), per architecture in its fat binary.

A kernel fails the report when it does not compile, needs more shared memory than the target
has, or spills (stack bytes or LDL/STL) without an entry in ACCEPTED_SPILLS.

    python -m vidops.kernel_report [--arch sm_90,sm_80] [--ops a,b] [--json out.json] [--jobs N]
                                   [--quick] [--sample] [--cuda-objects PATH[,PATH]]
    python -m vidops.info --kernels

Compiled results are cached (JSON per kernel, keyed by the kernel source's hash, the launch's
specialisation, the target and the Triton version) under $VIDOPS_KERNEL_CACHE, default
<tmp>/vidops-kernel-report; Triton's own cache goes to a folder beside it.
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from typing import Callable, Optional

# Per-block shared-memory limits (opt-in maximum) of the targets.
TARGETS = {"sm_90": (90, 227 * 1024), "sm_80": (80, 163 * 1024)}
DTYPES = ("float32", "bfloat16", "float16")

# Spills accepted on purpose, each with its measured size: a row matches an entry when kind
# ("triton" or "cuda"), kernel (the Triton function name or the demangled CUDA kernel name's base)
# and arch are equal (arch "any": every target), every token of `config` is in the row's config
# (Triton) or the kernel's template arguments match the fnmatch pattern `args` (CUDA, e.g.
# "<double, *>"), and the row's stack is at most `stack` bytes (so a spill that grows fails again).
# Shared memory over the limit is never accepted.
#
# The CUDA entries below are all of one kind unless they say otherwise, read from the SASS
# (`cuobjdump -sass`): the kernel is below its register cap, and the stack holds registers that
# are live across a call (CALL.REL) to one of the compiler's out-of-line subroutines: 64-bit
# integer division in the tile and index decoding, the IEEE slow paths of float/double division
# and sqrt. The stores come before the first call and the loads once per tile or per pixel set-up,
# not in the stencil, channel or tap loops.
_CALL_SAVES = "registers saved across the compiler's 64-bit division / IEEE div-sqrt subroutine calls, once per tile"


_LOOP_SAVES = ("values live across the tap loops but unused inside them, stored before and reloaded after "
               "the loops, once per thread")


def _triton(kernel: str, arch: str, config: str, stack: int, why: str) -> dict:
    return dict(kind="triton", kernel=kernel, arch=arch, config=config, stack=stack, why=why)


def _cuda(kernel: str, args: str, stack: int, why: str = _CALL_SAVES) -> dict:
    return dict(kind="cuda", kernel=kernel, arch="any", args=args, stack=stack, why=why)


ACCEPTED_SPILLS: list = [
    # region_attention bf16 backward, head dim 512 on sm_90 (D_CHUNKS=8 x 64): Q.K and dY.V run over
    # 8 head-dim chunks each while S, dP and the 64 x 64 gradient accumulator (fp32) stay live.
    # Measured dQ / dK stack: 128-wide chunks, 256-wide outputs, 2 stages 528 / 528 B (and 336 KiB
    # shared memory); 128-wide chunks and outputs, 1 stage 512 / 568 B; 64-wide chunks and outputs,
    # 1 stage 280 / 376 B (the config used). sm_80 and the dV kernel do not spill with these tiles.
    _triton("_bwd_dq_kernel", "sm_90", "D_CHUNKS=8 BLOCK_E=64 E_CHUNKS=8", 280,
            "d=512 dQ: 280 B stack, 88 LDL/STL (measured); no tiling tried avoids it"),
    _triton("_bwd_kv_kernel", "sm_90", "DO_DK D_CHUNKS=8 BLOCK_E=64 E_CHUNKS=8", 376,
            "d=512 dK: 376 B stack, 114 LDL/STL (measured); no tiling tried avoids it"),
    # The same backward in the cosine modes (SCALED: the row norms stay live too), 16-bit, d=512 on
    # sm_90 (triton 3.9, measured; the models use softmax): dQ 352-368 B, dK 448 B.
    _triton("_bwd_dq_kernel", "sm_90", "SCALED D_CHUNKS=8 BLOCK_E=64 E_CHUNKS=8", 368,
            "d=512 cosine-mode dQ: 352-368 B, 108-112 LDL/STL (measured)"),
    _triton("_bwd_kv_kernel", "sm_90", "DO_DK SCALED D_CHUNKS=8 BLOCK_E=64 E_CHUNKS=8", 448,
            "d=512 cosine-mode dK: 448 B, 130 LDL/STL (measured)"),
    _triton("_bwd_kv_kernel", "sm_90", "DO_DK SCALED D_CHUNKS=4 E_CHUNKS=4", 8,
            "d=256 cosine-mode dK: 8 B, 2 LDL/STL (measured)"),
    _triton("_bwd_kv_kernel", "sm_80", "DO_DK SCALED BLOCK_M=64 D_CHUNKS=8 E_CHUNKS=8", 16,
            "16-bit d=512 cosine-mode dK on sm_80 under triton 3.6: 16 B, 5 LDL/STL (3.9: none)"),
    # fp32, d=512, cosine modes, sm_80, triton 3.6 only (3.9: none): 8 B, 6 LDL/STL in dQ and dK.
    # depthwise_conv3d forward / grad_x, 3x3x3, 16-bit (sm_90 with triton 3.9, sm_80 with 3.6): ptxas
    # holds some variants at 64 registers and stores one register before the tap loops, reloading it after
    # them (1 STL, 1 LDL.LU in the SASS); nothing spills inside the loops.
    _triton("_dx_chan_kernel", "sm_90", "KT=3 KH=3 KW=3 BLOCK_P=16 BLOCK_C=64", 8,
            "3x3x3 channels_last_3d grad_x, 16-bit: 8 B, 1 STL + 1 LDL outside the tap loops (measured)"),
    _triton("_fwd_plane_kernel", "any", "KT=3 KH=3 KW=3 BLOCK_P=1024", 8,
            "3x3x3 NCDHW forward, 16-bit: 8 B, 1 STL + 1 LDL outside the tap loops (measured)"),
    _triton("_dx_plane_kernel", "any", "KT=3 KH=3 KW=3 BLOCK_P=1024", 8,
            "3x3x3 NCDHW grad_x, 16-bit: 8 B, 1 STL + 1 LDL outside the tap loops (measured)"),
    _triton("_bwd_dq_kernel", "sm_80", "SCALED BLOCK_M=32 D_CHUNKS=8 E_CHUNKS=8", 8,
            "fp32 d=512 cosine-mode dQ under triton 3.6: 8 B, 6 LDL/STL (measured)"),
    _triton("_bwd_kv_kernel", "sm_80", "DO_DK SCALED BLOCK_M=32 D_CHUNKS=8 E_CHUNKS=8", 8,
            "fp32 d=512 cosine-mode dK under triton 3.6: 8 B, 6 LDL/STL (measured)"),
    # PWTP register backward, D = 1: capped at 128 registers so that two 256-thread blocks share an
    # SM (16 warps); uncapped it needs 152-168 registers and one block fits (measured).
    _cuda("pwtp_bwd_kernel", "<*, 1, 8>", 24,
            "D=1 capped at 128 registers for 2 blocks/SM: 8-24 B, <= 10 LDL/STL (uncapped: 152-168 regs)"),
    # PWTP shared-memory backward (T > 8 only), D = 3 on sm_80: the per-pixel power-of-two scale of the
    # basis (one more pass over A before the Gram matrix) keeps more registers live across the
    # division subroutine calls of the factorisation: 32 B, 23 LDL/STL (measured; 16-bit and fp32).
    _cuda("pwtp_bwd_smem_kernel", "<*, float, 3>", 32,
          "T > 8, D = 3, sm_80: call-saved registers around the division subroutines with the scale pass: "
          "32 B, 23 LDL/STL (measured)"),
    _cuda("pwtp_bwd_smem_kernel", "*", 16),
    _cuda("pwtp_fwd_smem_kernel", "*", 32),
    _cuda("tsp_fwd_kernel", "*", 16),
    _cuda("tsp_bwd_kernel", "*", 24),
    _cuda("busy_quiet_kernel", "<double, 0>", 8),
    _cuda("mbp_forward_kernel", "<double, 0>", 8),
    _cuda("mbp_backward_tile_kernel", "<double, *>", 80),
    _cuda("mbp_backward_tile_kernel", "*", 48),
    # depthwise_conv3d channel kernels: ptxas keeps them at 40-64 registers and parks a few values that
    # are live across the tap loops but unused inside them (output indices, pointers): stored before the
    # loops, reloaded after them, once per thread (SASS of dwc_fwd_chan_kernel<float, float, 4, 4>,
    # sm_80: 3 STL before, 2 LDL after; no CALL, nothing inside the loops). Measured maxima.
    _cuda("dwc_fwd_chan_kernel", "*", 24, _LOOP_SAVES),
    _cuda("dwc_dx_chan_kernel", "*", 24, _LOOP_SAVES),
    _cuda("dwc_wgrad_chan_kernel", "*", 24, _LOOP_SAVES),
    # the tile forward on sm_80 (sm_90a: none): the store's indices and pointer stay parked across each
    # output frame's tap loops (STL before the frame loop, a few LDL at each frame's stores, none in the
    # tap loops, in the SASS of an earlier build that spilled the same way on sm_90a).
    _cuda("dwc_fwd_tile_kernel", "*", 32, _LOOP_SAVES),
    # float64 weight gradient (tile kernel; the tests' dtype, not a speed path): 64-bit division calls
    # in the frame and tile decoding and the per-tile set-up; the DFMA loops touch no local memory.
    _cuda("dwc_wgrad_tile_kernel", "<double, double>", 88),
]


# ---- Triton: capture the launches ----------------------------------------------------------------

@dataclasses.dataclass
class Launch:
    op: str
    where: str            # which case of the op's plan launched it (shape, dtype, direction)
    fn: object            # the JITFunction
    args: list            # tensors replaced by triton's MockTensor(dtype)
    kwargs: dict          # constexprs and launch options (num_warps, num_stages)
    grid: tuple

    @property
    def kernel(self) -> str:
        return self.fn.fn.__name__

    def spec(self) -> str:
        """The configuration: pointer dtypes, int arguments equal to 1 (the JIT makes them
        constants) or 64-bit, constexprs and launch options. Launches that differ only in the
        16-divisibility of int arguments (an alignment hint) count as one; the first is compiled."""
        parts = []
        for a in self.args:
            if hasattr(a, "data_ptr") and hasattr(a, "dtype"):
                parts.append(f"*{a.dtype}")
            elif isinstance(a, bool):
                parts.append(f"b{int(a)}")
            elif isinstance(a, int):
                parts.append("1" if a == 1 else ("i64" if abs(a) >= 2 ** 31 else "i"))
            elif isinstance(a, float):
                parts.append("f")
            else:
                parts.append(repr(a))
        kw = ",".join(f"{k}={self.kwargs[k]}" for k in sorted(self.kwargs))
        return f"{self.kernel}({','.join(parts)};{kw})"

    def config(self) -> str:
        """The launch's constexprs and options that matter for the tiling, short."""
        keep = {k: v for k, v in self.kwargs.items()
                if k.startswith(("BLOCK", "num_", "D_CHUNKS", "E_CHUNKS", "K", "T", "D", "R", "NF", "NQ", "QBLOCK"))
                or k in ("SOFTMAX", "SCALED", "DO_DV", "DO_DK", "MEAN", "KH", "KW", "KT")}
        short = {"num_warps": "w", "num_stages": "s"}
        items = []
        for k, v in keep.items():
            if isinstance(v, bool):
                if v:
                    items.append(k)
                continue
            items.append(f"{short.get(k, k)}={v}")
        return " ".join(items)

    def dtype(self) -> str:
        for a in self.args:
            if hasattr(a, "data_ptr") and hasattr(a, "dtype"):
                return str(a.dtype).replace("torch.", "")
        return "?"


@contextlib.contextmanager
def _recording(sink: list, op: str, where: str):
    from triton.runtime.jit import JITFunction, MockTensor
    import torch

    original = JITFunction.run

    def record(self, *args, grid, warmup, **kwargs):
        args = [MockTensor(a.dtype) if isinstance(a, torch.Tensor) else a for a in args]
        sink.append(Launch(op, where, self, args, dict(kwargs), tuple(grid) if not callable(grid) else grid))
        return None

    JITFunction.run = record
    try:
        yield
    finally:
        JITFunction.run = original


@contextlib.contextmanager
def _fake_mode():
    """FakeTensorMode with CUDA tensors on a CPU-only torch. Python indexing of such tensors
    (x[0], x[:, :3]) and .contiguous() raise there ("PyTorch is not linked with support for cuda
    devices") while select/slice/clone work: those fall back to them while the mode is on."""
    import torch
    from torch._subclasses.fake_tensor import FakeTensorMode

    original = torch.Tensor.__getitem__

    def getitem(self, key):
        try:
            return original(self, key)
        except RuntimeError as exc:
            if "not linked with support for cuda" not in str(exc):
                raise
        key = key if isinstance(key, tuple) else (key,)
        if any(k is Ellipsis for k in key):
            i = key.index(Ellipsis)
            fill = self.dim() - (len(key) - 1 - sum(k is None for k in key))
            key = key[:i] + (slice(None),) * fill + key[i + 1:]
        out, dim = self, 0
        for k in key:
            if k is None:
                out, dim = out.unsqueeze(dim), dim + 1
            elif isinstance(k, int):
                out = out.select(dim, k)
            elif isinstance(k, slice):
                start, stop, step = k.indices(out.shape[dim])
                out, dim = torch.ops.aten.slice(out, dim, start, stop, step), dim + 1
            else:
                raise TypeError(f"vidops.kernel_report: cannot index a fake CUDA tensor with {k!r}")
        return out

    original_contiguous = torch.Tensor.contiguous

    def contiguous(self, memory_format=torch.contiguous_format):  # the same fallback for .contiguous()
        try:
            return original_contiguous(self, memory_format=memory_format)
        except RuntimeError as exc:
            if "not linked with support for cuda" not in str(exc):
                raise
        return self if self.is_contiguous(memory_format=memory_format) else self.clone(memory_format=memory_format)

    torch.Tensor.__getitem__ = getitem
    torch.Tensor.contiguous = contiguous
    try:
        with FakeTensorMode(allow_non_fake_inputs=True):
            yield
    finally:
        torch.Tensor.__getitem__ = original
        torch.Tensor.contiguous = original_contiguous


def _dt(name: str):
    import torch

    return getattr(torch, name)


def _weight_dt(name: str):
    return _dt("float32") if name in ("bfloat16", "float16") else _dt(name)


def _empty(*shape, dtype):
    import torch

    return torch.empty(*shape, device="cuda", dtype=dtype)


# Each plan yields (where, thunk): the thunk runs the op's Triton launchers on fake CUDA tensors.

QUICK = False  # --quick: the benchmark's dtype (bfloat16), attention "softmax" only, the bench's kernel sizes


def _plan_region_attention(dtypes):
    from .bench.cases import region_attention as cases
    from .triton_kernels import region_attention as K

    for s in cases.shapes("full"):
        if s.label.endswith("T16"):
            continue  # same kernels as T=8 (L is a runtime argument)
        for mode in (("softmax",) if QUICK else ("softmax", "relu", "cosine_softmax", "cosine_relu")):
            for dt in dtypes:
                def run(s=s, mode=mode, dt=dt):
                    q = _empty(s.N, s.d, s.L, dtype=_dt(dt))
                    v = _empty(s.N, s.d, s.L, dtype=_dt(dt))
                    y, stats = K.forward(q, v, None, mode)
                    K.backward(torch_empty_like(y), q, v, None, y, stats, mode)
                yield f"{s.label} d={s.d} L={s.L} {mode} {dt} fwd+bwd", run


def torch_empty_like(t):
    import torch

    return torch.empty_like(t)


def _plan_motion_band_pass(dtypes):
    from .bench.cases import motion_band_pass as cases
    from .triton_kernels import motion_band_pass as K

    shapes = list(cases.shapes("full"))
    lat = next(s for s in shapes if s.label == "lateral_res2")
    for k in () if QUICK else (3, 5, 9, 11):  # every odd kernel size 3..11 (7: the bench's lateral, 9: its stem)
        shapes.append(dataclasses.replace(lat, label=f"lateral_res2_k{k}", k=k))
    for s in shapes:
        for dt in dtypes:
            def run(s=s, dt=dt):
                x = _empty(s.N, s.C, s.T, s.H, s.W, dtype=_dt(dt))
                sw = _empty(s.C, s.k, s.k, dtype=_weight_dt(dt))
                tw = _empty(s.C, 3, dtype=_weight_dt(dt))
                out = K.forward(x, sw, tw, s.stride, s.spatial_padding, s.temporal_padding)
                K.backward(torch_empty_like(out), x, sw, tw, s.stride, s.spatial_padding, s.temporal_padding)
            yield f"{s.label} k={s.k} {s.temporal_padding} {dt} fwd+bwd", run


def _plan_busy_quiet(dtypes):
    import torch

    from .bench.cases import busy_quiet as bq_cases
    from .bench.cases import motion_band_pass as cases
    from .triton_kernels import busy_quiet as K

    s = cases.stem("full")
    for quiet in ("first", "mean_minus_busy"):
        for dt in dtypes:
            def run(s=s, dt=dt, quiet=quiet):
                x = _empty(s.N, s.C, s.T, s.H, s.W, dtype=_dt(dt))
                sw = _empty(s.C, s.k, s.k, dtype=_weight_dt(dt))
                tw = _empty(s.C, 3, dtype=_weight_dt(dt))
                K.forward(x, sw, tw, quiet, bq_cases.QUIET_SCALE)
            yield f"stem k={s.k} quiet={quiet} scale={bq_cases.QUIET_SCALE} {dt} fwd", run


def _real_tables(module):
    """busy_quiet's resize tables are computed from data (searchsorted, max): compute them for
    real on the CPU and hand fake CUDA copies to the launcher."""
    import torch
    from torch._subclasses.fake_tensor import unset_fake_temporarily

    original = module._tables

    def tables(H, W, HQ, WQ, scale, opmath, device, rows, block_w):
        with unset_fake_temporarily():
            out = original.__wrapped__(H, W, HQ, WQ, scale, opmath, torch.device("cpu"), rows, block_w)
        fake = []
        for t in out:
            if isinstance(t, torch.Tensor):
                fake.append(torch.empty(t.shape, dtype=t.dtype, device=device))
            else:
                fake.append(t)
        return tuple(fake)

    return original, tables


def _plan_depthwise_conv3d(dtypes):
    """Every bench shape with its stride and padding; the X3D shapes in both layouts (the plane
    and the channel kernels), the first X3D shape also with a bias (HAS_BIAS variants)."""
    import torch

    from .bench.cases import depthwise_conv3d as cases
    from .triton_kernels import depthwise_conv3d as K

    first_x3d = True
    for s in cases.shapes(torch.device("cuda"), quick=False):
        stride = tuple(getattr(s, "stride", (1, 1, 1)))
        pad = tuple(getattr(s, "pad", None) or ((k - 1) // 2 for k in s.k))
        x3d = bool(getattr(s, "x3d", False))
        layouts = ("contiguous", "channels_last_3d") if x3d else ("contiguous",)
        biases = (False, True) if (x3d and first_x3d) else (False,)
        first_x3d = first_x3d and not x3d
        for layout in layouts:
            for has_b in biases:
                for dt in dtypes:
                    def run(s=s, dt=dt, layout=layout, has_b=has_b, stride=stride, pad=pad):
                        fmt = torch.channels_last_3d if layout == "channels_last_3d" else torch.contiguous_format
                        x = torch.empty(s.N, s.C, s.T, s.H, s.W, device="cuda", dtype=_dt(dt), memory_format=fmt)
                        w = _empty(s.C, *s.k, dtype=_weight_dt(dt))
                        b = _empty(s.C, dtype=_weight_dt(dt)) if has_b else None
                        y = K.forward(x, w, b, stride, pad)
                        K.backward(torch_empty_like(y), x, w, b, stride, pad, True, True, has_b)
                    sp = "" if stride == (1, 1, 1) else f" s={'x'.join(map(str, stride))}"
                    yield (f"{s.label} C={s.C} k={'x'.join(map(str, s.k))}{sp} p={'x'.join(map(str, pad))} "
                           f"{layout}{' bias' if has_b else ''} {dt} fwd+bwd"), run


def _plan_pixelwise_temporal_projection(dtypes):
    from .bench.cases import pixelwise_temporal_projection as cases
    from .triton_kernels import pixelwise_temporal_projection as K

    s = cases.shapes("full")[0]
    for D in (1, 2, 3, 4):
        for dt in dtypes:
            def run(s=s, D=D, dt=dt):
                x = _empty(s.N, s.C, s.T, s.H, s.W, dtype=_dt(dt))
                basis = _empty(s.N, s.T * D, s.h, s.w, dtype=_weight_dt(dt))
                pbar, enopr = K.forward(x, basis, D, 1e-6)
                K.backward(torch_empty_like(pbar), torch_empty_like(enopr), x, basis, D, 1e-6)
            yield f"N={s.N} C={s.C} T={s.T} {s.H}x{s.W} D={D} {dt} fwd+bwd", run


def _plan_temporal_relation(dtypes):
    from .bench.cases import temporal_relation as cases
    from .triton_kernels import temporal_relation as K

    for (N, C, T, h, w) in cases.shapes("full"):
        for dt in dtypes:
            def run(N=N, C=C, T=T, h=h, w=w, dt=dt):
                f = _empty(N, C, T, h, w, dtype=_dt(dt))
                u = K.forward(f)
                K.backward(torch_empty_like(u), f)
            yield f"N={N} C={C} T={T} {h}x{w} {dt} fwd+bwd", run


def _plan_temporal_squeeze(dtypes):
    from .bench.cases import temporal_squeeze as cases
    from .triton_kernels import temporal_squeeze as K

    for (N, C, Kf, H, W, _) in cases.shapes("full"):
        for D in (1, 2, 3, 4):
            for dt in dtypes:
                def run(N=N, C=C, Kf=Kf, H=H, W=W, D=D, dt=dt):
                    x = _empty(N, C, Kf, H, W, dtype=_dt(dt))
                    basis = _empty(N, Kf, D, dtype=_weight_dt(dt))
                    y, l_proj = K.forward(x, basis, 1e-6)
                    K.backward(torch_empty_like(y), torch_empty_like(l_proj), x, basis, 1e-6)
                yield f"N={N} C={C} K={Kf} {H}x{W} D={D} {dt} fwd+bwd", run


PLANS: dict[str, Callable] = {
    "motion_band_pass": _plan_motion_band_pass,
    "busy_quiet": _plan_busy_quiet,
    "depthwise_conv3d": _plan_depthwise_conv3d,
    "temporal_relation": _plan_temporal_relation,
    "pixelwise_temporal_projection": _plan_pixelwise_temporal_projection,
    "temporal_squeeze": _plan_temporal_squeeze,
    "region_attention": _plan_region_attention,
}


def _check_not_interpreting():
    if os.environ.get("TRITON_INTERPRET", "0") == "1":
        raise RuntimeError("vidops.kernel_report compiles the GPU kernels: run it without TRITON_INTERPRET=1 "
                           "(the kernels are interpreter functions in this process)")


def capture(ops=None, dtypes=DTYPES, arch: str = "sm_90", sample: bool = False) -> tuple[list, list]:
    """(launches deduplicated by specialisation, capture errors [(op, where, message)]) of the
    launchers run while Triton's driver reports `arch` (launchers whose tiles depend on the GPU
    read it from there). sample: only the first launch of each (op, kernel)."""
    _check_not_interpreting()
    import vidops  # noqa: F401  (aliases vidops.triton_kernels in a source checkout)
    from triton.runtime import driver
    from .triton_kernels import busy_quiet as bq

    launches, errors, seen, kernels = [], [], {}, set()
    for op in ops or PLANS:
        for where, thunk in PLANS[op](dtypes):
            sink: list = []
            original_tables, tables = _real_tables(bq)
            bq._tables = tables
            driver.set_active(_TargetDriver(TARGETS[arch][0]))
            try:
                with _fake_mode(), _recording(sink, op, where):
                    thunk()
            except Exception as exc:  # report it, carry on with the other cases
                errors.append((op, where, f"{type(exc).__name__}: {exc}"))
            finally:
                bq._tables = original_tables
                driver.reset_active() if driver._default is not None else setattr(driver, "_active", None)
            for launch in sink:
                key = launch.spec()
                if key in seen:
                    seen[key].where += f"; {where}"
                    continue
                if sample and (launch.op, launch.kernel) in kernels:
                    continue
                kernels.add((launch.op, launch.kernel))
                seen[key] = launch
                launches.append(launch)
    return launches, errors


# ---- Triton: compile for a target --------------------------------------------------------------

class _TargetDriver:
    """Stands in for Triton's CUDA driver: reports the target GPU; nothing is ever launched."""

    def __init__(self, capability: int):
        self.capability = capability

    def get_current_target(self):
        from triton.backends.compiler import GPUTarget

        return GPUTarget("cuda", self.capability, 32)

    def get_current_device(self):
        return 1000 + self.capability  # a device id per target keeps the JIT's caches apart

    def get_current_stream(self, device=None):
        return 0

    def get_active_torch_device(self):
        import torch

        return torch.device("cuda")

    def set_current_device(self, device):
        pass


def tool(name: str) -> Optional[str]:
    """cuobjdump / nvdisasm: the copies inside the Triton wheel, else PATH."""
    try:
        import triton

        p = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", name)
        if os.path.exists(p):
            return p
    except Exception:
        pass
    return shutil.which(name)


def cache_dir() -> str:
    d = os.environ.get("VIDOPS_KERNEL_CACHE") or os.path.join(tempfile.gettempdir(), "vidops-kernel-report")
    os.makedirs(d, exist_ok=True)
    return d


def _result_key(launch: Launch, arch: str) -> str:
    import triton

    h = hashlib.sha256()
    for part in (launch.fn.cache_key, launch.spec(), arch, triton.__version__, "v1"):
        h.update(str(part).encode())
        h.update(b"\0")
    return h.hexdigest()[:32]


_RES = re.compile(r"REG:(\d+)\s+STACK:(\d+)\s+SHARED:(\d+)\s+LOCAL:(\d+)")


def resource_usage(cubin_path: str) -> dict:
    """{function: {reg, stack, shared, local}} of one cubin."""
    out = subprocess.run([tool("cuobjdump"), "--dump-resource-usage", cubin_path],
                         capture_output=True, text=True, check=True).stdout
    res, fn = {}, None
    for line in out.splitlines():
        m = re.match(r"\s*Function (\S+):", line)
        if m:
            fn = m.group(1)
            continue
        m = _RES.search(line)
        if m and fn:
            res[fn] = dict(zip(("reg", "stack", "static_shared", "local"), map(int, m.groups())))
    return res


_OPCODE = re.compile(r"/\*[0-9a-f]{4,}\*/\s+(?:@!?U?P\w+\s+)?([A-Z][A-Z0-9_]*)")


def sass_mix(binary_path: str) -> dict:
    """{function: {opcode: count}} from the SASS of a cubin or fat binary."""
    out = subprocess.run([tool("cuobjdump"), "-sass", binary_path], capture_output=True, text=True).stdout
    mix, fn = {}, None
    for line in out.splitlines():
        m = re.match(r"\s*Function : (\S+)", line)
        if m:
            fn = m.group(1)
            mix.setdefault(fn, {})
            continue
        if fn is None:
            continue
        m = _OPCODE.search(line)
        if m:
            op = m.group(1)
            mix[fn][op] = mix[fn].get(op, 0) + 1
    return mix


MIX_KEYS = ("HGMMA", "HMMA", "DMMA", "FFMA", "DFMA", "LDGSTS", "UTMALDG", "LDSM", "LDL", "STL")


def _summarise_mix(mix: dict) -> dict:
    return {k: mix.get(k, 0) for k in MIX_KEYS if mix.get(k, 0)}


def compile_launch(launch: Launch, arch: str, use_cache: bool = True) -> dict:
    """Compile one launch for `arch`; the resource row (cached)."""
    path = os.path.join(cache_dir(), f"{_result_key(launch, arch)}.json")
    if use_cache and os.path.exists(path):
        with open(path) as f:
            row = json.load(f)
        row["cached"] = True
        return row
    from triton.runtime import driver

    cap, smem_limit = TARGETS[arch]
    row = dict(kind="triton", op=launch.op, kernel=launch.kernel, arch=arch, dtype=launch.dtype(),
               config=launch.config(), where=launch.where, smem_limit=smem_limit)
    driver.set_active(_TargetDriver(cap))
    t0 = time.perf_counter()
    try:
        compiled = launch.fn.warmup(*launch.args, grid=launch.grid, **launch.kwargs)
    except Exception as exc:
        row.update(error=f"{type(exc).__name__}: {str(exc).strip().splitlines()[-1] if str(exc).strip() else ''}"[:500])
        return row
    finally:
        driver.reset_active() if driver._default is not None else setattr(driver, "_active", None)
    row["compile_s"] = round(time.perf_counter() - t0, 2)
    ptx = compiled.asm.get("ptx", "")
    with tempfile.TemporaryDirectory() as d:
        cubin = os.path.join(d, "k.cubin")
        with open(cubin, "wb") as f:
            f.write(compiled.asm["cubin"])
        res = resource_usage(cubin)
        mix = sass_mix(cubin)
    fn_res = next(iter(res.values()), {})
    fn_mix = next(iter(mix.values()), {})
    row.update(
        shared=int(compiled.metadata.shared), regs=fn_res.get("reg"), stack=fn_res.get("stack"),
        local=fn_res.get("local"), num_warps=compiled.metadata.num_warps,
        num_stages=compiled.metadata.num_stages, ptx_wgmma="wgmma.mma_async" in ptx,
        ptx_mma="mma.sync" in ptx, mix=_summarise_mix(fn_mix))
    with open(path, "w") as f:
        json.dump(row, f)
    return row


_WORK: list = []


def _compile_job(i: int) -> dict:
    launch, arch, use_cache = _WORK[i]
    return compile_launch(launch, arch, use_cache)


def _default_jobs() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:
        return max(1, os.cpu_count() or 1)


def triton_report(archs=("sm_90", "sm_80"), ops=None, dtypes=DTYPES, jobs=None, use_cache=True,
                  progress: Optional[Callable[[str], None]] = None, sample: bool = False) -> dict:
    """{"rows": [...], "capture_errors": [...]} for every captured launch and target (captured
    per target: a launcher may choose its tiles by the GPU)."""
    os.environ.setdefault("TRITON_CACHE_DIR", os.path.join(cache_dir(), "triton"))
    os.environ.setdefault("TRITON_DEFAULT_FP_FUSION", "1")  # Triton's default; silences its warning
    work, errors = [], []
    for arch in archs:
        launches, errs = capture(ops, dtypes, arch, sample)
        work += [(launch, arch, use_cache) for launch in launches]
        errors += [e for e in errs if e not in errors]
    jobs = jobs or _default_jobs()
    rows = []
    global _WORK
    _WORK = work
    t0 = time.perf_counter()
    if jobs > 1 and len(work) > 1:
        import multiprocessing as mp

        with mp.get_context("fork").Pool(jobs) as pool:
            for n, row in enumerate(pool.imap(_compile_job, range(len(work))), 1):
                rows.append(row)
                if progress:
                    progress(f"compiled {n}/{len(work)} ({time.perf_counter() - t0:.0f} s)")
    else:
        for n in range(len(work)):
            rows.append(_compile_job(n))
            if progress:
                progress(f"compiled {n + 1}/{len(work)} ({time.perf_counter() - t0:.0f} s)")
    _WORK = []
    for row in rows:
        row["problems"] = problems(row)
    return {"rows": rows, "capture_errors": [dict(op=o, where=w, error=e) for o, w, e in errors]}


# ---- CUDA C++ ----------------------------------------------------------------------------------

def cuda_binaries(root: Optional[str] = None) -> list:
    """The built extension (vidops/_C*.so) if it holds device code, else the build's .cu objects."""
    import glob

    here = os.path.dirname(os.path.abspath(__file__))
    root = root or os.path.dirname(here)
    sos = sorted(glob.glob(os.path.join(here, "_C*.so")))
    objs = sorted(glob.glob(os.path.join(root, "build", "*", "*.cu.o")))
    return sos + objs


def _demangle(names):
    cxxfilt = shutil.which("c++filt")
    if not cxxfilt or not names:
        return {n: n for n in names}
    out = subprocess.run([cxxfilt], input="\n".join(names), capture_output=True, text=True).stdout.splitlines()
    return dict(zip(names, out)) if len(out) == len(names) else {n: n for n in names}


def _short_cuda_name(demangled: str) -> str:
    """vidops::x_cuda::(anonymous namespace)::kernel<float, 7>(args) -> kernel<float, 7>."""
    demangled = demangled.replace("(anonymous namespace)::", "")
    name = demangled.split("(")[0] if "(" in demangled else demangled
    depth, cut = 0, 0
    for i, ch in enumerate(name):  # last '::' outside template brackets
        if ch == "<":
            depth += 1
        elif ch == ">":
            depth -= 1
        elif ch == ":" and depth == 0 and name[i - 1:i] == ":":
            cut = i + 1
    return name[cut:]


def cuda_report(binaries: Optional[list] = None) -> dict:
    """{"rows": [...], "skipped": reason or None}: per kernel and architecture of the CUDA build."""
    if tool("cuobjdump") is None:
        return {"rows": [], "skipped": "cuobjdump not found (it ships in the triton wheel)"}
    binaries = cuda_binaries() if binaries is None else binaries
    rows, seen = [], set()
    for path in binaries:
        listing = subprocess.run([tool("cuobjdump"), "--dump-resource-usage", path],
                                 capture_output=True, text=True)
        if listing.returncode != 0 or "Function" not in listing.stdout:
            continue
        # the listing holds one block per embedded ELF: "arch = sm_XX" then its functions
        arch, fn, entries = None, None, []
        for line in listing.stdout.splitlines():
            m = re.match(r"\s*arch = (sm_\w+)", line)
            if m:
                arch = m.group(1)
                continue
            if line.startswith("Fatbin ptx code"):
                arch = None
                continue
            m = re.match(r"\s*Function (\S+):", line)
            if m:
                fn = m.group(1)
                continue
            m = _RES.search(line)
            if m and fn and arch:
                entries.append((arch, fn, dict(zip(("reg", "stack", "static_shared", "local"), map(int, m.groups())))))
                fn = None
        mix = _sass_by_arch(path)
        names = _demangle(sorted({e[1] for e in entries}))
        for arch, fn, res in entries:
            key = (arch, fn)
            if key in seen:
                continue
            seen.add(key)
            base = arch.replace("sm_90a", "sm_90")
            row = dict(kind="cuda", op=_op_of(path, names[fn]), kernel=_short_cuda_name(names[fn]), arch=arch,
                       source=os.path.basename(path), regs=res["reg"], stack=res["stack"], local=res["local"],
                       shared=res["static_shared"], smem_limit=TARGETS.get(base, (0, 0))[1] or None,
                       mix=_summarise_mix(mix.get((arch, fn), {})))
            row["problems"] = problems(row)
            rows.append(row)
    if not rows:
        return {"rows": [], "skipped": ("no CUDA device code found: the extension was built without CUDA "
                                        f"(looked in {', '.join(binaries) or 'vidops/_C*.so and build/*/*.cu.o'})")}
    return {"rows": rows, "skipped": None}


def _op_of(path: str, demangled: str) -> str:
    m = re.search(r"vidops::(\w+?)_cuda", demangled)
    if m:
        return m.group(1)
    return os.path.basename(path).split(".")[0]


def _sass_by_arch(path: str) -> dict:
    """{(arch, function): opcode counts} of a fat binary (cuobjdump -sass prints per-arch blocks)."""
    out = subprocess.run([tool("cuobjdump"), "-sass", path], capture_output=True, text=True).stdout
    mix, arch, fn = {}, None, None
    for line in out.splitlines():
        m = re.match(r"\s*arch = (sm_\w+)", line)
        if m:
            arch = m.group(1)
            continue
        m = re.match(r"\s*Function : (\S+)", line)
        if m:
            fn = m.group(1)
            mix.setdefault((arch, fn), {})
            continue
        if fn is None:
            continue
        m = _OPCODE.search(line)
        if m:
            d = mix[(arch, fn)]
            d[m.group(1)] = d.get(m.group(1), 0) + 1
    return mix


# ---- verdicts and the table --------------------------------------------------------------------

def _accepted(row: dict) -> Optional[str]:
    """The reason of the ACCEPTED_SPILLS entry that covers this row's spill, or None."""
    import fnmatch

    base = row["kernel"].split("<")[0]
    targs = row["kernel"][len(base):]
    arch = row["arch"].replace("sm_90a", "sm_90")
    have = set((row.get("config") or "").split())
    for e in ACCEPTED_SPILLS:
        if (e["kind"], e["kernel"]) != (row["kind"], base) or e["arch"] not in ("any", arch):
            continue
        if e["kind"] == "cuda":
            matches = fnmatch.fnmatchcase(targs, e.get("args", "*"))
        else:
            matches = set(e["config"].split()) <= have
        if matches and (row.get("stack") or 0) <= e["stack"]:
            return e["why"]
    return None


def spill_count(row: dict) -> int:
    mix = row.get("mix") or {}
    return mix.get("LDL", 0) + mix.get("STL", 0)


def problems(row: dict) -> list:
    """Why a row fails: compile error, shared memory over the limit, unaccepted spills."""
    if row.get("error"):
        return [f"compile error: {row['error']}"]
    out = []
    if row.get("smem_limit") and row.get("shared") is not None and row["shared"] > row["smem_limit"]:
        out.append(f"shared memory {row['shared']} B > {row['smem_limit']} B")
    if (row.get("stack") or 0) > 0 or spill_count(row) > 0:
        if _accepted(row) is None:
            out.append(f"spills: stack {row.get('stack')} B, {spill_count(row)} LDL/STL")
    return out


def _matrix_col(row: dict) -> str:
    mix = row.get("mix") or {}
    parts = [f"{k}:{mix[k]}" for k in ("HGMMA", "HMMA", "DMMA") if mix.get(k)]
    return " ".join(parts) or "-"


def format_table(report: dict) -> str:
    lines = []
    rows = sorted(report.get("triton", {}).get("rows", []),
                  key=lambda r: (r["op"], r["kernel"], r.get("dtype", ""), r.get("config", ""), r["arch"]))
    hdr = f"{'op':30s} {'kernel':22s} {'arch':6s} {'dtype':9s} {'regs':>4s} {'stack':>5s} {'LDL/STL':>7s} " \
          f"{'smem KiB':>8s} {'matrix':18s} {'ok':3s} config"
    if rows:
        lines += ["Triton kernels (compiled ahead of time; smem limit 227 KiB sm_90, 163 KiB sm_80)", hdr, "-" * len(hdr)]
    for r in rows:
        if r.get("error"):
            lines.append(f"{r['op']:30s} {r['kernel']:22s} {r['arch']:6s} {r.get('dtype', ''):9s} "
                         f"COMPILE ERROR {r['error'][:80]}  [{r.get('config', '')}]")
            continue
        ok = "ok" if not r["problems"] else "NO"
        if r["problems"] == [] and _accepted(r) and ((r.get("stack") or 0) or spill_count(r)):
            ok = "acc"
        lines.append(f"{r['op']:30s} {r['kernel']:22s} {r['arch']:6s} {r.get('dtype', ''):9s} {r['regs']:>4} "
                     f"{r['stack']:>5} {spill_count(r):>7} {r['shared'] / 1024:>8.1f} {_matrix_col(r):18s} "
                     f"{ok:3s} {r.get('config', '')}")
    for e in report.get("triton", {}).get("capture_errors", []):
        lines.append(f"CAPTURE ERROR {e['op']} [{e['where']}]: {e['error']}")
    cuda = report.get("cuda")
    if cuda is not None:
        lines.append("")
        if cuda.get("skipped"):
            lines.append(f"CUDA C++ kernels: skipped: {cuda['skipped']}")
        else:
            hdr = f"{'op':30s} {'kernel':60s} {'arch':7s} {'regs':>4s} {'stack':>5s} {'LDL/STL':>7s} " \
                  f"{'static smem':>11s} {'matrix':10s} ok"
            lines += ["CUDA C++ kernels (nvcc build; static shared memory only)", hdr, "-" * len(hdr)]
            for r in sorted(cuda["rows"], key=lambda r: (r["op"], r["kernel"], r["arch"])):
                ok = "ok" if not r["problems"] else "NO"
                if ok == "ok" and ((r.get("stack") or 0) or spill_count(r)):
                    ok = "acc"
                lines.append(f"{r['op']:30s} {r['kernel'][:60]:60s} {r['arch']:7s} {r['regs']:>4} {r['stack']:>5} "
                             f"{spill_count(r):>7} {r['shared']:>11} {_matrix_col(r):10s} {ok}")
    bad = [r for part in ("triton", "cuda") for r in (report.get(part) or {}).get("rows", []) if r["problems"]]
    lines.append("")
    lines.append(f"{len(bad)} kernel(s) with problems" + (":" if bad else "."))
    for r in bad:
        lines.append(f"  {r['kind']} {r['op']} {r['kernel']} {r['arch']} {r.get('dtype', '')} "
                     f"[{r.get('config', '')}]: {'; '.join(r['problems'])}")
    if ACCEPTED_SPILLS:
        lines.append("Accepted spills:")
        for e in ACCEPTED_SPILLS:
            what = e.get("config") if e["kind"] == "triton" else e.get("args", "*")
            lines.append(f"  {e['kind']} {e['kernel']} {e['arch']} [{what}] <= {e['stack']} B: {e['why']}")
    return "\n".join(lines)


def full_report(archs=("sm_90", "sm_80"), ops=None, dtypes=DTYPES, jobs=None, use_cache=True,
                cuda=True, progress=None, sample=False, cuda_objects=None, triton=True) -> dict:
    report = {"triton": triton_report(archs, ops, dtypes, jobs, use_cache, progress, sample) if triton
              else {"rows": [], "capture_errors": []}}
    if cuda:
        report["cuda"] = cuda_report(cuda_objects)
    return report


def _binaries_at(paths: str) -> list:
    """The CUDA binaries named by --cuda-objects: files, or folders searched for *.so / *.o."""
    import glob

    found = []
    for path in (x.strip() for x in paths.split(",") if x.strip()):
        if os.path.isdir(path):
            found += sorted(glob.glob(os.path.join(path, "**", "*.so"), recursive=True))
            found += sorted(glob.glob(os.path.join(path, "**", "*.o"), recursive=True))
        else:
            found.append(path)
    return found


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m vidops.kernel_report", description=__doc__.split("\n\n")[0])
    p.add_argument("--arch", default="sm_90,sm_80", help="targets, comma-separated (sm_90, sm_80)")
    p.add_argument("--ops", default="", help=f"ops, comma-separated (default all: {', '.join(PLANS)})")
    p.add_argument("--dtypes", default=",".join(DTYPES))
    p.add_argument("--jobs", type=int, default=0, help="parallel compiles (default: the CPUs)")
    p.add_argument("--no-cache", action="store_true", help="recompile even when a cached result exists")
    p.add_argument("--no-cuda", action="store_true", help="skip the CUDA C++ part")
    p.add_argument("--no-triton", action="store_true", help="skip the Triton part")
    p.add_argument("--json", default="", help="also write the report as JSON here")
    p.add_argument("--quiet", action="store_true", help="no progress line (there is none when stderr is not a terminal)")
    p.add_argument("--quick", action="store_true",
                   help="bfloat16 only, attention mode softmax only, the bench's kernel sizes only")
    p.add_argument("--sample", action="store_true",
                   help="only the first launch of each kernel per target (with --quick: the CI test's set)")
    p.add_argument("--cuda-objects", default="",
                   help="CUDA binaries for the C++ part, comma-separated files or folders (*.so, *.o); "
                        "default vidops/_C*.so and build/*/*.cu.o")
    a = p.parse_args(argv)
    global QUICK
    QUICK = a.quick
    if a.quick:
        a.dtypes = "bfloat16"
    archs = tuple(x.strip() for x in a.arch.split(",") if x.strip())
    for arch in archs:
        if arch not in TARGETS:
            p.error(f"unknown arch {arch!r} (known: {', '.join(TARGETS)})")
    ops = tuple(x.strip() for x in a.ops.split(",") if x.strip()) or None
    for op in ops or ():
        if op not in PLANS:
            p.error(f"unknown op {op!r} (known: {', '.join(PLANS)})")
    from ._progress import StatusLine

    with StatusLine() as status:  # one line redrawn on a terminal; nothing when piped
        report = full_report(archs, ops, tuple(a.dtypes.split(",")), a.jobs or None, not a.no_cache,
                             not a.no_cuda, None if a.quiet else status, a.sample,
                             _binaries_at(a.cuda_objects) if a.cuda_objects else None, not a.no_triton)
    print(format_table(report))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(report, f, indent=1)
    bad = [r for part in ("triton", "cuda") for r in (report.get(part) or {}).get("rows", []) if r["problems"]]
    return 1 if bad or report["triton"]["capture_errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
