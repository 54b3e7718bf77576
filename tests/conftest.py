"""Shared test set-up: Triton's interpreter on GPU-less machines, seeds, backends, tolerances."""
import os
import subprocess
import sys

import pytest

if not os.environ.get("VIDOPS_TEST_NO_INTERPRET"):
    try:  # must happen before triton is imported anywhere
        import torch

        if not torch.cuda.is_available():
            os.environ.setdefault("TRITON_INTERPRET", "1")
    except ImportError:
        pass

import torch  # noqa: E402

import vidops  # noqa: E402
from vidops import _dispatch  # noqa: E402


try:  # property tests draw the same examples on every run (CI must not pass or fail by chance);
    # HYPOTHESIS_PROFILE=explore draws new ones
    from hypothesis import settings as _hyp_settings

    _hyp_settings.register_profile("vidops", derandomize=True, print_blob=True)
    _hyp_settings.register_profile("explore", derandomize=False, print_blob=True)
    _hyp_settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "vidops"))
except ImportError:
    pass


def pytest_configure(config):
    config.addinivalue_line("markers", "gpu: needs a CUDA device")
    config.addinivalue_line("markers", "slow: long-running test")


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    yield


def devices():
    return ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def backends_for(op: str, device: str = "cpu"):
    """The backends of `op` that can run on `device` here (reference included)."""
    return [b for b, why in _dispatch.reasons(op, torch.device(device)).items() if why is None]


def device_backend_params(op: str, include_reference: bool = True, interpreted_triton: bool = True):
    """(device, backend) pairs for every backend that runs here. interpreted_triton=False leaves
    out Triton on CPU under the interpreter (~300x slower than torch): for suites whose shapes are
    too large for it, where the op has a Triton-specific test file with interpreter-sized shapes."""
    out = []
    for dev in devices():
        for b in backends_for(op, dev):
            if b == "reference" and not include_reference:
                continue
            if b == "triton" and dev == "cpu" and not interpreted_triton:
                continue
            marks = [pytest.mark.gpu] if dev == "cuda" else []
            out.append(pytest.param(dev, b, id=f"{dev}-{b}", marks=marks))
    return out


def run_with_cpu_isa(script: str, isa, *args) -> str:
    """stdout of `python -c script *args` in a fresh process whose C++ kernels run with
    VIDOPS_CPU_ISA=isa (None: the CPU's widest; the choice is read once per process). The child
    imports the same vidops as this process (installed, or an in-place build), from the folder that
    holds that package rather than the source checkout; it fails the test if the child fails."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(vidops.__file__)))
    env = {k: v for k, v in os.environ.items() if k != "VIDOPS_CPU_ISA"}
    if isa is not None:
        env["VIDOPS_CPU_ISA"] = isa
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    out = subprocess.run([sys.executable, "-c", script, *args], env=env, capture_output=True, text=True,
                         timeout=300, cwd=root)
    assert out.returncode == 0, out.stderr
    return out.stdout
