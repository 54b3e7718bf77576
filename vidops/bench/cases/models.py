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

    def build(self, impl: str):
        import vidops.models as models

        return getattr(models, self.factory)(NUM_CLASSES, impl=impl, **dict(self.kwargs))


def specs(size: str) -> list:
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
    ]


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
    base_n = 1 if size != "full" else 2
    out = []
    for spec in specs(size):
        params, macs, note = _size_of(spec)
        for dtype in options.dtypes:
            for mode in options.modes:
                N = max(base_n, spec.train_batch) if mode == "fwd+bwd" else base_n

                def setup(spec=spec, dtype=dtype, mode=mode, N=N):
                    torch.manual_seed(0)
                    dt = dtype_of(dtype)
                    models = {}
                    ref = spec.build("reference").to(device=device, dtype=dt)
                    fused = spec.build("vidops").to(device=device, dtype=dt)
                    fused.load_state_dict(ref.state_dict())
                    for name, m in (("reference", ref), ("vidops", fused)):
                        m.train(mode == "fwd+bwd")
                        models[name] = m
                    x = torch.randn(N, 3, spec.frames, spec.size, spec.size,
                                    generator=torch.Generator().manual_seed(1)).to(device=device, dtype=dt)
                    target = torch.randint(0, NUM_CLASSES, (N,), generator=torch.Generator().manual_seed(2)).to(device)
                    opt = {k: torch.optim.SGD(m.parameters(), lr=1e-3, momentum=0.9) for k, m in models.items()}
                    return {"x": x, "target": target, "models": models, "opt": opt}

                def make(which, compile_it=False):
                    state = {}

                    def model_of(i):
                        m = i["models"][which]
                        if compile_it:
                            if "fn" not in state:
                                state["fn"] = torch.compile(m, dynamic=False)
                            return state["fn"]
                        return m

                    if mode == "fwd":
                        def run(i):
                            with torch.no_grad():
                                return _logits(model_of(i)(i["x"]))
                    else:
                        def run(i):
                            o = i["opt"][which]
                            o.zero_grad(set_to_none=True)
                            loss = _loss(model_of(i)(i["x"]), i["target"])
                            loss.backward()
                            o.step()
                            return loss.detach()
                    run.model_key = which
                    return run

                providers = {"reference": make("reference"),
                             "reference_compiled": make("reference", compile_it=True),
                             f"vidops_{device.type}": make("vidops")}
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
                out.append(Case(
                    op=OP, name=f"{spec.label} N={N} T={spec.frames} {spec.size}x{spec.size}", mode=mode,
                    dtype=dtype, setup=setup, providers=providers, bytes=0,
                    flops=None if macs is None else 2 * macs * N * (1 if mode == "fwd" else 3),
                    shape={"model": spec.label, "N": N, "frames": spec.frames, "size": spec.size,
                           "params": params, "gmacs_per_clip": None if macs is None else macs / 1e9},
                    targets=targets, breakdown=breakdown, interleave=True,
                    note=note or ("training step: forward, cross-entropy (+ ENoPR for DAN), backward, SGD"
                                  if mode == "fwd+bwd" else "inference, eval mode"),
                ))
    return out


def _median_breakdown(runs: list) -> dict:
    """Per layer kind, the median over the runs (a kind missing from a run counts 0 there)."""
    kinds = list(dict.fromkeys(k for r in runs for k in r))
    return {k: statistics.median(r.get(k, 0.0) for r in runs) for k in kinds}


def _targets(label: str, mode: str, device: torch.device) -> list:
    src = "models: training step and forward vs the reference impl"
    if device.type == "cuda":
        return [Target("speedup", 1.5, "reference", source="models on GPU: every model >= 1.5x the reference impl")]
    goal = {("BQN-R50", "fwd+bwd"): 1.5, ("RNL-TSM-R50", "fwd+bwd"): 1.5,
            ("BQN-R50", "fwd"): 1.3, ("RNL-TSM-R50", "fwd"): 1.3,
            ("DAN-TSM-R50", "fwd"): 1.1, ("DAN-TSM-R50", "fwd+bwd"): 1.1,
            ("TeSNet-R50", "fwd"): 1.1, ("TeSNet-R50", "fwd+bwd"): 1.1,
            ("TSM-R50", "fwd"): 0.97, ("TSM-R50", "fwd+bwd"): 0.97}.get((label, mode))
    return [] if goal is None else [Target("speedup", goal, "reference", source=src)]
