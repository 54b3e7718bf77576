"""Every model trains under DistributedDataParallel (2 CPU processes, gloo, launched by torchrun
as the README shows) exactly as one process trains on the whole batch: the parameter updates of
two SGD steps agree within float32 noise (the float32 single-process run's own error against
float64), both ranks hold identical parameters, and no parameter goes unused."""
import subprocess
import sys

import pytest
import torch

from vidops import train_ddp
from vidops._tolerance import compare

ARGS = dict(steps=2, batch=2, segments=2, num_classes=5, dropout=0.0, freeze_bn=True, lr=0.01)
# The RNL model at lr 0.01: its first step multiplies the gradients ~300x (0.05 -> 14) and the
# second step turns the rounding differences between a 1-thread rank on one clip and a 2-thread
# process on both (1e-7) into 3% gradient differences (measured without DDP too: two replicas on
# half batches in one process, 1 thread): a comparison of chaos, not of DDP. At 0.001 it passes.
LR = {"rnl_tsm_resnet50": 0.001}
SIZE = {"bqn_resnet50": 56, "bqn_x3d_m": 80}  # the laterals' reflect padding needs these frames; 32 for the rest
# every ResNet-50 model, and the X3D family through X3D-XS (X3D-S/M/L are its blocks at other
# depths), BQN X3D-M, Busy X3D-M and DAN-X3D-XS
TESTED = tuple(m for m in train_ddp.MODELS if m.endswith("resnet50")) + ("x3d_xs", "bqn_x3d_m", "busy_x3d_m",
                                                                          "dan_x3d_xs")


# BN gammas given to the zero-initialised branches. BQN X3D-M with frozen (unit-variance) statistics:
# its 15 blocks' residual branches and band-pass laterals (LoG gains in the hundreds) feed each
# other, so gammas near 1 overflow float32 in the forward (all NaN after one step), 0.05-0.15 give
# logits of 6e6; at 1e-4 every branch is active and the logits stay below 1
GAMMA = {"bqn_x3d_m": (1e-4, 2e-4)}


def _activated_state(name: str) -> dict:
    """The model's initial state with its zero-initialised residual branches made active (BN
    gammas, the gates' last layers), so every parameter gets a gradient and is compared."""
    torch.manual_seed(0)
    model, _ = train_ddp.build(name, ARGS["num_classes"], ARGS["segments"], 0.0)
    g = torch.Generator().manual_seed(1)
    state = model.state_dict()
    lo, hi = GAMMA.get(name, (0.5, 1.5))
    for k, p in model.named_parameters():
        if not p.detach().abs().max() > 0:
            t = state[k]
            t.copy_(torch.empty_like(t).uniform_(lo, hi, generator=g) if k.endswith("weight") and t.dim() == 1
                    else torch.empty_like(t).normal_(0, 0.05, generator=g))
    return state


@pytest.fixture(scope="module")
def ddp_runs(tmp_path_factory):
    out = tmp_path_factory.mktemp("ddp")
    for name in TESTED:
        torch.save(_activated_state(name), out / f"{name}_init.pt")
    groups = {}
    for name in TESTED:
        groups.setdefault((SIZE.get(name, 32), LR.get(name, ARGS["lr"])), []).append(name)
    for (size, lr), names in groups.items():
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
               "-m", "vidops.train_ddp", "--model", ",".join(names), "--device", "cpu",
               "--steps", str(ARGS["steps"]), "--batch-size", str(ARGS["batch"]), "--segments", str(ARGS["segments"]),
               "--size", str(size), "--num-classes", str(ARGS["num_classes"]), "--dropout", "0", "--lr", str(lr),
               "--freeze-bn", "--init", str(out / "{model}_init.pt"), "--out", str(out)]
        run = subprocess.run(cmd, capture_output=True, text=True, timeout=1200)
        assert run.returncode == 0, f"torchrun failed:\n{run.stdout[-3000:]}\n{run.stderr[-6000:]}"
        for name in names:
            assert f"vidops.train_ddp: {name}: 2 steps on 2 process(es) (cpu)" in run.stdout
    return {name: [torch.load(out / f"{name}_rank{r}.pt") for r in (0, 1)] for name in TESTED}


