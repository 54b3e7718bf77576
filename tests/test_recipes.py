"""param_groups (the thesis's optimizer groups) and freeze_bn (partial BatchNorm)."""
import pytest
import torch
from torch import nn

import vidops.models as M
from vidops.nn.busy_quiet import BusyQuietSplit
from vidops.nn.motion_band_pass import MotionBandPass

BUILD = {
    "tsm": lambda: M.tsm_resnet50(5, num_segments=2, dropout=0.0),
    "bqn": lambda: M.bqn_resnet50(5, num_segments=2, dropout=0.0),
    "rnl": lambda: M.rnl_tsm_resnet50(5, num_segments=2, dropout=0.0),
    "dan": lambda: M.dan_tsm_resnet50(5, num_segments=2, dropout=0.0),
    "tesnet": lambda: M.tesnet_resnet50(5, K=4, D=2, dropout=0.0),
}
HEAD = {"tsm": "new_fc", "bqn": "base_model.fc", "rnl": "new_fc", "dan": "classifier.new_fc",
        "tesnet": "classifier.new_fc"}


def _by_name(model, groups):
    names = {id(p): n for n, p in model.named_parameters()}
    return {g["name"]: {names[id(p)] for p in g["params"]} for g in groups}


def _expected_group(model, name, p):
    """The group a parameter belongs to, from its name and module (written independently)."""
    module = model.get_submodule(name.rsplit(".", 1)[0])
    owners = [model.get_submodule(".".join(name.split(".")[:i])) for i in range(1, name.count(".") + 1)]
    if any(isinstance(o, (MotionBandPass, BusyQuietSplit)) for o in owners):
        return "band_pass"
    if isinstance(module, nn.Linear) and name.startswith(HEAD[model._case] + "."):
        return "classifier_weight" if name.endswith("weight") else "classifier_bias"
    if isinstance(module, nn.modules.batchnorm._BatchNorm) or name.endswith("bias"):
        return "no_decay"
    return "weights"


@pytest.mark.parametrize("case", list(BUILD))
def test_every_trainable_parameter_in_its_group(case):
    model = BUILD[case]()
    model._case = case
    groups = M.param_groups(model, lr=0.01, weight_decay=1e-4)
    by_name = _by_name(model, groups)
    all_listed = [n for names in by_name.values() for n in names]
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert len(all_listed) == len(set(all_listed)) == len(trainable) and set(all_listed) == trainable
    for n, p in model.named_parameters():
        if p.requires_grad:
            want = _expected_group(model, n, p)
            assert n in by_name[want], f"{n}: expected in {want}"
    settings = {g["name"]: (g["lr"], g["weight_decay"]) for g in groups}
    assert settings["weights"] == (0.01, 1e-4)
    assert settings["no_decay"] == (0.01, 0.0)
    assert settings["classifier_weight"] == pytest.approx((0.05, 5e-4))
    assert settings["classifier_bias"] == pytest.approx((0.05, 0.0))
    assert by_name["classifier_weight"] == {HEAD[case] + ".weight"}
    if case == "bqn":
        assert settings["band_pass"] == (0.01, 0.0)
        assert {"base_model.mbpf1.conv_s.weight", "base_model.mbpf1.conv_t.weight",
                "base_model.layer4.2.mbpf.conv_s.weight"} <= by_name["band_pass"]
    if case == "rnl":
        assert "base_model.layer2.0.nl.penta.weight" in by_name["weights"]  # the region conv is a conv
        assert not any(n.endswith("penta.mask") for names in by_name.values() for n in names)  # frozen


def test_the_groups_drive_sgd():
    """One plain SGD step with the groups: p <- p - lr_g (grad + wd_g p), per group."""
    model = BUILD["tsm"]()
    groups = M.param_groups(model, lr=0.1, weight_decay=0.01, classifier_lr_mult=5)
    opt = torch.optim.SGD(groups)
    x = torch.randn(2, 3, 2, 32, 32, generator=torch.Generator().manual_seed(0))
    loss = model(x).logsumexp(1).sum()
    opt.zero_grad()
    loss.backward()
    named = dict(model.named_parameters())
    before = {n: p.detach().clone() for n, p in named.items()}
    grads = {n: p.grad.clone() for n, p in named.items() if p.grad is not None}
    opt.step()
    for n, lr, wd in (("new_fc.weight", 0.5, 0.05), ("new_fc.bias", 0.5, 0.0),
                      ("base_model.layer1.0.conv1.net.weight", 0.1, 0.01), ("base_model.layer1.0.bn1.weight", 0.1, 0.0)):
        want = before[n] - lr * (grads[n] + wd * before[n])
        torch.testing.assert_close(named[n].detach(), want, msg=n)


