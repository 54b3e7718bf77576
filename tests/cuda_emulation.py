"""The CUDA kernels of vidops run on the CPU, for tests on machines without a GPU.

The .cu sources are compiled by g++ as C++ with -DVIDOPS_CUDA_EMULATION (csrc/common/cuda_emulation.h:
each block runs on blockDim std::threads that share its shared memory and meet at __syncthreads;
shared memory starts as NaN), into one shared library whose extern "C" launchers are the ones the
CUDA build exports. The helpers below call them on CPU tensors exactly as the C++ glue
(csrc/*/_cuda.cpp) does on CUDA tensors: same problem structs, strides, output allocation and
workspace. What this checks: the kernels' index math, tiling, halos, padding, reflect folds, temporal
ownership, reductions and barrier placement. What it does not: nvcc code generation, timing, and
anything about memory ordering beyond what __syncthreads gives the emulated threads.
"""
from __future__ import annotations

import ctypes
import glob
import hashlib
import os
import shutil
import subprocess

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SOURCES = [
    "csrc/motion_band_pass/motion_band_pass_kernel.cu",
    "csrc/motion_band_pass/motion_band_pass_backward_kernel.cu",
    "csrc/busy_quiet/busy_quiet_kernel.cu",
    "csrc/depthwise_conv3d/depthwise_conv3d_kernel.cu",
]

SPATIAL = {"reflect": 0, "zeros": 1}
TEMPORAL = {"valid": 0, "replicate": 1, "zeros": 2}
QUIET = {"first": 0, "mean_minus_busy": 1}
DTYPES = {torch.float32: 0, torch.float64: 1, torch.float16: 2, torch.bfloat16: 3}


class MbpProblem(ctypes.Structure):
    _fields_ = [
        ("dtype", ctypes.c_int32), ("k", ctypes.c_int32), ("temporal_stride", ctypes.c_int32),
        ("spatial_padding", ctypes.c_int32), ("temporal_padding", ctypes.c_int32), ("reserved", ctypes.c_int32),
        ("N", ctypes.c_int64), ("C", ctypes.c_int64), ("T", ctypes.c_int64), ("H", ctypes.c_int64),
        ("W", ctypes.c_int64), ("T_out", ctypes.c_int64),
        ("x_strides", ctypes.c_int64 * 5), ("grad_strides", ctypes.c_int64 * 5),
    ]


class BusyQuietProblem(ctypes.Structure):
    _fields_ = [
        ("mbp", MbpProblem), ("quiet_mode", ctypes.c_int32), ("reserved", ctypes.c_int32),
        ("quiet_scale", ctypes.c_double), ("quiet_H", ctypes.c_int64), ("quiet_W", ctypes.c_int64),
    ]


class DwcProblem(ctypes.Structure):  # csrc/depthwise_conv3d/depthwise_conv3d_cuda.h
    _fields_ = [
        ("dtype", ctypes.c_int32), ("kt", ctypes.c_int32), ("kh", ctypes.c_int32), ("kw", ctypes.c_int32),
        ("st", ctypes.c_int32), ("sh", ctypes.c_int32), ("sw", ctypes.c_int32),
        ("pt", ctypes.c_int32), ("ph", ctypes.c_int32), ("pw", ctypes.c_int32),
        ("frames_per_block", ctypes.c_int32), ("reserved", ctypes.c_int32),
        ("N", ctypes.c_int64), ("C", ctypes.c_int64), ("T", ctypes.c_int64), ("H", ctypes.c_int64),
        ("W", ctypes.c_int64), ("To", ctypes.c_int64), ("Ho", ctypes.c_int64), ("Wo", ctypes.c_int64),
        ("x_strides", ctypes.c_int64 * 5), ("y_strides", ctypes.c_int64 * 5), ("gx_strides", ctypes.c_int64 * 5),
    ]


def _cuda_include():
    nvcc = shutil.which("nvcc")
    cands = [os.environ.get("CUDA_HOME", ""), "/usr/local/cuda"]
    if nvcc:
        out = subprocess.run([nvcc, "-dryrun", "--version"], capture_output=True, text=True)
        for line in (out.stdout + out.stderr).splitlines():
            if line.strip().startswith("#$ TOP="):
                cands.insert(0, line.strip()[len("#$ TOP="):])
    for c in cands:
        if c and os.path.exists(os.path.join(c, "include", "cuda_fp16.h")):
            return os.path.join(c, "include")
    return None


