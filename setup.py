"""Build vidops: one C++ extension (`vidops._C`) with CPU kernels always and CUDA kernels when nvcc is found.

The CUDA kernels are compiled by nvcc against the CUDA runtime only (no torch headers, no
libtorch_cuda) and linked with the static cudart into the same extension; the C++ glue gets the
current stream from c10. The result imports into CPU torch (CUDA impls registered but unused) and
into CUDA torch of the same major CUDA version (working CUDA ops).

Environment:
  VIDOPS_BUILD_CUDA=auto|1|0  auto (default): build CUDA kernels when nvcc is found; 1: fail
                              loudly when they cannot be built; 0: skip them.
  TORCH_CUDA_ARCH_LIST        e.g. "8.0;9.0a" (default), "+PTX" on an entry adds its PTX;
                              the default adds PTX for compute_80.
  VIDOPS_DEBUG=1              -O0 -g (and -lineinfo for nvcc).
  VIDOPS_SKIP_EXTENSION=1     pure-Python install (reference and Triton backends only).
  MAX_JOBS                    ninja parallelism (default: number of cores).
"""
import glob
import json
import os
import re
import shutil
import subprocess
import sys

from setuptools import find_packages, setup

ROOT = os.path.dirname(os.path.abspath(__file__))
VERSION = "0.1.0"


def _git_commit():
    """HEAD of the checkout being built (+dirty when tracked files differ), or None outside one:
    the installed package's benchmarks report it (site-packages may sit in another git checkout)."""
    here = os.path.dirname(os.path.abspath(__file__))
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=10)
        if head.returncode != 0 or not os.path.isdir(os.path.join(here, ".git")):
            return None
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=here,
                               capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return head.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")


def _env_flag(name, default="auto"):
    return os.environ.get(name, default).strip().lower()


def _find_nvcc():
    cuda_home = os.environ.get("CUDA_HOME") or os.environ.get("CUDA_PATH")
    if cuda_home and os.path.exists(os.path.join(cuda_home, "bin", "nvcc")):
        return os.path.join(cuda_home, "bin", "nvcc")
    return shutil.which("nvcc")


def _cuda_root(nvcc):
    """The toolkit root, asked of nvcc itself (the nvcc on PATH may be a wrapper script)."""
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        src = os.path.join(d, "probe.cu")
        open(src, "w").close()
        out = subprocess.run([nvcc, "-dryrun", "-c", src, "-o", os.path.join(d, "probe.o")],
                             capture_output=True, text=True)
    for line in (out.stdout + out.stderr).splitlines():
        m = re.match(r"#\$ TOP=(.*)$", line.strip())
        if m:
            return os.path.realpath(m.group(1))
    return os.path.realpath(os.path.join(os.path.dirname(os.path.realpath(nvcc)), ".."))


def _nvcc_version(nvcc):
    out = subprocess.run([nvcc, "--version"], capture_output=True, text=True).stdout
    m = re.search(r"release (\d+)\.(\d+)", out)
    return f"{m.group(1)}.{m.group(2)}" if m else "unknown"


def _gencode_flags(arch_list):
    """TORCH_CUDA_ARCH_LIST syntax -> nvcc -gencode flags."""
    flags, ptx = [], []
    entries = [e for e in re.split(r"[;\s,]+", arch_list) if e]
    for entry in entries:
        with_ptx = entry.endswith("+PTX")
        arch = entry.replace("+PTX", "")
        num = arch.replace(".", "")
        flags.append(f"-gencode=arch=compute_{num},code=sm_{num}")
        if with_ptx:
            ptx.append(num)
    for num in ptx:
        flags.append(f"-gencode=arch=compute_{num},code=compute_{num}")
    return flags


def _cuda_config():
    mode = _env_flag("VIDOPS_BUILD_CUDA")
    if mode not in ("auto", "0", "1"):
        sys.exit(f"vidops setup: VIDOPS_BUILD_CUDA must be auto, 0 or 1, got {mode!r}")
    if mode == "0":
        return None, "skipped (VIDOPS_BUILD_CUDA=0)"
    nvcc = _find_nvcc()
    if nvcc is None:
        if mode == "1":
            sys.exit("vidops setup: VIDOPS_BUILD_CUDA=1 but nvcc was not found (set CUDA_HOME or put nvcc on PATH)")
        return None, "skipped (nvcc not found)"
    root = _cuda_root(nvcc)
    static = None
    for sub in ("lib64", "lib", os.path.join("targets", "x86_64-linux", "lib")):
        cand = os.path.join(root, sub, "libcudart_static.a")
        if os.path.exists(cand):
            static = cand
            break
    if static is None:
        if mode == "1":
            sys.exit(f"vidops setup: VIDOPS_BUILD_CUDA=1 but libcudart_static.a was not found under {root}")
        return None, f"skipped (no libcudart_static.a under {root})"
    arch_list = os.environ.get("TORCH_CUDA_ARCH_LIST", "").strip() or "8.0+PTX;9.0a"
    cfg = {
        "nvcc": nvcc,
        "root": root,
        "version": _nvcc_version(nvcc),
        "cudart_static": static,
        "arch_list": arch_list,
        "gencode": _gencode_flags(arch_list),
    }
    return cfg, "enabled"


