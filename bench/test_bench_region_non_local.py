"""pytest-benchmark over the RegionNonLocal block cases (see bench/test_bench_motion_band_pass.py)."""
from vidops.bench.pytest_support import bench_case, parametrize_cases

OPS = ("region_non_local",)


def pytest_generate_tests(metafunc):
    parametrize_cases(metafunc, OPS)


def test_bench(benchmark, case_provider, request):
    bench_case(benchmark, case_provider, request.config)
