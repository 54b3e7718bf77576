"""Shared test set-up: Triton's interpreter on GPU-less machines, seeds, backends, tolerances."""
import os

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
