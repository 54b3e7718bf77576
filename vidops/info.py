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


def main(argv=None) -> int:
    import argparse
    import sys

    p = argparse.ArgumentParser(prog="python -m vidops.info")
    p.add_argument("--kernels", action="store_true",
                   help="also compile every GPU kernel ahead of time and print its resource table "
                        "(python -m vidops.kernel_report; slow on a first run)")
    a, rest = p.parse_known_args(argv)
    print(report())
    if a.kernels:
        from . import kernel_report

        print()
        return kernel_report.main(rest)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
