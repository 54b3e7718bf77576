"""The vidops models have exactly the state_dict of the authors' public code (names, shapes,
order, parameter/buffer/frozen kinds, parameter counts; tests/data/checkpoint_keys/ lists them,
read from the authors' models) and load such a state_dict strictly, from a dict, a
{'state_dict': ...} wrapper with DataParallel's `module.` prefix, or a file."""
import json
import os

import pytest
import torch

import vidops.models as M
from vidops.nn import RegionNonLocal, convert_rnl_state_dict

DATA = os.path.join(os.path.dirname(__file__), "data", "checkpoint_keys")

FACTORIES = {
    "tsm_resnet50": lambda: M.tsm_resnet50(400),
    "tsm_resnet50_nl": lambda: M.nl_tsm_resnet50(400),
    "rnl_tsm_resnet50": lambda: M.rnl_tsm_resnet50(400),
    "bqn_resnet50": lambda: M.bqn_resnet50(400),
}


def _spec(name):
    with open(os.path.join(DATA, name + ".json")) as f:
        return json.load(f)


@pytest.fixture(scope="module", params=list(FACTORIES))
def built(request):
    torch.manual_seed(0)
    return request.param, FACTORIES[request.param](), _spec(request.param)


def _random_state_dict(spec, seed=3):
    g = torch.Generator().manual_seed(seed)
    sd = {}
    for name, shape, kind in spec["keys"]:
        if name.endswith("num_batches_tracked"):
            sd[name] = torch.tensor(int(torch.randint(0, 1000, (), generator=g)))
        else:
            sd[name] = torch.randn(shape, generator=g)
    return sd


def test_own_state_dict_is_the_authors(built):
    name, model, spec = built
    got = [(k, list(v.shape)) for k, v in model.state_dict().items()]
    want = [(k, shape) for k, shape, _ in spec["keys"]]
    assert len(got) == spec["num_keys"]
    assert got == want  # same names, shapes and order
    params = dict(model.named_parameters())
    buffers = dict(model.named_buffers())
    for k, _, kind in spec["keys"]:
        if kind == "buffer":
            assert k in buffers, k
        else:
            assert k in params and params[k].requires_grad == (kind == "param"), k
    assert sum(p.numel() for p in model.parameters()) == spec["num_parameter_elements"]


def test_loads_the_authors_state_dict_strictly(built, tmp_path):
    name, model, spec = built
    sd = _random_state_dict(spec)
    model.load_state_dict(sd)  # torch's strict load, no conversion
    own = model.state_dict()
    for k, v in sd.items():
        assert torch.equal(own[k], v), k
    # a DataParallel checkpoint as the authors' main.py saves it
    sd2 = _random_state_dict(spec, seed=4)
    wrapped = {"epoch": 3, "arch": "resnet50", "state_dict": {"module." + k: v for k, v in sd2.items()}}
    if name == "tsm_resnet50":  # through a file, once (the largest files are not worth the disk time)
        path = tmp_path / "ckpt.pth.tar"
        torch.save(wrapped, path)
        result = M.load_checkpoint(model, path)
    else:
        result = M.load_checkpoint(model, wrapped)
    assert not result.missing_keys and not result.unexpected_keys
    own = model.state_dict()
    for k, v in sd2.items():
        assert torch.equal(own[k], v), k


def test_mismatch_lists_missing_and_unexpected_keys(built):
    name, model, spec = built
    sd = _random_state_dict(spec)
    missing = next(k for k, _, kind in spec["keys"][4:] if kind == "param")
    sd.pop(missing)
    sd["base_model.extra.weight"] = torch.zeros(1)
    with pytest.raises(M.CheckpointMismatchError) as e:
        M.load_checkpoint(model, sd)
    msg = str(e.value)
    assert "1 missing" in msg and missing in msg
    assert "1 unexpected" in msg and "base_model.extra.weight" in msg
    M.load_checkpoint(model, sd, strict=False)
    bad = _random_state_dict(spec)
    k0, shape0, _ = spec["keys"][0]
    bad[k0] = torch.zeros([s + 1 for s in shape0])
    with pytest.raises(M.CheckpointMismatchError, match=k0.replace(".", r"\.")):
        M.load_checkpoint(model, bad)


def test_bare_backbone_hint():
    model = M.tsm_resnet50(10)
    bare = {k[len("base_model."):]: v for k, v in model.state_dict().items() if k.startswith("base_model.")}
    with pytest.raises(M.CheckpointMismatchError, match="prefix its keys"):
        M.load_checkpoint(model, bare)
    with pytest.raises(TypeError, match="state_dict"):
        M.load_checkpoint(model, [1, 2])


def test_rnl_grouped_and_depthwise_layouts_load_and_agree():
    """The authors' grouped penta.mask/penta.weight and vidops.nn.RegionNonLocal's depthwise
    penta.weight load into each other's blocks and give the same block output."""
    torch.manual_seed(0)
    grouped = M.DiagonalwiseRegionNonLocal(64, (3, 3, 3)).double().eval()
    with torch.no_grad():
        grouped.W[1].weight.uniform_(0.5, 1.5)
    x = torch.randn(2, 64, 3, 5, 6, dtype=torch.float64)
    want = grouped(x)
    depthwise = RegionNonLocal(64, (3, 3, 3)).double().eval()
    depthwise.load_state_dict(grouped.state_dict())  # RegionNonLocal converts the grouped layout
    assert depthwise.penta.weight.shape == (32, 1, 3, 3, 3)
    torch.testing.assert_close(depthwise(x), want, rtol=1e-12, atol=1e-12)
    back = M.DiagonalwiseRegionNonLocal(64, (3, 3, 3)).double().eval()
    back.load_state_dict(depthwise.state_dict())  # depthwise -> grouped (mask rebuilt)
    assert back.penta.weight.shape == (32, 32, 3, 3, 3)
    torch.testing.assert_close(back(x), want, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(back.penta.depthwise_weight(), grouped.penta.depthwise_weight(), rtol=0, atol=0)


def test_rnl_model_loads_a_converted_depthwise_state_dict():
    model = M.rnl_tsm_resnet50(10, num_segments=2)
    sd = convert_rnl_state_dict(model.state_dict())
    assert not any(k.endswith("penta.mask") for k in sd)
    M.load_checkpoint(model, sd)
