"""Benchmark cases of the thesis's whole models (`python -m vidops.bench --ops models`).

Each model runs as the authors' code computes it (impl="reference": conv2d + conv1d band-pass with
its permutes, grouped-and-masked region conv, bmm-softmax-bmm attention, slice-copy shift) and with
the fused vidops layers (impl="vidops"), from the same weights.

Modes:
  fwd      inference: eval mode, no autograd;
  fwd+bwd  one training step: train mode, forward, cross-entropy (plus the model's auxiliary loss
           where it has one: DAN's ENoPR), backward, SGD step.
Providers: "reference" (impl="reference", eager), "reference_compiled" (the same under
torch.compile), "vidops_<backend>" (impl="vidops"; the layers pick their backends).

Shapes: CPU (and --quick) N=1 (RNL's training step N=2) and 8 segments, float32: BQN-R50, DAN, TSM-R50 and TeSNet at 112x112,
RNL-TSM-R50 at 224x224 (where its attention matters: L = 6272 at res3). GPU: N=2 at 224x224 for
every model (bf16 where asked).

X3D models (X3D-M 16 x 224^2, BQN X3D-M 48 x 256^2, DAN-X3D-XS 32 x 160^2; N = 1 on the CPU, 8 on
GPUs), each in NCDHW and in channels_last_3d: providers "reference" / "vidops_<dev>" take the
NCDHW clip, "reference_cl3d" / "vidops_<dev>_cl3d" the clip (and the 5-D weights) in
channels_last_3d; no compiled provider (inductor takes minutes per X3D on 2 cores). X3D-M alone
is also the default run's `x3d` group (vidops/bench/cases/x3d.py).
Each case records the parameter count, the multiply-adds of one forward (`count_flops`) and, per
provider, the time of every thesis layer in a step (`breakdown`, the median of BREAKDOWN_RUNS steps,
see vidops/bench/breakdown.py).
"""
from __future__ import annotations

import statistics
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..breakdown import layer_breakdown
from ..registry import Case, CaseOptions, Target, dtype_of

OP = "models"
NUM_CLASSES = 400
BREAKDOWN_RUNS = 3       # the breakdown is the per-layer median of this many steps (the VM's speed drifts)


@dataclass(frozen=True)
class Spec:
    label: str
    factory: str
    size: int
    frames: int              # frames of the clip
    kwargs: tuple = ()
    train_batch: int = 1     # the fewest clips a training step takes
    layouts: tuple = ("ncdhw",)   # "cl3d": also channels_last_3d providers
    compile: bool = True     # a reference_compiled provider
    batch: int = 0           # clips per step (0: the group's default)

    def build(self, impl: str):
        import vidops.models as models

        return getattr(models, self.factory)(NUM_CLASSES, impl=impl, **dict(self.kwargs))


def x3d_specs(size: str, gpu: bool = False) -> list:
    """X3D-M (16 x 224^2), BQN X3D-M (48 x 256^2) and DAN-X3D-XS (4 segments of 8 frames, 160^2),
    N = 1 on the CPU and 8 on GPUs; smoke: X3D-XS at 4 x 32^2."""
    both = ("ncdhw", "cl3d")
    if size == "smoke":
        return [Spec("X3D-XS", "x3d_xs", 32, 4, layouts=both, compile=False, batch=1)]
    n = 8 if gpu else 1
    return [
        Spec("X3D-M", "x3d_m", 224, 16, layouts=both, compile=False, batch=n),
        Spec("BQN-X3D-M", "bqn_x3d_m", 256, 48, (("num_segments", 16),), layouts=both, compile=False, batch=n),
        Spec("DAN-X3D-XS", "dan_x3d_xs", 160, 32, (("num_segments", 4), ("frames_per_segment", 8)),
             layouts=both, compile=False, batch=n),
    ]


def specs(size: str, gpu: bool = False) -> list:
    S = 8
    if size == "smoke":
        return [Spec("TSM-R50", "tsm_resnet50", 32, 2, (("num_segments", 2),))]
    cpu = size == "quick"
    small = 112 if cpu else 224
    return [
        Spec("BQN-R50", "bqn_resnet50", max(small, 112), 3 * S, (("num_segments", S),)),
        Spec("DAN-TSM-R50", "dan_tsm_resnet50", small, 4 * S, (("num_segments", S), ("frames_per_segment", 4))),
        Spec("TSM-R50", "tsm_resnet50", small, S, (("num_segments", S),)),
        Spec("TeSNet-R50", "tesnet_resnet50", small, 10, (("K", 10),)),
        # its channel gate's BatchNorm1d normalises over the clips: training needs two
        Spec("RNL-TSM-R50", "rnl_tsm_resnet50", 224, S, (("num_segments", S),), train_batch=2),
    ] + x3d_specs(size, gpu)


