"""Train a vidops model with DistributedDataParallel: one process per GPU (NCCL) or per CPU
worker (gloo). The vidops ops need nothing special under DDP: every parameter gets a gradient,
the backward passes make no host synchronisation and give the same gradients on every run.

    torchrun --nproc-per-node 8 -m vidops.train_ddp --model rnl_tsm_resnet50 --sync-bn
    torchrun --nproc-per-node 2 -m vidops.train_ddp --model tsm_resnet50 --device cpu --steps 2

The clips here are synthetic (random frames and labels, the same global batch on every rank,
each rank taking its slice): replace `global_batch` with your data loader and a
DistributedSampler. The loss is the cross-entropy of the logits plus `aux_weight` times the
mean of a model's auxiliary outputs (DAN's ENoPR, TeSNet's projection loss).

The optimizer is SGD (momentum 0.9) on the thesis's parameter groups (vidops.models.param_groups:
the classifier at --classifier-lr-mult times the learning rate and weight decay, no weight decay
on BatchNorm, biases and band-pass filters); the defaults (1x, no weight decay) are plain SGD, the
thesis's recipe is `--classifier-lr-mult 5 --weight-decay 1e-4` (2e-4 for BQN on Kinetics).
--partial-bn freezes every BatchNorm but the first (vidops.models.freeze_bn), as the thesis
fine-tunes; --imagenet loads torchvision's ImageNet ResNet-50 into the backbone
(vidops.models.load_imagenet_backbone).
"""
from __future__ import annotations

import argparse
import os
from typing import Optional

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from . import models as M

MODELS = ("tsm_resnet50", "bqn_resnet50", "rnl_tsm_resnet50", "nl_tsm_resnet50", "dan_tsm_resnet50",
          "tesnet_resnet50", "x3d_xs", "x3d_s", "x3d_m", "x3d_l", "bqn_x3d_m", "busy_x3d_m", "dan_x3d_xs", "dan_x3d_m")
# frames per clip of the models whose clip is not one frame per segment (X3D: `segments` frames)
_FRAMES_PER_SEGMENT = {"bqn_resnet50": 3, "bqn_x3d_m": 3, "busy_x3d_m": 3, "dan_tsm_resnet50": 4, "dan_x3d_xs": 8,
                       "dan_x3d_m": 3}


def build(name: str, num_classes: int, segments: int, dropout: float) -> tuple:
    """(model, frames per clip) of `name` at `segments` segments."""
    if name in ("bqn_resnet50", "bqn_x3d_m", "busy_x3d_m"):
        return getattr(M, name)(num_classes, num_segments=segments, dropout=dropout), 3 * segments
    if name == "dan_tsm_resnet50":
        return M.dan_tsm_resnet50(num_classes, num_segments=segments, frames_per_segment=4, dropout=dropout), 4 * segments
    if name == "tesnet_resnet50":
        return M.tesnet_resnet50(num_classes, K=segments, D=min(3, segments - 1), dropout=dropout), segments
    if name.startswith("x3d_"):   # a clip of `segments` consecutive frames
        return getattr(M, name)(num_classes, dropout=dropout), segments
    if name in ("dan_x3d_xs", "dan_x3d_m"):
        f = _FRAMES_PER_SEGMENT[name]
        return getattr(M, name)(num_classes, num_segments=segments, frames_per_segment=f, dropout=dropout), f * segments
    if name in MODELS:
        return getattr(M, name)(num_classes, num_segments=segments, dropout=dropout), segments
    raise ValueError(f"vidops.train_ddp: unknown model {name!r} (one of {', '.join(MODELS)})")


def global_batch(step: int, batch: int, frames: int, size: int, num_classes: int, dtype=torch.float32):
    """The synthetic batch of a step (the same on every rank): clips (batch, 3, frames, size,
    size) and labels."""
    g = torch.Generator().manual_seed(1000 + step)
    clips = torch.randn(batch, 3, frames, size, size, generator=g, dtype=torch.float64).to(dtype)
    labels = torch.randint(num_classes, (batch,), generator=g)
    return clips, labels


def loss_of(out, labels: torch.Tensor, aux_weight: float) -> torch.Tensor:
    outs = out if isinstance(out, tuple) else (out,)
    loss = F.cross_entropy(outs[0], labels)
    for aux in outs[1:]:
        loss = loss + aux_weight * aux.mean()
    return loss


def freeze_batchnorm(model: nn.Module) -> nn.Module:
    """BatchNorm layers in eval mode (running statistics, no per-batch ones): then a split batch
    trains exactly like the whole one."""
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.eval()
    return model


