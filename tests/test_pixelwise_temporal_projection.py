"""vidops.pixelwise_temporal_projection (operators.md §3.2): every backend against the float64 reference, the
reference against an independent per-pixel least-squares implementation, gradients, properties,
errors, torch.library/torch.compile integration and the PixelWiseTemporalProjection module."""
import math

import pytest
import torch
import torch.nn.functional as F

import vidops
from vidops.ops.pixelwise_temporal_projection import OP as PWTP_OP
from vidops.reference.pixelwise_temporal_projection import pixelwise_temporal_projection as ref
from vidops.reference.pixelwise_temporal_projection import pixelwise_temporal_projection_backward as ref_bwd

from conftest import device_backend_params
from tolerance import assert_close_to_reference

OP = "pixelwise_temporal_projection"
PARAMS = device_backend_params(OP)
KERNEL_PARAMS = device_backend_params(OP, include_reference=False)

# (N, C, T, H, W, D, h, w): upsampling x1, x4, x8, non-integer, T=2, C=64/T=16, D=4
SHAPES = [
    (2, 3, 8, 13, 17, 3, 13, 17),
    (1, 3, 8, 28, 20, 1, 7, 5),
    (2, 2, 6, 24, 16, 2, 3, 2),
    (1, 4, 5, 19, 23, 4, 6, 7),
    (1, 1, 2, 9, 7, 1, 4, 3),
    (1, 64, 16, 5, 6, 3, 2, 3),
]


def make(N, C, T, H, W, D, h, w, dtype=torch.float64, device="cpu"):
    x = torch.randn(N, C, T, H, W, dtype=dtype, device=device)
    basis = torch.randn(N, T * D, h, w, dtype=dtype, device=device)
    return x, basis


def gram_condition(basis, T, H, W, eps=1e-6):
    """Largest condition number of the per-pixel regularised Gram matrices: solves of G lose
    cond(G) * eps(dtype) relative accuracy whatever the algorithm."""
    D = basis.shape[1] // T
    A = F.interpolate(basis.double(), size=(H, W), mode="bilinear", align_corners=False)
    A = A.view(basis.shape[0], T, D, H, W).permute(0, 3, 4, 1, 2)
    G0 = A.transpose(-1, -2) @ A
    lam = eps * (G0.diagonal(dim1=-2, dim2=-1).sum(-1) / D)
    G = G0 + lam[..., None, None] * torch.eye(D, dtype=G0.dtype, device=G0.device)
    return torch.linalg.cond(G).max().item() if G.numel() else 1.0


def check_forward(out, x, basis, eps=1e-6):
    pbar, enopr = out
    N, C, T, H, W = x.shape
    r64 = ref(x.double(), basis.double(), eps)
    rs = ref(x, basis, eps)
    assert pbar.dtype == x.dtype and enopr.dtype == (torch.float64 if x.dtype == torch.float64 else torch.float32)
    cond = gram_condition(basis, T, H, W, eps)
    assert_close_to_reference(pbar, r64[0], rs[0], abs_scale=x.abs().amax(2) * cond, name="pbar")
    xx = x.double().square().sum(2).mean((1, 2, 3))  # the x^T x terms of ||p||^2
    assert_close_to_reference(enopr, r64[1], rs[1], abs_scale=xx * cond, name="enopr")


# ---- forward and backward against the reference ----------------------------------------------

