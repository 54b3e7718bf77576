"""The run's header: device, CPU count and threads, versions, vidops build config, git commit, time."""
from __future__ import annotations

import datetime
import os
import platform
import re
import subprocess
from typing import Optional

import torch


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return cpu_model()


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "unknown"


def device_tag(device: torch.device, threads: Optional[int] = None) -> str:
    """A file-name label for the machine, e.g. "cpu-amd-epyc-2t" or "cuda-nvidia-h200"."""
    name = slug(device_name(device).replace("(R)", "").replace("(TM)", ""))
    tag = f"{device.type}-{name}"
    if device.type == "cpu" and threads:
        tag += f"-{threads}t"
    return tag


def _run(cmd, cwd=None, timeout=10) -> Optional[str]:
    try:
        out = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def git_commit() -> str:
    """The vidops commit: `git rev-parse HEAD` (+dirty) when vidops is imported from its source
    checkout, else the commit recorded when the installed package was built, else "unknown"
    (an installed vidops may sit inside an unrelated git checkout, e.g. a pyenv tree)."""
    import vidops

    here = os.path.dirname(os.path.dirname(os.path.abspath(vidops.__file__)))
    if os.path.isfile(os.path.join(here, "setup.py")) and os.path.isdir(os.path.join(here, "csrc")):
        head = _run(["git", "rev-parse", "HEAD"], cwd=here)
        if head:
            dirty = _run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=here)
            return head + ("+dirty" if dirty else "")
    from vidops import _ext

    return (_ext.BUILD_CONFIG or {}).get("git_commit") or "unknown"


def gpu_state(device: torch.device) -> dict:
    """Read-only facts about the GPU: properties, and clocks / power / temperature from
    `nvidia-smi --query-gpu` when it is there (perf-anchors 8: record clocks and power state)."""
    if device.type != "cuda":
        return {}
    p = torch.cuda.get_device_properties(device)
    out = {"name": p.name, "sm_count": p.multi_processor_count,
           "total_memory_gib": round(p.total_memory / 2**30, 1),
           "capability": f"{p.major}.{p.minor}", "cuda_runtime": torch.version.cuda}
    fields = "clocks.sm,clocks.mem,clocks.max.sm,power.draw,power.limit,temperature.gpu,pstate,driver_version"
    q = _run(["nvidia-smi", f"--query-gpu={fields}", "--format=csv,noheader",
              f"--id={device.index or 0}"])
    if q:
        out["nvidia_smi"] = dict(zip(fields.split(","), [v.strip() for v in q.splitlines()[0].split(",")]))
    return out


def header(device: torch.device) -> dict:
    import vidops
    from vidops import _ext, _triton

    try:
        import triton
        triton_version = triton.__version__
    except Exception as exc:  # report, don't fail: the reference providers need no triton
        triton_version = f"unavailable ({type(exc).__name__})"
    try:
        affinity = len(os.sched_getaffinity(0))
    except AttributeError:
        affinity = os.cpu_count()
    now = datetime.datetime.now(datetime.timezone.utc)
    return {
        "device": str(device),
        "device_name": device_name(device),
        "device_tag": device_tag(device, torch.get_num_threads()),
        "gpu": gpu_state(device),
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "cpu_affinity": affinity,
        "threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "torch": torch.__version__,
        "torch_cuda": torch.version.cuda,
        "triton": triton_version,
        "triton_interpreter": _triton.interpreter(),
        "vidops": vidops.__version__,
        "vidops_extension_loaded": _ext.EXTENSION_LOADED,
        "vidops_path": os.path.dirname(os.path.abspath(vidops.__file__)),
        "vidops_extension_path": _ext.EXTENSION_PATH,
        "vidops_origin": _ext.describe_origin(),
        "vidops_build": _ext.describe_build(),
        "vidops_build_config": {k: v for k, v in (_ext.BUILD_CONFIG or {}).items()
                                if k not in ("cpp_sources", "cu_sources")},
        "git_commit": git_commit(),
        "timestamp": now.isoformat(timespec="seconds"),
        "timestamp_compact": now.strftime("%Y%m%dT%H%M%SZ"),
    }
