"""Benchmark cases: what `python -m vidops.bench` runs.

Each op contributes `vidops/bench/cases/<op>.py` with a function `cases(device, quick) -> list[Case]`.
A Case names its providers: "reference" (the authors' formulation in eager mode; speedups are
relative to it), "reference_compiled" (the same under torch.compile), other plain-PyTorch
formulations, and "vidops_<backend>" for each vidops backend that can run on the device.
`bytes` is the minimum traffic of the op (inputs read once, outputs written once) for GB/s and
the fraction of the measured copy bandwidth; `flops` (optional) gives TFLOP/s.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Optional


@dataclass
class Case:
    op: str                      # the vidops op, e.g. "motion_band_pass"
    name: str                    # shape label, e.g. "stem N=8 C=3 T=24 224x224 k=9"
    mode: str                    # "fwd" or "fwd+bwd"
    dtype: str                   # "float32", "bfloat16", ...
    setup: Callable[[], dict]    # builds the inputs once (not timed)
    providers: dict = field(default_factory=dict)  # provider name -> fn(inputs) -> anything
    bytes: int = 0
    flops: Optional[int] = None
    shape: dict = field(default_factory=dict)  # the shape parameters, for the JSON/CSV record


CASE_MODULES = ("motion_band_pass", "temporal_relation", "pixelwise_temporal_projection", "temporal_squeeze")
