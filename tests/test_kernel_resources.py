"""Every GPU kernel compiles for the real targets, fits their shared memory and does not spill
(or spills by a measured amount listed in vidops.kernel_report.ACCEPTED_SPILLS).

Triton: `python -m vidops.kernel_report --quick` compiles, ahead of time and without a GPU, every
launch the launchers make at the benchmark's GPU shapes (bfloat16, attention softmax, each head
dim, D and kernel size: about 100 compiles, a minute or two on a cold cache with 2 CPUs) for sm_90
and sm_80, with the Triton installed here and with the oldest one vidops supports (the GPU hosts'
3.6, installed beside it). Results are cached by kernel source hash (VIDOPS_KERNEL_CACHE, default
in the temp folder), so a rerun without kernel changes costs seconds. CUDA C++ (slow): the resource
usage of every kernel in the nvcc build, when the extension was built with CUDA (skipped, with the
reason, otherwise).
"""
import importlib
import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
pytestmark = pytest.mark.skipif(
    __import__("vidops.kernel_report", fromlist=["tool"]).tool("cuobjdump") is None,
    reason="cuobjdump not found (it ships inside the triton wheel)")


# The CUDA C++ part (cuobjdump over every kernel of the nvcc build, minutes) runs in its own slow test.
SETS = {"bench": ["--quick", "--no-cuda"],
        "cuda": ["--no-triton"]}


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    out = tmp_path_factory.mktemp("kernels") / "report.json"
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}  # compile, don't interpret
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    r = subprocess.run([sys.executable, "-m", "vidops.kernel_report", *SETS["bench"], "--quiet",
                        "--json", str(out)], capture_output=True, text=True, env=env, cwd=ROOT, timeout=3000)
    assert out.exists(), r.stdout[-3000:] + r.stderr[-3000:]
    with open(out) as f:
        data = json.load(f)
    data["table"] = r.stdout
    return data


def _triton_kernels():
    """(op, kernel function name) of every @triton.jit *_kernel in vidops.triton_kernels."""
    from vidops.kernel_report import PLANS

    names = []
    for op in PLANS:
        mod = importlib.import_module(f"vidops.triton_kernels.{op}")
        src = open(mod.__file__).read()
        names += [(op, line.split("(")[0][4:]) for line in src.splitlines()
                  if line.startswith("def _") and line.split("(")[0].endswith("_kernel")]
    return names


def test_every_triton_kernel_compiled_for_both_targets(report):
    assert not report["triton"]["capture_errors"], report["triton"]["capture_errors"]
    rows = report["triton"]["rows"]
    have = {(r["op"], r["kernel"], r["arch"]) for r in rows}
    missing = [(op, k, a) for op, k in _triton_kernels() for a in ("sm_90", "sm_80") if (op, k, a) not in have]
    assert not missing, f"kernels never launched by the report's plans: {missing}"
    errors = [(r["op"], r["kernel"], r["arch"], r["config"], r["error"]) for r in rows if r.get("error")]
    assert not errors, errors


def test_triton_kernels_fit_shared_memory_and_do_not_spill(report):
    bad = [f"{r['op']} {r['kernel']} {r['arch']} {r['dtype']} [{r['config']}]: {'; '.join(r['problems'])}"
           for r in report["triton"]["rows"] if r["problems"]]
    assert not bad, "\n".join(bad) + "\n\n" + report["table"][-6000:]


def test_attention_kernels_use_the_tensor_cores(report):
    for r in report["triton"]["rows"]:
        if r["op"] != "region_attention" or r.get("error"):
            continue
        mix = r["mix"]
        if r["arch"] == "sm_90":
            assert r["ptx_wgmma"] and mix.get("HGMMA", 0) > 0, r
        else:
            assert r["ptx_mma"] and mix.get("HMMA", 0) > 0, r


