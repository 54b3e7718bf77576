"""Kernel-level tests of the Triton and CUDA backends of pixel-wise temporal projection, temporal
relation and temporal squeeze (operators.md §3.1, 3.2, 4): the launchers (vidops.triton_kernels.<op>
forward/backward, torch.ops.vidops._<op>_fwd/_bwd on CUDA tensors) against the float64
references, with tolerances relative to the reference's own noise in the same dtype.

Triton runs on CPU under the interpreter (TRITON_INTERPRET=1, set by conftest), so the shapes are
tiny and odd: H, W not multiples of the blocks, upsampling x1, x4 and non-integer, D 1..4,
T 2..9 (T > 8 takes the CUDA shared-memory path), C 1..5, batch 1 and empty, non-contiguous x.
CUDA cases are marked `gpu` and skipped without a device."""
import importlib

import pytest
import torch

from vidops.reference.pixelwise_temporal_projection import (pixelwise_temporal_projection,
                                                            pixelwise_temporal_projection_backward)
from vidops.reference.temporal_relation import temporal_relation, temporal_relation_backward
from vidops.reference.temporal_squeeze import temporal_squeeze, temporal_squeeze_backward

from tolerance import assert_close_to_reference

EPS = 1e-6


def _triton_available():
    try:
        import triton  # noqa: F401
    except Exception:
        return False
    import os
    return torch.cuda.is_available() or os.environ.get("TRITON_INTERPRET") == "1"


def _cuda_kernels():
    if not torch.cuda.is_available():
        return False
    import vidops._ext as ext
    return ext.EXTENSION_LOADED and ext.has_kernel("_pixelwise_temporal_projection_fwd", "CUDA")


class _CudaPWTP:
    @staticmethod
    def forward(x, basis, D, eps):
        return torch.ops.vidops._pixelwise_temporal_projection_fwd(x, basis, D, eps)

    @staticmethod
    def backward(gp, ge, x, basis, D, eps):
        return torch.ops.vidops._pixelwise_temporal_projection_bwd(gp, ge, x, basis, D, eps)


class _CudaRelation:
    forward = staticmethod(lambda f: torch.ops.vidops._temporal_relation_fwd(f))
    backward = staticmethod(lambda gu, f: torch.ops.vidops._temporal_relation_bwd(gu, f))


class _CudaTSP:
    forward = staticmethod(lambda x, b, eps: torch.ops.vidops._temporal_squeeze_fwd(x, b, eps))
    backward = staticmethod(lambda gy, gl, x, b, eps: torch.ops.vidops._temporal_squeeze_bwd(gy, gl, x, b, eps))


def _backends(cuda_impl, op):
    out = []
    if _triton_available():
        dev = "cuda" if torch.cuda.is_available() else "cpu"
        marks = [pytest.mark.gpu] if dev == "cuda" else []
        out.append(pytest.param(("triton", dev, op), id=f"triton-{dev}", marks=marks))
    out.append(pytest.param(("cuda", "cuda", cuda_impl), id="cuda", marks=[
        pytest.mark.gpu, pytest.mark.skipif(not _cuda_kernels(), reason="needs CUDA and vidops._C CUDA kernels")]))
    return out


def _impl(param):
    kind, dev, what = param
    if kind == "triton":
        return importlib.import_module(f"vidops.triton_kernels.{what}"), dev
    return what, dev


def _noncontig(t):
    """The same values with permuted strides (channels-last-like storage)."""
    perm = list(range(t.dim()))[::-1]
    inv = [perm.index(i) for i in range(t.dim())]
    return t.permute(*perm).contiguous().permute(*inv)


# ---- pixel-wise temporal projection ------------------------------------------------------------

PWTP = _backends(_CudaPWTP, "pixelwise_temporal_projection")

# (N, C, T, H, W, D, h, w): x1, x4, non-integer upsampling; D 1..4; T 2..9; C 1..5
PWTP_SHAPES = [
    (1, 3, 8, 9, 13, 1, 9, 13),
    (2, 2, 8, 12, 20, 3, 3, 5),
    (1, 5, 5, 11, 7, 2, 4, 3),
    (1, 1, 2, 5, 9, 1, 2, 4),
    (1, 2, 9, 7, 10, 4, 3, 4),
    (1, 4, 6, 10, 6, 4, 5, 6),
]


