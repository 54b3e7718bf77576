"""load_imagenet_backbone: torchvision's ImageNet ResNet-50 state_dict into every ResNet-based
model, as the authors' code wraps an ImageNet ResNet-50 (TSM shift, RNL wrapper, both BQN
pathways), the thesis's layers and the classifiers left at their own initialisation."""
import copy

import pytest
import torch

import vidops.models as M
from vidops.models import CheckpointMismatchError, load_imagenet_backbone


def torchvision_resnet50_entries(num_batches_tracked: bool = False) -> dict:
    """{key: shape} of torchvision's resnet50-*.pth (written out from torchvision's layout, not
    from vidops: conv1, bn1, layer1..4 of 3/4/6/3 bottlenecks 1x1-3x3-1x1 with the stride on the
    3x3 and a downsample.{0,1} in each stage's first block, fc 2048 -> 1000)."""
    entries = {}

    def bn(name, c):
        for p in ("weight", "bias", "running_mean", "running_var"):
            entries[f"{name}.{p}"] = (c,)
        if num_batches_tracked:
            entries[f"{name}.num_batches_tracked"] = ()

    entries["conv1.weight"] = (64, 3, 7, 7)
    bn("bn1", 64)
    inplanes = 64
    for stage, (planes, blocks) in enumerate(zip((64, 128, 256, 512), (3, 4, 6, 3)), 1):
        for i in range(blocks):
            p = f"layer{stage}.{i}"
            cin = inplanes if i == 0 else planes * 4
            entries[f"{p}.conv1.weight"] = (planes, cin, 1, 1)
            bn(f"{p}.bn1", planes)
            entries[f"{p}.conv2.weight"] = (planes, planes, 3, 3)
            bn(f"{p}.bn2", planes)
            entries[f"{p}.conv3.weight"] = (planes * 4, planes, 1, 1)
            bn(f"{p}.bn3", planes * 4)
            if i == 0:
                entries[f"{p}.downsample.0.weight"] = (planes * 4, cin, 1, 1)
                bn(f"{p}.downsample.1", planes * 4)
        inplanes = planes * 4
    entries["fc.weight"] = (1000, 2048)
    entries["fc.bias"] = (1000,)
    return entries