@pytest.fixture(scope="module")
def cuda_report(request, tmp_path_factory):
    if "slow" not in (request.config.getoption("-m") or ""):
        pytest.skip("the CUDA C++ resource report (cuobjdump over ~400 kernel instantiations, about 8 "
                    "minutes on 2 CPUs) runs with -m slow")
    out = tmp_path_factory.mktemp("cuda") / "report.json"
    r = subprocess.run([sys.executable, "-m", "vidops.kernel_report", *SETS["cuda"], "--quiet", "--json", str(out)],
                       capture_output=True, text=True, cwd=ROOT, timeout=3000,
                       env={**os.environ, "PYTHONPATH": ROOT + os.pathsep + os.environ.get("PYTHONPATH", "")})
    assert out.exists(), r.stdout[-3000:] + r.stderr[-3000:]
    with open(out) as f:
        return json.load(f)


@pytest.mark.slow
def test_cuda_kernels_fit_and_do_not_spill(cuda_report):
    cuda = cuda_report["cuda"]
    if cuda["skipped"]:
        pytest.skip(cuda["skipped"])
    archs = {r["arch"] for r in cuda["rows"]}
    assert {"sm_80", "sm_90a"} <= archs, archs
    bad = [f"{r['op']} {r['kernel']} {r['arch']}: {'; '.join(r['problems'])}" for r in cuda["rows"] if r["problems"]]
    assert not bad, "\n".join(bad)


def test_accepted_cuda_spills_match_template_arguments_and_size():
    from vidops.kernel_report import problems

    def row(kernel, stack, arch="sm_80"):
        return dict(kind="cuda", kernel=kernel, arch=arch, regs=128, stack=stack, local=0, shared=0,
                    smem_limit=None, mix={"LDL": 2, "STL": 2})

    assert problems(row("pwtp_bwd_kernel<float, float, 1, 8>", 24)) == []
    assert problems(row("pwtp_bwd_kernel<__nv_bfloat16, float, 1, 8>", 8, "sm_90a")) == []
    # a bigger spill than measured, or an instantiation the entry does not name, fails
    assert problems(row("pwtp_bwd_kernel<float, float, 1, 8>", 32))
    assert problems(row("pwtp_bwd_kernel<float, float, 2, 8>", 8))
    assert problems(row("mbp_forward_kernel<float, 0>", 8))
    assert problems(row("some_new_kernel<float>", 8))


# The oldest Triton vidops supports is the one the GPU hosts run (3.6): the same launches compiled
# with it, installed beside this environment's Triton (pip --target, no dependencies). It differs:
# 3.6 needed 256 KiB of shared memory for the d=512 attention forward with 64-key blocks (3.9:
# 208 KiB) and spilled where 3.9 did not (depthwise wgrad on 4 warps).
OLDEST_TRITON = "3.6.0"


def test_triton_kernels_compile_and_fit_with_the_oldest_triton(tmp_path):
    site = tmp_path / "site"
    r = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(site),
                        f"triton=={OLDEST_TRITON}"], capture_output=True, text=True, timeout=600)
    if r.returncode != 0:
        pytest.skip(f"triton=={OLDEST_TRITON} cannot be installed here: {r.stderr[-500:]}")
    out = tmp_path / "report.json"
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["PYTHONPATH"] = os.pathsep.join([str(site), ROOT, env.get("PYTHONPATH", "")])
    env["VIDOPS_KERNEL_CACHE"] = str(tmp_path / "cache")
    r = subprocess.run([sys.executable, "-c", "import triton; print(triton.__version__)"], capture_output=True,
                       text=True, env=env)
    assert r.stdout.strip() == OLDEST_TRITON, r.stdout + r.stderr
    r = subprocess.run([sys.executable, "-m", "vidops.kernel_report", *SETS["bench"], "--quiet", "--json", str(out)],
                       capture_output=True, text=True, env=env, cwd=ROOT, timeout=3000)
    assert out.exists(), r.stdout[-3000:] + r.stderr[-3000:]
    data = json.loads(out.read_text())
    assert not data["triton"]["capture_errors"], data["triton"]["capture_errors"]
    bad = [f"{x['op']} {x['kernel']} {x['arch']} [{x['config']}]: {'; '.join(x['problems'])}"
           for x in data["triton"]["rows"] if x["problems"]]
    assert not bad, "\n".join(bad) + "\n\n" + r.stdout[-6000:]