def _well_conditioned_basis(N, T, D, h, w, dtype, device):
    """Random basis plus a dominant identity-like part, so cond(G) stays small."""
    base = torch.zeros(T, D, dtype=torch.float64)
    for d in range(D):
        base[d::D, d] = 1.0
    b = 0.5 * torch.randn(N, T, D, h, w, dtype=torch.float64) + base[None, :, :, None, None]
    return b.reshape(N, T * D, h, w).to(dtype=dtype, device=device)


def _pwtp_case(shape, dtype, device, noncontig=False):
    N, C, T, H, W, D, h, w = shape
    x = torch.randn(N, C, T, H, W, dtype=torch.float64).to(dtype=dtype, device=device)
    basis = _well_conditioned_basis(N, T, D, h, w, dtype if dtype != torch.float16 else torch.float32, device)
    if noncontig:
        x = _noncontig(x)
    return x, basis, D


def _check_pwtp(impl, x, basis, D, dtype):
    pbar, enopr = impl.forward(x, basis, D, EPS)
    r64 = pixelwise_temporal_projection(x.double().cpu(), basis.double().cpu(), EPS)
    rs = pixelwise_temporal_projection(x.cpu(), basis.cpu(), EPS)
    assert pbar.dtype == x.dtype and pbar.is_contiguous()
    assert enopr.dtype == (torch.float64 if dtype == torch.float64 else torch.float32)
    sx = x.double().abs().max().cpu()
    assert_close_to_reference(pbar.cpu(), r64[0], rs[0], abs_scale=16 * sx, name="pbar")
    assert_close_to_reference(enopr.cpu(), r64[1], rs[1], abs_scale=16 * sx ** 2, name="enopr")

    gp = torch.randn(pbar.shape, dtype=torch.float64)
    ge = torch.randn(enopr.shape, dtype=torch.float64)
    gx, gb = impl.backward(gp.to(dtype=pbar.dtype, device=x.device), ge.to(dtype=enopr.dtype, device=x.device),
                           x, basis, D, EPS)
    g64 = pixelwise_temporal_projection_backward(gp, ge, x.double().cpu(), basis.double().cpu(), EPS)
    gs = pixelwise_temporal_projection_backward(gp.to(pbar.dtype), ge.to(enopr.dtype), x.cpu(), basis.cpu(), EPS)
    assert gx.dtype == x.dtype and gb.dtype == basis.dtype and gx.is_contiguous() and gb.is_contiguous()
    N, C, T, H, W = x.shape
    up = (H * W) / (basis.shape[2] * basis.shape[3])  # pixels summed into a basis cell
    assert_close_to_reference(gx.cpu(), g64[0], gs[0], abs_scale=16 * (1 + sx), name="grad_x")
    assert_close_to_reference(gb.cpu(), g64[1], gs[1], abs_scale=16 * C * up * (1 + sx) ** 2, name="grad_basis")


