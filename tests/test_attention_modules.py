"""The attention blocks (operators.md §5.2): RegionNonLocal, NonLocal, ChannelGate, SpatioTemporalSE,
ConvPyramidAttention, AttentionChain. Each is checked against its formula written out here
independently (with NON-zero BN gammas, else every output is trivially x), for identity at
init, for both layouts, and RNL for loading a reference-format checkpoint."""
import copy
import math

import pytest
import torch
import torch.nn.functional as F

import vidops
from vidops.nn import (AttentionChain, ChannelGate, ConvPyramidAttention, NonLocal, RegionNonLocal,
                       SpatioTemporalSE, convert_rnl_state_dict, depthwise_to_diagonalwise,
                       diagonalwise_to_depthwise)

MODES = ("softmax", "cosine_softmax", "relu", "dot", "cosine_relu")


def standin_region_attention(q, v, k=None, mode="softmax", backend=None):
    """A float64-capable stand-in for vidops.region_attention (operators.md §5.1) on (N, d, L) tensors,
    used while the op is not in this build: a_ij weight of key i for query j, y_j = sum_i a_ij v_i.
    Like the op, it takes keys at the queries' positions only (k None or of q's shape)."""
    assert k is None or k.shape == q.shape, "region_attention takes keys of the queries' shape"
    assert v.shape[-1] == q.shape[-1]
    k = q if k is None else k
    if mode.startswith("cosine"):
        q, k = F.normalize(q, dim=1), F.normalize(k, dim=1)
    s = torch.einsum("ndi,ndj->nij", k, q)
    if mode in ("softmax", "cosine_softmax"):
        a = s.softmax(1)
    elif mode in ("relu", "cosine_relu"):
        a = s.relu() / k.shape[-1]
    else:
        a = s / k.shape[-1]
    return torch.einsum("nvi,nij->nvj", v, a)


@pytest.fixture(autouse=True)
def region_attention_op(monkeypatch):
    if getattr(vidops.ops, "region_attention", None) is None and getattr(vidops, "region_attention", None) is None:
        monkeypatch.setattr(vidops.ops, "region_attention", standin_region_attention, raising=False)
    yield


def test_standin_softmax_is_sdpa_with_scale_one():
    q, v = torch.randn(2, 8, 30, dtype=torch.float64), torch.randn(2, 5, 30, dtype=torch.float64)
    expected = F.scaled_dot_product_attention(q.transpose(1, 2), q.transpose(1, 2), v.transpose(1, 2), scale=1.0)
    torch.testing.assert_close(standin_region_attention(q, v), expected.transpose(1, 2))


# ---- helpers -------------------------------------------------------------------------------------

def randomise_bn(bn):
    """Non-zero gamma/beta and non-trivial running statistics."""
    with torch.no_grad():
        bn.weight.uniform_(0.5, 1.5)
        bn.bias.normal_()
        bn.running_mean.normal_()
        bn.running_var.uniform_(0.5, 2.0)


def bn_formula(z, bn, training):
    shape = (1, -1) + (1,) * (z.dim() - 2)
    if training:
        dims = [0] + list(range(2, z.dim()))
        mean, var = z.mean(dims, keepdim=True), z.var(dims, unbiased=False, keepdim=True)
    else:
        mean, var = bn.running_mean.view(shape), bn.running_var.view(shape)
    return (z - mean) / torch.sqrt(var + bn.eps) * bn.weight.view(shape) + bn.bias.view(shape)


def attention_formula(p, v, keys, mode):
    """y_j = sum_i a_ij v_i over flattened positions, the weights written out per mode."""
    q = p.flatten(2)
    k = q if keys is None else keys.flatten(2)
    vv = v.flatten(2)
    if mode.startswith("cosine"):
        q = q / q.norm(dim=1, keepdim=True).clamp_min(1e-12)
        k = k / k.norm(dim=1, keepdim=True).clamp_min(1e-12)
    logits = k.transpose(1, 2) @ q                         # (N, L_keys, L_queries)
    if mode in ("softmax", "cosine_softmax"):
        a = torch.exp(logits - logits.amax(1, keepdim=True))
        a = a / a.sum(1, keepdim=True)
    elif mode in ("relu", "cosine_relu"):
        a = logits.clamp_min(0) / k.shape[-1]
    else:
        a = logits / k.shape[-1]
    return (vv @ a).reshape(v.shape[0], v.shape[1], *p.shape[2:])