_LIB = None
_WHY_NOT = None


def library():
    """The emulation library (built once per source version), or None with unavailable_reason()."""
    global _LIB, _WHY_NOT
    if _LIB is not None or _WHY_NOT is not None:
        return _LIB
    inc = _cuda_include()
    cxx = shutil.which(os.environ.get("CXX", "g++")) or shutil.which("c++")
    if inc is None or cxx is None:
        _WHY_NOT = "needs the CUDA headers (nvcc) and a C++ compiler"
        return None
    srcs = [os.path.join(ROOT, s) for s in SOURCES]
    headers = sorted(glob.glob(os.path.join(ROOT, "csrc", "**", "*.h"), recursive=True))
    digest = hashlib.sha256()
    for path in srcs + headers:
        digest.update(path.encode())
        with open(path, "rb") as f:
            digest.update(f.read())
    out_dir = os.path.join(ROOT, "build", "emulated_cuda")
    os.makedirs(out_dir, exist_ok=True)
    lib_path = os.path.join(out_dir, f"libvidops_cuda_emulated_{digest.hexdigest()[:16]}.so")
    if not os.path.exists(lib_path):
        tmp = lib_path + f".{os.getpid()}.tmp"
        cmd = [cxx, "-x", "c++", "-std=c++17", "-O1", "-fPIC", "-shared", "-fno-strict-aliasing",
               "-DVIDOPS_CUDA_EMULATION", "-I" + os.path.join(ROOT, "csrc"), "-I" + inc,
               "-Wall", "-Wno-unknown-pragmas", "-Wno-attributes", *srcs, "-o", tmp]
        res = subprocess.run(cmd, capture_output=True, text=True)
        if res.returncode != 0:
            raise RuntimeError("building the CUDA emulation library failed:\n" + res.stderr[-4000:])
        os.replace(tmp, lib_path)
    lib = ctypes.CDLL(lib_path)
    lib.vidops_mbp_forward_cuda.restype = ctypes.c_char_p
    lib.vidops_mbp_forward_cuda.argtypes = [ctypes.POINTER(MbpProblem)] + [ctypes.c_void_p] * 5
    lib.vidops_mbp_backward_workspace_bytes.restype = ctypes.c_int64
    lib.vidops_mbp_backward_workspace_bytes.argtypes = [ctypes.POINTER(MbpProblem)]
    lib.vidops_mbp_backward_cuda.restype = ctypes.c_char_p
    lib.vidops_mbp_backward_cuda.argtypes = ([ctypes.POINTER(MbpProblem)] + [ctypes.c_void_p] * 8
                                             + [ctypes.c_int64, ctypes.c_void_p])
    lib.vidops_busy_quiet_cuda.restype = ctypes.c_char_p
    lib.vidops_busy_quiet_cuda.argtypes = [ctypes.POINTER(BusyQuietProblem)] + [ctypes.c_void_p] * 6
    lib.vidops_dwc_forward_cuda.restype = ctypes.c_char_p
    lib.vidops_dwc_forward_cuda.argtypes = [ctypes.POINTER(DwcProblem)] + [ctypes.c_void_p] * 5
    lib.vidops_dwc_grad_x_cuda.restype = ctypes.c_char_p
    lib.vidops_dwc_grad_x_cuda.argtypes = [ctypes.POINTER(DwcProblem)] + [ctypes.c_void_p] * 4
    lib.vidops_dwc_wgrad_workspace_bytes.restype = ctypes.c_int64
    lib.vidops_dwc_wgrad_workspace_bytes.argtypes = [ctypes.POINTER(DwcProblem)]
    lib.vidops_dwc_wgrad_cuda.restype = ctypes.c_char_p
    lib.vidops_dwc_wgrad_cuda.argtypes = ([ctypes.POINTER(DwcProblem)] + [ctypes.c_void_p] * 5
                                          + [ctypes.c_int64, ctypes.c_void_p])
    _LIB = lib
    return lib


def unavailable_reason():
    library()
    return _WHY_NOT