def train(name: str, *, steps: int = 2, batch: int = 2, segments: int = 2, size: int = 32,
          num_classes: int = 5, dropout: float = 0.5, lr: float = 0.01, aux_weight: float = 0.1,
          freeze_bn: bool = False, sync_bn: bool = False, device: str = "cpu",
          dtype: torch.dtype = torch.float32, seed: int = 0, rank: int = 0, world: int = 1,
          initial_state: Optional[dict] = None, weight_decay: float = 0.0, classifier_lr_mult: float = 1.0,
          partial_bn: bool = False, imagenet: Optional[str] = None) -> tuple:
    """Train `name` for `steps` SGD steps (momentum 0.9, vidops.models.param_groups with
    `weight_decay` and `classifier_lr_mult`) on the synthetic batches, each of the `world`
    processes on its slice of every global batch of `batch` clips (DDP when world > 1).
    freeze_bn: every BatchNorm on running statistics (a split batch then trains exactly like the
    whole one); partial_bn: the fine-tuning recipe (vidops.models.freeze_bn). imagenet: a
    torchvision resnet50 state_dict file for the backbone. Returns (initial state_dict, final
    state_dict), on the CPU."""
    if batch % world:
        raise ValueError(f"vidops.train_ddp: the global batch {batch} must split evenly over {world} processes")
    torch.manual_seed(seed)
    model, frames = build(name, num_classes, segments, dropout)
    if imagenet is not None:
        report = M.load_imagenet_backbone(model, imagenet)
        if rank == 0:
            print(report, flush=True)
    if initial_state is not None:
        model.load_state_dict(initial_state)
    start = {k: v.detach().clone() for k, v in model.state_dict().items()}
    model = model.to(device, dtype).train()
    if sync_bn:
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    if freeze_bn:
        freeze_batchnorm(model)
    if partial_bn:
        M.freeze_bn(model)
    net = model
    if world > 1:
        dev = torch.device(device)
        net = nn.parallel.DistributedDataParallel(model, device_ids=[dev.index] if dev.type == "cuda" else None)
    opt = torch.optim.SGD(M.param_groups(model, lr, weight_decay, classifier_lr_mult), momentum=0.9)
    per_rank = batch // world
    for step in range(steps):
        clips, labels = global_batch(step, batch, frames, size, num_classes, dtype)
        part = slice(rank * per_rank, (rank + 1) * per_rank)
        loss = loss_of(net(clips[part].to(device)), labels[part].to(device), aux_weight)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    final = {k: v.detach().to("cpu").clone() for k, v in model.state_dict().items()}
    return start, final


def main(argv=None) -> None:
    p = argparse.ArgumentParser(prog="torchrun --nproc-per-node N -m vidops.train_ddp", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="tsm_resnet50",
                   help=f"one or more of {', '.join(MODELS)}, comma-separated (trained one after another)")
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=None, help="global batch (default 2 per process)")
    p.add_argument("--segments", type=int, default=8)
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--num-classes", type=int, default=400)
    p.add_argument("--dropout", type=float, default=0.5)
    p.add_argument("--lr", type=float, default=0.01)
    p.add_argument("--weight-decay", type=float, default=0.0,
                   help="L2 on conv and linear weights (the classifier's times --classifier-lr-mult); "
                        "the thesis: 1e-4 to 8e-4")
    p.add_argument("--classifier-lr-mult", type=float, default=1.0,
                   help="the classification layer's learning rate and weight decay multiplier (the thesis: 5)")
    p.add_argument("--freeze-bn", action="store_true", help="BatchNorm with running statistics")
    p.add_argument("--partial-bn", action="store_true",
                   help="freeze every BatchNorm but the first (the thesis's fine-tuning recipe)")
    p.add_argument("--imagenet", default=None, help="torchvision resnet50-*.pth: ImageNet backbone initialisation")
    p.add_argument("--sync-bn", action="store_true", help="torch.nn.SyncBatchNorm (GPU)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--init", default=None,
                   help="start from this state_dict file (a checkpoint to fine-tune); {model} in the path "
                        "is replaced by the model's name")
    p.add_argument("--out", default=None, help="folder for <model>_rank<r>.pt: each rank's initial and final state")
    a = p.parse_args(argv)
    rank, world = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    device = a.device
    if device == "cuda":
        device = f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}"
        torch.cuda.set_device(device)
    grouped = world > 1 or (a.sync_bn and "MASTER_ADDR" in os.environ)  # SyncBatchNorm needs a group
    if grouped:
        dist.init_process_group("nccl" if device.startswith("cuda") else "gloo")
    try:
        for name in a.model.split(","):
            init = torch.load(a.init.replace("{model}", name), map_location="cpu") if a.init else None
            start, final = train(name, steps=a.steps, batch=a.batch_size or 2 * world, segments=a.segments,
                                 size=a.size, num_classes=a.num_classes, dropout=a.dropout, lr=a.lr,
                                 freeze_bn=a.freeze_bn, sync_bn=a.sync_bn, device=device, rank=rank, world=world,
                                 initial_state=init, weight_decay=a.weight_decay,
                                 classifier_lr_mult=a.classifier_lr_mult, partial_bn=a.partial_bn,
                                 imagenet=a.imagenet)
            if a.out:
                os.makedirs(a.out, exist_ok=True)
                torch.save({"initial": start, "final": final}, os.path.join(a.out, f"{name}_rank{rank}.pt"))
            if rank == 0:
                print(f"vidops.train_ddp: {name}: {a.steps} steps on {world} process(es) ({device})", flush=True)
    finally:
        if grouped:
            dist.destroy_process_group()


if __name__ == "__main__":
    main()
