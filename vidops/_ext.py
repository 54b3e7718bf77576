"""Loading of the compiled extension `vidops._C`, and what to say when it is missing.

The extension is optional: without it every op still runs on the `reference` backend (and on
`triton` where Triton runs). Asking for a C++ backend that was not built raises
`BackendUnavailableError` with the build configuration and the rebuild command.

Where the extension comes from: the `_C` file next to this module (an installed vidops, or a
source checkout built in place); or, for a source checkout without one, an installed vidops
build on sys.path compiled from the same C++ sources (see `built_from_this_tree`).
`describe_origin()` says which vidops was imported and where its extension came from.
"""
from __future__ import annotations

import functools
import importlib.machinery
import importlib.util
import json
import logging
import os
import subprocess
import sys

import torch

log = logging.getLogger("vidops")

_HERE = os.path.dirname(os.path.abspath(__file__))
REBUILD_HINT = (
    "rebuild with `pip install --no-build-isolation --no-deps .` from the vidops source tree "
    "(VIDOPS_BUILD_CUDA=1 to require the CUDA kernels; see `python -m vidops.info`)"
)


def _extension_in(folder: str):
    """The path of the vidops._C extension file in a vidops package folder, or None."""
    for suffix in importlib.machinery.EXTENSION_SUFFIXES:
        path = os.path.join(folder, "_C" + suffix)
        if os.path.isfile(path):
            return path
    return None


def _read_build_config(folder: str = _HERE) -> dict:
    path = os.path.join(folder, "_build_config.json")
    if not os.path.exists(path):
        return {}
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return {}


# ---- a source checkout without an in-place build: the installed build's extension ------------
# `pip install .` builds vidops._C into site-packages, not into the checkout, so `python -m ...`
# run from the checkout's root imports this package without it. The installed build's extension is
# used instead when it was built from this checkout's C++ sources (same commit for csrc/,
# setup.py and CMakeLists.txt, and no local changes to them): the Python layer here and the
# kernels there then agree on every op schema.

SOURCE_ROOT = os.path.dirname(_HERE)
IS_SOURCE_TREE = os.path.isfile(os.path.join(SOURCE_ROOT, "setup.py")) and os.path.isdir(
    os.path.join(SOURCE_ROOT, "csrc"))
_BUILD_INPUTS = ("csrc", "setup.py", "CMakeLists.txt")


def installed_builds(search_path=None, exclude: str = _HERE) -> list:
    """vidops package folders on the search path (default sys.path), other than `exclude`, that
    hold a built vidops._C."""
    out, seen = [], {os.path.realpath(exclude)}
    for entry in (sys.path if search_path is None else search_path):
        folder = os.path.realpath(os.path.join(entry or os.getcwd(), "vidops"))
        if folder in seen:
            continue
        seen.add(folder)
        if _extension_in(folder):
            out.append(folder)
    return out


def _git(root: str, *args):
    try:
        res = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.SubprocessError):
        return None, "git is not available"
    return res.returncode, res.stdout.strip() or res.stderr.strip()


def built_from_this_tree(config: dict, root: str = SOURCE_ROOT):
    """(True, "") when a build with this build config was compiled from the C++ sources the
    checkout at `root` has now, else (False, why). Either of:
      - git: the recorded commit has the same csrc/, setup.py and CMakeLists.txt as the checkout,
        which has no local or untracked changes to them;
      - the build record: the checkout's own vidops/_build_config.json (setup.py writes it there
        too when it builds from the checkout) equals the build's, and no C++ source file of the
        checkout is newer than it (a git-less tree, or a build from local changes).
    """
    ok, why = _same_commit(config, root)
    if ok:
        return True, ""
    ok2, why2 = _same_build_record(config, root)
    if ok2:
        return True, ""
    return False, f"{why}; {why2}"


