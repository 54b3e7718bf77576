"""The X3D model cases judge each vidops provider by its own layout's target: the NCDHW provider
against the NCDHW reference impl, the channels_last_3d provider against the channels_last_3d one."""
import pytest
import torch

from vidops.bench.cases.models import X3D_TARGETS, _targets


@pytest.mark.parametrize("mode", ["fwd", "fwd+bwd"])
def test_x3d_cpu_targets_apply_to_the_provider_of_their_layout(mode):
    targets = _targets("X3D-M", mode, torch.device("cpu"))
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
