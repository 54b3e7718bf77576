"""X3D checkpoints of the three codebases load into vidops's X3D: pytorchvideo's model zoo
({'model_state': ...}, pytorchvideo names), SlowFast's .pyth ({'model_state': ...}, SlowFast names)
and mmaction2's ({'state_dict': ...}, backbone./cls_head. names), with or without DataParallel's
`module.`; the key map reproduces every row of the published X3D-M map; loading one layout's
weights into the other fails naming the stage-1 shortcut BatchNorm (random values with the key
lists' names and shapes; tests/data/checkpoint_keys/)."""
import json
import os

import pytest
import torch

import vidops.models as M
from vidops.models.x3d_keys import codebase_of, from_pytorchvideo_name, to_pytorchvideo_name
from test_checkpoints import _random_state_dict as random_state_dict  # the key list's names and shapes

DATA = os.path.join(os.path.dirname(__file__), "data", "checkpoint_keys")
BN = [f"blocks.1.res_blocks.0.branch1_norm.{p}" for p in ("weight", "bias", "running_mean", "running_var",
                                                          "num_batches_tracked")]


def _spec(name):
    with open(os.path.join(DATA, name + ".json")) as f:
        return json.load(f)


def _keymap():
    return _spec("x3d_m_keymap")["rows"]   # [slowfast, pytorchvideo, mmaction2, shape]


@pytest.mark.parametrize("name", ["x3d_xs", "x3d_s", "x3d_m", "x3d_l"])
def test_pytorchvideo_model_zoo_loads_strictly(name, tmp_path):
    spec = _spec(f"{name}_pytorchvideo")
    model = getattr(M, name)(400)
    sd = random_state_dict(spec)
    model.load_state_dict(sd)                       # torch's own strict load: the names are the same
    sd2 = random_state_dict(spec, seed=4)
    container = {"model_state": sd2, "model_epoch": 300}
    if name == "x3d_m":                             # through a file once
        torch.save(container, tmp_path / "X3D_M.pyth")
        result = M.load_checkpoint(model, tmp_path / "X3D_M.pyth")
    else:
        result = M.load_checkpoint(model, container)
    assert not result.missing_keys and not result.unexpected_keys
    own = model.state_dict()
    assert all(torch.equal(own[k], v) for k, v in sd2.items())
    sd3 = random_state_dict(spec, seed=5)           # DataParallel form
    M.load_checkpoint(model, {"model_state": {"module." + k: v for k, v in sd3.items()}})
    assert all(torch.equal(model.state_dict()[k], v) for k, v in sd3.items())


def test_keymap_rules_reproduce_every_row():
    rows = _keymap()
    assert len(rows) == 568
    for sf, pv, mm, _ in rows:
        want = pv if pv is not None else BN[[b.rsplit(".", 1)[1] for b in BN].index(sf.rsplit(".", 1)[1])]
        assert to_pytorchvideo_name(sf, "slowfast") == want, sf
        assert to_pytorchvideo_name(mm, "mmaction2") == want, mm
        assert from_pytorchvideo_name(want, "slowfast") == sf
        assert from_pytorchvideo_name(want, "mmaction2") == mm
    assert codebase_of({r[0]: 0 for r in rows}) == "slowfast"
    assert codebase_of({r[2]: 0 for r in rows}) == "mmaction2"
    assert codebase_of({r[1]: 0 for r in rows if r[1]}) == "pytorchvideo"


@pytest.mark.parametrize("codebase,container", [("slowfast", "model_state"), ("mmaction2", "state_dict")])
def test_slowfast_and_mmaction2_checkpoints_load_into_the_slowfast_layout(codebase, container):
    spec = _spec(f"x3d_m_{codebase}")
    assert spec["num_keys"] == 568
    sd = random_state_dict(spec)
    model = M.x3d_m(400, layout="slowfast")
    result = M.load_checkpoint(model, {container: {"module." + k: v for k, v in sd.items()}, "epoch": 1})
    assert not result.missing_keys and not result.unexpected_keys
    own = model.state_dict()
    col = 0 if codebase == "slowfast" else 2
    for row in _keymap():
        mine = row[1] or to_pytorchvideo_name(row[0], "slowfast")
        assert torch.equal(own[mine], sd[row[col]].reshape(own[mine].shape)), row[col]
    # and back out under their names, shapes included (mmaction2's fc1 is a Linear)
    out = M.export_x3d_state_dict(own, codebase)
    assert [(k, list(v.shape)) for k, v in out.items()] == [(k, s) for k, s, _ in spec["keys"]] or \
        sorted((k, tuple(v.shape)) for k, v in out.items()) == sorted((k, tuple(s)) for k, s, _ in spec["keys"])


def test_the_same_weights_give_the_same_function_through_every_codebase():
    ref = M.x3d_xs(5, layout="slowfast", dropout=0.0)
    with torch.no_grad():
        for p in ref.parameters():
            p.normal_(0, 0.05)
    ref.eval()
    x = torch.randn(1, 3, 4, 32, 32)
    with torch.no_grad():
        want = ref(x)
        for codebase in ("slowfast", "mmaction2"):
            model = M.x3d_xs(5, layout="slowfast").eval()
            M.load_checkpoint(model, M.export_x3d_state_dict(ref.state_dict(), codebase))
            assert torch.equal(model(x), want)


def test_slowfast_weights_into_the_pytorchvideo_layout_name_the_extra_norm():
    sd = random_state_dict(_spec("x3d_m_slowfast"))
    model = M.x3d_m(400)
    with pytest.raises(M.CheckpointMismatchError) as err:
        M.load_checkpoint(model, {"model_state": sd})
    msg = str(err.value)
    assert "s2.pathway0_res0.branch1_bn.weight" in msg and "s2.pathway0_res0.branch1_bn.running_var" in msg
    assert "layout='slowfast'" in msg and "5 unexpected" in msg
    mm = random_state_dict(_spec("x3d_m_mmaction2"))
    with pytest.raises(M.CheckpointMismatchError, match="backbone.layer1.0.downsample.bn.weight"):
        M.load_checkpoint(model, {"state_dict": mm})


def test_pytorchvideo_weights_into_the_slowfast_layout_name_the_missing_norm():
    sd = random_state_dict(_spec("x3d_m_pytorchvideo"))
    model = M.x3d_m(400, layout="slowfast")
    with pytest.raises(M.CheckpointMismatchError) as err:
        M.load_checkpoint(model, {"model_state": sd})
    msg = str(err.value)
    assert all(k in msg for k in BN) and "layout='pytorchvideo'" in msg and "missing" in msg


def test_x3d_l_in_slowfast_names_round_trips():
    model = M.x3d_l(400, layout="slowfast")
    sd = {k: torch.randn_like(v) if v.is_floating_point() else v for k, v in model.state_dict().items()}
    sf = M.export_x3d_state_dict(sd, "slowfast")
    assert "s5.pathway0_res14.branch2.c_bn.weight" in sf and "s4.pathway0_res24.branch2.b.weight" in sf
    other = M.x3d_l(400, layout="slowfast")
    M.load_checkpoint(other, {"model_state": sf})
    assert all(torch.equal(other.state_dict()[k], v) for k, v in sd.items())
