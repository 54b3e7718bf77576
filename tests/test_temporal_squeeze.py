"""vidops.temporal_squeeze (operators.md §4; thesis eqs. 3.4-3.5): every backend against the float64
reference, the reference against per-position lstsq, gradients (including zero residuals),
properties, errors, opcheck, compile, and the TemporalSqueezePooling module."""
import pytest
import torch

import vidops
from vidops.ops.temporal_squeeze import OP as TSP_OP
from vidops.reference.temporal_squeeze import temporal_squeeze as ref
from vidops.reference.temporal_squeeze import temporal_squeeze_backward as ref_bwd

from conftest import device_backend_params
from tolerance import assert_close_to_reference

OP = "temporal_squeeze"
PARAMS = device_backend_params(OP)
# (N, C, K, H, W, D)
SHAPES = [(2, 3, 10, 13, 17, 3), (1, 1, 2, 5, 7, 1), (1, 64, 16, 3, 4, 4), (3, 2, 6, 33, 35, 2)]


def make(N, C, K, H, W, D, dtype=torch.float64, device="cpu"):
    return (torch.randn(N, C, K, H, W, dtype=dtype, device=device),
            torch.randn(N, K, D, dtype=dtype, device=device))


def cond(basis, eps=1e-6):
    A = basis.double()
    G0 = A.transpose(-1, -2) @ A
    lam = eps * (G0.diagonal(dim1=-2, dim2=-1).sum(-1) / A.shape[-1])
    return torch.linalg.cond(G0 + lam[:, None, None] * torch.eye(A.shape[-1], dtype=A.dtype)).max().item()