def main():
    if _env_flag("VIDOPS_SKIP_EXTENSION", "0") == "1":
        ext_modules, cmdclass, cuda, cuda_status = [], {}, None, "skipped (VIDOPS_SKIP_EXTENSION=1)"
    else:
        import torch
        from torch.utils.cpp_extension import BuildExtension, CppExtension

        cuda, cuda_status = _cuda_config()
        debug = _env_flag("VIDOPS_DEBUG", "0") == "1"
        cpp_sources = sorted(glob.glob("csrc/**/*.cpp", recursive=True))
        cu_sources = sorted(glob.glob("csrc/**/*.cu", recursive=True))
        if cuda is None:
            cpp_sources = [s for s in cpp_sources if not s.endswith("_cuda.cpp")]
        cxx = ["-O0", "-g"] if debug else ["-O3"]
        cxx += ["-fopenmp"]  # the C++ standard is torch's (C++20 for torch >= 2.10)
        macros = [("Py_LIMITED_API", "0x03090000")]
        if cuda is not None:
            macros.append(("VIDOPS_WITH_CUDA", "1"))

        build_config = {
            "vidops_version": VERSION,
            "torch_version": torch.__version__,
            "torch_cuda": torch.version.cuda,
            "python": sys.version.split()[0],
            "cuda_kernels": cuda is not None,
            "cuda_status": cuda_status,
            "nvcc_version": cuda["version"] if cuda else None,
            "cuda_arch_list": cuda["arch_list"] if cuda else None,
            "cpp_sources": cpp_sources,
            "cu_sources": cu_sources if cuda else [],
            "debug": debug,
            "git_commit": _git_commit(),
        }
        print("vidops build configuration:")
        for k, v in build_config.items():
            if k not in ("cpp_sources", "cu_sources"):
                print(f"  {k}: {v}")
        print(f"  C++ sources: {len(cpp_sources)}, CUDA sources: {len(build_config['cu_sources'])}")

        class VidopsBuildExt(BuildExtension):
            def build_extensions(self):
                if cuda is not None:
                    self._compile_cuda()
                super().build_extensions()
                self._write_build_config()

            def _compile_cuda(self):
                objs = []
                os.makedirs(self.build_temp, exist_ok=True)
                flags = ["-std=c++17", "-Xcompiler", "-fPIC", "--expt-relaxed-constexpr", "-Icsrc"]
                flags += ["-O0", "-g", "-lineinfo"] if debug else ["-O3", "-lineinfo"]
                flags += cuda["gencode"]
                threads = os.environ.get("NVCC_THREADS", "2")
                flags += ["--threads", threads]
                for src in cu_sources:
                    obj = os.path.join(self.build_temp, src.replace("/", "_") + ".o")
                    if not os.path.exists(obj) or os.path.getmtime(obj) < max(
                        os.path.getmtime(p) for p in [src] + glob.glob("csrc/**/*.h", recursive=True)
                        + glob.glob("csrc/**/*.cuh", recursive=True)
                    ):
                        cmd = [cuda["nvcc"], "-c", src, "-o", obj] + flags
                        print("vidops nvcc:", " ".join(cmd))
                        res = subprocess.run(cmd)
                        if res.returncode != 0:
                            sys.exit(f"vidops setup: nvcc failed on {src} (CUDA was requested: {cuda_status})")
                    objs.append(obj)
                for ext in self.extensions:
                    ext.extra_objects = list(ext.extra_objects or []) + objs + [cuda["cudart_static"]]
                    ext.extra_link_args = list(ext.extra_link_args or []) + ["-lrt", "-ldl", "-lpthread"]

            def _write_build_config(self):
                # build_lib for installs; the source tree too, for in-place builds (setuptools
                # builds those with inplace=0 and copies the .so afterwards). The file is ignored by git.
                for d in {os.path.join(self.build_lib, "vidops"), os.path.join(ROOT, "vidops")}:
                    os.makedirs(d, exist_ok=True)
                    with open(os.path.join(d, "_build_config.json"), "w") as f:
                        json.dump(build_config, f, indent=1)

        ext_modules = [
            CppExtension(
                "vidops._C",
                cpp_sources,
                include_dirs=[os.path.join(ROOT, "csrc")],
                define_macros=macros,
                extra_compile_args={"cxx": cxx},
                extra_link_args=["-fopenmp"],
                py_limited_api=True,
            )
        ]
        cmdclass = {"build_ext": VidopsBuildExt.with_options(no_python_abi_suffix=True)}

    setup(
        name="vidops",
        version=VERSION,
        description="Fused CUDA and Triton kernels for video action-recognition operators",
        packages=find_packages(include=["vidops", "vidops.*"]) + ["vidops.triton_kernels"],
        package_dir={"vidops.triton_kernels": "triton_kernels"},
        python_requires=">=3.9",
        install_requires=["torch>=2.6"],
        extras_require={"triton": ["triton>=3.6"], "bench": ["matplotlib", "pytest-benchmark"],
                        "export": ["onnx", "onnxscript", "onnxruntime"]},
        ext_modules=ext_modules,
        cmdclass=cmdclass,
        options={"bdist_wheel": {"py_limited_api": "cp39"}},
        zip_safe=False,
    )


if __name__ == "__main__":
    main()
