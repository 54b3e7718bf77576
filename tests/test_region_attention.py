"""vidops.region_attention: every available backend against the float64 reference (operators.md §5.1).

Under the Triton interpreter (no GPU) the triton backend runs only tiny shapes; L = 1568 runs on
the cpu backend (and on triton on a GPU).
"""
import importlib
import weakref

import pytest
import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

import vidops
from vidops import _triton
from vidops.ops.region_attention import OP as RA_OP
from vidops.reference.region_attention import _weights, normalize
from vidops.reference.region_attention import region_attention as ref_ra
from vidops.reference.region_attention import region_attention_backward as ref_ra_backward

from conftest import device_backend_params, run_with_cpu_isa
from tolerance import assert_close_to_reference

OP = "region_attention"
ra_ops = importlib.import_module("vidops.ops.region_attention")  # the module (the package exports the function)
shared_keys = importlib.import_module("vidops.ops._region_attention_shared_keys")
BACKENDS = device_backend_params(OP)
MODES = ("softmax", "cosine_softmax", "relu", "dot", "cosine_relu")
HEAD_DIMS = (16, 100, 256, 512)


def interpreted(device, backend):
    return backend == "triton" and _triton.interpreter() and device == "cpu"


def make(N, d, L, dv=None, shared=True, dtype=torch.float64, device="cpu", logit_std=1.0):
    """q, k, v with key-query logits of standard deviation ~logit_std (self-logits ~logit_std
    sqrt(d) with k=None)."""
    dv = d if dv is None else dv
    s = logit_std ** 0.5 * d ** -0.25
    q = (torch.randn(N, d, L, dtype=torch.float64) * s).to(dtype).to(device)
    k = None if shared else (torch.randn(N, d, L, dtype=torch.float64) * s).to(dtype).to(device)
    v = torch.randn(N, dv, L, dtype=torch.float64).to(dtype).to(device)
    return q, v, k


def d64(t):
    return None if t is None else t.detach().double()


def terms(q, v, k, mode):
    """Rounding scale of y in float64: sum_i |v_i| (|a_ij| + w_ij |k_i|.|q_j|), the magnitude of
    the summed terms plus the effect of a relative rounding of each logit (w = a_ij in the
    softmax modes, 1/L otherwise)."""
    q, v, k = d64(q), d64(v), d64(k)
    k = q if k is None else k
    if mode.startswith("cosine"):
        q, k = normalize(q), normalize(k)
    a = _weights(torch.bmm(k.transpose(1, 2), q), mode)
    s_abs = torch.bmm(k.abs().transpose(1, 2), q.abs())
    w = a if mode.endswith("softmax") else 1.0 / a.shape[1]
    return torch.bmm(v.abs(), a.abs() + w * s_abs)


def check_forward(out, q, v, k, mode, factor=2.0):
    ref64 = ref_ra(d64(q), d64(v), d64(k), mode)
    scale = terms(q, v, k, mode)
    assert out.dtype == q.dtype and out.is_contiguous()
    if out.dtype == torch.float64:  # any summation order: error <~ (d + L) eps x scale
        d, L = q.shape[1], q.shape[-1]
        assert_close_to_reference(out.cpu(), ref64, None, scale * ((d + L) / 8), factor=factor)
    else:  # within the noise of the authors' bmm/softmax/bmm in the same dtype (on the CPU)
        ref_same = ref_ra(q.cpu(), v.cpu(), None if k is None else k.cpu(), mode)
        assert_close_to_reference(out.cpu(), ref64, ref_same, scale, factor=factor)


def check_grads(got, q, v, k, grad, mode, rel=1e-9):
    """got = (gq, gk, gv) against the float64 explicit formulas, relative to the size of the
    summands (|g_j| |v_i| |k_i| for the q and k gradients, |g_j| for v's)."""
    want = ref_ra_backward(d64(grad), d64(q), d64(v), d64(k), mode)
    norm = lambda t: t.double().norm(dim=1).max().item() if t.numel() else 0.0  # noqa: E731
    kk = q if k is None else k
    gv_scale = norm(grad)
    gqk_scale = gv_scale * norm(v) * max(norm(q), norm(kk))
    if mode.startswith("cosine"):
        gqk_scale /= max(1e-30, min(q.double().norm(dim=1).min().item(), kk.double().norm(dim=1).min().item()))
    for name, g, w, sc in zip(("grad_q", "grad_k", "grad_v"), got, want, (gqk_scale, gqk_scale, gv_scale)):
        if w is None:
            assert g is None, name
            continue
        assert g.shape == w.shape and torch.isfinite(g).all(), name
        err = (g.cpu().double() - w).abs().max().item() if w.numel() else 0.0
        scale = max(w.abs().max().item() if w.numel() else 0.0, sc, 1e-30)
        assert err <= rel * scale, f"{name}: max abs error {err:.3e} > {rel:.0e} x {scale:.3e}"