@pytest.mark.parametrize("device,backend", PARAMS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_forward_backward_match_reference(device, backend, dtype, shape):
    x, basis = make(*shape, dtype=dtype, device=device)
    xr, br = x.clone().requires_grad_(), basis.clone().requires_grad_()
    y, l_proj = vidops.temporal_squeeze(xr, br, backend=backend)
    k = cond(basis)
    r64, rs = ref(x.double(), basis.double()), ref(x, basis)
    assert_close_to_reference(y, r64[0], rs[0], abs_scale=x.abs().max() * k, name="y")
    assert_close_to_reference(l_proj, r64[1], rs[1], abs_scale=x.abs().max() * k * shape[2], name="l_proj")
    gy, gl = torch.randn_like(y), torch.randn_like(l_proj)
    gx, gb = torch.autograd.grad((y, l_proj), (xr, br), (gy, gl))
    g64, gs = ref_bwd(gy.double(), gl.double(), x.double(), basis.double()), ref_bwd(gy, gl, x, basis)
    assert_close_to_reference(gx, g64[0], gs[0], abs_scale=(g64[0].abs().max() + 1) * k, name="grad_x")
    n_pos = shape[1] * shape[3] * shape[4]
    assert_close_to_reference(gb, g64[1], gs[1], abs_scale=(g64[1].abs().max() + n_pos * x.abs().max()) * k,
                              name="grad_basis", factor=4)


def test_reference_against_lstsq():
    N, C, K, H, W, D = 2, 3, 7, 4, 5, 3
    x, basis = make(N, C, K, H, W, D)
    eps = 1e-3
    y, l_proj = ref(x, basis, eps)
    lam = eps * (basis.square().sum((1, 2)) / D)
    for n in range(N):
        aug = torch.cat([basis[n], lam[n].sqrt() * torch.eye(D, dtype=x.dtype)])
        X = x[n].permute(1, 0, 2, 3).reshape(K, -1)                                   # (K, L)
        Y = torch.linalg.lstsq(aug, torch.cat([X, X.new_zeros(D, X.shape[1])])).solution
        torch.testing.assert_close(y[n], Y.reshape(D, C, H, W).transpose(0, 1))         # eq. 3.4
        torch.testing.assert_close(l_proj[n], (X - basis[n] @ Y).norm(dim=0).mean())    # eq. 3.5


@pytest.mark.parametrize("device,backend", PARAMS)
def test_zero_residual_gradient_is_finite(device, backend):
    N, C, K, H, W, D = 2, 2, 6, 3, 4, 2
    basis = torch.randn(N, K, D, dtype=torch.float64, device=device)
    coeff = torch.randn(N, C, D, H, W, dtype=torch.float64, device=device)
    x = torch.einsum("nkd,ncdhw->nckhw", basis, coeff)       # every position in the span
    x[:, :, :, 0, 0] = 0                                      # exactly zero residual there
    x.requires_grad_()
    basis.requires_grad_()
    y, l_proj = vidops.temporal_squeeze(x, basis, backend=backend)
    assert l_proj.max() < 1e-5
    gx, gb = torch.autograd.grad(l_proj.sum() + y.sum(), (x, basis))
    assert torch.isfinite(gx).all() and torch.isfinite(gb).all()


@pytest.mark.parametrize("device,backend", PARAMS)
def test_zero_basis(device, backend):
    x = torch.randn(2, 3, 5, 4, 6, dtype=torch.float64, device=device)
    basis = torch.zeros(2, 5, 2, dtype=torch.float64, device=device, requires_grad=True)
    y, l_proj = vidops.temporal_squeeze(x, basis, backend=backend)
    assert y.abs().max() == 0
    torch.testing.assert_close(l_proj, x.norm(dim=2).mean((1, 2, 3)))
    gb, = torch.autograd.grad(l_proj.sum(), basis)
    assert torch.isfinite(gb).all()


@pytest.mark.parametrize("device,backend", PARAMS)
def test_gradcheck(device, backend):
    x, basis = make(2, 2, 5, 3, 4, 2, device=device)
    x.requires_grad_()
    basis.requires_grad_()
    fn = lambda a, b: vidops.temporal_squeeze(a, b, backend=backend)  # noqa: E731
    assert torch.autograd.gradcheck(fn, (x, basis), fast_mode=True)
    nb = basis.detach().clone()
    nb[:, :, 1] = 2 * nb[:, :, 0] + 1e-3 * nb[:, :, 1]       # near-singular
    assert torch.autograd.gradcheck(fn, (x, nb.requires_grad_()), fast_mode=True)


@pytest.mark.parametrize("device,backend", PARAMS)
def test_non_contiguous_and_empty(device, backend):
    x, basis = make(2, 3, 6, 7, 5, 2, device=device)
    want = vidops.temporal_squeeze(x, basis, backend=backend)
    for xi, bi in [(x.to(memory_format=torch.channels_last_3d), basis),
                   (torch.stack([x, -x], 3).flatten(2, 3)[:, :, ::2], basis),
                   (x, basis.transpose(1, 2).contiguous().transpose(1, 2))]:
        for g, w in zip(vidops.temporal_squeeze(xi, bi, backend=backend), want):
            torch.testing.assert_close(g, w, rtol=1e-13, atol=1e-13)
    xe, be = make(0, 3, 6, 7, 5, 2, device=device)
    y, l_proj = vidops.temporal_squeeze(xe.requires_grad_(), be.requires_grad_(), backend=backend)
    assert y.shape == (0, 3, 2, 7, 5) and l_proj.shape == (0,)
    (y.sum() + l_proj.sum()).backward()


def _bad():
    x, b = torch.randn(2, 3, 10, 8, 8), torch.randn(2, 10, 3)
    nan = b.clone()
    nan[1, 2, 0] = float("nan")
    return [
        ((x[0], b), ValueError, "x must be 5-D"),
        ((x, b[0]), ValueError, "basis must be 3-D"),
        ((x, torch.randn(2, 9, 3)), ValueError, r"basis must be \(N, K, D\)"),
        ((x, torch.randn(3, 10, 3)), ValueError, r"basis must be \(N, K, D\)"),
        ((x, torch.randn(2, 10, 10)), ValueError, "D < K"),
        ((x, torch.randn(2, 10, 5)), ValueError, "D must be <= 4"),
        ((x, nan), ValueError, "basis must be finite"),
        ((x, b.double()), TypeError, "x's dtype"),
    ]


@pytest.mark.parametrize("case", range(len(_bad())))
def test_bad_inputs(case):
    args, exc, msg = _bad()[case]
    with pytest.raises(exc, match="vidops.temporal_squeeze: .*" + msg):
        vidops.temporal_squeeze(*args)


@pytest.mark.parametrize("device,backend", PARAMS)
def test_opcheck_and_compile(device, backend):
    x, basis = make(2, 3, 5, 4, 3, 2, dtype=torch.float32, device=device)
    x.requires_grad_()
    basis.requires_grad_()
    torch.library.opcheck(TSP_OP.forward_op, (x, basis, 1e-6, backend))
    torch._dynamo.reset()

    def fn(a, b):
        y, l_proj = vidops.temporal_squeeze(a, b, backend=backend)
        return y.square().mean() + 10 * l_proj.mean()

    want = fn(x, basis)
    got = torch.compile(fn, fullgraph=True, backend="aot_eager")(x, basis)
    torch.testing.assert_close(got, want)
    for a, b in zip(torch.autograd.grad(got, (x, basis)), torch.autograd.grad(want, (x, basis))):
        torch.testing.assert_close(a, b)


# ---- the module ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("device,backend", PARAMS)
def test_module(device, backend):
    m = vidops.nn.TemporalSqueezePooling(K=10, D=3, backend=backend).to(device)
    assert sum(p.numel() for p in m.parameters()) == 10 * 10 + 30 * 10
    x = torch.rand(2, 3, 10, 12, 11, device=device, requires_grad=True)
    y, l_proj = m(x)
    assert y.shape == (2, 3, 3, 12, 11) and l_proj.shape == (2,)
    A = m.basis(x).detach().double()
    assert torch.linalg.svdvals(A).min() > 0.1            # independent columns at initialisation
    (y.mean() + 10 * l_proj.mean()).backward()
    assert torch.isfinite(x.grad).all()
    for name, p in m.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name
    m.num_segments = 10
    y2, l2 = m(x.detach().transpose(1, 2).reshape(20, 3, 12, 11))
    torch.testing.assert_close(y2, y.detach().transpose(1, 2).reshape(6, 3, 12, 11))
    torch.testing.assert_close(l2, l_proj.detach())
