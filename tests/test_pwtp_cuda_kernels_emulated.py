"""The CUDA kernels of PWTP, temporal relation and TSP, run on the CPU through the emulator in
tests/cuda_emu (one std::thread per CUDA thread; see its README): the extern "C" launchers of the
.cu files are called through ctypes on host memory, with the allocation and dtype logic of the
*_cuda.cpp glue mirrored here, and checked against the float64 references with the same checks
as the Triton backends (test_pwtp_kernels.py). This covers the kernels' index, stride, tiling,
shared-memory and reduction logic on GPU-less machines; timing, occupancy and real atomics
contention need a GPU (the `gpu` tests)."""
import ctypes
import shutil

import pytest
import torch

from test_pwtp_kernels import PWTP_SHAPES, TSP_SHAPES, _check_pwtp, _check_tsp, _noncontig, _pwtp_case

pytestmark = pytest.mark.skipif(shutil.which("g++") is None, reason="needs g++ (C++20) for the CUDA emulator")

DTYPE = {torch.float32: 0, torch.float64: 1, torch.float16: 2, torch.bfloat16: 3}
EPS = 1e-6


def _acc(dtype):
    return torch.float64 if dtype == torch.float64 else torch.float32


def _ptr(t):
    return None if t is None else ctypes.c_void_p(t.data_ptr())


def _i64(vals):
    return (ctypes.c_int64 * len(vals))(*[int(v) for v in vals])


def _ok(err):
    assert err is None, err.decode()


def _lib(path, fns):
    from cuda_emu.build import compile_cu

    try:
        lib = compile_cu(path)
    except Exception as exc:  # pragma: no cover - toolchain problems are reported, not failed
        pytest.skip(f"cannot build the CUDA emulator for {path}: {exc}")
    for name, restype in fns.items():
        getattr(lib, name).restype = restype
    return lib


@pytest.fixture(scope="module")
def pwtp():
    lib = _lib("pixelwise_temporal_projection/pixelwise_temporal_projection_kernel.cu",
               {"vidops_pwtp_fwd_workspace": ctypes.c_int64, "vidops_pwtp_fwd_cuda": ctypes.c_char_p,
                "vidops_pwtp_bwd_cuda": ctypes.c_char_p})

    class Impl:  # mirrors pixelwise_temporal_projection_cuda.cpp
        @staticmethod
        def forward(x, basis, D, eps):
            N, C, T, H, W = x.shape
            acc = _acc(x.dtype)
            b = basis.to(acc).contiguous()
            pbar = x.new_empty((N, C, H, W))
            enopr = x.new_empty((N,), dtype=acc)
            if N == 0:
                return pbar, enopr
            ws = x.new_empty((lib.vidops_pwtp_fwd_workspace(N, H, W),), dtype=acc)
            _ok(lib.vidops_pwtp_fwd_cuda(_ptr(x), _ptr(b), _ptr(pbar), _ptr(enopr), _ptr(ws), DTYPE[x.dtype],
                                         _i64([N, C, T, H, W, b.shape[2], b.shape[3], D]), _i64(x.stride()),
                                         ctypes.c_double(eps), None))
            return pbar, enopr

        @staticmethod
        def backward(gp, ge, x, basis, D, eps):
            N, C, T, H, W = x.shape
            acc = _acc(x.dtype)
            gp = gp.to(x.dtype)
            ge = ge.to(acc)
            gx = x.new_empty((N, C, T, H, W))
            gb = x.new_zeros((N, T * D, basis.shape[2], basis.shape[3]), dtype=acc)
            b = basis.to(acc).contiguous()
            if gx.numel():
                _ok(lib.vidops_pwtp_bwd_cuda(_ptr(gp), _i64(gp.stride()), _ptr(ge), ctypes.c_int64(ge.stride(0)),
                                             _ptr(x), _ptr(b), _ptr(gx), _ptr(gb), DTYPE[x.dtype],
                                             _i64([N, C, T, H, W, b.shape[2], b.shape[3], D]), _i64(x.stride()),
                                             ctypes.c_double(eps), None))
            return gx, gb.to(basis.dtype)

    return Impl