def _acc_dtype(dtype):
    return torch.float64 if dtype == torch.float64 else torch.float32


def _output_frames(T, stride, tp):
    return (T + 2 * (0 if tp == "valid" else 1) - 3) // stride + 1


def _problem(x, k, stride, sp, tp):
    N, C, T, H, W = x.shape
    p = MbpProblem()
    p.dtype = DTYPES[x.dtype]
    p.k, p.temporal_stride = k, stride
    p.spatial_padding, p.temporal_padding = SPATIAL[sp], TEMPORAL[tp]
    p.N, p.C, p.T, p.H, p.W = N, C, T, H, W
    p.T_out = _output_frames(T, stride, tp)
    for i, s in enumerate(x.stride()):
        p.x_strides[i] = s
    return p


def _check(err, what):
    if err is not None:
        raise RuntimeError(f"{what}: {err.decode()}")


def _ptr(t):
    return ctypes.c_void_p(t.data_ptr()) if t is not None and t.numel() else ctypes.c_void_p(0)


def forward(x, sw, tw, stride, sp, tp):
    """The CUDA forward kernel on CPU tensors (x any strides), as the glue calls it."""
    lib = library()
    k = sw.shape[-1]
    acc = _acc_dtype(x.dtype)
    sw = sw.to(acc).contiguous()
    tw = tw.to(acc).contiguous()
    p = _problem(x, k, stride, sp, tp)
    out = torch.empty((p.N, p.C, p.T_out, p.H, p.W), dtype=x.dtype)
    _check(lib.vidops_mbp_forward_cuda(ctypes.byref(p), _ptr(x), _ptr(sw), _ptr(tw), _ptr(out), None), "forward")
    return out


def backward(grad, x, sw, tw, stride, sp, tp):
    """(grad_x, grad_spatial_weight, grad_temporal_weight) from the CUDA backward kernels."""
    lib = library()
    k = sw.shape[-1]
    acc = _acc_dtype(x.dtype)
    sw = sw.to(acc).contiguous()
    tw = tw.to(acc).contiguous()
    grad = grad.to(x.dtype)
    p = _problem(x, k, stride, sp, tp)
    for i, s in enumerate(grad.stride()):
        p.grad_strides[i] = s
    gx = torch.empty((p.N, p.C, p.T, p.H, p.W), dtype=x.dtype)
    gsw = torch.empty((p.C, k, k), dtype=acc)
    gtw = torch.empty((p.C, 3), dtype=acc)
    nbytes = lib.vidops_mbp_backward_workspace_bytes(ctypes.byref(p))
    ws = torch.empty(max(nbytes, 1), dtype=torch.uint8)
    _check(lib.vidops_mbp_backward_cuda(ctypes.byref(p), _ptr(grad), _ptr(x), _ptr(sw), _ptr(tw), _ptr(gx),
                                        _ptr(gsw), _ptr(gtw), _ptr(ws), nbytes, None), "backward")
    return gx, gsw, gtw


def busy_quiet(clip, sw, tw, quiet, quiet_scale):
    lib = library()
    k = sw.shape[-1]
    acc = _acc_dtype(clip.dtype)
    sw = sw.to(acc).contiguous()
    tw = tw.to(acc).contiguous()
    bp = BusyQuietProblem()
    bp.mbp = _problem(clip, k, 3, "reflect", "valid")
    bp.quiet_mode = QUIET[quiet]
    N, C, T, H, W = clip.shape
    if quiet_scale is None:
        bp.quiet_scale, bp.quiet_H, bp.quiet_W = -1.0, H, W
    else:
        import math
        bp.quiet_scale = float(quiet_scale)
        bp.quiet_H, bp.quiet_W = int(math.floor(H * quiet_scale)), int(math.floor(W * quiet_scale))
    S = T // 3
    busy = torch.empty((N, C, S, H, W), dtype=clip.dtype)
    q = torch.empty((N, C, S, bp.quiet_H, bp.quiet_W), dtype=clip.dtype)
    _check(lib.vidops_busy_quiet_cuda(ctypes.byref(bp), _ptr(clip), _ptr(sw), _ptr(tw), _ptr(busy), _ptr(q), None),
           "busy_quiet")
    return busy, q


