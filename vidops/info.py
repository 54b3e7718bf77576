"""`python -m vidops.info`: versions, the build configuration and the backends of every op."""
from __future__ import annotations

import json
import platform

import torch


def report() -> str:
    import vidops
    from vidops import _dispatch, _ext, _triton

    lines = [
        f"vidops {vidops.__version__}: {_ext.describe_origin()}",
        f"python {platform.python_version()} on {platform.machine()}",
        f"torch {torch.__version__} (CUDA {torch.version.cuda}; cuda available: {torch.cuda.is_available()})",
    ]
    if torch.cuda.is_available():
        lines.append(f"GPU: {torch.cuda.get_device_name()}")
    err = _triton._import_error()
    if err is None:
        import triton
        lines.append(f"triton {triton.__version__} (interpreter: {_triton.interpreter()})")
    else:
        lines.append(f"triton: {err}")
    lines.append(f"extension: {_ext.describe_build()}")
    if _ext.BUILD_CONFIG:
        cfg = {k: v for k, v in _ext.BUILD_CONFIG.items() if k not in ("cpp_sources", "cu_sources")}
        lines.append("build configuration: " + json.dumps(cfg))
    devices = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
    for op in sorted(_dispatch.registered_ops()):
        for dev in devices:
            lines.append(f"{op} on {dev.type}: default {_dispatch.choose(op, dev)}")
            for name, why in _dispatch.reasons(op, dev).items():
                lines.append(f"    {name:9s} {'available' if why is None else why}")
    return "\n".join(lines)


if __name__ == "__main__":
    print(report())
