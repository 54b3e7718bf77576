"""vidops: fused CUDA, C++ and Triton kernels for video action-recognition operators.

    import vidops
    y = vidops.motion_band_pass(x, spatial_weight, temporal_weight)   # functional ops
    layer = vidops.nn.MotionBandPass(channels=3)                       # drop-in modules
    with vidops.use_backend("reference"): ...                          # backend choice

    model = vidops.models.tsm_resnet50(400)                            # the thesis's models

`python -m vidops.info` prints the backends available for every op and the build configuration.
The subpackages `vidops.models`, `vidops.export`, `vidops.bench` load on first attribute access;
`import vidops` itself loads only the ops, their modules and the compiled extension.
"""
from __future__ import annotations

import importlib.util
import os
import sys


def _alias_source_triton_kernels():
    """In a source checkout the repo's top-level triton_kernels/ folder is vidops.triton_kernels
    (setup.py installs it there); never import it as a top-level `triton_kernels`, a name the
    Triton project itself ships."""
    here = os.path.dirname(os.path.abspath(__file__))
    if os.path.isdir(os.path.join(here, "triton_kernels")) or "vidops.triton_kernels" in sys.modules:
        return
    src = os.path.join(os.path.dirname(here), "triton_kernels")
    init = os.path.join(src, "__init__.py")
    if os.path.isfile(init):
        spec = importlib.util.spec_from_file_location("vidops.triton_kernels", init,
                                                      submodule_search_locations=[src])
        module = importlib.util.module_from_spec(spec)
        sys.modules["vidops.triton_kernels"] = module
        spec.loader.exec_module(module)


_alias_source_triton_kernels()

from . import _ext  # noqa: E402  (loads vidops._C when it was built)
from ._dispatch import BackendUnavailableError, set_backend, use_backend  # noqa: E402,F401
from .ops import busy_quiet, log_kernel, motion_band_pass, temporal_band_pass_init  # noqa: E402,F401
from .ops import pixelwise_temporal_projection, temporal_relation, temporal_squeeze  # noqa: E402,F401
from .ops import depthwise_conv3d  # noqa: E402,F401
from .ops import region_attention  # noqa: E402,F401
from .ops import temporal_shift  # noqa: E402,F401
from . import nn, reference  # noqa: E402,F401
from . import training  # noqa: E402,F401
from .training import joint_training_step, mgda_alpha, scale_schedule  # noqa: E402,F401
from . import onnx_support as _onnx_support  # noqa: E402

_onnx_support.register_all()  # torch.onnx.export(..., dynamo=True) decomposes the ops by itself

__version__ = "0.1.0"
EXTENSION_LOADED = _ext.EXTENSION_LOADED


# loaded on first access (`vidops.models.tsm_resnet50(...)` after a bare `import vidops`)
_LAZY_SUBMODULES = ("models", "export", "bench", "selftest", "demo", "kernel_report", "train_ddp")


def __getattr__(name: str):
    if name in _LAZY_SUBMODULES:
        import importlib

        module = importlib.import_module(f".{name}", __name__)
        globals()[name] = module
        return module
    raise AttributeError(f"module 'vidops' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_LAZY_SUBMODULES))


def available_backends(op: str, device="cpu") -> dict:
    """backend -> None when it can run `op` on `device`, else the reason it cannot."""
    import torch

    from . import _dispatch

    return _dispatch.reasons(op, torch.device(device))