# ---- depthwise_conv3d (csrc/depthwise_conv3d/depthwise_conv3d_kernel.cu) ----------------------------

def _dwc_layout(x):
    """y's and grad_x's layout: x's (channels_last_3d when x is that and not also contiguous)."""
    if x.is_contiguous(memory_format=torch.channels_last_3d) and not x.is_contiguous():
        return torch.channels_last_3d
    return torch.contiguous_format


def _dwc_problem(x, weight, stride, padding, y_strides=None, gx_strides=None, frames_per_block=0):
    N, C, T, H, W = x.shape
    kt, kh, kw = weight.shape[-3:]
    p = DwcProblem()
    p.frames_per_block = frames_per_block
    p.dtype = DTYPES[x.dtype]
    p.kt, p.kh, p.kw = kt, kh, kw
    p.st, p.sh, p.sw = stride
    p.pt, p.ph, p.pw = padding
    p.N, p.C, p.T, p.H, p.W = N, C, T, H, W
    p.To, p.Ho, p.Wo = ((L + 2 * pp - k) // s + 1 for L, k, s, pp in zip((T, H, W), (kt, kh, kw), stride, padding))
    for i in range(5):
        p.x_strides[i] = x.stride(i)
        p.y_strides[i] = y_strides[i] if y_strides is not None else 0
        p.gx_strides[i] = gx_strides[i] if gx_strides is not None else 0
    return p


def _dwc_weights(weight, bias, dtype):
    acc = _acc_dtype(dtype)
    w = weight.reshape(weight.shape[0], -1).to(acc).contiguous()
    b = bias.to(acc).contiguous() if bias is not None else None
    return w, b


def dwc_forward(x, weight, bias, stride, padding, frames_per_block=0):
    """The CUDA forward launcher on CPU tensors as depthwise_conv3d_cuda.cpp calls it: x read
    through its strides, y allocated in x's layout. frames_per_block > 0 pins the tile kernel's
    output frames per block (the automatic choice is 1 at the tests' tiny sizes)."""
    lib = library()
    w, b = _dwc_weights(weight, bias, x.dtype)
    p = _dwc_problem(x, weight, stride, padding, frames_per_block=frames_per_block)
    y = torch.empty((p.N, p.C, p.To, p.Ho, p.Wo), dtype=x.dtype, memory_format=_dwc_layout(x))
    for i in range(5):
        p.y_strides[i] = y.stride(i)
    _check(lib.vidops_dwc_forward_cuda(ctypes.byref(p), _ptr(x), _ptr(w), _ptr(b), _ptr(y), None), "dwc forward")
    return y


def dwc_backward(grad, x, weight, bias, stride, padding, need_x=True, need_weight=True, need_bias=True,
                 frames_per_block=0):
    """(grad_x, grad_weight, grad_bias) from the CUDA launchers; grad_weight/grad_bias in the
    accumulation dtype, None when not asked for."""
    lib = library()
    w, _ = _dwc_weights(weight, None, x.dtype)
    acc = _acc_dtype(x.dtype)
    gx = torch.empty(x.shape, dtype=x.dtype, memory_format=_dwc_layout(x))
    p = _dwc_problem(x, weight, stride, padding, grad.stride(), gx.stride(), frames_per_block)
    if need_x:
        _check(lib.vidops_dwc_grad_x_cuda(ctypes.byref(p), _ptr(grad), _ptr(w), _ptr(gx), None), "dwc grad_x")
    gw = torch.full((p.C, p.kt * p.kh * p.kw), float("nan"), dtype=acc) if need_weight else None
    gb = torch.full((p.C,), float("nan"), dtype=acc) if (need_bias and bias is not None) else None
    if gw is not None or gb is not None:
        nbytes = lib.vidops_dwc_wgrad_workspace_bytes(ctypes.byref(p))
        ws = torch.full((max(nbytes, 1),), 0xff, dtype=torch.uint8)  # NaN bytes: unwritten partials show
        _check(lib.vidops_dwc_wgrad_cuda(ctypes.byref(p), _ptr(grad), _ptr(x), _ptr(gw), _ptr(gb), _ptr(ws), nbytes,
                                         None), "dwc grad_w")
    return (gx if need_x else None), (gw.reshape(weight.shape) if gw is not None else None), gb