def test_classifier_and_band_pass_options():
    model = BUILD["bqn"]()
    groups = M.param_groups(model, 0.01, 1e-4, classifier_lr_mult=10, band_pass_lr_mult=5,
                            classifier=["base_model.fc"])
    settings = {g["name"]: (g["lr"], g["weight_decay"]) for g in groups}
    assert settings["band_pass"] == pytest.approx((0.05, 0.0))
    assert settings["classifier_weight"] == pytest.approx((0.1, 1e-3))
    with pytest.raises(ValueError, match="no module named"):
        M.param_groups(model, 0.01, 1e-4, classifier="head")
    with pytest.raises(ValueError, match="lr must be a non-negative number"):
        M.param_groups(model, -1, 1e-4)
    with pytest.raises(ValueError, match="no nn.Linear classifier"):
        M.param_groups(nn.Conv2d(3, 3, 1), 0.01, 1e-4)


@pytest.mark.parametrize("case, kept", [("tsm", "base_model.bn1"), ("bqn", "base_model.bn1"),
                                        ("dan", "classifier.base_model.bn1")])
def test_partial_bn_freezes_all_but_the_first(case, kept):
    model = BUILD[case]()
    bns = [n for n, m in model.named_modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    frozen = M.freeze_bn(model)
    assert set(frozen) == set(bns) - {kept}
    if case == "bqn":
        assert "base_model.d_bn1" in frozen  # the Busy stem's, as the authors' partial BN
    model.train()  # a later train() must not unfreeze them
    stats = {n: model.get_submodule(n).running_mean.clone() for n in bns}
    frames = 3 * 2 if case == "bqn" else (8 if case == "dan" else 2)
    size = 56 if case == "bqn" else 32
    model(torch.randn(2, 3, frames, size, size, generator=torch.Generator().manual_seed(0)))
    for n in bns:
        moved = not torch.equal(model.get_submodule(n).running_mean, stats[n])
        assert moved == (n == kept), n
    groups = _by_name(model, M.param_groups(model, 0.01, 1e-4))
    listed = {n for names in groups.values() for n in names}
    assert f"{kept}.weight" in listed and not any(f"{n}.weight" in listed for n in frozen)


def test_freeze_bn_all():
    model = BUILD["tsm"]()
    frozen = M.freeze_bn(model, partial=False)
    assert "base_model.bn1" in frozen
    assert all(not m.weight.requires_grad for m in model.modules() if isinstance(m, nn.BatchNorm2d))
    assert M.freeze_bn(model, partial=False) == frozen  # idempotent


def test_train_ddp_uses_the_recipe(tmp_path):
    """vidops.train_ddp trains with param_groups and partial BN: the frozen BatchNorms keep their
    weights and statistics, the first one and the classifier move; --imagenet loads the backbone."""
    from vidops import train_ddp
    from test_imagenet_init import SD

    path = tmp_path / "resnet50.pth"
    torch.save(SD, path)
    start, final = train_ddp.train("tsm_resnet50", steps=1, batch=2, segments=2, size=32, num_classes=5,
                                   dropout=0.0, lr=0.01, partial_bn=True, imagenet=str(path),
                                   classifier_lr_mult=5.0, weight_decay=1e-4)
    torch.testing.assert_close(start["base_model.layer1.0.conv2.weight"], SD["layer1.0.conv2.weight"])
    for k in ("base_model.layer1.0.bn1.weight", "base_model.layer1.0.bn1.running_mean", "base_model.d_bn1.weight"):
        if k in start:
            assert torch.equal(start[k], final[k]), k
    for k in ("base_model.bn1.running_mean", "base_model.bn1.weight", "new_fc.weight"):
        assert not torch.equal(start[k], final[k]), k
