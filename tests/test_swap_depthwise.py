"""vidops.nn.swap on depthwise nn.Conv3d layers: a model built from plain nn.Conv3d layers (and a
whole X3D given back to nn.Conv3d, as pytorchvideo builds it) runs on vidops.nn.DepthwiseConv3d
with the same Parameters and outputs, and swaps back; non-depthwise convs are left alone."""
import pytest
import torch
from torch import nn

import vidops
import vidops.models as M
from vidops.nn import DepthwiseConv3d


class ChannelSeparated(nn.Module):
    """A small channel-separated network of plain nn.Conv3d layers (CSN / X3D style)."""

    def __init__(self):
        super().__init__()
        self.expand = nn.Conv3d(3, 8, 1)
        self.dw_strided = nn.Conv3d(8, 8, 3, stride=(1, 2, 2), padding=1, groups=8, bias=False)
        self.dw_temporal = nn.Conv3d(8, 8, (5, 1, 1), padding=(2, 0, 0), groups=8)       # with bias
        self.widen = nn.Conv3d(8, 16, 1)
        self.dw_same = nn.Conv3d(16, 16, (3, 5, 3), padding="same", groups=16)
        self.grouped = nn.Conv3d(16, 16, 3, padding=1, groups=4)                        # not depthwise
        self.dilated = nn.Conv3d(16, 16, 3, padding=2, dilation=2, groups=16)           # not swapped
        self.multiplier = nn.Conv3d(16, 32, 3, padding=1, groups=16)                    # 2 per channel
        self.block = nn.Sequential(nn.ReLU(), nn.Conv3d(32, 32, (1, 3, 3), padding=(0, 0, 0), groups=32))

    def forward(self, x):
        x = self.dw_temporal(self.dw_strided(self.expand(x)))
        x = self.dilated(self.grouped(self.dw_same(self.widen(x))))
        return self.block(self.multiplier(x))


SWAPPED = ("dw_strided", "dw_temporal", "dw_same", "block.1")


def test_swap_replaces_exactly_the_depthwise_convs_and_back():
    torch.manual_seed(0)
    model = ChannelSeparated().double()
    x = torch.randn(2, 3, 5, 11, 9, dtype=torch.float64)
    want = model(x)
    params = {n: p for n, p in model.named_parameters()}
    keys = list(model.state_dict())

    report = vidops.nn.swap(model, to="vidops")
    assert sorted(s.name for s in report) == sorted(SWAPPED)
    assert all(s.before == "Conv3d" and s.after == "DepthwiseConv3d" for s in report)
    assert "dw_strided: Conv3d -> DepthwiseConv3d (replaced)" in str(report)
    for name in SWAPPED:
        m = model.get_submodule(name)
        assert isinstance(m, DepthwiseConv3d) and m.impl == "vidops"
    assert type(model.grouped) is nn.Conv3d and type(model.dilated) is nn.Conv3d and type(model.multiplier) is nn.Conv3d
    assert list(model.state_dict()) == keys
    assert all(p is params[n] for n, p in model.named_parameters())        # the same Parameters
    torch.testing.assert_close(model(x), want, rtol=1e-12, atol=1e-12)

    report = vidops.nn.swap(model, to="reference")
    assert sorted(s.name for s in report) == sorted(SWAPPED) and {s.how for s in report} == {"impl switched"}
    torch.testing.assert_close(model(x), want, rtol=1e-12, atol=1e-12)

    report = vidops.nn.swap(model, to="torch")
    assert sorted(s.name for s in report) == sorted(SWAPPED)
    assert not any(isinstance(m, DepthwiseConv3d) for m in model.modules())
    assert all(type(model.get_submodule(n)) is nn.Conv3d for n in SWAPPED)
    assert list(model.state_dict()) == keys and all(p is params[n] for n, p in model.named_parameters())
    torch.testing.assert_close(model(x), want, rtol=1e-12, atol=1e-12)


def test_gradients_and_an_optimizer_built_before_the_swap():
    torch.manual_seed(1)
    plain = ChannelSeparated().double()
    swapped = ChannelSeparated().double()
    swapped.load_state_dict(plain.state_dict())
    opt = torch.optim.SGD(swapped.parameters(), lr=0.1)
    vidops.nn.swap(swapped)
    x = torch.randn(1, 3, 4, 8, 8, dtype=torch.float64)
    plain(x).square().sum().backward()
    swapped(x).square().sum().backward()
    for (n, a), b in zip(plain.named_parameters(), swapped.parameters()):
        torch.testing.assert_close(b.grad, a.grad, rtol=1e-10, atol=1e-12, msg=n)
    before = swapped.dw_same.weight.detach().clone()
    opt.step()
    torch.testing.assert_close(swapped.dw_same.weight.detach(), before - 0.1 * plain.dw_same.weight.grad)


def test_swap_an_x3d_built_from_nn_conv3d():
    """An X3D whose depthwise convs are nn.Conv3d (as pytorchvideo, SlowFast and mmaction2 build it)
    runs on vidops kernels after one swap, keys and outputs unchanged."""
    torch.manual_seed(2)
    model = M.x3d_xs(5).eval()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm3d):
                m.weight.uniform_(0.5, 1.5)
    vidops.nn.swap(model, to="torch")                 # now plain PyTorch modules, as pytorchvideo's
    dw = [n for n, m in model.named_modules() if type(m) is nn.Conv3d and m.groups > 1]
    assert len(dw) == 27 and not any(isinstance(m, DepthwiseConv3d) for m in model.modules())
    x = torch.randn(1, 3, 4, 32, 32)
    with torch.no_grad():
        want = model(x)
    report = vidops.nn.swap(model)
    assert sorted(s.name for s in report) == sorted(dw)
    assert model.blocks[0].conv.conv_xy.kernel_size == (5, 1, 1)
    with torch.no_grad():
        torch.testing.assert_close(model(x), want, rtol=1e-5, atol=1e-6)


def test_bad_target():
    with pytest.raises(ValueError, match="to must be one of"):
        vidops.nn.swap(ChannelSeparated(), to="cuda")