@pytest.fixture(scope="module")
def relation():
    lib = _lib("temporal_relation/temporal_relation_kernel.cu",
               {"vidops_temporal_relation_fwd_cuda": ctypes.c_char_p,
                "vidops_temporal_relation_bwd_cuda": ctypes.c_char_p})

    class Impl:  # mirrors temporal_relation_cuda.cpp
        @staticmethod
        def forward(f):
            N, C, T, H, W = f.shape
            u = f.new_empty((N, T * (T - 1) // 2, H, W))
            _ok(lib.vidops_temporal_relation_fwd_cuda(_ptr(f), _ptr(u), DTYPE[f.dtype], _i64(f.shape),
                                                      _i64(f.stride()), None))
            return u

        @staticmethod
        def backward(gu, f):
            gu = gu.to(f.dtype)
            gf = torch.empty(f.shape, dtype=f.dtype)
            _ok(lib.vidops_temporal_relation_bwd_cuda(_ptr(gu), _i64(gu.stride()), _ptr(f), _ptr(gf), DTYPE[f.dtype],
                                                      _i64(f.shape), _i64(f.stride()), None))
            return gf

    return Impl


@pytest.fixture(scope="module")
def tsp():
    lib = _lib("temporal_squeeze/temporal_squeeze_kernel.cu",
               {"vidops_tsp_workspace": ctypes.c_int64, "vidops_tsp_fwd_cuda": ctypes.c_char_p,
                "vidops_tsp_bwd_cuda": ctypes.c_char_p})

    class Impl:  # mirrors temporal_squeeze_cuda.cpp
        @staticmethod
        def forward(x, basis, eps):
            N, C, K, H, W = x.shape
            D = basis.shape[2]
            acc = _acc(x.dtype)
            y = x.new_empty((N, C, D, H, W))
            l = x.new_empty((N,), dtype=acc)
            if N == 0:
                return y, l
            b = basis.to(acc).contiguous()
            sizes = _i64([N, C, K, H, W, D])
            ws = x.new_empty((lib.vidops_tsp_workspace(sizes, 0),), dtype=acc)
            _ok(lib.vidops_tsp_fwd_cuda(_ptr(x), _ptr(b), _ptr(y), _ptr(l), _ptr(ws), DTYPE[x.dtype], sizes,
                                        _i64(x.stride()), ctypes.c_double(eps), None))
            return y, l

        @staticmethod
        def backward(gy, gl, x, basis, eps):
            N, C, K, H, W = x.shape
            D = basis.shape[2]
            acc = _acc(x.dtype)
            gy, gl = gy.to(x.dtype), gl.to(acc)
            gx = x.new_empty((N, C, K, H, W))
            gb = x.new_zeros((N, K, D), dtype=acc)
            b = basis.to(acc).contiguous()
            sizes = _i64([N, C, K, H, W, D])
            ws = x.new_empty((lib.vidops_tsp_workspace(sizes, 1),), dtype=acc)
            _ok(lib.vidops_tsp_bwd_cuda(_ptr(gy), _i64(gy.stride()), _ptr(gl), ctypes.c_int64(gl.stride(0)), _ptr(x),
                                        _ptr(b), _ptr(gx), _ptr(gb), _ptr(ws), DTYPE[x.dtype], sizes,
                                        _i64(x.stride()), ctypes.c_double(eps), None))
            return gx, gb.to(basis.dtype)

    return Impl


# the Triton shapes plus one whose backward footprint exceeds 48 KiB in float64 (global atomics)
EMU_PWTP_SHAPES = PWTP_SHAPES + [(1, 2, 8, 16, 40, 4, 15, 37)]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("shape", EMU_PWTP_SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_pwtp_cuda_emulated(pwtp, dtype, shape):
    x, basis, D = _pwtp_case(shape, dtype, "cpu", noncontig=shape[0] == 2)
    _check_pwtp(pwtp, x, basis, D, dtype)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_pwtp_cuda_emulated_half(pwtp, dtype):
    x, basis, D = _pwtp_case((1, 3, 8, 9, 10, 2, 3, 5), torch.float32, "cpu")
    xh = x.to(dtype)
    pbar, enopr = pwtp.forward(xh, basis, D, EPS)
    from vidops.reference.pixelwise_temporal_projection import pixelwise_temporal_projection as ref
    want = ref(xh.double(), basis.double(), EPS)
    assert pbar.dtype == dtype and enopr.dtype == torch.float32
    torch.testing.assert_close(pbar.double(), want[0], rtol=0, atol=4 * torch.finfo(dtype).eps * 8)
    torch.testing.assert_close(enopr.double(), want[1], rtol=1e-4, atol=1e-4)


def test_pwtp_cuda_emulated_zero_basis(pwtp):
    x = torch.randn(1, 2, 4, 5, 6)
    b = torch.zeros(1, 8, 2, 3)
    pbar, enopr = pwtp.forward(x, b, 2, EPS)
    torch.testing.assert_close(pbar, x.mean(2))
    torch.testing.assert_close(enopr, x.square().sum(2).mean((1, 2, 3)))
    gx, gb = pwtp.backward(torch.ones_like(pbar), torch.ones_like(enopr), x, b, 2, EPS)
    assert torch.isfinite(gx).all() and torch.isfinite(gb).all()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("shape", [(2, 3, 8, 5, 7), (1, 1, 2, 3, 4), (1, 5, 9, 4, 3)], ids=lambda s: "x".join(map(str, s)))
def test_relation_cuda_emulated(relation, dtype, shape):
    from vidops.reference.temporal_relation import temporal_relation, temporal_relation_backward

    f = torch.randn(shape, dtype=torch.float64).to(dtype)
    if shape[0] == 2:
        f = _noncontig(f)
    u = relation.forward(f)
    torch.testing.assert_close(u.double(), temporal_relation(f.double()), rtol=1e-5, atol=1e-5)
    gu = torch.randn(u.shape, dtype=torch.float64)
    gf = relation.backward(gu, f)
    torch.testing.assert_close(gf.double(), temporal_relation_backward(gu, f.double()), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("shape", TSP_SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_tsp_cuda_emulated(tsp, dtype, shape):
    N, C, K, H, W, D = shape
    x = torch.randn(N, C, K, H, W, dtype=torch.float64).to(dtype)
    base = torch.zeros(K, D, dtype=torch.float64)
    for d in range(D):
        base[d::D, d] = 1.0
    basis = (0.5 * torch.randn(N, K, D, dtype=torch.float64) + base).to(dtype)
    if N == 2:
        x = _noncontig(x)
    _check_tsp(tsp, x, basis, dtype)


def test_tsp_cuda_emulated_zero_residual(tsp):
    x = torch.randn(1, 2, 5, 3, 4, dtype=torch.float64)
    x[:, :, :, 0] = 0
    basis = torch.randn(1, 5, 2, dtype=torch.float64)
    gx, gb = tsp.backward(torch.zeros(1, 2, 2, 3, 4, dtype=torch.float64), torch.ones(1, dtype=torch.float64),
                          x, basis, EPS)
    assert torch.isfinite(gx).all() and torch.isfinite(gb).all()
    assert (gx[:, :, :, 0] == 0).all()
