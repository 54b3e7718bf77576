"""vidops.bench.breakdown: each thesis layer's own time in a step, by layer kind, for both impls."""
import pytest
import torch
from torch import nn

import vidops.models as M
from vidops.bench.breakdown import KINDS, layer_breakdown, layer_kind
from vidops.nn import RegionConv, RegionNonLocal


@pytest.mark.parametrize("impl", ["vidops", "reference"])
def test_rnl_step_breaks_down_into_attention_region_conv_and_shift(impl):
    torch.manual_seed(0)
    model = M.rnl_tsm_resnet50(5, num_segments=3, dropout=0.0, impl=impl)
    x = torch.randn(2, 3, 3, 48, 48)

    def step():
        model(x).sum().backward()

    ms = layer_breakdown(model, step)
    assert {"attention", "region conv", "shift", "rest", "total"} <= set(ms)
    assert all(v > 0 for k, v in ms.items() if k != "rest")
    parts = sum(v for k, v in ms.items() if k in KINDS) + ms["rest"]
    assert parts == pytest.approx(ms["total"], rel=1e-6)      # own times: nothing counted twice
    assert not any(hasattr(m, "_vidops_kind") for m in model.modules())  # the hooks are gone


def test_region_conv_is_its_own_layer_in_both_storages():
    block = RegionNonLocal(8, kernel=(3, 3, 3))
    assert isinstance(block.penta, RegionConv) and layer_kind(block.penta) == "region conv"
    assert set(block.state_dict()) >= {"penta.weight"}
    rnl = M.rnl_tsm_resnet50(5, num_segments=3)
    pentas = [m.penta for m in rnl.modules() if isinstance(m, RegionNonLocal)]
    assert len(pentas) == 5 and all(layer_kind(p) == "region conv" for p in pentas)


def test_own_time_of_nested_layers():
    """A recognised layer inside another is counted once, as its own kind."""
    class Outer(nn.Module):
        def __init__(self):
            super().__init__()
            self.block = RegionNonLocal(8, kernel=(1, 3, 3))

        def forward(self, x):
            return self.block(x)

    m = Outer()
    ms = layer_breakdown(m, lambda: m(torch.randn(1, 8, 2, 5, 5)))
    assert ms["attention"] > 0 and ms["region conv"] > 0
    assert ms["attention"] + ms["region conv"] + ms["rest"] == pytest.approx(ms["total"], rel=1e-6)
