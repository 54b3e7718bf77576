"""Benchmark cases of `vidops.busy_quiet` (operators.md §1.3): the BQN input split, forward only.

Shape: the motion band-pass stem (N=8, C=3, T=24 = 8 segments of 3 frames, 224x224, k=9; on CPU
and with --quick N=2, 112x112), quiet="first" and quiet_scale=0.625 as in the reference BQN
(quiet bilinearly resized, 160/256).

Providers:
  reference           vidops.reference.busy_quiet.busy_quiet: the reference motion band-pass
                      (authors' conv2d + conv1d form) for busy, a strided slice and
                      F.interpolate for quiet;
  reference_compiled  the same under torch.compile;
  temporal_first      busy by the temporal-first formulation, quiet as the reference;
  vidops_<backend>    vidops.busy_quiet(..., backend=<backend>).

Traffic: the clip read once, busy and quiet written once. Targets: the stem forward's (the fused
split does the stem's work plus a cheap slice and resize).
"""
from __future__ import annotations

import torch

from ..registry import Case, CaseOptions, compiled, itemsize, vidops_providers
from .motion_band_pass import flop_count, make_inputs, size_of, stem
from .motion_band_pass import targets as stem_targets

OP = "busy_quiet"
QUIET = "first"
QUIET_SCALE = 0.625


def cases(device: torch.device, quick: bool, options: CaseOptions | None = None) -> list:
    import torch.nn.functional as F

    from ...reference.busy_quiet import busy_quiet as reference
    from ...reference.busy_quiet import quiet_output_size
    from ...reference.motion_band_pass import motion_band_pass_temporal_first

    options = options or CaseOptions()
    s = stem(size_of(quick, options))
    S = s.T // 3
    h, w = quiet_output_size(s.H, s.W, QUIET_SCALE)

    def ref(x, sw, tw):
        return reference(x, sw, tw, QUIET, QUIET_SCALE)

    def tf(x, sw, tw):
        busy = motion_band_pass_temporal_first(x, sw, tw, 3, "reflect", "valid")
        q4 = x[:, :, 0::3].transpose(1, 2).reshape(s.N * S, s.C, s.H, s.W)
        q4 = F.interpolate(q4, scale_factor=QUIET_SCALE, mode="bilinear", align_corners=False)
        return busy, q4.reshape(s.N, S, s.C, h, w).transpose(1, 2).contiguous()

    def make_vidops(backend):
        from ... import busy_quiet

        return lambda i: busy_quiet(i["x"], i["sw"], i["tw"], QUIET, QUIET_SCALE, backend=backend)

    out = []
    for dtype in options.dtypes:
        if "fwd" not in options.modes:
            continue
        providers = {
            "reference": lambda i: ref(i["x"], i["sw"], i["tw"]),
            "reference_compiled": lambda i, f=compiled(ref): f(i["x"], i["sw"], i["tw"]),
            "temporal_first": lambda i: tf(i["x"], i["sw"], i["tw"]),
        }
        providers.update(vidops_providers(OP, device, make_vidops))
        es = itemsize(dtype)
        out_elems = s.N * s.C * S * (s.H * s.W + h * w)
        tgt = stem_targets(s, "fwd", dtype, device, out_elems)  # the fused split is the stem
        shape = dict(s.as_dict(), quiet=QUIET, quiet_scale=QUIET_SCALE, quiet_hw=[h, w])
        out.append(Case(
            op=OP, name=f"stem N={s.N} C={s.C} T={s.T} {s.H}x{s.W} k={s.k} quiet {h}x{w}",
            mode="fwd", dtype=dtype,
            setup=lambda dtype=dtype: make_inputs(s, dtype, device),
            providers=providers,
            bytes=es * (s.N * s.C * s.T * s.H * s.W + out_elems) + 4 * s.C * (s.k * s.k + 3),
            flops=flop_count(s, "fwd"),
            shape=shape, targets=tgt,
        ))
    return out