@pytest.mark.parametrize("name", TESTED)
def test_ddp_matches_one_process_on_the_whole_batch(ddp_runs, name):
    rank0, rank1 = ddp_runs[name]
    start = rank0["initial"]
    args = dict(ARGS, size=SIZE.get(name, 32), lr=LR.get(name, ARGS["lr"]))
    for k in start:
        assert torch.equal(rank0["final"][k], rank1["final"][k]), f"{name}: ranks disagree on {k}"
    _, one32 = train_ddp.train(name, **args, initial_state=start)
    _, again = train_ddp.train(name, **args, initial_state=start)
    for k in one32:  # deterministic gradients: a second run gives the same bits
        assert torch.equal(one32[k], again[k]), f"{name}: {k} differs between two identical runs"
    _, one64 = train_ddp.train(name, **args, initial_state=start, dtype=torch.float64)
    moved = set()
    for k, p0 in start.items():
        if not p0.is_floating_point():
            continue
        d_ddp = rank0["final"][k].double() - p0.double()
        d32 = one32[k].double() - p0.double()
        d64 = one64[k] - p0.double()
        if d64.abs().max() > 0:
            moved.add(k)
        # the float32 update: its rounding floor is float32's
        c = compare(d_ddp.float(), d64, d32, name=f"{name} {k} update (DDP vs one process)", factor=4.0)
        assert c.ok, c.message()
    # An unused parameter would have made DDP raise at the second step. A few get an exactly zero
    # gradient at these tiny shapes (a conv bias before a softmax over its own output, the last
    # lateral on 2 x 2 maps); the comparison above must still cover nearly all of them.
    params = {k for k, p in train_ddp.build(name, ARGS["num_classes"], ARGS["segments"], 0.0)[0].named_parameters()
              if p.requires_grad}
    assert len(params & moved) >= 0.98 * len(params), \
        f"{name}: parameters that got no update: {sorted(params - moved)[:10]}"


def test_train_ddp_rejects_an_uneven_split():
    with pytest.raises(ValueError, match="train_ddp: the global batch 3 must split evenly over 2"):
        train_ddp.train("tsm_resnet50", batch=3, world=2)
    with pytest.raises(ValueError, match="unknown model 'resnet18'"):
        train_ddp.build("resnet18", 5, 2, 0.0)


@pytest.mark.parametrize("name", TESTED)
def test_convert_sync_batchnorm_keeps_the_model(name):
    """Every BatchNorm becomes a SyncBatchNorm with the same state (keys and values), and the
    converted model in eval mode gives the same outputs (SyncBatchNorm's training needs a GPU
    process group: tested with the GPU tests)."""
    torch.manual_seed(0)
    model, frames = train_ddp.build(name, 5, 2, 0.0)
    model.eval()
    n_bn = sum(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in model.modules())
    x = torch.randn(1, 3, frames, SIZE.get(name, 32), SIZE.get(name, 32))
    with torch.no_grad():
        want = model(x)
    synced = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model).eval()
    assert sum(isinstance(m, torch.nn.SyncBatchNorm) for m in synced.modules()) == n_bn > 0
    assert synced.state_dict().keys() == model.state_dict().keys()
    with torch.no_grad():
        got = synced(x)
    for g, w in zip(*(o if isinstance(o, tuple) else (o,) for o in (got, want))):
        torch.testing.assert_close(g, w, rtol=0, atol=0)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="SyncBatchNorm trains on CUDA (NCCL)")
def test_sync_batchnorm_trains_under_torchrun_on_gpu(tmp_path):
    n = min(torch.cuda.device_count(), 2)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(n),
           "-m", "vidops.train_ddp", "--model", ",".join(TESTED), "--device", "cuda", "--sync-bn",
           "--steps", "2", "--segments", "2", "--size", "80", "--num-classes", "5", "--out", str(tmp_path)]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=1200)
    assert run.returncode == 0, f"torchrun failed:\n{run.stdout[-3000:]}\n{run.stderr[-6000:]}"
    for name in TESTED:
        final = torch.load(tmp_path / f"{name}_rank0.pt")["final"]
        assert all(torch.isfinite(v).all() for v in final.values() if v.is_floating_point()), name


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("name", TESTED)
def test_backward_makes_no_host_sync_on_gpu(name):
    """DDP overlaps the gradient all-reduce with the backward: a host sync inside a vidops
    backward would stall it. CUDA's sync debug mode raises on any synchronising call."""
    torch.manual_seed(0)
    model, frames = train_ddp.build(name, 5, 2, 0.0)
    model = model.cuda().train()
    clips, labels = train_ddp.global_batch(0, 2, frames, SIZE.get(name, 56), 5)
    loss = train_ddp.loss_of(model(clips.cuda()), labels.cuda(), 0.1)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        loss.backward()
    finally:
        torch.cuda.set_sync_debug_mode("default")
    torch.cuda.synchronize()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)