@pytest.mark.parametrize("device,backend", PARAMS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_forward_matches_reference(device, backend, dtype, shape):
    x, basis = make(*shape, dtype=dtype, device=device)
    out = vidops.pixelwise_temporal_projection(x, basis, backend=backend)
    check_forward(out, x, basis)


@pytest.mark.parametrize("device,backend", PARAMS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("shape", SHAPES[:4], ids=lambda s: "x".join(map(str, s)))
def test_backward_matches_reference(device, backend, dtype, shape):
    x, basis = make(*shape, dtype=dtype, device=device)
    xr, br = x.clone().requires_grad_(), basis.clone().requires_grad_()
    pbar, enopr = vidops.pixelwise_temporal_projection(xr, br, backend=backend)
    gp, ge = torch.randn_like(pbar), torch.randn_like(enopr)
    gx, gb = torch.autograd.grad((pbar, enopr), (xr, br), (gp, ge))
    r64 = ref_bwd(gp.double(), ge.double(), x.double(), basis.double())
    rs = ref_bwd(gp, ge, x, basis)
    cond = gram_condition(basis, *x.shape[2:])
    scale = x.abs().max() * basis.abs().max() * (gp.abs().max() + ge.abs().max()) * cond
    assert_close_to_reference(gx, r64[0], rs[0], abs_scale=(r64[0].abs().max() + gp.abs().max()) * cond,
                              name="grad_x")
    assert_close_to_reference(gb, r64[1], rs[1], abs_scale=r64[1].abs().max() + scale, name="grad_basis", factor=4)


@pytest.mark.parametrize("device,backend", PARAMS)
def test_non_contiguous_inputs(device, backend):
    x, basis = make(2, 3, 6, 11, 13, 2, 4, 5, device=device)
    want = vidops.pixelwise_temporal_projection(x, basis, backend=backend)
    big = torch.randn(2, 3, 12, 11, 13, dtype=x.dtype, device=device)
    big[:, :, ::2] = x
    xs = big[:, :, ::2]                                   # strided in T
    xcl = x.to(memory_format=torch.channels_last_3d)      # channels_last_3d
    bt = basis.transpose(2, 3).contiguous().transpose(2, 3)  # transposed spatial strides
    for xi, bi in [(xs, basis), (xcl, basis), (x, bt)]:
        got = vidops.pixelwise_temporal_projection(xi, bi, backend=backend)
        for g, w in zip(got, want):
            torch.testing.assert_close(g, w, rtol=1e-12, atol=1e-12)
            assert g.is_contiguous()


@pytest.mark.parametrize("device,backend", PARAMS)
def test_empty_batch(device, backend):
    x, basis = make(0, 3, 8, 9, 10, 1, 3, 4, device=device)
    x.requires_grad_()
    basis.requires_grad_()
    pbar, enopr = vidops.pixelwise_temporal_projection(x, basis, backend=backend)
    assert pbar.shape == (0, 3, 9, 10) and enopr.shape == (0,)
    (pbar.sum() + enopr.sum()).backward()
    assert x.grad.shape == x.shape and basis.grad.shape == basis.shape


@pytest.mark.parametrize("device,backend", KERNEL_PARAMS)
def test_half_precision_inputs(device, backend):
    x, basis = make(1, 3, 8, 16, 16, 3, 2, 2, dtype=torch.float32, device=device)
    for dt in (torch.float16, torch.bfloat16):
        xh = x.to(dt)
        pbar, enopr = vidops.pixelwise_temporal_projection(xh, basis, backend=backend)
        assert pbar.dtype == dt and enopr.dtype == torch.float32
        r_pbar, r_enopr = ref(xh.double(), basis.double())
        tol = 4 * torch.finfo(dt).eps * x.abs().max().item() * 8
        assert (pbar.double() - r_pbar).abs().max() <= tol
        assert math.isclose(enopr.item(), r_enopr.item(), rel_tol=1e-4)


@pytest.mark.parametrize("device,backend", KERNEL_PARAMS)
def test_deterministic(device, backend):
    x, basis = make(2, 3, 8, 17, 19, 3, 3, 3, dtype=torch.float32, device=device)
    xr, br = x.clone().requires_grad_(), basis.clone().requires_grad_()
    outs = []
    for threads in (1, 2):
        prev = torch.get_num_threads()
        torch.set_num_threads(threads)
        try:
            pbar, enopr = vidops.pixelwise_temporal_projection(xr, br, backend=backend)
            gx, gb = torch.autograd.grad((pbar.sum() + enopr.sum()), (xr, br))
        finally:
            torch.set_num_threads(prev)
        outs.append((pbar, enopr, gx, gb))
    for a, b in zip(*outs):
        assert torch.equal(a, b)


# ---- gradients ------------------------------------------------------------------------------------

def _gradcheck(backend, x, basis, eps, fast_mode=True):
    x = x.clone().requires_grad_()
    basis = basis.clone().requires_grad_()
    fn = lambda a, b: vidops.pixelwise_temporal_projection(a, b, eps, backend=backend)  # noqa: E731
    assert torch.autograd.gradcheck(fn, (x, basis), eps=1e-6, atol=1e-5, rtol=1e-3, fast_mode=fast_mode)


@pytest.mark.parametrize("device,backend", PARAMS)
@pytest.mark.parametrize("hw", [(5, 6, 5, 6), (5, 6, 2, 3)], ids=["x1", "upsampled"])
def test_gradcheck(device, backend, hw):
    H, W, h, w = hw
    x, basis = make(2, 2, 4, H, W, 2, h, w, device=device)
    _gradcheck(backend, x, basis, 1e-6)


@pytest.mark.parametrize("device,backend", KERNEL_PARAMS)
def test_gradcheck_full_jacobian(device, backend):
    x, basis = make(1, 2, 3, 3, 4, 1, 2, 3, device=device)
    _gradcheck(backend, x, basis, 1e-6, fast_mode=False)


@pytest.mark.parametrize("device,backend", PARAMS)
def test_gradcheck_near_singular_basis(device, backend):
    x, basis = make(1, 2, 5, 4, 5, 2, 2, 3, device=device)
    b = basis.view(1, 5, 2, 2, 3)
    b[:, :, 1] = b[:, :, 0] * 1.5 + 1e-3 * b[:, :, 1]     # nearly parallel columns
    _gradcheck(backend, x, basis, 1e-6)
    b[:, :, 1] = b[:, :, 0] * 1.5                         # exactly rank deficient: the ridge solution
    _gradcheck(backend, x, basis, 1e-3)


@pytest.mark.parametrize("device,backend", PARAMS)
def test_zero_basis_is_finite(device, backend):
    x, basis = make(2, 3, 6, 7, 8, 2, 3, 4, device=device)
    basis.zero_()
    x.requires_grad_()
    basis.requires_grad_()
    pbar, enopr = vidops.pixelwise_temporal_projection(x, basis, backend=backend)
    # A = 0: y = 0, p = x
    torch.testing.assert_close(pbar, x.detach().mean(2))
    torch.testing.assert_close(enopr, x.detach().square().sum(2).mean((1, 2, 3)))
    gx, gb = torch.autograd.grad(pbar.sum() + enopr.sum(), (x, basis))
    assert torch.isfinite(gx).all() and torch.isfinite(gb).all()
    assert gb.abs().max() == 0


# ---- the reference, term by term, against an independent implementation -------------------------

def _bilinear_table(out_size, in_size):
    src = ((torch.arange(out_size, dtype=torch.float64) + 0.5) * in_size / out_size - 0.5).clamp(min=0)
    i0 = src.floor().long().clamp(max=in_size - 1)
    i1 = (i0 + 1).clamp(max=in_size - 1)
    return i0, i1, src - i0


def _upsample_by_hand(basis, H, W):
    """Bilinear upsampling written from the definition (align_corners=False, size-based)."""
    h, w = basis.shape[-2:]
    y0, y1, ly = _bilinear_table(H, h)
    x0, x1, lx = _bilinear_table(W, w)
    ly, lx = ly.view(-1, 1), lx.view(1, -1)
    g = lambda ys, xs: basis[..., ys, :][..., xs]  # noqa: E731
    return ((1 - ly) * (1 - lx) * g(y0, x0) + (1 - ly) * lx * g(y0, x1)
            + ly * (1 - lx) * g(y1, x0) + ly * lx * g(y1, x1))


@pytest.mark.parametrize("shape", SHAPES[:5], ids=lambda s: "x".join(map(str, s)))
def test_reference_against_lstsq(shape):
    N, C, T, H, W, D, h, w = shape
    x, basis = make(*shape)
    eps = 1e-3
    A = _upsample_by_hand(basis, H, W).view(N, T, D, H, W).permute(0, 3, 4, 1, 2)   # (N, H, W, T, D)
    lam = eps * (A.square().sum((-2, -1)) / D)
    # ridge least squares as an ordinary one: [A; sqrt(lam) I] y = [x; 0]
    aug = torch.cat([A, lam.sqrt()[..., None, None] * torch.eye(D, dtype=A.dtype)], -2)
    rhs = torch.cat([x.permute(0, 3, 4, 2, 1), torch.zeros(N, H, W, D, C, dtype=x.dtype)], -2)
    y = torch.linalg.lstsq(aug, rhs).solution                                          # (N, H, W, D, C)
    p = x.permute(0, 3, 4, 2, 1) - A @ y                                               # (N, H, W, T, C)
    pbar, enopr, x_hat, p_full = ref(x, basis, eps, return_full=True)
    torch.testing.assert_close(pbar, p.mean(3).permute(0, 3, 1, 2))                     # eq. 3.12
    torch.testing.assert_close(enopr, p.square().sum((1, 2, 3, 4)) / (H * W * C))       # eq. 3.13
    torch.testing.assert_close(p_full, p.permute(0, 4, 3, 1, 2))                         # eq. 3.11
    torch.testing.assert_close(x_hat, (A @ y).permute(0, 4, 3, 1, 2))                    # eq. 3.7
    # the closed forms the kernels use: w = (1 - A G^-1 A^T 1)/T and ||p||^2 = x'x - b'y - lam y'y
    G = A.transpose(-1, -2) @ A + lam[..., None, None] * torch.eye(D, dtype=A.dtype)
    v = torch.linalg.solve(G, A.transpose(-1, -2) @ torch.ones(T, 1, dtype=A.dtype))
    wv = (1 - A @ v) / T                                                                # (N, H, W, T, 1)
    xs = x.permute(0, 3, 4, 2, 1)
    torch.testing.assert_close((wv * xs).sum(3).permute(0, 3, 1, 2), pbar)
    b = A.transpose(-1, -2) @ xs
    closed = xs.square().sum(3) - (b * y).sum(3) - lam[..., None] * y.square().sum(3)
    torch.testing.assert_close(closed, p.square().sum(3))


# ---- properties (every backend) -------------------------------------------------------------------

@pytest.mark.parametrize("device,backend", PARAMS)
def test_static_video_has_no_dynamic_appearance(device, backend):
    N, C, T, H, W, D, h, w = 2, 3, 8, 12, 10, 2, 3, 5
    frame = torch.randn(N, C, 1, H, W, dtype=torch.float64, device=device)
    x = frame.expand(N, C, T, H, W)
    basis = torch.randn(N, T * D, h, w, dtype=torch.float64, device=device)
    basis.view(N, T, D, h, w)[:, :, 0] = 0.7      # the constant vector is a column of A
    pbar, enopr = vidops.pixelwise_temporal_projection(x, basis, backend=backend)
    assert pbar.abs().max() < 1e-5 * x.abs().max()
    assert enopr.max() < 1e-10 * x.square().sum(2).mean()


@pytest.mark.parametrize("device,backend", PARAMS)
def test_enopr_is_mean_squared_residual_and_orthogonal(device, backend):
    N, C, T, H, W, D, h, w = 2, 3, 8, 14, 9, 3, 4, 3
    x, basis = make(N, C, T, H, W, D, h, w, device=device)
    eps = 1e-2
    pbar, enopr = vidops.pixelwise_temporal_projection(x, basis, eps, backend=backend)
    _, _, x_hat, p = vidops.pixelwise_temporal_projection(x, basis, eps, return_full=True)
    torch.testing.assert_close(enopr, p.square().sum((1, 2, 3, 4)) / (H * W * C))
    torch.testing.assert_close(pbar, p.mean(2))
    torch.testing.assert_close(x_hat + p, x)
    # A^T p = lam y: orthogonal up to the regularisation
    A = F.interpolate(basis, size=(H, W), mode="bilinear", align_corners=False)
    A = A.view(N, T, D, H, W).permute(0, 3, 4, 1, 2)
    lam = eps * (A.square().sum((-2, -1)) / D)
    Atp = A.transpose(-1, -2) @ p.permute(0, 3, 4, 2, 1)
    y = torch.linalg.solve(A.transpose(-1, -2) @ A + lam[..., None, None] * torch.eye(D, dtype=A.dtype),
                           A.transpose(-1, -2) @ x.permute(0, 3, 4, 2, 1))
    torch.testing.assert_close(Atp, lam[..., None, None] * y)
    _, _, _, p0 = vidops.pixelwise_temporal_projection(x, basis, 1e-9, return_full=True)
    assert (A.transpose(-1, -2) @ p0.permute(0, 3, 4, 2, 1)).abs().max() < 1e-6 * x.abs().max()


def test_return_full_gradients():
    x, basis = make(1, 2, 5, 6, 7, 2, 3, 3)
    x.requires_grad_()
    basis.requires_grad_()
    fn = lambda a, b: vidops.pixelwise_temporal_projection(a, b, return_full=True)  # noqa: E731
    assert torch.autograd.gradcheck(fn, (x, basis), fast_mode=True)


# ---- errors -----------------------------------------------------------------------------------------

def _bad_cases():
    x = torch.randn(2, 3, 8, 16, 16)
    b = torch.randn(2, 8, 4, 4)
    inf = b.clone()
    inf[0, 0, 0, 0] = float("inf")
    return [
        ((x[0], b, 1e-6), ValueError, "x must be 5-D"),
        ((x, b[0], 1e-6), ValueError, "basis must be 4-D"),
        ((x, torch.randn(2, 10, 4, 4), 1e-6), ValueError, "T*D channels"),
        ((x, torch.randn(2, 64, 4, 4), 1e-6), ValueError, "D must be < T"),
        ((torch.randn(2, 3, 12, 8, 8), torch.randn(2, 60, 4, 4), 1e-6), ValueError, "D must be <= 4"),
        ((x, torch.randn(3, 8, 4, 4), 1e-6), ValueError, "batch 3"),
        ((x, torch.randn(2, 8, 17, 4), 1e-6), ValueError, "resolution"),
        ((x, inf, 1e-6), ValueError, "basis must be finite"),
        ((x, b.double(), 1e-6), TypeError, "basis must have x's dtype"),
        ((x.int(), b, 1e-6), TypeError, "x must be a floating tensor"),
        ((x, b, 0.0), ValueError, "eps must be a positive"),
        ((x, b, float("nan")), ValueError, "eps must be a positive"),
        ((x[:, :, :1], b[:, :1], 1e-6), ValueError, "T >= 2"),
        (([1.0], b, 1e-6), TypeError, "x must be a torch.Tensor"),
    ]


@pytest.mark.parametrize("case", range(len(_bad_cases())))
def test_bad_inputs(case):
    args, exc, msg = _bad_cases()[case]
    with pytest.raises(exc, match="vidops.pixelwise_temporal_projection: .*" + msg.replace("*", r"\*")):
        vidops.pixelwise_temporal_projection(*args)


# ---- torch.library and torch.compile ----------------------------------------------------------------

@pytest.mark.parametrize("device,backend", PARAMS)
def test_opcheck(device, backend):
    x, basis = make(1, 2, 4, 6, 5, 1, 3, 3, device=device)
    x.requires_grad_()
    basis.requires_grad_()
    torch.library.opcheck(PWTP_OP.forward_op, (x, basis, 1e-6, backend))


@pytest.mark.parametrize("device,backend", PARAMS)
def test_torch_compile_fullgraph(device, backend):
    torch._dynamo.reset()
    x, basis = make(2, 3, 6, 10, 9, 2, 5, 3, dtype=torch.float32, device=device)

    def f(a, b):
        pbar, enopr = vidops.pixelwise_temporal_projection(a, b, backend=backend)
        return pbar.square().mean() + enopr.mean()

    xr, br = x.clone().requires_grad_(), basis.clone().requires_grad_()
    want = f(xr, br)
    gw = torch.autograd.grad(want, (xr, br))
    compiled = torch.compile(f, fullgraph=True, backend="aot_eager")
    got = compiled(xr, br)
    gg = torch.autograd.grad(got, (xr, br))
    torch.testing.assert_close(got, want)
    for a, b in zip(gg, gw):
        torch.testing.assert_close(a, b)


# ---- the module ---------------------------------------------------------------------------------------

def test_module_parameter_count_config7():
    m = vidops.nn.PixelWiseTemporalProjection(in_channels=3, T=8, D=1)
    # conv 9x9x3x24 + 24; MLP 28 -> 56 -> [BN, 56 -> 14 -> 56] -> 8 (table 3.13, config #7: 9.7k)
    assert sum(p.numel() for p in m.parameters()) == 5856 + 1624 + 112 + 798 + 840 + 456 == 9686
    # config #2 (r=1) 7.4k and #6 (B=0, r=4) 10.0k from the same formula
    n2 = sum(p.numel() for p in vidops.nn.PixelWiseTemporalProjection(expansion=1).parameters())
    n6 = sum(p.numel() for p in vidops.nn.PixelWiseTemporalProjection(expansion=4, num_blocks=0).parameters())
    assert round(n2 / 100) == 74 and round(n6 / 100) == 100


@pytest.mark.parametrize("device,backend", PARAMS)
def test_module_shapes_gradients_and_init(device, backend):
    torch.manual_seed(0)
    m = vidops.nn.PixelWiseTemporalProjection(in_channels=3, T=6, D=2, conv_channels=8, backend=backend).to(device)
    x = torch.randn(2, 3, 6, 35, 29, device=device, requires_grad=True)
    pbar, enopr = m(x)
    assert pbar.shape == (2, 3, 35, 29) and enopr.shape == (2,)
    basis = m.basis(x)
    assert basis.shape == (2, 12, 5, 4)                  # ceil(35 / 8), ceil(29 / 8)
    # A has independent columns at initialisation (and the constant vector nearly in its span)
    A = basis.detach().double().view(2, 6, 2, 20).permute(0, 3, 1, 2)
    assert torch.linalg.svdvals(A).min() > 0.1
    (pbar.square().mean() + enopr.mean()).backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    for name, p in m.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name
    # (N*T, C, H, W) input with num_segments
    m.num_segments = 6
    pbar2, enopr2 = m(x.detach().transpose(1, 2).reshape(12, 3, 35, 29))
    torch.testing.assert_close(pbar2, pbar.detach())
    torch.testing.assert_close(enopr2, enopr.detach())


def test_module_reference_and_cpu_backends_agree():
    torch.manual_seed(0)
    m = vidops.nn.PixelWiseTemporalProjection(T=8, D=3).double()
    x = torch.randn(2, 3, 8, 24, 32, dtype=torch.float64)
    outs = []
    for b in [b for b in ("reference", "cpu") if b in [p.values[1] for p in PARAMS]]:
        m.backend = b
        outs.append(m(x))
    for o in outs[1:]:
        for a, b in zip(o, outs[0]):
            torch.testing.assert_close(a, b)


def test_torch_compile_inductor_fullgraph():
    """The op under the default torch.compile backend (inductor), fullgraph, forward and backward."""
    torch._dynamo.reset()
    x, basis = make(1, 2, 4, 9, 8, 1, 3, 2, dtype=torch.float32)
    xr, br = x.clone().requires_grad_(), basis.clone().requires_grad_()
    f = lambda a, b: vidops.pixelwise_temporal_projection(a, b)[1].sum()  # noqa: E731
    want = f(xr, br)
    gw = torch.autograd.grad(want, (xr, br))
    got = torch.compile(f, fullgraph=True)(xr, br)
    torch.testing.assert_close(got, want)
    for a, b in zip(torch.autograd.grad(got, (xr, br)), gw):
        torch.testing.assert_close(a, b)


def test_module_torch_compile_fullgraph():
    """The module (convolutions, the MLP and both custom ops) compiled fullgraph, forward and backward."""
    torch._dynamo.reset()
    torch.manual_seed(0)
    m = vidops.nn.PixelWiseTemporalProjection(in_channels=3, T=4, D=1, conv_channels=4)
    x = torch.randn(2, 3, 4, 16, 12, requires_grad=True)

    def loss(mod, a):
        pbar, enopr = mod(a)
        return pbar.square().mean() + enopr.mean()

    want = loss(m, x)
    gw = torch.autograd.grad(want, [x] + list(m.parameters()))
    got = torch.compile(loss, fullgraph=True, backend="aot_eager")(m, x)
    gg = torch.autograd.grad(got, [x] + list(m.parameters()))
    torch.testing.assert_close(got, want)
    for a, b in zip(gg, gw):
        torch.testing.assert_close(a, b)


# ---- random shapes (hypothesis) -------------------------------------------------------------------------

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


@st.composite
def _problems(draw):
    T = draw(st.integers(2, 16))
    D = draw(st.integers(1, min(4, T - 1)))
    H, W = draw(st.integers(1, 40)), draw(st.integers(1, 40))
    h, w = draw(st.integers(1, H)), draw(st.integers(1, W))
    return draw(st.integers(1, 2)), draw(st.integers(1, 5)), T, H, W, D, h, w


@pytest.mark.parametrize("device,backend", KERNEL_PARAMS)
@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(shape=_problems(), seed=st.integers(0, 2**16))
def test_random_shapes_match_reference(device, backend, shape, seed):
    torch.manual_seed(seed)
    x, basis = make(*shape, device=device)
    basis = basis + 2.0                     # keep the Gram matrices away from singular
    xr, br = x.clone().requires_grad_(), basis.clone().requires_grad_()
    pbar, enopr = vidops.pixelwise_temporal_projection(xr, br, backend=backend)
    r = ref(x, basis)
    gp, ge = torch.randn_like(pbar), torch.randn_like(enopr)
    gx, gb = torch.autograd.grad((pbar, enopr), (xr, br), (gp, ge))
    rg = ref_bwd(gp, ge, x, basis)
    cond = gram_condition(basis, *shape[2:5])
    tol = 1e-12 * cond
    for got, want in [(pbar, r[0]), (enopr, r[1]), (gx, rg[0]), (gb, rg[1])]:
        assert (got - want).abs().max() <= tol * (1 + want.abs().max()), shape
