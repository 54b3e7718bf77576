"""Compile a vidops .cu file for the CPU with the shim headers in ./include (see README.md) and load
it with ctypes: the kernels run as one std::thread per CUDA thread, on host memory."""
import ctypes
import hashlib
import os
import re
import subprocess
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))

_LAUNCH = re.compile(r"(\b[\w:]+(?:<[^;{}]*?>)?)\s*<<<(.*?)>>>\s*\(", re.S)
_DYN_SMEM = re.compile(r"extern\s+__shared__\s+__align__\(\d+\)\s+unsigned\s+char\s+(\w+)\[\];")


def translate(src: str) -> str:
    """CUDA launch syntax and dynamic shared memory -> plain C++ for the emulator."""
    src = _DYN_SMEM.sub(r"unsigned char* \1 = emu::dynamic_smem.data();", src)
    return _LAUNCH.sub(lambda m: f"emu::launch({m.group(1)}, {m.group(2)}, ", src)


def compile_cu(rel_path: str, cache_dir: str = None) -> ctypes.CDLL:
    """Translate, compile (g++ -std=c++20, cached by content hash) and load csrc/<rel_path>."""
    with open(os.path.join(ROOT, "csrc", rel_path)) as f:
        src = translate(f.read())
    headers = []
    for d, _, files in os.walk(os.path.join(ROOT, "csrc")):
        for name in sorted(files):
            if name.endswith(".h"):
                with open(os.path.join(d, name), "rb") as f:
                    headers.append(f.read())
    for name in sorted(os.listdir(os.path.join(HERE, "include"))):
        with open(os.path.join(HERE, "include", name), "rb") as f:
            headers.append(f.read())
    key = hashlib.sha256(src.encode() + b"".join(headers)).hexdigest()[:16]
    cache_dir = cache_dir or os.path.join(tempfile.gettempdir(), "vidops_cuda_emu")
    os.makedirs(cache_dir, exist_ok=True)
    base = os.path.join(cache_dir, os.path.basename(rel_path).replace(".cu", f"_{key}"))
    lib = base + ".so"
    if not os.path.exists(lib):
        cpp = base + ".cpp"
        with open(cpp, "w") as f:
            f.write(src)
        cmd = ["g++", "-std=c++20", "-O1", "-g0", "-shared", "-fPIC", "-pthread", "-w",
               "-I", os.path.join(HERE, "include"), "-I", os.path.join(ROOT, "csrc"), cpp, "-o", lib + ".tmp"]
        subprocess.run(cmd, check=True)
        os.replace(lib + ".tmp", lib)
    return ctypes.CDLL(lib)
