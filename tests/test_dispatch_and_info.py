"""Backend choice, the missing-extension story and `python -m vidops.info`."""
import logging
import subprocess
import sys

import pytest
import torch

import vidops
from vidops import _dispatch, _ext


def test_default_choice_on_cpu_prefers_the_cpp_kernel_when_built():
    chosen = _dispatch.choose("motion_band_pass", torch.device("cpu"))
    if _ext.has_kernel("_motion_band_pass_fwd", "CPU"):
        assert chosen == "cpu"
    else:
        assert chosen == "reference"


def test_skipped_backends_are_logged(caplog):
    with caplog.at_level(logging.DEBUG, logger="vidops.dispatch"):
        _dispatch.choose("motion_band_pass", torch.device("cuda"))
    assert "skipped cuda" in caplog.text


def test_unavailable_backend_lists_every_reason():
    with pytest.raises(vidops.BackendUnavailableError) as info:
        _dispatch.choose("motion_band_pass", torch.device("cpu"), "cuda")
    text = str(info.value)
    for name in ("reference", "cpu", "cuda", "triton"):
        assert f"  {name}:" in text


def test_set_backend_and_nested_contexts():
    try:
        vidops.set_backend("reference")
        assert _dispatch.choose("motion_band_pass", torch.device("cpu")) == "reference"
        with vidops.use_backend(busy_quiet="reference"):
            assert _dispatch.choose("motion_band_pass", torch.device("cpu")) == "reference"
    finally:
        vidops.set_backend(None)
    with pytest.raises(ValueError, match="unknown backend"):
        with vidops.use_backend("fast"):
            pass


def test_missing_cpp_backend_names_the_build():
    why = _dispatch.cpp_kernel("_no_such_kernel")(torch.device("cpu"))
    assert why is not None and "pip install" in why


def test_info_runs():
    out = subprocess.run([sys.executable, "-m", "vidops.info"], capture_output=True, text=True, check=True).stdout
    assert "motion_band_pass on cpu" in out and "torch" in out