def _logits(out):
    return out[0] if isinstance(out, (tuple, list)) else out


def _loss(out, target):
    loss = F.cross_entropy(_logits(out).float(), target)
    if isinstance(out, (tuple, list)) and len(out) > 1:
        loss = loss + out[1].float().mean()
    return loss


def _size(quick: bool, options: CaseOptions) -> str:
    return "smoke" if options.smoke else ("quick" if quick else "full")


def _size_of(spec: Spec) -> tuple:
    """(parameters, multiply-adds of one clip's forward or None, a note), once per model."""
    from ...models import count_flops

    model = spec.build("reference")
    params = sum(p.numel() for p in model.parameters())
    try:
        return params, count_flops(model, (1, 3, spec.frames, spec.size, spec.size)).macs, ""
    except Exception as exc:  # recorded, never fatal for the timing
        return params, None, f"count_flops failed: {type(exc).__name__}: {exc}"


def cases(device: torch.device, quick: bool, options: CaseOptions | None = None) -> list:
    options = options or CaseOptions()
    size = _size(quick, options)
    return build_cases(specs(size, device.type == "cuda"), device, size, options, OP)


CL3D = torch.channels_last_3d


def _to_layout(model, layout: str):
    """channels_last_3d for the model's 5-D weights (its 4-D ones, e.g. BQN's lateral Conv2d, stay)."""
    if layout == "cl3d":
        for p in model.parameters():
            if p.dim() == 5:
                p.data = p.data.contiguous(memory_format=CL3D)
    return model


def build_cases(spec_list: list, device: torch.device, size: str, options: CaseOptions, op: str) -> list:
    base_n = 1 if size != "full" else 2
    out = []
    for spec in spec_list:
        params, macs, note = _size_of(spec)
        for dtype in options.dtypes:
            for mode in options.modes:
                N = spec.batch or (max(base_n, spec.train_batch) if mode == "fwd+bwd" else base_n)
                keys = [(impl, layout) for layout in spec.layouts for impl in ("reference", "vidops")]

                def setup(spec=spec, dtype=dtype, mode=mode, N=N, keys=keys):
                    torch.manual_seed(0)
                    dt = dtype_of(dtype)
                    models = {}
                    first = None
                    for impl, layout in keys:
                        m = spec.build(impl).to(device=device, dtype=dt)
                        if first is None:
                            first = m
                        else:
                            m.load_state_dict(first.state_dict())
                        m.train(mode == "fwd+bwd")
                        models[_key(impl, layout)] = _to_layout(m, layout)
                    x = torch.randn(N, 3, spec.frames, spec.size, spec.size,
                                    generator=torch.Generator().manual_seed(1)).to(device=device, dtype=dt)
                    target = torch.randint(0, NUM_CLASSES, (N,), generator=torch.Generator().manual_seed(2)).to(device)
                    opt = {k: torch.optim.SGD(m.parameters(), lr=1e-3, momentum=0.9) for k, m in models.items()}
                    inputs = {"x": x, "target": target, "models": models, "opt": opt}
                    if "cl3d" in spec.layouts:
                        inputs["x_cl3d"] = x.contiguous(memory_format=CL3D)
                    return inputs

                def make(which, layout="ncdhw", compile_it=False):
                    state = {}
                    key = _key(which, layout)
                    xname = "x_cl3d" if layout == "cl3d" else "x"

                    def model_of(i):
                        m = i["models"][key]
                        if compile_it:
                            if "fn" not in state:
                                state["fn"] = torch.compile(m, dynamic=False)
                            return state["fn"]
                        return m

                    if mode == "fwd":
                        def run(i):
                            with torch.no_grad():
                                return _logits(model_of(i)(i[xname]))
                    else:
                        def run(i):
                            o = i["opt"][key]
                            o.zero_grad(set_to_none=True)
                            loss = _loss(model_of(i)(i[xname]), i["target"])
                            loss.backward()
                            o.step()
                            return loss.detach()
                    run.model_key = key
                    return run

                providers = {}
                for layout in spec.layouts:
                    sfx = "" if layout == "ncdhw" else "_cl3d"
                    providers["reference" + sfx] = make("reference", layout)
                    if spec.compile and layout == "ncdhw":
                        providers["reference_compiled"] = make("reference", compile_it=True)
                    providers[f"vidops_{device.type}{sfx}"] = make("vidops", layout)

                def breakdown(provider, i, providers=providers):
                    run = providers[provider]
                    if "compiled" in provider:
                        return None          # the compiled graph has no layer boundaries to time
                    model = i["models"][run.model_key]
                    ms = _median_breakdown([layer_breakdown(model, lambda: run(i), device)
                                            for _ in range(BREAKDOWN_RUNS)])
                    ms.pop("total", None)
                    ms["rest of the network"] = ms.pop("rest")
                    return ms

                targets = _targets(spec.label, mode, device)
                itemsize = torch.empty((), dtype=dtype_of(dtype)).element_size()
                clip_bytes = N * 3 * spec.frames * spec.size * spec.size * itemsize
                # minimum traffic: the clip read, the weights read (and, training, their gradients
                # written and the weights updated)
                traffic = clip_bytes + params * itemsize * (1 if mode == "fwd" else 3)
                layouts = "" if spec.layouts == ("ncdhw",) else " (NCDHW and channels_last_3d)"
                out.append(Case(
                    op=op, name=f"{spec.label} N={N} T={spec.frames} {spec.size}x{spec.size}", mode=mode,
                    dtype=dtype, setup=setup, providers=providers, bytes=traffic if op != OP else 0,
                    flops=None if macs is None else 2 * macs * N * (1 if mode == "fwd" else 3),
                    shape={"model": spec.label, "N": N, "frames": spec.frames, "size": spec.size,
                           "params": params, "gmacs_per_clip": None if macs is None else macs / 1e9},
                    targets=targets, breakdown=breakdown, interleave=True,
                    note=note or ("training step: forward, cross-entropy (+ ENoPR for DAN), backward, SGD"
                                  if mode == "fwd+bwd" else "inference, eval mode") + layouts,
                ))
    return out