def _same_commit(config: dict, root: str):
    commit = config.get("git_commit")
    if not commit:
        return False, "its build configuration records no git commit"
    if commit.endswith("+dirty"):
        return False, f"it was built from {commit} (local changes, which git cannot compare)"
    rc, out = _git(root, "cat-file", "-e", commit + "^{commit}")
    if rc is None:
        return False, out
    if rc != 0:
        return False, f"it was built from commit {commit[:12]}, which the checkout at {root} does not have"
    rc, out = _git(root, "diff", "--quiet", commit, "--", *_BUILD_INPUTS)
    if rc != 0:
        return False, (f"it was built from commit {commit[:12]} and the C++ sources of the checkout at {root} "
                       f"differ from it ({', '.join(_BUILD_INPUTS)})")
    rc, out = _git(root, "ls-files", "--others", "--exclude-standard", "--", *_BUILD_INPUTS)
    if rc == 0 and out:
        return False, f"the checkout at {root} has new untracked C++ sources ({out.splitlines()[0]}, ...)"
    return True, ""


def _same_build_record(config: dict, root: str):
    record = os.path.join(root, "vidops", "_build_config.json")
    if not config or _read_build_config(os.path.dirname(record)) != config:
        return False, "the checkout's own build record (vidops/_build_config.json) is missing or differs"
    built = os.path.getmtime(record)
    for name in _BUILD_INPUTS:
        path = os.path.join(root, name)
        files = [path] if os.path.isfile(path) else [os.path.join(d, f) for d, _, fs in os.walk(path) for f in fs]
        for f in files:
            if os.path.getmtime(f) > built:
                return False, f"{os.path.relpath(f, root)} changed after that build"
    return True, ""


def find_extension(package_dir: str = _HERE, search_path=None):
    """(path of the extension file to load or None, where it comes from, its build config, why
    none was found). Nothing is loaded."""
    own = _extension_in(package_dir)
    if own is not None:
        return own, "this vidops package", _read_build_config(package_dir), ""
    root = os.path.dirname(package_dir)
    if not (os.path.isfile(os.path.join(root, "setup.py")) and os.path.isdir(os.path.join(root, "csrc"))):
        return None, None, {}, "the extension vidops._C is not installed (pure-Python install or build skipped)"
    rejected = []
    for folder in installed_builds(search_path, exclude=package_dir):
        config = _read_build_config(folder)
        ok, why = built_from_this_tree(config, root)
        if ok:
            return (_extension_in(folder), f"the installed build at {folder} (built from this checkout's C++ sources)",
                    config, "")
        rejected.append(f"the installed build at {folder} was not used: {why}")
    msg = (f"vidops was imported from the source checkout {root}, which has no built extension "
           f"vidops._C (`pip install .` puts it in site-packages, not in the checkout)")
    msg += "; " + "; ".join(rejected) if rejected else "; no installed vidops build was found on sys.path"
    msg += (f"; fix: build it in place (`python setup.py build_ext --inplace` in {root}), or (re)install "
            f"it from this checkout (`pip install --no-build-isolation --no-deps .` in {root})")
    return None, None, {}, msg


def _load():
    """(loaded, error, path of the extension, where it came from, its build config)."""
    path, origin, config, why = find_extension()
    if path is None:
        return False, why, None, None, {}
    try:
        torch.ops.load_library(path)
    except Exception as exc:  # a broken build must not break `import vidops`
        return False, f"vidops._C at {path} failed to load: {type(exc).__name__}: {exc}", None, None, {}
    return True, "", path, origin, config


EXTENSION_LOADED, EXTENSION_ERROR, EXTENSION_PATH, EXTENSION_ORIGIN, BUILD_CONFIG = _load()
if not EXTENSION_LOADED:
    log.debug("vidops: %s", EXTENSION_ERROR)


def describe_origin() -> str:
    """Which vidops was imported (its folder) and where its extension came from."""
    where = f"vidops imported from {_HERE}" + (" (a source checkout)" if IS_SOURCE_TREE else "")
    if EXTENSION_LOADED:
        return f"{where}; extension vidops._C loaded from {EXTENSION_PATH}, {EXTENSION_ORIGIN}"
    return f"{where}; extension vidops._C not loaded"


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