def imagenet_state_dict(num_batches_tracked: bool = False, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    sd = {}
    for k, shape in torchvision_resnet50_entries(num_batches_tracked).items():
        if k.endswith("num_batches_tracked"):
            sd[k] = torch.tensor(12345)
        elif k.endswith("running_var"):
            sd[k] = torch.rand(shape, generator=g) + 0.5
        elif len(shape) > 1:  # conv and fc weights at He scale, so that a forward stays finite
            fan_in = torch.Size(shape[1:]).numel()
            sd[k] = torch.randn(shape, generator=g) * (2.0 / fan_in) ** 0.5
        else:
            sd[k] = torch.randn(shape, generator=g) * 0.1 + (1.0 if k.endswith(".weight") else 0.0)
    return sd


def test_the_written_out_keys_are_torchvisions_count_and_vidops_resnet50s():
    entries = torchvision_resnet50_entries(num_batches_tracked=True)
    assert len(entries) == 320
    assert sum(torch.Size(s).numel() for k, s in entries.items() if not k.endswith("num_batches_tracked")
               and "running" not in k) == 25_557_032  # torchvision's resnet50 parameter count
    own = {k: tuple(v.shape) for k, v in M.resnet50().state_dict().items()}
    assert own == entries


SD = imagenet_state_dict()

# model -> (trunk prefixes, how many trunks take each ImageNet tensor)
CASES = {
    "tsm": (lambda: M.tsm_resnet50(5, num_segments=2), ["base_model."], 1),
    "rnl": (lambda: M.rnl_tsm_resnet50(5, num_segments=2), ["base_model."], 1),
    "nl": (lambda: M.nl_tsm_resnet50(5, num_segments=2), ["base_model."], 1),
    "bqn": (lambda: M.bqn_resnet50(5, num_segments=2), ["base_model."], 2),
    "dan": (lambda: M.dan_tsm_resnet50(5, num_segments=2), ["classifier.base_model."], 1),
    "tesnet": (lambda: M.tesnet_resnet50(5), ["classifier.base_model."], 1),
    "resnet50": (lambda: M.resnet50(7), [""], 1),
}


def _expected_source(key: str):
    """The ImageNet key a model key must hold, or None (a layer of its own), written from the
    authors' layouts independently of vidops.models.imagenet."""
    k = key
    for p in ("classifier.base_model.", "base_model."):
        if k.startswith(p):
            k = k[len(p):]
            break
    k = k.replace(".conv1.net.", ".conv1.").replace(".block.", ".").replace(".path_c.", ".").replace(".path_f.", ".")
    if k.startswith("d_conv1.") or k.startswith("d_bn1."):
        k = k[2:]
    return None if k.startswith("fc.") or k not in SD else k


@pytest.mark.parametrize("name", list(CASES))
def test_every_backbone_tensor_loads_and_the_new_layers_keep_their_init(name):
    build, _, copies = CASES[name]
    torch.manual_seed(0)
    model = build()
    before = copy.deepcopy(model.state_dict())
    report = load_imagenet_backbone(model, SD)
    after = model.state_dict()
    expected = {k: _expected_source(k) for k in after}
    expected = {k: v for k, v in expected.items() if v is not None}
    assert report.loaded == expected
    # every ImageNet tensor but fc lands in each trunk (two trunks' worth of copies in BQN: Quiet, Busy)
    taken = {}
    for src in report.loaded.values():
        taken[src] = taken.get(src, 0) + 1
    assert set(taken) == {k for k in SD if not k.startswith("fc.")}
    assert set(taken.values()) == {copies}
    for k, src in expected.items():
        torch.testing.assert_close(after[k], SD[src], rtol=0, atol=0, msg=k)
    for k in after:
        if k not in expected:
            torch.testing.assert_close(after[k], before[k], rtol=0, atol=0, msg=f"{k} changed")
    assert report.unused == ["fc.bias", "fc.weight"]
    assert set(report.left) == {k for k in after if k not in expected and not k.endswith("num_batches_tracked")} | \
        {k for k in after if k.endswith("num_batches_tracked") and k[:-19] + "weight" not in expected}
    text = str(report)
    assert f"loaded {len(expected)} tensors" in text and "left at their own initialisation" in text


def test_the_thesis_layers_are_what_is_left():
    """BQN: the band-pass stem, the laterals (band-pass, d_up, d_down) and the classifier."""
    model = M.bqn_resnet50(5, num_segments=2)
    groups = load_imagenet_backbone(model, SD).left_groups()
    expected = {"base_model.mbpf1.conv_s", "base_model.mbpf1.conv_t", "base_model.fc"}
    for L in range(1, 5):
        expected |= {f"base_model.layer{L}.*.{m}" for m in ("mbpf.conv_s", "mbpf.conv_t", "d_up.*", "d_down.*")}
    assert set(groups) == expected


def test_the_models_forward_after_loading():
    model = M.rnl_tsm_resnet50(5, num_segments=2).eval()
    load_imagenet_backbone(model, {"state_dict": {f"module.{k}": v for k, v in SD.items()}})
    with torch.no_grad():
        assert torch.isfinite(model(torch.randn(1, 3, 2, 32, 32))).all()


def test_num_batches_tracked_is_copied_when_the_file_has_it():
    model = M.tsm_resnet50(5, num_segments=2)
    report = load_imagenet_backbone(model, imagenet_state_dict(num_batches_tracked=True))
    assert model.state_dict()["base_model.layer1.0.bn1.num_batches_tracked"].item() == 12345
    assert not any(k.endswith("num_batches_tracked") for k in report.left)


def test_a_path_and_verbose(tmp_path, capsys):
    path = tmp_path / "resnet50-test.pth"
    torch.save(SD, path)
    model = M.tsm_resnet50(5, num_segments=2)
    load_imagenet_backbone(model, str(path), verbose=True)
    assert "load_imagenet_backbone(TSMResNet50): loaded" in capsys.readouterr().out
    torch.testing.assert_close(model.base_model.layer1[0].conv1.net.weight, SD["layer1.0.conv1.weight"])


def test_not_a_resnet50_file_is_refused():
    sd = dict(SD)
    sd["layer3.6.conv1.weight"] = torch.zeros(256, 1024, 1, 1)  # a ResNet-101 entry
    with pytest.raises(CheckpointMismatchError, match="fit nowhere.*layer3.6.conv1.weight"):
        load_imagenet_backbone(M.tsm_resnet50(5, num_segments=2), sd)
    bad = dict(SD)
    bad["layer1.0.conv2.weight"] = torch.zeros(64, 64, 1, 1)
    with pytest.raises(CheckpointMismatchError, match="shapes differ"):
        load_imagenet_backbone(M.tsm_resnet50(5, num_segments=2), bad)


def test_a_model_without_resnet_trunk_is_refused():
    if not hasattr(M, "x3d_xs"):
        pytest.skip("no X3D models in this build")
    with pytest.raises(CheckpointMismatchError, match="no ResNet-50 trunk.*load_checkpoint"):
        load_imagenet_backbone(M.x3d_xs(5), SD)