def run_grads(q, v, k, mode, backend, grad=None):
    leaves = [t.clone().requires_grad_(True) if t is not None else None for t in (q, v, k)]
    y = vidops.region_attention(leaves[0], leaves[1], leaves[2], mode, backend=backend)
    grad = torch.randn_like(y) if grad is None else grad
    y.backward(grad)
    return (leaves[0].grad, None if k is None else leaves[2].grad, leaves[1].grad), grad


def shape_cases(device, backend):
    """(N, d, dv, L, shared): every head dim with L in {1, 37}; the interpreter keeps d=512 tiny."""
    out = []
    for d in HEAD_DIMS:
        for L in (1, 37):
            if interpreted(device, backend) and d == 512 and L > 1:
                L = 9
            out.append((1 if d >= 256 else 2, d, d if d != 100 else 48, L, L == 1 or d in (16, 256)))
    return out


# ---- forward ---------------------------------------------------------------------------------

@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("device,backend", BACKENDS)
def test_forward_matches_reference(device, backend, mode):
    for N, d, dv, L, shared in shape_cases(device, backend):
        for dtype in (torch.float32, torch.float64):
            if interpreted(device, backend) and dtype == torch.float32 and d >= 256:
                continue  # the float64 run covers the same kernel code
            q, v, k = make(N, d, L, dv, shared, dtype, device)
            out = vidops.region_attention(q, v, k, mode, backend=backend)
            assert out.shape == (N, dv, L)
            check_forward(out, q, v, k, mode)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("device,backend", BACKENDS)
def test_forward_half_precision(device, backend, mode):
    dtypes = [torch.bfloat16] + ([torch.float16] if device == "cuda" else [])
    for dtype in dtypes:
        q, v, k = make(2, 32, 37, 24, False, dtype, device)
        out = vidops.region_attention(q, v, k, mode, backend=backend)
        assert out.dtype == dtype
        # fp32 accumulation: within a few output roundings of the float64 result and within
        # the noise of the authors' same-dtype bmm/softmax/bmm
        check_forward(out, q, v, k, mode, factor=2.0)


@pytest.mark.parametrize("device,backend", BACKENDS)
def test_softmax_equals_sdpa_scale_one(device, backend):
    for shared in (True, False):
        q, v, k = make(2, 64, 37, 64, shared, torch.float64, device)
        kk = q if k is None else k
        sdpa = F.scaled_dot_product_attention(q.transpose(1, 2), kk.transpose(1, 2), v.transpose(1, 2),
                                              scale=1.0).transpose(1, 2)
        out = vidops.region_attention(q, v, k, "softmax", backend=backend)
        assert (out - sdpa).abs().max().item() < 1e-12


@pytest.mark.parametrize("mode", ("softmax", "cosine_softmax", "relu"))
@pytest.mark.parametrize("device,backend", BACKENDS)
def test_large_logits_no_overflow(device, backend, mode):
    """Unscaled logits of ~500-1000 (a naive exp overflows at 88 in fp32): finite, correct."""
    for dtype in (torch.float32, torch.float64):
        q, v, k = make(2, 64, 37, 32, True, dtype, device, logit_std=1.0)
        q = q * (600.0 / q.double().norm(dim=1).pow(2).mean().item()) ** 0.5  # self-logits ~600
        out = vidops.region_attention(q, v, None, mode, backend=backend)
        assert torch.isfinite(out).all()
        check_forward(out, q, v, None, mode)
        if dtype == torch.float64:
            (gq, _, gv), grad = run_grads(q, v, None, mode, backend)
            assert torch.isfinite(gq).all() and torch.isfinite(gv).all()
            check_grads((gq, None, gv), q, v, None, grad, mode, rel=1e-7)


@pytest.mark.parametrize("mode", ("cosine_softmax", "cosine_relu"))
@pytest.mark.parametrize("device,backend", BACKENDS)
def test_cosine_zero_vectors(device, backend, mode):
    """cos with a zero vector is 0 (norm clamped at 1e-12): never NaN, forward or backward."""
    q, v, k = make(1, 16, 37, 16, False, torch.float32, device)
    q[:, :, 3] = 0
    k[:, :, 5] = 0
    (gq, gk, gv), _ = run_grads(q, v, k, mode, backend)
    out = vidops.region_attention(q, v, k, mode, backend=backend)
    for t in (out, gq, gk, gv):
        assert torch.isfinite(t).all()
    check_forward(out, q, v, k, mode)


