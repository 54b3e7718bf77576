"""vidops.nn.swap on models built from the authors' layer classes.

The classes below are written here from the documented behaviour of the authors' public layers
(class names, children, parameter shapes and forward formulas), so the tests need none of those
repositories: a swap must keep every output and every weight.
"""
import torch
import torch.nn.functional as F
from torch import nn

import pytest

import vidops


# ---- stand-ins for the authors' layers ----------------------------------------------------------

class LoG(nn.Module):
    def __init__(self, channels, sigma, k):
        super().__init__()
        self.weight = nn.Parameter(vidops.log_kernel(sigma, k).expand(channels, 1, k, k).clone())
        self.groups = channels

    def forward(self, x):
        return F.conv2d(x, self.weight, groups=self.groups)


class LO(nn.Module):
    def __init__(self, channels, stride):
        super().__init__()
        self.weight = nn.Parameter(vidops.temporal_band_pass_init().expand(channels, 1, 3).clone())
        self.stride = stride
        self.groups = channels

    def forward(self, x):
        return F.conv1d(x, self.weight, stride=self.stride, groups=self.groups)


class MotionBandPassFilter(nn.Module):
    """Stem (three_steps): (N, T, 3, 3, H, W) -> (N*T, 3, H, W); lateral: (N*T, C, H, W) -> same."""

    def __init__(self, num_segments, channels=3, sigma=1.1, kernel_size=9, three_steps=False):
        super().__init__()
        self.num_segments, self.three_steps = num_segments, three_steps
        self.pad = (kernel_size - 1) // 2
        self.conv_s = LoG(3 if three_steps else channels, sigma, kernel_size)
        self.conv_t = LO(3 if three_steps else channels, 3 if three_steps else 1)

    def forward(self, x):
        if self.three_steps:
            N, T, J, C, H, W = x.shape
            f = self.conv_s(F.pad(x.reshape(N * T * J, C, H, W), [self.pad] * 4, mode="reflect"))
            f = f.view(N, T * J, C, H, W).permute(0, 3, 4, 2, 1).reshape(N * H * W, C, T * J)
            o = self.conv_t(f)                                                # (NHW, C, T)
            return o.view(N, H, W, C, T).permute(0, 4, 3, 1, 2).reshape(N * T, C, H, W)
        NT, C, H, W = x.shape
        T = self.num_segments
        f = self.conv_s(F.pad(x, [self.pad] * 4, mode="reflect"))
        f = f.view(NT // T, T, C, H, W).permute(0, 3, 4, 2, 1).reshape(-1, C, T)
        f = torch.cat([f[..., :1], f, f[..., -1:]], dim=-1)                   # replicate in time
        o = self.conv_t(f)
        return o.view(NT // T, H, W, C, T).permute(0, 4, 3, 1, 2).reshape(NT, C, H, W)


class DiagonalwiseRefactorization(nn.Module):
    def __init__(self, channels, ks, groups):
        super().__init__()
        cpg = channels // groups
        mask = torch.zeros(channels, cpg, *ks)
        for o in range(channels):
            mask[o, o % cpg] = 1
        self.mask = nn.Parameter(mask, requires_grad=False)
        self.weight = nn.Parameter(torch.randn(channels, cpg, *ks) * 0.05)
        self.groups, self.pad = groups, tuple((k - 1) // 2 for k in ks)

    def forward(self, x):
        return F.conv3d(x, self.weight * self.mask, padding=self.pad, groups=self.groups)


class _NonLocalBlockND(nn.Module):
    """The RNL block: V = theta(x), P = penta(V), A = softmax_keys(P^T P), z = BN(W0 (V A)) + x."""

    def __init__(self, in_channels, ratio=2, ks=(3, 7, 7), sub_sample=False, activation="softmax", use_norm=False):
        super().__init__()
        inter = in_channels // ratio
        self.sub_sample, self.activation, self.use_norm = sub_sample, activation, use_norm
        self.theta = nn.Conv3d(in_channels, inter, 1)
        self.penta = DiagonalwiseRefactorization(inter, ks, max(inter // 32, 1))
        self.W = nn.Sequential(nn.Conv3d(inter, in_channels, 1), nn.BatchNorm3d(in_channels))
        nn.init.normal_(self.W[1].weight)  # the authors zero these; non-zero so the test sees the block

    def forward(self, x):
        B, C = x.shape[:2]
        v = self.theta(x)
        p = self.penta(v).flatten(2)
        if self.use_norm:
            p = F.normalize(p, dim=1)
        a = p.transpose(1, 2) @ p                                 # (B, keys, queries)
        a = a.softmax(dim=1) if self.activation == "softmax" else a.relu() / a.shape[1]
        self.attention_maps = a                                   # the authors keep it alive
        y = v.flatten(2) @ a
        return self.W(y.view(v.shape)) + x


class NONLocalBlock3D(_NonLocalBlockND):
    pass


class TSMNonLocalBlock(nn.Module):
    """TSM's embedded-Gaussian block, class name as in its repository."""

    def __init__(self, in_channels, sub_sample=True):
        super().__init__()
        inter = in_channels // 2
        self.g = nn.Conv3d(in_channels, inter, 1)
        self.theta = nn.Conv3d(in_channels, inter, 1)
        self.phi = nn.Conv3d(in_channels, inter, 1)
        self.W = nn.Sequential(nn.Conv3d(inter, in_channels, 1), nn.BatchNorm3d(in_channels))
        nn.init.normal_(self.W[1].weight)
        if sub_sample:
            self.g = nn.Sequential(self.g, nn.MaxPool3d((1, 2, 2)))
            self.phi = nn.Sequential(self.phi, nn.MaxPool3d((1, 2, 2)))

    def forward(self, x):
        B = x.shape[0]
        g = self.g(x).flatten(2).transpose(1, 2)
        th = self.theta(x).flatten(2).transpose(1, 2)
        ph = self.phi(x).flatten(2)
        y = ((th @ ph).softmax(-1) @ g).transpose(1, 2)
        inter = th.shape[-1]
        return self.W(y.reshape(B, inter, *x.shape[2:])) + x


TSMNonLocalBlock.__name__ = "NONLocalBlock3D"


class TemporalShift(nn.Module):
    def __init__(self, net, n_segment=3, n_div=8):
        super().__init__()
        self.net, self.n_segment, self.fold_div = net, n_segment, n_div

    def forward(self, x):
        nt, c, h, w = x.shape
        x5 = x.view(nt // self.n_segment, self.n_segment, c, h, w)
        fold = c // self.fold_div
        out = torch.zeros_like(x5)
        out[:, :-1, :fold] = x5[:, 1:, :fold]
        out[:, 1:, fold:2 * fold] = x5[:, :-1, fold:2 * fold]
        out[:, :, 2 * fold:] = x5[:, :, 2 * fold:]
        return self.net(out.view(nt, c, h, w))


class ChannelGate(nn.Module):
    def __init__(self, channels, reduction_ratio=2):
        super().__init__()
        self.W_k = nn.Conv3d(channels, 1, 1)
        self.W_v1 = nn.Linear(channels, channels // reduction_ratio)
        self.bn1 = nn.BatchNorm1d(channels // reduction_ratio, momentum=0.01)
        self.W_v2 = nn.Linear(channels // reduction_ratio, channels)

    def forward(self, x):
        B, C = x.shape[:2]
        a = self.W_k(x).view(B, 1, -1).softmax(-1)
        c = (x.reshape(B, C, -1) * a).sum(-1)
        h = torch.relu(self.bn1(self.W_v1(c).unsqueeze(-1))).squeeze(-1)
        return x + self.W_v2(h).view(B, C, 1, 1, 1)


class Video(nn.Module):
    """A small model in the authors' style: stem band-pass on (N, T, 3, 3, H, W), a TSM-shifted conv,
    a lateral band-pass, then the 3-D blocks on (N, C, T, H, W)."""

    def __init__(self, T=3, C=8):
        super().__init__()
        self.T = T
        self.mbpf1 = MotionBandPassFilter(T, three_steps=True)
        self.conv0 = TemporalShift(nn.Conv2d(3, C, 3, padding=1), n_segment=T)  # C < 8: shifts nothing
        self.conv = TemporalShift(nn.Conv2d(C, C, 3, padding=1), n_segment=T)
        self.mbpf = MotionBandPassFilter(T, channels=C, sigma=0.9, kernel_size=3)
        self.blocks = nn.Sequential(ChannelGate(C), NONLocalBlock3D(C, ks=(3, 3, 3)), TSMNonLocalBlock(C))

    def forward(self, x):
        f = self.mbpf(self.conv(self.conv0(self.mbpf1(x))))                              # (N*T, C, H, W)
        N = x.shape[0]
        v = f.view(N, self.T, *f.shape[1:]).transpose(1, 2).contiguous()
        return self.blocks(v)


def _randomise(model):
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "mask" not in name:
                p.add_(torch.randn_like(p) * 0.1)


def test_swap_keeps_outputs_and_weights():
    torch.manual_seed(0)
    model = Video().double().eval()
    _randomise(model)
    x = torch.randn(2, 3, 3, 3, 12, 12, dtype=torch.float64)
    before = model(x)
    keys = set(model.state_dict())
    report = vidops.nn.swap(model, to="vidops")
    assert isinstance(model.conv, vidops.nn.TemporalShift) and model.conv.impl == "vidops"
    names = {s.name: (s.before, s.after) for s in report}
    assert names["mbpf1"] == ("MotionBandPassFilter", "AuthorsStemMotionBandPass")
    assert names["conv"][1] == "TemporalShift" and names["mbpf"][1] == "MotionBandPass"
    assert "conv0" not in names and type(model.conv0) is TemporalShift   # C < 8: nothing to shift
    assert names["blocks.0"][1] == "ChannelGate"
    assert names["blocks.1"][1] == "RegionNonLocal" and names["blocks.2"][1] == "NonLocal"
    assert all(type(m).__module__.startswith(("vidops", "torch")) for m in model.modules()
               if m is not model and m is not model.conv0)
    after = model(x)
    torch.testing.assert_close(after, before, rtol=1e-10, atol=1e-9)
    # the only keys that change are the grouped region-conv storage (mask dropped, depthwise weight)
    assert set(model.state_dict()) == keys - {"blocks.1.penta.mask"}
    assert "blocks.1: NONLocalBlock3D -> RegionNonLocal (replaced)" in str(report)


def test_swap_after_a_forward_with_gradients_and_backward_agrees():
    torch.manual_seed(1)
    model = Video().double().train()
    _randomise(model)
    x = torch.randn(2, 3, 3, 3, 12, 12, dtype=torch.float64)
    ref = model(x)  # keeps attention_maps with a graph alive, as the authors' block does
    ref.square().sum().backward()
    grad_ref = model.conv.net.weight.grad.clone()
    model.zero_grad()
    torch.manual_seed(1)
    swapped = Video().double().train()
    swapped.load_state_dict(model.state_dict())
    vidops.nn.swap(swapped, to="vidops")
    out = swapped(x)
    torch.testing.assert_close(out, ref.detach(), rtol=1e-10, atol=1e-9)
    out.square().sum().backward()
    torch.testing.assert_close(swapped.conv.net.weight.grad, grad_ref, rtol=1e-8, atol=1e-8)


def test_swap_root_layer_and_report():
    block = NONLocalBlock3D(8, ks=(1, 3, 3)).eval()
    report = vidops.nn.swap(block, to="vidops")
    assert isinstance(report.model, vidops.nn.RegionNonLocal) and len(report) == 1
    x = torch.randn(1, 8, 2, 5, 5)
    torch.testing.assert_close(report.model(x), block(x), rtol=1e-4, atol=1e-4)


def test_swap_modes_of_the_rnl_block():
    for activation, use_norm, mode in [("relu", False, "relu"), ("softmax", True, "cosine_softmax"),
                                       ("relu", True, "cosine_relu")]:
        block = NONLocalBlock3D(8, ks=(1, 3, 3), activation=activation, use_norm=use_norm).double().eval()
        new = vidops.nn.swap(block).model
        assert new.mode == mode
        x = torch.randn(1, 8, 2, 4, 5, dtype=torch.float64)
        torch.testing.assert_close(new(x), block(x), rtol=1e-10, atol=1e-10)


def test_swap_keeps_device_dtype_and_mode():
    model = nn.Sequential(TemporalShift(nn.Conv2d(8, 8, 1), n_segment=2), ChannelGate(8)).double().train()
    vidops.nn.swap(model)
    assert model[1].training and model[1].W_k.weight.dtype == torch.float64


def test_swap_nothing_known_and_bad_arguments():
    model = nn.Sequential(nn.Conv2d(3, 3, 1))
    assert len(vidops.nn.swap(model)) == 0
    with pytest.raises(ValueError, match="vidops.nn.swap: to must be one of"):
        vidops.nn.swap(model, to="fused")
    with pytest.raises(TypeError, match="vidops.nn.swap: model must be a torch.nn.Module"):
        vidops.nn.swap(lambda x: x)


def test_swap_refuses_a_layout_it_cannot_load():
    block = NONLocalBlock3D(8, ks=(1, 3, 3))
    block.register_buffer("extra", torch.zeros(1))
    with pytest.raises(ValueError, match="unexpected.*extra"):
        vidops.nn.swap(block)