def _key(impl: str, layout: str) -> str:
    return impl if layout == "ncdhw" else f"{impl}_cl3d"


def _median_breakdown(runs: list) -> dict:
    """Per layer kind, the median over the runs (a kind missing from a run counts 0 there)."""
    kinds = list(dict.fromkeys(k for r in runs for k in r))
    return {k: statistics.median(r.get(k, 0.0) for r in runs) for k in kinds}


X3D_LAYER_SHARE = {("X3D-M", "fwd+bwd"): 15.0}  # percent of the step, CPU, 2 threads

X3D_TARGETS = {  # (label, mode): ((baseline provider, value), ...), CPU, 2 threads
    ("X3D-M", "fwd+bwd"): (("reference", 2.0), ("reference_cl3d", 1.6)),
    ("X3D-M", "fwd"): (("reference", 1.3), ("reference_cl3d", 1.1)),
    ("BQN-X3D-M", "fwd+bwd"): (("reference", 2.0),),
}


def _targets(label: str, mode: str, device: torch.device) -> list:
    src = "models: training step and forward vs the reference impl"
    if "X3D" in label:
        if device.type == "cuda":
            if label == "DAN-X3D-XS":
                return []
            return [Target("speedup", 1.5, b, source=f"X3D on GPU: {label} training step >= 1.5x the reference impl "
                                                      f"in PyTorch's best layout") for b in ("reference", "reference_cl3d")
                    if mode == "fwd+bwd"]
        # each layout's target judges the vidops provider of that layout
        targets = [Target("speedup", v, b, providers=f"vidops_{device.type}{'_cl3d' if b.endswith('cl3d') else ''}",
                          source=f"{label} {mode} >= {v}x the reference impl"
                                 f"{' in channels_last_3d' if b.endswith('cl3d') else ' (NCDHW)'}")
                   for b, v in X3D_TARGETS.get((label, mode), ())]
        share = X3D_LAYER_SHARE.get((label, mode))
        if share is not None:
            targets.append(Target("layer_share", share, providers=f"vidops_{device.type}*", layer="depthwise conv",
                                  source=f"{label} {mode}: the depthwise convs take <= {share}% of the vidops "
                                         f"impl's step (its per-layer breakdown)"))
        return targets
    if device.type == "cuda":
        return [Target("speedup", 1.5, "reference", source="models on GPU: every model >= 1.5x the reference impl")]
    goal = {("BQN-R50", "fwd+bwd"): 1.5, ("RNL-TSM-R50", "fwd+bwd"): 1.5,
            ("BQN-R50", "fwd"): 1.3, ("RNL-TSM-R50", "fwd"): 1.3,
            ("DAN-TSM-R50", "fwd"): 1.1, ("DAN-TSM-R50", "fwd+bwd"): 1.1,
            ("TeSNet-R50", "fwd"): 1.1, ("TeSNet-R50", "fwd+bwd"): 1.1,
            ("TSM-R50", "fwd"): 0.97, ("TSM-R50", "fwd+bwd"): 0.97}.get((label, mode))
    return [] if goal is None else [Target("speedup", goal, "reference", source=src)]
