"""Loading of the compiled extension `vidops._C`, and what to say when it is missing.

The extension is optional: without it every op still runs on the `reference` backend (and on
`triton` where Triton runs). Asking for a C++ backend that was not built raises
`BackendUnavailableError` with the build configuration and the rebuild command.
"""
from __future__ import annotations

import functools
import importlib.util
import json
import logging
import os

import torch

log = logging.getLogger("vidops")

_HERE = os.path.dirname(os.path.abspath(__file__))
REBUILD_HINT = (
    "rebuild with `pip install --no-build-isolation --no-deps .` from the vidops source tree "
    "(VIDOPS_BUILD_CUDA=1 to require the CUDA kernels; see `python -m vidops.info`)"
)


def _load():
    spec = importlib.util.find_spec("vidops._C")
    if spec is None or spec.origin is None:
        return False, "the extension vidops._C is not installed (pure-Python install or build skipped)"
    try:
        torch.ops.load_library(spec.origin)
    except Exception as exc:  # a broken build must not break `import vidops`
        return False, f"vidops._C failed to load: {type(exc).__name__}: {exc}"
    return True, ""


def _read_build_config():
    path = os.path.join(_HERE, "_build_config.json")
    if not os.path.exists(path):
        return {}
    with open(path) as f:
        return json.load(f)


EXTENSION_LOADED, EXTENSION_ERROR = _load()
BUILD_CONFIG = _read_build_config()
if not EXTENSION_LOADED:
    log.debug("vidops: %s", EXTENSION_ERROR)


@functools.lru_cache(None)
def has_kernel(op: str, dispatch_key: str) -> bool:
    """True when the extension registered `vidops::op` for the dispatch key ("CPU" or "CUDA");
    asked of the dispatcher once per (op, key): the extension loads once, at import."""
    if not EXTENSION_LOADED:
        return False
    try:
        return torch._C._dispatch_has_kernel_for_dispatch_key(f"vidops::{op}", dispatch_key)
    except RuntimeError:
        return False


def describe_build() -> str:
    """One line on what was built, for which torch and CUDA, and what runs now."""
    if not EXTENSION_LOADED:
        return f"{EXTENSION_ERROR}; running torch {torch.__version__}"
    cfg = BUILD_CONFIG
    return (
        f"vidops._C built for torch {cfg.get('torch_version', '?')} "
        f"(CUDA kernels: {cfg.get('cuda_status', '?')}, arch {cfg.get('cuda_arch_list')}); "
        f"running torch {torch.__version__} (CUDA {torch.version.cuda}, available: {torch.cuda.is_available()})"
    )
