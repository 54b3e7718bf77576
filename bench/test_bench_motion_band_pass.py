"""pytest-benchmark over the motion band-pass cases, parametrized case x provider.

Cases come from vidops.bench.registry (the same definitions `python -m vidops.bench` runs); each
benchmark's group is its case, so pytest-benchmark's table compares the providers of a case.
Run with `pytest bench/ --benchmark-only` (options in bench/conftest.py).
"""
from vidops.bench.pytest_support import bench_case, parametrize_cases

OPS = ("motion_band_pass",)


def pytest_generate_tests(metafunc):
    parametrize_cases(metafunc, OPS)


def test_bench(benchmark, case_provider, request):
    bench_case(benchmark, case_provider, request.config)