@pytest.mark.parametrize("backend", PWTP)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("shape", PWTP_SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_pwtp_matches_reference(backend, dtype, shape):
    impl, dev = _impl(backend)
    x, basis, D = _pwtp_case(shape, dtype, dev)
    _check_pwtp(impl, x, basis, D, dtype)


@pytest.mark.parametrize("backend", PWTP)
def test_pwtp_noncontiguous_and_batch(backend):
    impl, dev = _impl(backend)
    x, basis, D = _pwtp_case((2, 2, 7, 6, 11, 2, 4, 3), torch.float32, dev, noncontig=True)
    assert not x.is_contiguous()
    _check_pwtp(impl, x, basis, D, torch.float32)
    # a sliced basis and x (strides with gaps) give the same numbers as contiguous copies
    xs, bs = x[:, :, ::1, 1:, :-1], basis[:, :, :, 1:]
    p1, e1 = impl.forward(xs, bs, D, EPS)
    p2, e2 = impl.forward(xs.contiguous(), bs.contiguous(), D, EPS)
    torch.testing.assert_close(p1, p2, rtol=0, atol=0)
    torch.testing.assert_close(e1, e2, rtol=0, atol=0)


@pytest.mark.parametrize("backend", PWTP)
def test_pwtp_half_inputs(backend):
    impl, dev = _impl(backend)
    x, basis, D = _pwtp_case((1, 3, 8, 9, 10, 2, 3, 5), torch.float16, dev)
    pbar, enopr = impl.forward(x, basis, D, EPS)
    ref = pixelwise_temporal_projection(x.double().cpu(), basis.double().cpu(), EPS)
    assert pbar.dtype == torch.float16 and enopr.dtype == torch.float32
    torch.testing.assert_close(pbar.double().cpu(), ref[0], rtol=0, atol=2e-2)
    torch.testing.assert_close(enopr.double().cpu(), ref[1], rtol=1e-3, atol=1e-3)


@pytest.mark.parametrize("backend", PWTP)
def test_pwtp_empty_batch_and_zero_basis(backend):
    impl, dev = _impl(backend)
    x = torch.randn(0, 2, 4, 5, 6, device=dev)
    b = torch.randn(0, 8, 2, 3, device=dev)
    pbar, enopr = impl.forward(x, b, 2, EPS)
    assert pbar.shape == (0, 2, 5, 6) and enopr.shape == (0,)
    gx, gb = impl.backward(pbar, enopr, x, b, 2, EPS)
    assert gx.shape == x.shape and gb.shape == b.shape
    # A = 0: y = 0, p = x, finite gradients
    x = torch.randn(1, 2, 4, 5, 6, device=dev)
    b = torch.zeros(1, 8, 2, 3, device=dev)
    pbar, enopr = impl.forward(x, b, 2, EPS)
    torch.testing.assert_close(pbar, x.mean(2))
    torch.testing.assert_close(enopr, x.square().sum(2).mean((1, 2, 3)))
    gx, gb = impl.backward(torch.ones_like(pbar), torch.ones_like(enopr), x, b, 2, EPS)
    assert torch.isfinite(gx).all() and torch.isfinite(gb).all()


# ---- temporal relation --------------------------------------------------------------------------

RELATION = _backends(_CudaRelation, "temporal_relation")


@pytest.mark.parametrize("backend", RELATION)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("shape", [(2, 3, 8, 5, 7), (1, 1, 2, 3, 4), (1, 5, 9, 4, 3), (2, 4, 5, 1, 6)],
                         ids=lambda s: "x".join(map(str, s)))
def test_relation_matches_reference(backend, dtype, shape):
    impl, dev = _impl(backend)
    f = torch.randn(shape, dtype=torch.float64).to(dtype=dtype, device=dev)
    if shape[0] == 2:
        f = _noncontig(f)
    u = impl.forward(f)
    r64 = temporal_relation(f.double().cpu())
    rs = temporal_relation(f.cpu())
    assert u.dtype == f.dtype and u.is_contiguous()
    sf = f.double().abs().max().cpu()
    assert_close_to_reference(u.cpu(), r64, rs, abs_scale=4 * sf ** 2, name="u")
    gu = torch.randn(r64.shape, dtype=torch.float64)
    gf = impl.backward(gu.to(dtype=dtype, device=dev), f)
    g64 = temporal_relation_backward(gu, f.double().cpu())
    gs = temporal_relation_backward(gu.to(dtype), f.cpu())
    assert gf.dtype == f.dtype and gf.is_contiguous()
    assert_close_to_reference(gf.cpu(), g64, gs, abs_scale=4 * shape[2] * sf * gu.abs().max(), name="grad_f")


@pytest.mark.parametrize("backend", RELATION)
def test_relation_empty(backend):
    impl, dev = _impl(backend)
    f = torch.randn(0, 3, 4, 2, 2, device=dev)
    assert impl.forward(f).shape == (0, 6, 2, 2)
    assert impl.backward(torch.randn(0, 6, 2, 2, device=dev), f).shape == f.shape


# ---- temporal squeeze ----------------------------------------------------------------------------

TSP = _backends(_CudaTSP, "temporal_squeeze")

# (N, C, K, H, W, D)
TSP_SHAPES = [(2, 3, 10, 5, 7, 3), (1, 1, 2, 3, 4, 1), (1, 4, 7, 6, 5, 4), (2, 5, 5, 3, 9, 2), (1, 2, 9, 4, 4, 1)]


def _check_tsp(impl, x, basis, dtype, gy_scale=1.0):
    y, l = impl.forward(x, basis, EPS)
    r64 = temporal_squeeze(x.double().cpu(), basis.double().cpu(), EPS)
    rs = temporal_squeeze(x.cpu(), basis.cpu(), EPS)
    assert y.dtype == x.dtype and y.is_contiguous()
    assert l.dtype == (torch.float64 if dtype == torch.float64 else torch.float32)
    sx = x.double().abs().max().cpu()
    assert_close_to_reference(y.cpu(), r64[0], rs[0], abs_scale=16 * sx, name="y")
    assert_close_to_reference(l.cpu(), r64[1], rs[1], abs_scale=16 * sx, name="l_proj")
    gy = gy_scale * torch.randn(r64[0].shape, dtype=torch.float64)
    gl = torch.randn(r64[1].shape, dtype=torch.float64)
    gx, gb = impl.backward(gy.to(dtype=y.dtype, device=x.device), gl.to(dtype=l.dtype, device=x.device), x, basis, EPS)
    g64 = temporal_squeeze_backward(gy, gl, x.double().cpu(), basis.double().cpu(), EPS)
    gs = temporal_squeeze_backward(gy.to(y.dtype), gl.to(l.dtype), x.cpu(), basis.cpu(), EPS)
    assert gx.dtype == x.dtype and gb.dtype == basis.dtype and gx.is_contiguous()
    M = x.shape[1] * x.shape[3] * x.shape[4]
    assert_close_to_reference(gx.cpu(), g64[0], gs[0], abs_scale=16 * (1 + sx), name="grad_x")
    assert_close_to_reference(gb.cpu(), g64[1], gs[1], abs_scale=16 * M * (1 + sx) ** 2, name="grad_basis")


@pytest.mark.parametrize("backend", TSP)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("shape", TSP_SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_tsp_matches_reference(backend, dtype, shape):
    impl, dev = _impl(backend)
    N, C, K, H, W, D = shape
    x = torch.randn(N, C, K, H, W, dtype=torch.float64).to(dtype=dtype, device=dev)
    base = torch.zeros(K, D, dtype=torch.float64)
    for d in range(D):
        base[d::D, d] = 1.0
    basis = (0.5 * torch.randn(N, K, D, dtype=torch.float64) + base).to(dtype=dtype, device=dev)
    if N == 2:
        x = _noncontig(x)
    _check_tsp(impl, x, basis, dtype)


@pytest.mark.parametrize("backend", TSP)
def test_tsp_zero_residual_and_empty(backend):
    impl, dev = _impl(backend)
    # x in the span of A exactly where x = 0: ||r|| = 0 there, zero (not NaN) gradient
    x = torch.randn(1, 2, 5, 3, 4, dtype=torch.float64, device=dev)
    x[:, :, :, 0] = 0
    basis = torch.randn(1, 5, 2, dtype=torch.float64, device=dev)
    _check_tsp(impl, x, basis, torch.float64)
    gx, gb = impl.backward(torch.zeros(1, 2, 2, 3, 4, dtype=torch.float64, device=dev),
                           torch.ones(1, dtype=torch.float64, device=dev), x, basis, EPS)
    assert torch.isfinite(gx).all() and torch.isfinite(gb).all()
    assert (gx[:, :, :, 0] == 0).all()
    # zero basis: y = 0, l = mean ||x||
    basis = torch.zeros(1, 5, 2, dtype=torch.float64, device=dev)
    y, l = impl.forward(x, basis, EPS)
    assert (y == 0).all()
    torch.testing.assert_close(l, x.norm(dim=2).mean((1, 2, 3)))
    # empty batch
    y, l = impl.forward(x[:0], basis[:0], EPS)
    assert y.shape == (0, 2, 2, 3, 4) and l.shape == (0,)
