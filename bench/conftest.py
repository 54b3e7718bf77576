"""pytest-benchmark micro-benchmarks over the same Case definitions as `python -m vidops.bench`.

    pytest bench/ --benchmark-only                          # smoke shapes, all providers
    pytest bench/ --benchmark-only --bench-size quick       # the CPU target shapes (N=2)
    pytest bench/ --benchmark-only --bench-size full --bench-device cuda --bench-dtype bfloat16
    pytest bench/ --benchmark-only --bench-no-compile -k "stem and vidops"

These are excluded from the normal test run: `pytest tests` never looks here, and a bare `pytest`
from the repository root skips them unless bench/ is named on the command line (or
--benchmark-only / --benchmark-enable is given). The harness `python -m vidops.bench` is the main
job (speedups, bandwidth, memory, targets, files); these give pytest-benchmark's statistics and
its --benchmark-compare / --benchmark-json tooling for the same cases.
"""
import os

import pytest


def pytest_addoption(parser):
    g = parser.getgroup("vidops-bench")
    g.addoption("--bench-size", default=os.environ.get("VIDOPS_BENCH_SIZE", "smoke"),
                choices=("smoke", "quick", "full"), help="case shapes (default smoke: tiny)")
    g.addoption("--bench-device", default=None, help="cpu or cuda (default: cuda when available)")
    g.addoption("--bench-dtype", default=None, help="comma-separated dtypes (default float32 on CPU, bfloat16 on CUDA)")
    g.addoption("--bench-rounds", type=int, default=5, help="timed rounds per benchmark (default 5)")
    g.addoption("--bench-no-compile", action="store_true", help="skip the torch.compile providers")


def _bench_requested(config) -> bool:
    if config.getoption("benchmark_only", False) or config.getoption("benchmark_enable", False):
        return True
    here = os.path.dirname(os.path.abspath(__file__))
    for arg in config.args:
        path = os.path.abspath(arg.split("::")[0])
        if path == here or path.startswith(here + os.sep):
            return True
    return False


def pytest_collection_modifyitems(config, items):
    if _bench_requested(config):
        return
    here = os.path.dirname(os.path.abspath(__file__))
    skip = pytest.mark.skip(reason="benchmark: run `pytest bench/ --benchmark-only`")
    for item in items:
        if str(item.fspath).startswith(here + os.sep):
            item.add_marker(skip)
