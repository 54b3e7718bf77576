"""pytest-benchmark over the temporal_shift cases (see bench/test_bench_motion_band_pass.py)."""
from vidops.bench.pytest_support import bench_case, parametrize_cases

OPS = ("temporal_shift",)


def pytest_generate_tests(metafunc):
    parametrize_cases(metafunc, OPS)


def test_bench(benchmark, case_provider, request):
    bench_case(benchmark, case_provider, request.config)
