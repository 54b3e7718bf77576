"""pytest-benchmark over the motion band-pass and busy/quiet cases, parametrized case x provider.

Cases come from vidops.bench.registry (the same definitions `python -m vidops.bench` runs); each
benchmark's group is its case, so pytest-benchmark's table compares the providers of a case.
Inputs are built once per case; fwd+bwd clears the inputs' .grad before each round (untimed).
"""
import pytest
import torch

from vidops.bench import registry
from vidops.bench.runner import _Step

OPS = ("motion_band_pass", "busy_quiet")


def _opt(config, name, default=None):
    """The option's value; the default when bench/conftest.py was not loaded as an initial conftest
    (a bare `pytest` from the root collects these only to skip them)."""
    return config.getoption(name, default)


def _options(config):
    device = _opt(config, "--bench-device") or ("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(device)
    dtypes = _opt(config, "--bench-dtype")
    dtypes = tuple(dtypes.split(",")) if dtypes else (("bfloat16",) if device.type == "cuda" else ("float32",))
    size = _opt(config, "--bench-size", "smoke")
    return device, size == "quick" or (size == "full" and device.type == "cpu"), \
        registry.CaseOptions(dtypes=dtypes, smoke=size == "smoke")


def pytest_generate_tests(metafunc):
    if "case_provider" not in metafunc.fixturenames:
        return
    config = metafunc.config
    device, quick, options = _options(config)
    params = []
    for case in registry.load_cases(OPS, device, quick, options):
        for name in case.providers:
            if _opt(config, "--bench-no-compile", False) and "compiled" in name:
                continue
            params.append(pytest.param((case, name, device),
                                       id=f"{case.op}-{case.name.split()[0]}-{case.mode}-{case.dtype}-{name}"))
    metafunc.parametrize("case_provider", params)


_INPUTS = {}


def _inputs_for(case):
    """One set of inputs per case, shared by its providers; dynamo is reset when the case changes
    (each compiled provider compiles for its own static shapes)."""
    key = id(case)
    if key not in _INPUTS:
        _INPUTS.clear()
        torch._dynamo.reset()
        torch.manual_seed(0)
        inputs = case.setup()
        for n in case.grad_inputs if case.mode != "fwd" else ():
            inputs[n].requires_grad_(True)
        _INPUTS[key] = (inputs, {})
    return _INPUTS[key]


def test_bench(benchmark, case_provider, request):
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
    benchmark.pedantic(run, setup=step.reset, rounds=_opt(request.config, "--bench-rounds", 5),
                       iterations=1, warmup_rounds=1)
    step.reset()
    med = benchmark.stats.stats.median
    if case.bytes and med > 0:
        benchmark.extra_info["gbps"] = case.bytes / med / 1e9
