"""bench/gpu_check.sh in its dry run (no GPU): the build decision, the CPU parts, the skipped GPU
parts with their reasons, and every result in the output folder."""
import os
import shutil
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "bench", "gpu_check.sh")


@pytest.mark.skipif(shutil.which("bash") is None or shutil.which("timeout") is None, reason="needs bash and timeout")
def test_gpu_check_dry_run(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["PYTHON"] = sys.executable
    env["VIDOPS_KERNEL_CACHE"] = str(tmp_path / "kcache")
    # vidops importable with its extension (installed, as in CI): the script must not rebuild.
    # Otherwise (a bare checkout) --no-build keeps the test from a 14-minute CUDA build.
    probe = subprocess.run([sys.executable, "-c", "import vidops._ext as e; assert e.EXTENSION_LOADED"],
                           cwd=str(tmp_path), env=env, capture_output=True)
    installed = probe.returncode == 0
    args = ["bash", SCRIPT, "--dry-run"] + ([] if installed else ["--no-build"]) + [str(tmp_path / "out")]
    r = subprocess.run(args, capture_output=True, text=True, env=env, cwd=ROOT, timeout=900)
    out = r.stdout + r.stderr
    assert r.returncode == 0, out[-5000:]
    summary = (tmp_path / "out" / "summary.txt").read_text()
    assert "dry run" in summary
    if installed:
        assert "build: SKIPPED: vidops is already importable with its compiled extension" in summary
    else:
        assert "build: SKIPPED (--no-build)" in summary
    assert "selftest: ok" in summary
    assert "pytest -m gpu: SKIPPED (dry run: no CUDA device)" in summary
    assert "benchmark at GPU shapes: SKIPPED (dry run)" in summary and "bench: ok" in summary
    assert "kernel_report: ok" in summary
    assert "all steps passed" in summary
    files = set(os.listdir(tmp_path / "out"))
    assert {"environment.txt", "selftest.log", "bench.log", "kernel_report.log", "kernel_report.json",
            "info.txt"} <= files, files
    assert any(f.endswith(".json") for f in os.listdir(tmp_path / "out" / "bench")), "no bench JSON"
