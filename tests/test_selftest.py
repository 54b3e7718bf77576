"""`python -m vidops.selftest` on the CPU, and the first-use probe of GPU backends (vidops._probe)
with a faked GPU backend that returns wrong numbers."""
import logging
import os
import subprocess
import sys

import pytest
import torch

import vidops
from vidops import _dispatch, _probe, selftest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run_cli(*args, timeout=600):
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}  # as a user runs it
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    return subprocess.run([sys.executable, "-m", "vidops.selftest", *args], capture_output=True, text=True,
                          env=env, cwd=ROOT, timeout=timeout)


def test_selftest_quick_cpu_passes_and_prints_table():
    r = _run_cli("--device", "cpu", "--quick")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "worst err/tol" in r.stdout and "cases," in r.stdout
    for op in selftest.SPECS:
        assert op in r.stdout, op


def test_selftest_one_op_full_cpu():
    r = _run_cli("--device", "cpu", "--ops", "temporal_relation")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "full battery" in r.stdout
    assert f"{len(selftest.SPECS['temporal_relation'].battery(False))}/" in r.stdout


def test_run_case_detects_wrong_forward_and_wrong_gradient():
    spec = selftest.SPECS["temporal_relation"]
    case = spec.probe_case()
    good = selftest.run_case(spec, case, "reference", "cpu", torch.float32)
    assert good.ok, good.detail
    original = spec.call
    try:
        spec.call = lambda i, p, b: tuple(o * (1 + 1e-3) for o in original(i, p, b))
        bad = selftest.run_case(spec, case, "reference", "cpu", torch.float32, backward=False)
        assert not bad.ok and "output 0" in bad.detail
        # right forward, wrong gradient: the output's backward scaled by 2 through a custom function
        class Twice(torch.autograd.Function):
            @staticmethod
            def forward(ctx, x):
                return x.clone()

            @staticmethod
            def backward(ctx, g):
                return 2 * g

        spec.call = lambda i, p, b: tuple(Twice.apply(o) for o in original(i, p, b))
        bad = selftest.run_case(spec, case, "reference", "cpu", torch.float32)
        assert not bad.ok and "grad f" in bad.detail
    finally:
        spec.call = original


class _WrongBackend:
    calls = 0

    @staticmethod
    def forward(f):
        _WrongBackend.calls += 1
        from vidops.reference.temporal_relation import temporal_relation
        return temporal_relation(f) * 1.01  # a broken build: plausible but wrong numbers

    @staticmethod
    def backward(grad_u, f):
        from vidops.reference.temporal_relation import temporal_relation_backward
        return temporal_relation_backward(grad_u, f)


@pytest.fixture
def fake_gpu_backend(monkeypatch):
    """temporal_relation gets a 'cuda' backend that runs on CPU tensors and is wrong, first in the
    CPU preference list, and the probe treats CPU tensors as a GPU device."""
    op = "temporal_relation"
    entry = _dispatch.registered_ops()[op]
    monkeypatch.setitem(entry.backends, "cuda", _dispatch.Backend("cuda", _dispatch.always, _WrongBackend))
    monkeypatch.setitem(entry.preference, "cpu", ("cuda",) + tuple(entry.preference["cpu"]))
    monkeypatch.setattr(_probe, "PROBED_DEVICE_TYPES", ("cuda", "cpu"))
    monkeypatch.delenv("VIDOPS_SELF_CHECK", raising=False)
    _probe.reset()
    yield op
    _probe.reset()


def test_probe_rejects_wrong_gpu_backend_and_falls_back(fake_gpu_backend, caplog):
    f = torch.randn(2, 6, 5, 3, 4)
    with caplog.at_level(logging.ERROR, logger="vidops.dispatch"):
        assert _dispatch.choose(fake_gpu_backend, f.device) != "cuda"
        u = vidops.temporal_relation(f)
    from vidops.reference.temporal_relation import temporal_relation
    torch.testing.assert_close(u, temporal_relation(f.double()).float(), rtol=1e-5, atol=1e-6)
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1, errors  # logged once: the verdict is remembered
    assert "temporal_relation" in errors[0] and "cuda" in errors[0] and "self-check" in errors[0]
    assert _probe.verdicts()[(fake_gpu_backend, "cuda", "cpu")] is not None


def test_probe_off_gives_the_wrong_backend(fake_gpu_backend, monkeypatch):
    """VIDOPS_SELF_CHECK=0: the (wrong) backend is used, which is what the probe guards against."""
    monkeypatch.setenv("VIDOPS_SELF_CHECK", "0")
    f = torch.randn(1, 4, 3, 2, 2)
    assert _dispatch.choose(fake_gpu_backend, f.device) == "cuda"
    from vidops.reference.temporal_relation import temporal_relation
    assert not torch.allclose(vidops.temporal_relation(f).double(), temporal_relation(f.double()), rtol=1e-4)


def test_probe_passes_a_correct_gpu_backend(fake_gpu_backend, monkeypatch):
    class Right(_WrongBackend):
        @staticmethod
        def forward(f):
            from vidops.reference.temporal_relation import temporal_relation
            return temporal_relation(f)

    entry = _dispatch.registered_ops()[fake_gpu_backend]
    monkeypatch.setitem(entry.backends, "cuda", _dispatch.Backend("cuda", _dispatch.always, Right))
    assert _dispatch.choose(fake_gpu_backend, torch.device("cpu")) == "cuda"
    assert _probe.verdicts()[(fake_gpu_backend, "cuda", "cpu")] is None


def test_probe_never_runs_for_explicit_backend(fake_gpu_backend):
    _WrongBackend.calls = 0
    assert _dispatch.choose(fake_gpu_backend, torch.device("cpu"), "cuda") == "cuda"
    assert _WrongBackend.calls == 0 and not _probe.verdicts()
