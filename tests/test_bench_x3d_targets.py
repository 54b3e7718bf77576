"""The X3D model cases judge each vidops provider by its own layout's target: the NCDHW provider
against the NCDHW reference impl, the channels_last_3d provider against the channels_last_3d one;
the X3D-M training step also by the depthwise convs' share of its per-layer breakdown."""
import pytest
import torch

from vidops.bench import report, runner
from vidops.bench.cases.models import X3D_LAYER_SHARE, X3D_TARGETS, _targets
from vidops.bench.registry import Case


@pytest.mark.parametrize("mode", ["fwd", "fwd+bwd"])
def test_x3d_cpu_targets_apply_to_the_provider_of_their_layout(mode):
    targets = [t for t in _targets("X3D-M", mode, torch.device("cpu")) if t.kind == "speedup"]
    assert len(targets) == len(X3D_TARGETS[("X3D-M", mode)]) == 2
    by_baseline = {t.baseline: t for t in targets}
    assert by_baseline["reference"].applies_to("vidops_cpu")
    assert not by_baseline["reference"].applies_to("vidops_cpu_cl3d")
    assert by_baseline["reference_cl3d"].applies_to("vidops_cpu_cl3d")
    assert not by_baseline["reference_cl3d"].applies_to("vidops_cpu")
    assert not any(t.applies_to(p) for t in targets for p in ("reference", "reference_cl3d"))


def test_x3d_gpu_targets_judge_every_vidops_provider_against_both_layouts():
    targets = _targets("X3D-M", "fwd+bwd", torch.device("cuda"))
    assert {t.baseline for t in targets} == {"reference", "reference_cl3d"}
    assert all(t.applies_to(p) for t in targets for p in ("vidops_cuda", "vidops_cuda_cl3d"))


def _judge(targets, breakdowns):
    records = [{"provider": p, "median_ms": 1.0, "breakdown": b} for p, b in breakdowns.items()]
    runner._targets(Case(op="x3d", name="X3D-M", mode="fwd+bwd", dtype="float32", setup=lambda: None,
                         providers={}, targets=targets), records)
    return {r["provider"]: r for r in records}


def test_x3d_m_training_step_judges_the_depthwise_share_of_both_vidops_layouts():
    targets = [t for t in _targets("X3D-M", "fwd+bwd", torch.device("cpu")) if t.kind == "layer_share"]
    assert [t.value for t in targets] == [X3D_LAYER_SHARE[("X3D-M", "fwd+bwd")]] == [15.0]
    assert not [t for t in _targets("X3D-M", "fwd", torch.device("cpu")) if t.kind == "layer_share"]
    recs = _judge(targets, {"reference": {"depthwise conv": 300.0, "rest of the network": 400.0},
                            "vidops_cpu": {"depthwise conv": 16.0, "rest of the network": 84.0},
                            "vidops_cpu_cl3d": {"depthwise conv": 14.0, "rest of the network": 86.0}})
    assert recs["reference"]["targets"] == []
    assert recs["vidops_cpu"]["targets"][0]["measured"] == pytest.approx(16.0)
    assert recs["vidops_cpu"]["target_met"] is False
    assert recs["vidops_cpu_cl3d"]["target_met"] is True
    assert report.target_detail(recs["vidops_cpu_cl3d"]) == "depthwise conv<=15% of the step: 14.0% yes"
    assert report.breakdown_text(recs["vidops_cpu"]["breakdown"]) == (
        "depthwise conv 16 ms (16.0%), rest of the network 84 ms (84.0%)")


def test_a_share_target_without_a_breakdown_is_not_judged():
    targets = [t for t in _targets("X3D-M", "fwd+bwd", torch.device("cpu")) if t.kind == "layer_share"]
    recs = _judge(targets, {"vidops_cpu": None})
    assert recs["vidops_cpu"]["targets"][0]["met"] is None and recs["vidops_cpu"]["target_met"] is None