def rnl_formula(x, m, training=False, penta=None):
    """The RNL block written out: penta(V) is the depthwise conv unless `penta` is given."""
    V = F.conv3d(x, m.theta.weight, m.theta.bias)
    if penta is None:
        pad = tuple((k - 1) // 2 for k in m.kernel)
        P = F.conv3d(V, m.penta.weight, padding=pad, groups=V.shape[1])
    else:
        P = penta(V)
    y = attention_formula(P, V, None, m.mode)
    return bn_formula(F.conv3d(y, m.W[0].weight, m.W[0].bias), m.W[1], training) + x


def video(N=2, C=8, T=3, H=5, W=6, dtype=torch.float64):
    return torch.randn(N, C, T, H, W, dtype=dtype)


def frames_of(x):
    N, C, T, H, W = x.shape
    return x.transpose(1, 2).reshape(N * T, C, H, W)


# ---- RegionNonLocal --------------------------------------------------------------------------

REFERENCE_RNL_KEYS = {"theta.weight", "theta.bias", "penta.weight", "W.0.weight", "W.0.bias", "W.1.weight",
                      "W.1.bias", "W.1.running_mean", "W.1.running_var", "W.1.num_batches_tracked"}


def test_rnl_keys_and_shapes_follow_the_reference():
    m = RegionNonLocal(64, (3, 7, 7))
    sd = m.state_dict()
    assert set(sd) == REFERENCE_RNL_KEYS
    assert sd["theta.weight"].shape == (32, 64, 1, 1, 1)
    assert sd["penta.weight"].shape == (32, 1, 3, 7, 7)
    assert sd["W.0.weight"].shape == (64, 32, 1, 1, 1)
    assert torch.equal(sd["W.1.weight"], torch.zeros(64)) and torch.equal(sd["W.1.bias"], torch.zeros(64))
    # the reference's xavier bound on the (C', 32, 3, 7, 7) weight
    assert sd["penta.weight"].abs().max() <= math.sqrt(6 / ((32 + 32) * 147))


@pytest.mark.parametrize("mode", MODES)
def test_rnl_is_identity_at_init(mode):
    m = RegionNonLocal(8, (3, 3, 3), mode).double()
    x = video()
    torch.testing.assert_close(m(x), x, rtol=0, atol=0)
    m.eval()
    torch.testing.assert_close(m(x), x, rtol=0, atol=0)


@pytest.mark.parametrize("mode", MODES)
def test_rnl_matches_formula_with_nonzero_gamma(mode):
    m = RegionNonLocal(8, (3, 5, 3), mode).double()
    randomise_bn(m.W[1])
    x = video()
    m.eval()
    torch.testing.assert_close(m(x), rnl_formula(x, m), rtol=1e-9, atol=1e-9)
    m.train()
    torch.testing.assert_close(m(x), rnl_formula(x, m, training=True), rtol=1e-9, atol=1e-9)


def test_rnl_gradients_reach_every_parameter():
    m = RegionNonLocal(8, (3, 3, 3)).double()
    randomise_bn(m.W[1])
    x = video().requires_grad_(True)
    m(x).square().sum().backward()
    for name, p in m.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    # and they equal the formula's autograd
    m2 = RegionNonLocal(8, (3, 3, 3)).double()
    m2.load_state_dict(m.state_dict())
    x2 = x.detach().clone().requires_grad_(True)
    rnl_formula(x2, m2, training=True).square().sum().backward()
    torch.testing.assert_close(x.grad, x2.grad, rtol=1e-8, atol=1e-10)
    torch.testing.assert_close(m.penta.weight.grad, m2.penta.weight.grad, rtol=1e-8, atol=1e-10)


def reference_checkpoint(C, kernel, dtype=torch.float64):
    """A state dict in the public code's format: penta.mask and the grouped diagonalwise
    penta.weight (C', cpg, kt, kh, kw), groups = max(C' // 32, 1), mask ones at [o, o mod cpg]."""
    Cp = C // 2
    groups = max(Cp // 32, 1)
    cpg = Cp // groups
    mask = torch.zeros(Cp, cpg, *kernel, dtype=dtype)
    for o in range(Cp):
        mask[o, o % cpg] = 1
    bound = math.sqrt(6 / ((cpg + Cp) * math.prod(kernel)))
    sd = {
        "theta.weight": torch.randn(Cp, C, 1, 1, 1, dtype=dtype) / math.sqrt(C),
        "theta.bias": torch.randn(Cp, dtype=dtype) * 0.1,
        "penta.mask": mask,
        "penta.weight": (torch.rand(Cp, cpg, *kernel, dtype=dtype) * 2 - 1) * bound * 20 * mask,
        "W.0.weight": torch.randn(C, Cp, 1, 1, 1, dtype=dtype) / math.sqrt(Cp),
        "W.0.bias": torch.randn(C, dtype=dtype) * 0.1,
        "W.1.weight": torch.rand(C, dtype=dtype) + 0.5,
        "W.1.bias": torch.randn(C, dtype=dtype),
        "W.1.running_mean": torch.randn(C, dtype=dtype) * 0.1,
        "W.1.running_var": torch.rand(C, dtype=dtype) + 0.5,
        "W.1.num_batches_tracked": torch.tensor(7),
    }
    # the masked-out entries of a trained reference weight are whatever xavier gave them: non-zero
    sd["penta.weight"] = sd["penta.weight"] + (1 - mask) * torch.randn_like(mask)
    return sd, groups, cpg


@pytest.mark.parametrize("C,kernel", [(128, (3, 7, 7)), (16, (3, 3, 3))])
def test_rnl_loads_a_reference_checkpoint_and_reproduces_its_output(C, kernel):
    sd, groups, cpg = reference_checkpoint(C, kernel)
    pad = tuple((k - 1) // 2 for k in kernel)

    def grouped_penta(V):  # the reference's DiagonalwiseRefactorization forward
        return F.conv3d(V, sd["penta.weight"] * sd["penta.mask"], padding=pad, groups=groups)

    m = RegionNonLocal(C, kernel).double().eval()
    m.load_state_dict(sd)  # strict: every key is consumed
    assert m.penta.weight.shape == (C // 2, 1, *kernel)
    x = video(2, C, 2, 5, 6)
    expected = rnl_formula(x, m, penta=grouped_penta)
    torch.testing.assert_close(m(x), expected, rtol=1e-9, atol=1e-9)
    # the standalone conversion gives the same depthwise weight, and goes back
    conv = convert_rnl_state_dict(sd)
    assert "penta.mask" not in conv
    torch.testing.assert_close(conv["penta.weight"], m.penta.weight.detach(), rtol=0, atol=0)
    mask, full = depthwise_to_diagonalwise(m.penta.weight.detach())
    torch.testing.assert_close(mask, sd["penta.mask"], rtol=0, atol=0)
    torch.testing.assert_close(full, sd["penta.weight"] * sd["penta.mask"], rtol=0, atol=0)
    torch.testing.assert_close(diagonalwise_to_depthwise(full, mask), m.penta.weight.detach(), rtol=0, atol=0)
    # a prefixed checkpoint (as inside the backbone) converts too
    pre = convert_rnl_state_dict({f"base_model.layer2.0.nl.{k}": v for k, v in sd.items()}, "base_model.")
    assert "base_model.layer2.0.nl.penta.mask" not in pre
    assert pre["base_model.layer2.0.nl.penta.weight"].shape == (C // 2, 1, *kernel)


def test_rnl_runs_in_both_layouts():
    m = RegionNonLocal(8, (3, 3, 3)).double()
    randomise_bn(m.W[1])
    m.eval()
    x = video(2, 8, 4, 5, 6)
    out5 = m(x)
    m.num_segments = 4
    out4 = m(frames_of(x))
    assert out4.shape == (8, 8, 5, 6)
    torch.testing.assert_close(out4, frames_of(out5), rtol=0, atol=0)


@pytest.mark.parametrize("mode", MODES)
def test_rnl_sub_sample_pools_keys_and_values(mode):
    m = RegionNonLocal(8, (3, 3, 3), mode, sub_sample=True).double().eval()
    randomise_bn(m.W[1])
    x = video(1, 8, 2, 6, 7)
    V = F.conv3d(x, m.theta.weight, m.theta.bias)
    P = F.conv3d(V, m.penta.weight, padding=1, groups=4)
    plain = mode
    if mode.startswith("cosine"):  # the reference normalises, then pools (no re-normalisation)
        P = F.normalize(P, dim=1)
        plain = "softmax" if mode == "cosine_softmax" else "relu"
    y = attention_formula(P, F.max_pool3d(V, (1, 2, 2)), F.max_pool3d(P, (1, 2, 2)), plain)
    expected = bn_formula(F.conv3d(y, m.W[0].weight, m.W[0].bias), m.W[1], False) + x
    torch.testing.assert_close(m(x), expected, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("backend", ["reference", "triton"])
def test_rnl_region_conv_backends_agree(backend):
    if vidops.available_backends("depthwise_conv3d")[backend] is not None:
        pytest.skip(f"{backend} backend not available here")
    m = RegionNonLocal(8, (3, 3, 3)).double().eval()
    randomise_bn(m.W[1])
    x = video(1, 8, 2, 4, 5)
    expected = m(x)
    m.backend = backend
    torch.testing.assert_close(m(x), expected, rtol=1e-10, atol=1e-10)


# ---- NonLocal ------------------------------------------------------------------------------------

def test_nonlocal_keys_follow_tsm():
    sub = set(NonLocal(16).state_dict())
    assert {"g.0.weight", "g.0.bias", "theta.weight", "theta.bias", "phi.0.weight", "phi.0.bias",
            "W.0.weight", "W.0.bias", "W.1.weight", "W.1.bias"} <= sub
    flat = set(NonLocal(16, sub_sample=False).state_dict())
    assert {"g.weight", "phi.weight", "theta.weight", "W.0.weight"} <= flat


@pytest.mark.parametrize("sub_sample", [True, False])
def test_nonlocal_matches_formula_and_is_identity_at_init(sub_sample):
    # sub_sample=True pools keys and values: the block's own PyTorch path (the op takes Lk = Lq only)
    m = NonLocal(8, sub_sample=sub_sample).double()
    x = video(2, 8, 2, 6, 7)
    torch.testing.assert_close(m(x), x, rtol=0, atol=0)
    randomise_bn(m.W[1])
    m.eval()
    g = m.g[0] if sub_sample else m.g
    phi = m.phi[0] if sub_sample else m.phi
    G = F.conv3d(x, g.weight, g.bias)
    Ph = F.conv3d(x, phi.weight, phi.bias)
    if sub_sample:
        G, Ph = F.max_pool3d(G, (1, 2, 2)), F.max_pool3d(Ph, (1, 2, 2))
    Th = F.conv3d(x, m.theta.weight, m.theta.bias)
    f = Th.flatten(2).transpose(1, 2) @ Ph.flatten(2)          # (N, L_q, L_k), softmax over keys
    y = (f.softmax(-1) @ G.flatten(2).transpose(1, 2)).transpose(1, 2).reshape(Th.shape)
    expected = bn_formula(F.conv3d(y, m.W[0].weight, m.W[0].bias), m.W[1], False) + x
    torch.testing.assert_close(m(x), expected, rtol=1e-9, atol=1e-9)
    m.num_segments = 2
    torch.testing.assert_close(m(frames_of(x)), frames_of(expected), rtol=1e-9, atol=1e-9)


# ---- ChannelGate and SpatioTemporalSE ---------------------------------------------------------------

def test_channel_gate_keys_identity_and_formula():
    m = ChannelGate(8).double()
    assert set(m.state_dict()) >= {"W_k.weight", "W_k.bias", "W_v1.weight", "W_v1.bias", "bn1.weight",
                                   "bn1.running_mean", "W_v2.weight", "W_v2.bias"}
    assert m.W_v1.weight.shape == (4, 8) and m.W_v2.weight.shape == (8, 4) and m.bn1.momentum == 0.01
    x = video(3, 8, 2, 4, 5)
    torch.testing.assert_close(m(x), x, rtol=0, atol=0)
    with torch.no_grad():
        m.W_v2.weight.normal_()
        m.W_v2.bias.normal_()
    randomise_bn(m.bn1)
    for training in (True, False):
        m.train(training)
        N, C = x.shape[:2]
        a = F.conv3d(x, m.W_k.weight, m.W_k.bias).reshape(N, -1).softmax(-1)
        c = (x.reshape(N, C, -1) * a[:, None, :]).sum(-1)
        h = bn_formula(c @ m.W_v1.weight.T + m.W_v1.bias, m.bn1, training).relu()
        expected = x + (h @ m.W_v2.weight.T + m.W_v2.bias)[:, :, None, None, None]
        torch.testing.assert_close(m(x), expected, rtol=1e-9, atol=1e-9)
    m.num_segments = 2
    torch.testing.assert_close(m(frames_of(x)), frames_of(expected), rtol=1e-9, atol=1e-9)


def test_channel_gate_frames_path_matches_the_video_layout_with_gradients():
    """impl "vidops" on (N*T, C, H, W) frames (no layout copy, W_k as a GEMM) against impl
    "reference" (the authors' video view): outputs, the BN's running statistics and every
    gradient, in training and eval, float64."""
    torch.manual_seed(0)
    fast = ChannelGate(8, num_segments=3).double()
    with torch.no_grad():
        fast.W_v2.weight.normal_()
        fast.W_v2.bias.normal_()
    randomise_bn(fast.bn1)
    slow = copy.deepcopy(fast)
    slow.impl = "reference"
    for training in (True, False):
        fast.train(training), slow.train(training)
        x = frames_of(video(3, 8, 3, 4, 5)).requires_grad_()
        x2 = x.detach().clone().requires_grad_()
        g = torch.randn(9, 8, 4, 5, dtype=torch.float64)
        y, y2 = fast(x), slow(x2)
        torch.testing.assert_close(y, y2, rtol=1e-12, atol=1e-12)
        (y * g).sum().backward()
        (y2 * g).sum().backward()
        torch.testing.assert_close(x.grad, x2.grad, rtol=1e-12, atol=1e-12)
        for (name, p), p2 in zip(fast.named_parameters(), slow.parameters()):
            # W_k's bias has a zero gradient (the softmax is shift-invariant): rounding only
            atol = 1e-12 * max(1.0, p2.grad.abs().max().item())
            torch.testing.assert_close(p.grad, p2.grad, rtol=1e-10, atol=atol, msg=name)
        torch.testing.assert_close(fast.bn1.running_mean, slow.bn1.running_mean, rtol=1e-12, atol=1e-12)
        fast.zero_grad(), slow.zero_grad()


def test_spatio_temporal_se_identity_and_formula():
    m = SpatioTemporalSE(8).double()
    x = video(3, 8, 2, 4, 5)
    torch.testing.assert_close(m(x), x, rtol=0, atol=0)
    with torch.no_grad():
        m.W2.weight.normal_()
        m.W2.bias.normal_()
    randomise_bn(m.bn)
    for training in (True, False):
        m.train(training)
        s1 = x.sum((2, 3, 4)) / (2 * 4 * 5)                        # eq. 4.12
        s = bn_formula(s1 @ m.W1.weight.T, m.bn, training).relu() @ m.W2.weight.T + m.W2.bias  # eq. 4.13
        expected = x + s[:, :, None, None, None]                   # eq. 4.14
        torch.testing.assert_close(m(x), expected, rtol=1e-9, atol=1e-9)
    m.num_segments = 2
    torch.testing.assert_close(m(frames_of(x)), frames_of(expected), rtol=1e-9, atol=1e-9)


# ---- ConvPyramidAttention -----------------------------------------------------------------------------

def cpa_formula(x, m):
    """Eqs. 4.10-4.11 with the pyramid as separate single-channel convs (not folded)."""
    avg = x.mean(1, keepdim=True)
    f = sum(F.conv3d(avg, p.weight, padding=tuple((k - 1) // 2 for k in p.weight.shape[-3:]))
            for p in m.pyramid)
    a = f.flatten(2).softmax(-1).reshape(f.shape)
    return a * x


@pytest.mark.parametrize("kernels", [((1, 1, 1), (3, 3, 3), (3, 7, 7)),
                                     ((1, 1, 1), (3, 3, 3), (3, 7, 7), (3, 9, 9)), ((3, 5, 3),)])
def test_cpa_matches_the_unfolded_pyramid(kernels):
    x = video(2, 4, 3, 6, 11)
    m = ConvPyramidAttention(4, kernels).double()
    torch.testing.assert_close(m(x), x, rtol=0, atol=0)  # identity at init
    randomise_bn(m.bn)
    m.eval()
    expected = bn_formula(cpa_formula(x, m), m.bn, False) + x
    torch.testing.assert_close(m(x), expected, rtol=1e-9, atol=1e-9)
    plain = ConvPyramidAttention(4, kernels, residual=False).double()
    plain.load_state_dict({k: v for k, v in m.state_dict().items() if not k.startswith("bn.")})
    torch.testing.assert_close(plain(x), cpa_formula(x, m), rtol=1e-9, atol=1e-9)
    assert set(plain.state_dict()) == {f"pyramid.{i}.weight" for i in range(len(kernels))}


def test_cpa_gradients_reach_every_pyramid_kernel():
    m = ConvPyramidAttention(4).double()
    randomise_bn(m.bn)
    x = video(2, 4, 3, 5, 6).requires_grad_(True)
    m(x).square().sum().backward()
    m2 = ConvPyramidAttention(4).double()
    m2.load_state_dict(m.state_dict())
    x2 = x.detach().clone().requires_grad_(True)
    (bn_formula(cpa_formula(x2, m2), m2.bn, True) + x2).square().sum().backward()
    torch.testing.assert_close(x.grad, x2.grad, rtol=1e-8, atol=1e-10)
    for p, p2 in zip(m.pyramid, m2.pyramid):
        assert p.weight.grad.abs().sum() > 0
        torch.testing.assert_close(p.weight.grad, p2.weight.grad, rtol=1e-8, atol=1e-10)


def test_cpa_both_layouts():
    m = ConvPyramidAttention(4).double().eval()
    randomise_bn(m.bn)
    x = video(2, 4, 3, 5, 6)
    out = m(x)
    m.num_segments = 3  # the channel mean of the strided view sums in another order: not bitwise
    torch.testing.assert_close(m(frames_of(x)), frames_of(out), rtol=1e-12, atol=1e-12)


# ---- AttentionChain -------------------------------------------------------------------------------------

@pytest.mark.parametrize("channel,spatial", [("gate", "rnl"), ("se", "rnl"), ("gate", "cpa"), ("se", "cpa")])
def test_attention_chain(channel, spatial):
    m = AttentionChain(8, spatial, channel, kernel=(3, 3, 3)).double()
    keys = set(m.state_dict())
    assert all(k.startswith(("cg.", "nl.")) for k in keys)
    if channel == "gate":
        assert "cg.W_k.weight" in keys
    if spatial == "rnl":
        assert "nl.penta.weight" in keys and "nl.theta.weight" in keys
    x = video(2, 8, 2, 4, 5)
    torch.testing.assert_close(m(x), x, rtol=0, atol=0)  # identity at init
    # non-zero residual branches: the chain is the composition, in both layouts
    with torch.no_grad():
        if channel == "gate":
            m.cg.W_v2.weight.normal_()
        else:
            m.cg.W2.weight.normal_()
    randomise_bn(m.cg.bn1 if channel == "gate" else m.cg.bn)
    randomise_bn(m.nl.W[1] if spatial == "rnl" else m.nl.bn)
    m.eval()
    expected = m.nl(m.cg(x))
    assert not torch.allclose(expected, x)
    torch.testing.assert_close(m(x), expected, rtol=0, atol=0)
    m.num_segments = 2
    torch.testing.assert_close(m(frames_of(x)), frames_of(expected), rtol=1e-12, atol=1e-12)


def test_chain_loads_the_reference_wrapper_keys():
    """NL3DWrapper keys cg.* / nl.* (the reference's layer2.0 block) load into AttentionChain."""
    sd, _, _ = reference_checkpoint(64, (3, 7, 7))
    cg = ChannelGate(64).double()
    full = {f"nl.{k}": v for k, v in sd.items()}
    full.update({f"cg.{k}": v for k, v in cg.state_dict().items()})
    m = AttentionChain(64, "rnl", "gate").double()
    m.load_state_dict(full)
    assert m.nl.penta.weight.shape == (32, 1, 3, 7, 7)


@pytest.mark.parametrize("make,err", [
    (lambda: RegionNonLocal(8, (3, 4, 3)), "kernel"),
    (lambda: RegionNonLocal(8, mode="gaussian"), "mode"),
    (lambda: RegionNonLocal(1), "inter_channels"),
    (lambda: ConvPyramidAttention(4, ()), "kernels"),
    (lambda: AttentionChain(8, "sdpa"), "spatial"),
    (lambda: ChannelGate(0), "channels"),
])
def test_bad_module_arguments_raise(make, err):
    with pytest.raises(ValueError, match=err):
        make()


def test_4d_input_without_num_segments_is_explained():
    with pytest.raises(ValueError, match="num_segments"):
        RegionNonLocal(8, (3, 3, 3))(torch.randn(4, 8, 5, 5))


def test_cpa_runs_under_compile_fullgraph():
    torch._dynamo.reset()
    m = ConvPyramidAttention(4).eval()
    randomise_bn(m.bn)
    x = torch.randn(2, 4, 3, 5, 6)
    compiled = torch.compile(m, fullgraph=True, backend="aot_eager")
    torch.testing.assert_close(compiled(x), m(x))