@pytest.mark.parametrize("device,backend", BACKENDS)
def test_layouts_and_strides(device, backend):
    """(N, d, T, H, W) in and out, channels_last_3d, sliced and transposed-storage inputs: same
    result as the contiguous (N, d, L) call."""
    N, d, T, H, W = 2, 24, 3, 4, 5
    L = T * H * W
    q = torch.randn(N, d, T, H, W, dtype=torch.float64, device=device) * 0.4
    k = torch.randn(N, d, T, H, W, dtype=torch.float64, device=device) * 0.4
    v = torch.randn(N, 20, T, H, W, dtype=torch.float64, device=device)
    for mode in ("softmax", "cosine_relu"):
        want = vidops.region_attention(q.reshape(N, d, L), v.reshape(N, 20, L), k.reshape(N, d, L), mode,
                                       backend=backend)
        y5 = vidops.region_attention(q, v, k, mode, backend=backend)
        assert y5.shape == (N, 20, T, H, W) and y5.is_contiguous()
        torch.testing.assert_close(y5.reshape(N, 20, L), want, rtol=1e-12, atol=1e-12)
        cl = [t.contiguous(memory_format=torch.channels_last_3d) for t in (q, v, k)]
        torch.testing.assert_close(vidops.region_attention(cl[0], cl[1], cl[2], mode, backend=backend), y5,
                                   rtol=1e-12, atol=1e-12)
        # (N, L, d) storage seen as (N, d, L); a channel slice of a wider tensor; v 3-D with q 5-D
        qt = q.reshape(N, d, L).transpose(1, 2).contiguous().transpose(1, 2)
        wide = torch.randn(N, 2 * d, L, dtype=torch.float64, device=device)
        wide[:, ::2] = k.reshape(N, d, L)
        ks = wide[:, ::2]
        assert not qt.is_contiguous() and not ks.is_contiguous()
        got = vidops.region_attention(qt, v.reshape(N, 20, L), ks, mode, backend=backend)
        torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
        got = vidops.region_attention(q, v.reshape(N, 20, L), k, mode, backend=backend)
        torch.testing.assert_close(got, y5, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("device,backend", BACKENDS)
def test_empty_and_single(device, backend):
    for mode in MODES:
        q, v, k = make(0, 16, 37, 8, False, torch.float32, device)
        (gq, gk, gv), _ = run_grads(q, v, k, mode, backend)
        y = vidops.region_attention(q, v, k, mode, backend=backend)
        assert y.shape == (0, 8, 37) and gq.shape == q.shape and gk.shape == k.shape and gv.shape == v.shape
        q, v, k = make(1, 16, 1, 8, True, torch.float64, device)
        check_forward(vidops.region_attention(q, v, None, mode, backend=backend), q, v, None, mode)


# ---- backward --------------------------------------------------------------------------------

@pytest.mark.parametrize("device,backend", BACKENDS)
def test_backward_with_expanded_grad(device, backend):
    """y.sum().backward() hands the op a stride-0 gradient."""
    for mode in ("softmax", "relu", "dot"):
        q, v, k = make(1, 16, 37, 8, False, torch.float64, device)
        leaves = [t.clone().requires_grad_(True) for t in (q, v, k)]
        vidops.region_attention(leaves[0], leaves[1], leaves[2], mode, backend=backend).sum().backward()
        grad = torch.ones(1, 8, 37, dtype=torch.float64, device=device)
        check_grads((leaves[0].grad, leaves[2].grad, leaves[1].grad), q, v, k, grad, mode)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("device,backend", BACKENDS)
def test_backward_matches_reference(device, backend, mode):
    cases = [(2, 16, 16, 37, True), (2, 16, 24, 37, False), (2, 100, 48, 37, False), (1, 100, 100, 1, True)]
    if not interpreted(device, backend):
        cases += [(1, 256, 256, 37, True), (1, 512, 512, 37, False)]
    elif mode in ("softmax", "relu"):  # head-dim tiling of the kernels; the modes share that code
        cases += [(1, 256, 256, 5, True), (1, 512, 512, 5, False)]
    for N, d, dv, L, shared in cases:
        q, v, k = make(N, d, L, dv, shared, torch.float64, device)
        got, grad = run_grads(q, v, k, mode, backend)
        check_grads(got, q, v, k, grad, mode)
    # float32 with noise-relative tolerances
    q, v, k = make(2, 32, 37, 24, False, torch.float32, device)
    got, grad = run_grads(q, v, k, mode, backend)
    want64 = ref_ra_backward(d64(grad), d64(q), d64(v), d64(k), mode)
    want32 = ref_ra_backward(grad.cpu(), q.cpu(), v.cpu(), k.cpu(), mode)
    for name, g, w64, w32 in zip(("grad_q", "grad_k", "grad_v"), got, want64, want32):
        assert g.dtype == torch.float32
        scale = w64.abs().max() * torch.ones_like(w64)
        assert_close_to_reference(g.cpu(), w64, w32, scale, name=name, factor=4.0)


@pytest.mark.parametrize("device,backend", BACKENDS)
def test_gradcheck(device, backend):
    modes = MODES if not interpreted(device, backend) else ("softmax", "cosine_relu")
    for mode in modes:
        for shared in (True, False):
            q, v, k = make(1, 6, 7, 5, shared, torch.float64, device)
            inputs = tuple(t.requires_grad_(True) for t in (q, v, k) if t is not None)

            def fn(*ts):
                return vidops.region_attention(ts[0], ts[1], ts[2] if len(ts) > 2 else None, mode,
                                               backend=backend)

            assert torch.autograd.gradcheck(fn, inputs, eps=1e-6, atol=1e-6, fast_mode=True)


# ---- torch.library integration ---------------------------------------------------------------

@pytest.mark.parametrize("device,backend", BACKENDS)
def test_opcheck(device, backend):
    q, v, k = make(2, 16, 21, 8, True, torch.float32, device)
    args = (q.requires_grad_(True), v.requires_grad_(True), None, "softmax", backend)
    torch.library.opcheck(RA_OP.forward_op, args)
    q, v, k = make(2, 16, 21, 8, False, torch.float32, device)
    y, stats = RA_OP.forward_op(q, v, k, "cosine_relu", backend)
    torch.library.opcheck(RA_OP.backward_op,
                          (torch.randn_like(y), q, v, k, None, stats, "cosine_relu", backend))


@pytest.mark.parametrize("device,backend", BACKENDS)
def test_torch_compile_fullgraph(device, backend):
    q, v, k = make(2, 16, 30, 8, True, torch.float32, device)

    def f(q, v):
        y = vidops.region_attention(q.view(2, 16, 2, 3, 5), v, None, "softmax", backend=backend)
        return (y * y).sum()

    compiled = torch.compile(f, fullgraph=True, backend="inductor" if device == "cuda" else "aot_eager")
    qs, vs = q.clone().requires_grad_(True), v.clone().requires_grad_(True)
    qc, vc = q.clone().requires_grad_(True), v.clone().requires_grad_(True)
    f(qs, vs).backward()
    compiled(qc, vc).backward()
    torch.testing.assert_close(qc.grad, qs.grad)
    torch.testing.assert_close(vc.grad, vs.grad)


@pytest.mark.slow
def test_torch_compile_inductor_cpu():
    q, v, k = make(1, 16, 30, 16, False, torch.float32)

    def f(q, v, k):
        return torch.relu(vidops.region_attention(q, v, k, "relu", backend="cpu")) + 1

    compiled = torch.compile(f, fullgraph=True)
    torch.testing.assert_close(compiled(q, v, k), f(q, v, k))


# ---- memory ----------------------------------------------------------------------------------

class _AllocationRecorder(TorchDispatchMode):
    """Largest tensor (elements) any aten op returns, and the peak of the recorded live bytes."""

    def __init__(self):
        super().__init__()
        self.largest = 0
        self.live = 0
        self.peak = 0
        self._seen = set()

    def _free(self, key, nbytes):
        self.live -= nbytes
        self._seen.discard(key)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in tree_leaves(out):
            if isinstance(t, torch.Tensor) and t.numel():
                self.largest = max(self.largest, t.numel())
                key = t.untyped_storage().data_ptr()
                if key not in self._seen:
                    self._seen.add(key)
                    nbytes = t.untyped_storage().nbytes()
                    self.live += nbytes
                    self.peak = max(self.peak, self.live)
                    weakref.finalize(t, self._free, key, nbytes)
        return out


@pytest.mark.parametrize("mode,shared", [("softmax", False), ("softmax", True), ("relu", True), ("dot", False)])
def test_cpu_backend_never_allocates_l_by_l(mode, shared):
    """L=4096, d=16 on the cpu backend: no intermediate near L x L (the logits come in query
    chunks or position blocks of at most L^2/4; the softmax forward with separate keys runs in
    torch's CPU flash kernel), forward and backward. The cosine modes share these paths."""
    L = 4096
    q, v, k = make(1, 16, L, 16, shared, torch.float32)
    y, stats = ra_ops._Cpu.forward(q, v, k, mode)
    grad = torch.randn_like(y)
    with _AllocationRecorder() as rec:
        y, stats = ra_ops._Cpu.forward(q, v, k, mode)
        ra_ops._Cpu.backward(grad, q, v, k, y, stats, mode)
    assert rec.largest <= min(ra_ops.CHUNK_ELEMENTS, L * L // 4), rec.largest
    # live bytes: two or three chunk blocks plus O(L (d + dv)) vectors, less than one L x L map
    assert rec.peak < 4 * L * L, rec.peak


def test_cpu_chunks_scale_with_l():
    """The chunked path's largest intermediate stays at the chunk budget as L grows."""
    budget = 256 * 256
    old = ra_ops.CHUNK_ELEMENTS
    try:
        ra_ops.CHUNK_ELEMENTS = budget
        for L in (512, 1024, 2048):
            q, v, _ = make(1, 8, L, 8, True, torch.float32)
            with _AllocationRecorder() as rec:
                ra_ops._Cpu.forward(q, v, None, "relu")
            assert rec.largest <= max(budget, 64 * L), (L, rec.largest)  # >= 64 query rows per chunk
    finally:
        ra_ops.CHUNK_ELEMENTS = old


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("chunks", ("one", "several"))
def test_cpu_backward_whole_sample_and_query_chunks_match_reference(mode, chunks, monkeypatch):
    """The cpu forward and backward in one block per sample and in several (L = 101: two blocks of
    positions for the shared keys' symmetric path, query chunks of 64 rows otherwise), keys shared
    or not, with and without the forward's y (D = g . y), against the float64 reference."""
    if chunks == "several":
        monkeypatch.setattr(ra_ops, "CHUNK_ELEMENTS", 64 * 101)
    for shared in (True, False):
        q, v, k = make(2, 24, 101, 16, shared, torch.float64)
        kk = q if shared else k
        y, stats = ra_ops._Cpu.forward(q, v, k, mode)
        torch.testing.assert_close(y, ref_ra(q, v, k, mode), rtol=1e-9, atol=1e-12)
        grad = torch.randn_like(y)
        want = ref_ra_backward(grad, q, v, kk, mode)
        for y_given in (y, None):
            gq, gk, gv = ra_ops._Cpu.backward(grad, q, v, k, y_given, stats, mode)
            if shared:
                assert gk is None
                got, ref = (gq, gv), (want[0] + want[1], want[2])
            else:
                got, ref = (gq, gk, gv), want
            for g, w in zip(got, ref):
                torch.testing.assert_close(g, w, rtol=1e-9, atol=1e-9 * w.abs().max().item())


def _block_update_inputs(A, B, dtype):
    """A logit block with large logits and running maxima/sums of which some are still empty
    (m = -inf, l = 0: the first block of those queries)."""
    s = torch.randn(A, B, dtype=torch.float64) * 30
    m_a = torch.where(torch.rand(A) < 0.3, -torch.inf, torch.randn(A, dtype=torch.float64) * 30)
    m_b = torch.where(torch.rand(B) < 0.3, -torch.inf, torch.randn(B, dtype=torch.float64) * 30)
    l_a, l_b = torch.rand(A, dtype=torch.float64) * (m_a > -torch.inf), torch.rand(B, dtype=torch.float64) * (m_b > -torch.inf)
    return [t.to(dtype) for t in (s, m_a, l_a, m_b, l_b)]


@pytest.mark.skipif(not vidops._ext.has_kernel("_region_attention_softmax_block", "CPU"),
                    reason="C++ CPU kernel not built")
@pytest.mark.parametrize("dtype", (torch.float32, torch.float64))
@pytest.mark.parametrize("A,B", [(1, 1), (5, 3), (17, 15), (37, 101), (300, 33)])  # around 16 rows / vectors
def test_cpu_softmax_block_kernel_matches_its_torch_twin(A, B, dtype):
    """The C++ online-softmax block update (rows and columns, and the diagonal's rows only)
    against softmax_block_update_torch in float64: exp to a few ulp, sums to the summation noise."""
    torch.manual_seed(A * 1000 + B)
    kernel = torch.ops.vidops._region_attention_softmax_block
    for diag in (False, True):
        s, m_a, l_a, m_b, l_b = _block_update_inputs(A, B, dtype)
        want = [t.double().clone() for t in (s, m_a, l_a, m_b, l_b)]  # the kernel works in place
        p2t = None if diag else torch.full_like(s, torch.nan)
        alpha_a, alpha_b = kernel(s, p2t, m_a, l_a, None if diag else m_b, None if diag else l_b)
        w_alpha_a, w_alpha_b = shared_keys.softmax_block_update_torch(
            want[0], None if diag else (w_p2t := torch.empty_like(want[0])), want[1], want[2],
            None if diag else want[3], None if diag else want[4])
        fi = torch.finfo(dtype)
        got = [("p1", s, want[0]), ("alpha_a", alpha_a, w_alpha_a), ("l_a", l_a, want[2])]
        if not diag:
            got += [("p2t", p2t, w_p2t), ("alpha_b", alpha_b, w_alpha_b), ("l_b", l_b, want[4])]
            assert torch.equal(m_b, want[3].to(dtype))
        else:
            assert alpha_b.numel() == 0
        assert torch.equal(m_a, want[1].to(dtype))
        for name, g, w in got:
            assert torch.isfinite(g).all(), name
            # exp(x) to a few ulp plus |x| ulp (x = s - m rounded in the dtype, as in torch), below
            # the smallest normal number absolutely; sums of B positive terms to B ulp more.
            x = w.clamp_min(1e-300).log().abs().clamp_max(1e4)
            ulps = 4 + x.max() + (B + A if name.startswith("l") else 0)
            bound = ulps * fi.eps * w + fi.tiny
            err = (g.double() - w).abs()
            assert (err <= bound).all(), f"{name}: error {err.max():.3e}, worst ratio {(err / bound).max():.2f}"


@pytest.mark.skipif(not vidops._ext.has_kernel("_region_attention_softmax_block_grad", "CPU"),
                    reason="C++ CPU kernel not built")
@pytest.mark.parametrize("dtype", (torch.float32, torch.float64))
@pytest.mark.parametrize("A,B", [(1, 1), (5, 3), (17, 15), (37, 101), (300, 33)])
def test_cpu_softmax_block_grad_kernel_matches_its_torch_twin(A, B, dtype):
    """The backward's one-pass block step (P1, P2T, dS1 + dS2T; dS1 alone on a diagonal block)
    against softmax_block_grad_torch in float64: exp to a few ulp plus |x| ulp, dS to the rounding
    of its two products."""
    torch.manual_seed(A * 1000 + B)
    kernel = torch.ops.vidops._region_attention_softmax_block_grad
    fi = torch.finfo(dtype)
    for diag in (False, True):
        s = torch.randn(A, B, dtype=torch.float64) * 10
        lse_a = s.logsumexp(1) + torch.rand(A, dtype=torch.float64)       # lse >= the row's logits
        lse_b = s.logsumexp(0) + torch.rand(B, dtype=torch.float64)
        dp1, dp2t = torch.randn(A, B, dtype=torch.float64), torch.randn(A, B, dtype=torch.float64)
        d_a, d_b = torch.randn(A, dtype=torch.float64), torch.randn(B, dtype=torch.float64)
        got = [t.to(dtype) for t in (s, dp1, dp2t, lse_a, lse_b, d_a, d_b)]
        want = [t.to(dtype).double() for t in (s, dp1, dp2t, lse_a, lse_b, d_a, d_b)]
        if diag:
            got[2] = got[4] = got[6] = want[2] = want[4] = want[6] = None
        kernel(*got)
        shared_keys.softmax_block_grad_torch(*want)
        x = (want[0].clamp_min(1e-300).log().abs() + 4).max()                # P1 >= 0: its exponent
        p_bound = x * fi.eps * want[0] + fi.tiny
        assert ((got[0].double() - want[0]).abs() <= p_bound).all(), "p1"
        ds_scale = (want[0] * (dp1.abs() + d_a.abs().unsqueeze(-1)))
        if not diag:
            x2 = (want[2].clamp_min(1e-300).log().abs() + 4).max()
            assert ((got[2].double() - want[2]).abs() <= x2 * fi.eps * want[2] + fi.tiny).all(), "p2t"
            ds_scale = ds_scale + want[2] * (dp2t.abs() + d_b.abs())
        ds_bound = 4 * max(x, x2 if not diag else 0) * fi.eps * ds_scale + fi.tiny
        assert ((got[1].double() - want[1]).abs() <= ds_bound).all(), "ds"


@pytest.mark.parametrize("step", ("cpp", "torch"))
@pytest.mark.parametrize("dtype", (torch.float32, torch.float64))
def test_cpu_shared_keys_softmax_backward_both_block_steps(step, dtype):
    """The symmetric-pair softmax backward (one and two position blocks) with the C++ block step
    and with its twin, against the float64 explicit formulas."""
    if step == "cpp" and not vidops._ext.has_kernel("_region_attention_softmax_block_grad", "CPU"):
        pytest.skip("C++ CPU kernel not built")
    grad_step = None if step == "cpp" else shared_keys.softmax_block_grad_torch
    q, v, _ = make(2, 24, 101, 16, True, dtype, logit_std=3.0)
    for chunk in (1 << 23, 64 * 101):
        y, lse = shared_keys.softmax_forward(q, v, chunk)
        grad = torch.randn_like(y)
        dq, dv = shared_keys.backward(grad, q, v, True, chunk, lse, y, grad_step)
        w = ref_ra_backward(d64(grad), d64(q), d64(v), d64(q), "softmax")       # both key roles
        same = ref_ra_backward(grad, q, v, q, "softmax") if dtype == torch.float32 else (None,) * 3
        scale_q = (w[0].abs() + w[1].abs()).max()
        assert_close_to_reference(dq, w[0] + w[1], None if same[0] is None else same[0] + same[1],
                                  scale_q * q.shape[1], name="grad_q")
        assert_close_to_reference(dv, w[2], same[2], w[2].abs().max() * q.shape[1], name="grad_v")


@pytest.mark.parametrize("block", (1, 7, 30, 101))
@pytest.mark.parametrize("kernel", ("cpp", "torch"))
@pytest.mark.parametrize("dtype", (torch.float32, torch.float64))
def test_cpu_shared_keys_softmax_forward_every_block_size(block, kernel, dtype):
    """The online softmax over symmetric block pairs (L = 101, d = 24, dv = 16; logits large
    enough that each new block raises the running maximum) against the float64 reference, with
    the C++ block update and with its plain-PyTorch twin; lse too."""
    if kernel == "cpp" and not vidops._ext.has_kernel("_region_attention_softmax_block", "CPU"):
        pytest.skip("C++ CPU kernel not built")
    update = None if kernel == "cpp" else shared_keys.softmax_block_update_torch
    q, v, _ = make(2, 24, 101, 16, True, dtype, logit_std=20.0)
    y, lse = shared_keys.softmax_forward(q, v, ra_ops.CHUNK_ELEMENTS, block, update)
    check_forward(y, q, v, None, "softmax")
    s64 = torch.bmm(d64(q).transpose(1, 2), d64(q))
    lse64 = torch.logsumexp(s64, -1)
    torch.testing.assert_close(lse.double(), lse64, rtol=0, atol=16 * torch.finfo(dtype).eps * s64.abs().max().item())


_ISA_SCRIPT = r"""
import torch, vidops
from vidops.ops import _region_attention_shared_keys as sk
torch.manual_seed(0)
worst = 0.0
for L, block in ((101, 30), (37, 37), (50, 17)):
    q = torch.randn(2, 24, L, dtype=torch.float64) * 0.8
    v = torch.randn(2, 16, L, dtype=torch.float64)
    y64, _ = sk.softmax_forward(q, v, 1 << 23, block, sk.softmax_block_update_torch)
    y32, _ = sk.softmax_forward(q.float(), v.float(), 1 << 23, block)
    worst = max(worst, ((y32.double() - y64).abs().max() / v.abs().max()).item() / 1e-5)
print(worst)
"""


@pytest.mark.skipif(not vidops._ext.has_kernel("_region_attention_softmax_block", "CPU"),
                    reason="C++ CPU kernel not built")
@pytest.mark.parametrize("isa", ["base", "avx2"])
def test_cpu_softmax_block_kernel_every_isa_path(isa):
    """The block update picks AVX-512, AVX2+FMA or baseline code at run time (VIDOPS_CPU_ISA caps
    it, once per process): the float32 shared-keys forward on each path against float64."""
    assert float(run_with_cpu_isa(_ISA_SCRIPT, isa).strip().splitlines()[-1]) < 1.0


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("mode", MODES)
def test_gpu_peak_memory_linear_in_l(mode):
    N, d, L = 1, 256, 12544  # T=16 res3: one fp32 L x L map is 629 MB
    q, v, _ = make(N, d, L, d, True, torch.bfloat16, "cuda")
    q.requires_grad_(True)
    v.requires_grad_(True)
    torch.cuda.synchronize()
    base = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    y = vidops.region_attention(q, v, None, mode, backend="triton")
    y.backward(torch.ones_like(y))
    torch.cuda.synchronize()
    peak = torch.cuda.max_memory_allocated() - base
    # O(L d): ~90 MB here (fp32 gradient buffers); one L x L map is 314 MB in bf16, 629 MB in fp32
    assert peak < 12 * N * L * d * 4 < N * L * L * 2, peak


# ---- long sequences (not under the interpreter) ----------------------------------------------

@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("device,backend", [p for p in BACKENDS if p.values[1] != "reference"])
def test_long_sequence_l1568(device, backend, mode):
    if interpreted(device, backend):
        pytest.skip("L=1568 is too slow under the Triton interpreter (runs on a GPU)")
    q, v, k = make(1, 256, 1568, 256, mode != "dot", torch.float32, device)
    check_forward(vidops.region_attention(q, v, k, mode, backend=backend), q, v, k, mode)
    q, v, k = make(1, 48, 1568, 32, True, torch.float64, device)
    got, grad = run_grads(q, v, k, mode, backend)
    check_grads(got, q, v, k, grad, mode)


# ---- errors and dispatch ---------------------------------------------------------------------

def test_bad_inputs_raise_clear_errors():
    q = torch.randn(2, 8, 10)
    v = torch.randn(2, 4, 10)
    cases = [
        (dict(q=q.numpy(), v=v), TypeError, "q must be a torch.Tensor"),
        (dict(q=torch.randn(2, 8), v=v), ValueError, "q must be (N, d, L) or (N, d, T, H, W)"),
        (dict(q=q, v=torch.randn(2, 4, 10, 1)), ValueError, "v must be (N, dv, L)"),
        (dict(q=q, v=v, k=torch.randn(2, 8, 11)), ValueError, "k must have q's shape"),
        (dict(q=q, v=torch.randn(3, 4, 10)), ValueError, "v has batch 3"),
        (dict(q=q, v=torch.randn(2, 4, 11)), ValueError, "v has L=11"),
        (dict(q=q, v=v.double()), TypeError, "v must have q's dtype"),
        (dict(q=q.long(), v=v), TypeError, "q must be a floating tensor"),
        (dict(q=q, v=v, mode="gaussian"), ValueError, "mode must be one of"),
        (dict(q=q.view(2, 8, 1, 2, 5), v=torch.randn(2, 4, 1, 5, 2)), ValueError, "v's (T, H, W)"),
    ]
    for kwargs, exc, text in cases:
        with pytest.raises(exc) as info:
            vidops.region_attention(**kwargs)
        assert "vidops.region_attention" in str(info.value) and text in str(info.value), str(info.value)
    with pytest.raises(vidops.BackendUnavailableError):
        vidops.region_attention(q, v, backend="cuda")


def test_default_backend_on_cpu_is_cpu():
    from vidops import _dispatch
    assert _dispatch.choose(OP, torch.device("cpu")) == "cpu"
    assert _dispatch.registered_ops()[OP].preference["cuda"][0] == "triton"


def test_dot_split_half_path_on_cpu():
    """The CUDA half-precision "dot" path (M in fp32 applied as hi + lo half GEMMs), run on the
    CPU: as accurate as the fp32 path up to the output rounding."""
    for shared in (True, False):
        q, v, k = make(2, 32, 37, 24, shared, torch.bfloat16)
        y = ra_ops.dot_forward(q, v, k, fast=True)
        check_forward(y, q, v, k, "dot")
        grad = torch.randn_like(y)
        got = ra_ops.dot_backward(grad, q, v, k, fast=True)
        want = ref_ra_backward(d64(grad), d64(q), d64(v), d64(k), "dot")
        for g, w in zip(got, want):
            if w is None:
                assert g is None
                continue
            assert g.dtype == torch.bfloat16
            assert (g.double() - w).abs().max() <= 2 * 2 ** -8 * w.abs().max()


def test_triton_config_fallback_on_out_of_resources():
    """A config that does not fit (compile-time OutOfResources on a GPU) is shrunk and remembered."""
    pytest.importorskip("triton")
    from triton.runtime.errors import OutOfResources

    tk = importlib.import_module("vidops.triton_kernels.region_attention")
    cfg = tk.config_for(512, 512, torch.device("cuda"), torch.bfloat16)
    tried = []

    def launch(c):
        tried.append(dict(c))
        if c["BLOCK_M"] > 32 or c["num_stages"] > 1:
            raise OutOfResources(300000, 232448, "shared memory")

    q = torch.empty(1, 512, 8)
    tk._with_fallback("fwd", launch, cfg, q, 512, 512, "softmax")
    assert tried[-1]["BLOCK_M"] == 32 and tried[-1]["num_stages"] == 1 and len(tried) == 3
    tried.clear()
    tk._with_fallback("fwd", launch, cfg, q, 512, 512, "softmax")
    assert len(tried) == 1  # remembered
    with pytest.raises(OutOfResources):
        tk._with_fallback("bwd", lambda c: launch(dict(c, BLOCK_M=64)), cfg, q, 512, 512, "softmax")


@pytest.mark.parametrize("w_layout", ("rows", "transposed"))
@pytest.mark.parametrize("onednn", (True, False))
def test_cpu_block_gemm_matches_mm_in_both_weight_layouts(w_layout, onednn, monkeypatch):
    """gemm_nt(x, w) = x w^T whether w is a contiguous block or the transpose of one (a logit
    block read as P^T), on oneDNN and on the torch.mm fallback; float64 always takes torch.mm."""
    if onednn and shared_keys._ONEDNN is None:
        pytest.skip("this torch has no oneDNN linear")
    if not onednn:
        monkeypatch.setattr(shared_keys, "_ONEDNN", None)
    for M, K, N in ((37, 53, 29), (1, 5, 1), (64, 256, 96)):
        x = torch.randn(M, K)
        w = torch.randn(N, K) if w_layout == "rows" else torch.randn(K, N).t()
        want = x.double() @ w.double().t()
        got = shared_keys.gemm_nt(x, w)
        assert got.shape == (M, N) and got.dtype == torch.float32
        torch.testing.assert_close(got.double(), want, rtol=0, atol=8 * K * torch.finfo(torch.float32).eps *
                                   (x.abs() @ w.abs().t()).max().item())
        torch.testing.assert_close(shared_keys.gemm_nt(x.double(), w.double()), want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("mode", ("relu", "softmax"))
def test_cpu_shared_keys_float32_several_blocks_on_both_gemms(mode, monkeypatch):
    """The symmetric-pair forward and backward in float32 with several position blocks give the
    same answer (within float32 noise of the float64 reference) on oneDNN and on torch.mm."""
    q, v, _ = make(2, 24, 101, 16, True, torch.float32, logit_std=3.0)
    grad = torch.randn(2, 16, 101)
    w = ref_ra_backward(d64(grad), d64(q), d64(v), d64(q), mode)
    want_y = ref_ra(d64(q), d64(v), None, mode)
    results = []
    for onednn in (True, False):
        if not onednn:
            monkeypatch.setattr(shared_keys, "_ONEDNN", None)
        if mode == "softmax":
            y, lse = shared_keys.softmax_forward(q, v, 64 * 101, block=30)
        else:
            y, lse = shared_keys.relu_forward(q, v, 64 * 101), None
        dq, dv = shared_keys.backward(grad, q, v, mode == "softmax", 64 * 101, lse, y)
        results.append((y, dq, dv))
    same = ref_ra_backward(grad, q, v, q, mode)                     # the float32 reference's own noise
    same_y = ref_ra(q, v, None, mode)
    scale_q = (w[0].abs() + w[1].abs()).max()
    for y, dq, dv in results:
        assert_close_to_reference(y, want_y, same_y, want_y.abs().max() * q.shape[1], name="y")
        assert_close_to_reference(dq, w[0] + w[1], same[0] + same[1], scale_q * q.shape[1], name="grad_q")
        assert_close_to_reference(dv, w[2], same[2], w[2].abs().max() * q.shape[1], name="grad_v")
