"""pytest-benchmark glue shared by the files in bench/: parametrize case x provider, time one.

A benchmark file for an op is three lines (see bench/test_bench_motion_band_pass.py):

    OPS = ("my_op",)
    def pytest_generate_tests(metafunc): parametrize_cases(metafunc, OPS)
    def test_bench(benchmark, case_provider, request): bench_case(benchmark, case_provider, request.config)

Options (registered by bench/conftest.py; defaults apply when it is not loaded): --bench-size
smoke|quick|full (default smoke), --bench-device, --bench-dtype, --bench-rounds (default 5),
--bench-no-compile.
"""
from __future__ import annotations

import pytest
import torch

from . import registry
from .runner import _Step, reset_dynamo


def _opt(config, name, default=None):
    """The option's value; the default when bench/conftest.py was not loaded as an initial conftest
    (a bare `pytest` from the root collects the benchmarks only to skip them)."""
    return config.getoption(name, default)


def options(config):
    device = torch.device(_opt(config, "--bench-device") or ("cuda" if torch.cuda.is_available() else "cpu"))
    dtypes = _opt(config, "--bench-dtype")
    dtypes = tuple(dtypes.split(",")) if dtypes else (("bfloat16",) if device.type == "cuda" else ("float32",))
    size = _opt(config, "--bench-size", "smoke")
    quick = size == "quick" or (size == "full" and device.type == "cpu")  # CPU: N=2 shapes, as the harness
    return device, quick, registry.CaseOptions(dtypes=dtypes, smoke=size == "smoke")


def parametrize_cases(metafunc, ops) -> None:
    """Parametrize the `case_provider` argument over every (case, provider) of `ops`."""
    if "case_provider" not in metafunc.fixturenames:
        return
    config = metafunc.config
    device, quick, opts = options(config)
    params = []
    for case in registry.load_cases(ops, device, quick, opts):
        for name in case.providers:
            if _opt(config, "--bench-no-compile", False) and "compiled" in name:
                continue
            params.append(pytest.param((case, name, device),
                                       id=f"{case.op}-{case.name.split()[0]}-{case.mode}-{case.dtype}-{name}"))
    metafunc.parametrize("case_provider", params)


_INPUTS: dict = {}


def _inputs_for(case):
    """One set of inputs per case, shared by its providers; dynamo is reset when the case changes
    (each compiled provider compiles for its own static shapes)."""
    key = id(case)
    if key not in _INPUTS:
        _INPUTS.clear()
        reset_dynamo()
        torch.manual_seed(0)
        inputs = case.setup()
        for n in case.grad_inputs if case.mode != "fwd" else ():
            inputs[n].requires_grad_(True)
        _INPUTS[key] = (inputs, {})
    return _INPUTS[key]


def bench_case(benchmark, case_provider, config) -> None:
    """Time one provider of one case with benchmark.pedantic: one warm-up round (compilation for
    compiled providers), then --bench-rounds rounds; .grad cleared before each (untimed)."""
    case, name, device = case_provider
    inputs, shared = _inputs_for(case)
    step = _Step(case, case.providers[name], inputs, shared)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)

    def run():
        step()
        sync()

    benchmark.group = f"{case.op} | {case.name} | {case.mode} | {case.dtype}"
    benchmark.extra_info.update(op=case.op, case=case.name, mode=case.mode, dtype=case.dtype,
                                provider=name, bytes=case.bytes, flops=case.flops, shape=case.shape,
                                device=str(device))
    benchmark.pedantic(run, setup=step.reset, rounds=_opt(config, "--bench-rounds", 5),
                       iterations=1, warmup_rounds=1)
    step.reset()
    med = benchmark.stats.stats.median
    if case.bytes and med > 0:
        benchmark.extra_info["gbps"] = case.bytes / med / 1e9
