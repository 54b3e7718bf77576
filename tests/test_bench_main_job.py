"""The main job as the README states it: `python -m vidops.bench` run from the repository root must
time vidops kernels (or refuse, saying why); the installed-extension lookup; the float64 error
column; progress; the chart's layout."""
import importlib.machinery
import io
import json
import os
import shlex
import subprocess
import sys
import tempfile

import pytest
import torch

from vidops import _ext
from vidops._progress import Progress, format_seconds
from vidops.bench import registry, report, runner, timing

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def readme_bench_command() -> list:
    """The last `python -m vidops.bench ...` step of the README's bench command (between the
    bench-command markers, read as .ci/run reads the test command)."""
    with open(os.path.join(ROOT, "README.md")) as f:
        text = f.read()
    start, end = text.index("<!-- bench-command -->"), text.index("<!-- /bench-command -->")
    lines = [ln for ln in text[start:end].splitlines()[1:] if ln.strip() and not ln.startswith("```")]
    step = " ".join(lines).split("&&")[-1].strip()
    argv = shlex.split(step)
    assert argv[:3] == ["python", "-m", "vidops.bench"], step
    return argv


def _source_tree_has_extension() -> bool:
    return any(os.path.isfile(os.path.join(ROOT, "vidops", "_C" + s))
               for s in importlib.machinery.EXTENSION_SUFFIXES)


def _installed_vidops() -> dict:
    """What `import vidops` gives outside the checkout: {} when no vidops is installed."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in env.get("PYTHONPATH", "").split(os.pathsep)
                                        if p and os.path.realpath(p) != os.path.realpath(ROOT))
    probe = ("import json, vidops, vidops._ext as e; print(json.dumps({'file': vidops.__file__, "
             "'loaded': e.EXTENSION_LOADED, 'config': e.BUILD_CONFIG}))")
    with tempfile.TemporaryDirectory() as d:
        out = subprocess.run([sys.executable, "-c", probe], cwd=d, env=env, capture_output=True, text=True,
                             timeout=300)
    if out.returncode != 0:
        return {}
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_readme_bench_command_from_the_repo_root_times_vidops_kernels():
    """In CI the README's test command installs vidops and the tests run from the repo root with no
    in-place build: the bench, run from the root, must then use the installed build's kernels. With
    no usable build anywhere it must stop and say why (never time the references alone)."""
    installed = _installed_vidops()
    usable_installed = bool(installed.get("loaded")) and _ext.built_from_this_tree(installed["config"], ROOT)[0]
    expect_vidops = _source_tree_has_extension() or usable_installed
    argv = [sys.executable] + readme_bench_command()[1:] + ["--smoke", "--no-write"]
    out = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=900)
    if expect_vidops:
        assert out.returncode == 0, out.stderr[-3000:]
        rows = [ln.split()[0] for ln in out.stdout.splitlines() if ln.startswith("  vidops_")]
        assert "vidops_cpu" in rows or "vidops_cuda" in rows, out.stdout[-3000:]
        assert "extension vidops._C loaded from" in out.stderr + out.stdout
        # the progress log (one line per case: "[i/n] ...: op | case | mode | dtype: provider ms; ...")
        ops_with_vidops = {ln.split(" | ")[0].split(": ")[-1] for ln in out.stderr.splitlines()
                           if ln.startswith("[") and "vidops_" in ln}
        if "vidops_cpu" in rows:  # every op of the bench has a C++ CPU kernel
            assert ops_with_vidops == set(registry.CASE_MODULES) - set(registry.OPT_IN), out.stderr[-3000:]
    else:
        assert out.returncode != 0, out.stdout[-2000:]
        assert "no vidops kernel can run" in out.stderr and "--allow-no-vidops" in out.stderr, out.stderr


def test_info_says_which_vidops_it_imported_and_where_the_extension_came_from():
    out = subprocess.run([sys.executable, "-m", "vidops.info"], cwd=ROOT, capture_output=True, text=True,
                         timeout=300, check=True).stdout
    first = out.splitlines()[0]
    assert f"vidops imported from {os.path.join(ROOT, 'vidops')} (a source checkout)" in first, first
    if _source_tree_has_extension():
        assert f"extension vidops._C loaded from {os.path.join(ROOT, 'vidops')}" in first, first
    else:
        assert ("extension vidops._C loaded from" in first and "the installed build at" in first) or \
            "extension vidops._C not loaded" in first, first


# ---- the installed-extension lookup ----------------------------------------------------------

def _git(*args) -> str:
    return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip()


def _is_checkout() -> bool:
    try:
        return bool(_git("rev-parse", "HEAD"))
    except (OSError, subprocess.CalledProcessError):
        return False


def _fake_install(tmp_path, commit: str) -> str:
    site = tmp_path / "site"
    (site / "vidops").mkdir(parents=True)
    (site / "vidops" / "_C.so").write_bytes(b"")  # found, never loaded by find_extension
    (site / "vidops" / "_build_config.json").write_text(json.dumps({"git_commit": commit}))
    return str(site)


@pytest.mark.skipif(not _is_checkout(), reason="needs the git checkout")
def test_source_tree_uses_an_installed_build_of_the_same_cpp_sources(tmp_path):
    clean = _git("status", "--porcelain", "--untracked-files=all", "--", *_ext._BUILD_INPUTS) == ""
    head = _git("rev-parse", "HEAD")
    pkg = tmp_path / "checkout" / "vidops"  # a package folder without _C, as a fresh clone has
    site = _fake_install(tmp_path, head)
    if clean:  # a build from HEAD has this checkout's C++ sources
        assert _ext.built_from_this_tree({"git_commit": head}, ROOT) == (True, "")
    found = _ext.installed_builds([site], exclude=str(pkg))
    assert found == [os.path.realpath(os.path.join(site, "vidops"))]

    ok, why = _ext.built_from_this_tree({"git_commit": "0" * 40}, ROOT)
    assert not ok and "does not have" in why and "build record" in why
    ok, why = _ext.built_from_this_tree({"git_commit": head + "+dirty"}, ROOT)
    assert not ok and "local changes" in why
    ok, why = _ext.built_from_this_tree({}, ROOT)
    assert not ok and "no git commit" in why
    try:  # the parent of the last commit that changed the C++ sources has different ones
        older = _git("rev-parse", _git("rev-list", "-1", "HEAD", "--", "csrc") + "^")
    except subprocess.CalledProcessError:
        older = None  # shallow clone
    if older:
        ok, why = _ext.built_from_this_tree({"git_commit": older}, ROOT)
        assert not ok and "differ" in why


def test_find_extension_in_a_checkout_without_a_build(tmp_path):
    checkout = tmp_path / "checkout"
    (checkout / "vidops").mkdir(parents=True)
    (checkout / "csrc").mkdir()
    (checkout / "setup.py").write_text("")
    site = _fake_install(tmp_path, "0" * 40)
    path, origin, config, why = _ext.find_extension(str(checkout / "vidops"), [str(site)])
    assert path is None and "has no built extension" in why and "was not used" in why
    assert "build_ext --inplace" in why
    path, origin, config, why = _ext.find_extension(str(checkout / "vidops"), [])
    assert path is None and "no installed vidops build" in why
    # an installed package (not a checkout) uses its own _C only
    path, origin, config, why = _ext.find_extension(os.path.join(site, "vidops"), [])
    assert path and path.endswith("_C.so") and origin == "this vidops package" and config["git_commit"]


def test_a_git_less_checkout_matches_by_its_build_record(tmp_path):
    """setup.py writes the build record into the checkout too: equal records and no C++ source
    newer than the record mean the installed build is this checkout's."""
    checkout = tmp_path / "checkout"
    (checkout / "vidops").mkdir(parents=True)
    (checkout / "csrc").mkdir()
    (checkout / "csrc" / "op.cpp").write_text("")
    (checkout / "setup.py").write_text("")
    config = {"git_commit": None, "torch_version": "x", "cpp_sources": ["csrc/op.cpp"]}
    (checkout / "vidops" / "_build_config.json").write_text(json.dumps(config))
    later = os.path.getmtime(checkout / "vidops" / "_build_config.json") + 10
    assert _ext.built_from_this_tree(config, str(checkout)) == (True, "")
    assert not _ext.built_from_this_tree(dict(config, torch_version="y"), str(checkout))[0]
    os.utime(checkout / "csrc" / "op.cpp", (later, later))
    ok, why = _ext.built_from_this_tree(config, str(checkout))
    assert not ok and "op.cpp changed after that build" in why


def test_bench_refuses_to_time_only_the_references(monkeypatch, capsys):
    from vidops.bench.__main__ import main

    real = registry.load_cases

    def without_vidops(*args, **kwargs):
        cases = real(*args, **kwargs)
        for c in cases:
            c.providers = {k: v for k, v in c.providers.items() if not k.startswith("vidops_")}
        return cases

    monkeypatch.setattr(registry, "load_cases", without_vidops)
    argv = ["--smoke", "--device", "cpu", "--ops", "temporal_relation", "--modes", "fwd", "--no-write",
            "--no-memory"]
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert "no vidops kernel can run" in str(info.value) and "--allow-no-vidops" in str(info.value)
    result = main(argv + ["--allow-no-vidops"])
    assert {r["provider"] for r in result["records"]} >= {"reference"}
    assert "WARNING (--allow-no-vidops)" in capsys.readouterr().err


# ---- the error column: vs float64, relative to the reference's own error --------------------

def _case(name, reference, **providers):
    def setup():
        return {"x": torch.linspace(-1, 1, 1001, dtype=torch.float32) + 0.1}
    return registry.Case(op="synthetic", name=name, mode="fwd", dtype="float32", setup=setup,
                         providers={"reference": reference, **providers}, bytes=8)


def _run(case):
    cfg = runner.RunConfig(device=torch.device("cpu"), memory=False, policy=timing.Policy(reps=1))
    return {r["provider"]: r for r in runner.run_case(case, cfg, None, log=lambda s: None)}


def test_error_column_flags_a_wrong_kernel_on_an_easy_case():
    recs = _run(_case("easy", lambda i: i["x"] * 3, same=lambda i: i["x"] + i["x"] + i["x"],
                      wrong=lambda i: i["x"] * 3 * (1 + 1e-4)))
    assert recs["reference"]["ref_rel_err"] < 1e-7 and recs["reference"]["oracle"] == "reference in float64"
    assert recs["same"]["check"] == "ok"
    assert recs["wrong"]["check"] == "MISMATCH"
    assert recs["wrong"]["rel_err"] == pytest.approx(1e-4, rel=0.05)


def test_error_column_does_not_flag_the_reference_s_own_ill_conditioning():
    big = 2.0 ** 20   # (x + big) - big rounds x to multiples of 1/8 in float32, not in float64

    recs = _run(_case("hard", lambda i: (i["x"] + big) - big,
                      other_rounding=lambda i: (i["x"] + 1.5 * big) - 1.5 * big,
                      much_worse=lambda i: torch.zeros_like(i["x"])))
    ref_err = recs["reference"]["rel_err"]
    assert ref_err > 0.01  # the float32 reference itself is far from float64
    assert recs["other_rounding"]["ref_rel_err"] == ref_err
    assert recs["other_rounding"]["rel_err"] > 0.01
    assert recs["other_rounding"]["check"] == "ok"   # as far off as the reference: not flagged
    assert recs["much_worse"]["rel_err"] == pytest.approx(1.0)
    assert recs["much_worse"]["check"] == "MISMATCH"


def test_float64_oracle_upcasts_modules_and_nested_inputs():
    lin = torch.nn.Linear(3, 2)
    up = runner.upcast({"m": lin, "p": {"w": torch.ones(2, requires_grad=True)}, "n": 3,
                        "i": torch.arange(3)})
    assert up["m"].weight.dtype == torch.float64 and lin.weight.dtype == torch.float32
    assert up["p"]["w"].dtype == torch.float64 and up["p"]["w"].requires_grad and up["p"]["w"].is_leaf
    assert up["n"] == 3 and up["i"].dtype == torch.int64


# ---- progress ----------------------------------------------------------------------------------

class _Clock:
    def __init__(self):
        self.t = 100.0

    def __call__(self):
        return self.t


def test_progress_is_one_plain_line_per_item_when_piped():
    out, clock = io.StringIO(), _Clock()
    p = Progress(3, weights=[1, 1, 2], stream=out, interactive=False, clock=clock)
    p.start("a")
    p.update("running x")
    clock.t += 10
    p.done("a: ok")
    clock.t += 10
    p.start("b")
    p.done()
    p.close()
    lines = out.getvalue().splitlines()
    assert lines == ["[1/3] 0:10 elapsed, ~0:30 left: a: ok", "[2/3] 0:20 elapsed, ~0:20 left: b"]
    assert "\r" not in out.getvalue() and "\x1b" not in out.getvalue()


def test_progress_redraws_one_status_line_on_a_terminal():
    out, clock = io.StringIO(), _Clock()
    with Progress(2, stream=out, interactive=True, clock=clock) as p:
        p.start("case one")
        assert out.getvalue().endswith("\r\x1b[K[0/2 0%] 0:00 elapsed | case one")
        clock.t += 65
        p.update("running vidops_cpu")
        assert out.getvalue().endswith("[0/2 0%] 1:05 elapsed | case one | running vidops_cpu")
        p.done("case one: 1 ms")
        assert "\r\x1b[K[1/2] 1:05 elapsed, ~1:05 left: case one: 1 ms\n" in out.getvalue()
        p.note("a warning")
    assert out.getvalue().endswith("\r\x1b[K")  # the status line is cleared at the end
    assert format_seconds(3723) == "1:02:03"


# ---- the chart -------------------------------------------------------------------------------

def _synthetic_result(n_ops=8, cases_per_op=(2, 1, 6, 4, 4, 10, 4, 6), breakdown=False):
    records = []
    for o in range(n_ops):
        for c in range(cases_per_op[o % len(cases_per_op)]):
            key = dict(op=f"op{o}", case=f"shape{c} N=2 C=3", mode="fwd" if c % 2 == 0 else "fwd+bwd",
                       dtype="float32")
            records.append(dict(key, provider="reference", median_ms=10.0, speedup=1.0, targets=[]))
            records.append(dict(key, provider="temporal_first", median_ms=5.0, speedup=2.0, targets=[]))
            records.append(dict(key, provider="vidops_cpu", median_ms=1.0, speedup=10.0, targets=[
                {"kind": "speedup", "value": 5.0, "baseline": "reference"},
                {"kind": "speedup", "value": 1.5, "baseline": "temporal_first"}]))
    if breakdown:
        for prov, ms in (("reference", 40.0), ("vidops_cpu", 12.0)):
            records.append(dict(op="models", case="bqn_r50 N=1 T=8", mode="fwd+bwd", dtype="float32",
                                provider=prov, median_ms=ms, speedup=40.0 / ms, targets=[],
                                breakdown={"stem": ms * 0.2, "res2": ms * 0.3, "res3": ms * 0.3}))
    header = {"device_name": "test CPU", "threads": 2, "torch": torch.__version__, "git_commit": "abc",
              "timestamp": "now"}
    return {"header": header, "records": records}


def _png_size(path):
    with open(path, "rb") as f:
        head = f.read(24)
    assert head[:8] == b"\x89PNG\r\n\x1a\n"
    return int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")


def test_chart_is_a_grid_of_panels_at_most_2000_pixels_wide(tmp_path):
    pytest.importorskip("matplotlib")
    result = _synthetic_result()
    path = tmp_path / "r.json"
    report.write_json(result, str(path))
    result = json.loads(path.read_text())  # from a results file, as `python -m vidops.bench.report`
    layout = report.chart_layout(result)
    assert [p[0] for p in layout["panels"]] == [f"op{o}" for o in range(8)]
    # 9 columns of panels (op5's 10 cases span two), packed first-fit into 3 rows of 3
    assert layout["columns"] == 3 and layout["rows"] == 3
    assert next(p for p in layout["panels"] if p[0] == "op5")[1] == 2
    png = tmp_path / "r.png"
    assert report.write_chart(result, str(png)) is None
    w, h = _png_size(png)
    assert (w, h) == layout["size_px"] and w <= 2000 and h <= 2000


def test_chart_draws_the_models_breakdown_as_stacked_bars(tmp_path):
    pytest.importorskip("matplotlib")
    result = _synthetic_result(n_ops=2, breakdown=True)
    layout = report.chart_layout(result)
    assert [p[0] for p in layout["panels"]] == ["op0", "op1", "models"]
    assert len(layout["breakdown"]) == 2
    png = tmp_path / "b.png"
    assert report.write_chart(result, str(png)) is None
    w, h = _png_size(png)
    assert (w, h) == layout["size_px"]
    assert h == round((1.0 + report.PANEL_H_IN * layout["rows"] + report.BREAKDOWN_H_IN) * report.CHART_DPI)
    row = report._row(result["records"][-1], result["header"], None)
    assert json.loads(row["breakdown"]) == pytest.approx({"stem": 2.4, "res2": 3.6, "res3": 3.6})


def test_interleaved_case_alternates_providers_and_reports_paired_ratios():
    import time

    from vidops.bench.registry import Case
    calls = []

    def provider(name, seconds):
        def run(i):
            calls.append(name)
            time.sleep(seconds)
            return i["x"] * 2
        return run

    case = Case(op="op0", name="interleaved", mode="fwd", dtype="float32",
                setup=lambda: {"x": torch.ones(3)}, interleave=True,
                providers={"reference": provider("reference", 0.004), "vidops_cpu": provider("vidops_cpu", 0.002)})
    cfg = runner.RunConfig(device=torch.device("cpu"), memory=False, policy=timing.Policy(reps=4))
    recs = {r["provider"]: r for r in runner.run_case(case, cfg, None, log=lambda s: None)}
    assert recs["vidops_cpu"]["interleaved_rounds"] == 4 and recs["vidops_cpu"]["reps"] == 4
    # first calls (one each), the extra warm-up (one each), then the rounds: each provider once a
    # round, in a shuffled order (not always the same one first)
    rounds = [calls[-8:][2 * r: 2 * r + 2] for r in range(4)]
    assert all(sorted(r) == ["reference", "vidops_cpu"] for r in rounds)
    assert len({tuple(r) for r in rounds}) == 2
    assert 1.3 < recs["vidops_cpu"]["paired_speedup"] < 3.0
    assert recs["vidops_cpu"]["speedup"] == recs["vidops_cpu"]["paired_speedup"]
    assert recs["reference"]["speedup"] == 1.0


def test_interleaved_targets_against_another_provider_use_the_paired_ratio():
    from vidops.bench.registry import Case, Target

    # ms per round: the machine slows down over the rounds while vidops is fast only in the last
    # two: per-round ratios other / vidops 1, 1, 1, 8, 10 (median 1), medians 3 / 1
    times = {3.0: iter([1.0, 2.0, 3.0, 4.0, 5.0]), 2.0: iter([1.0, 2.0, 3.0, 0.5, 0.5])}  # by output value
    case = Case(op="op0", name="paired", mode="fwd", dtype="float32", setup=lambda: {"x": torch.ones(3)},
                interleave=True, providers={"other": lambda i: i["x"] * 3, "vidops_cpu": lambda i: i["x"] * 2},
                targets=[Target(kind="speedup", value=1.2, providers="vidops_*", baseline="other")])
    cfg = runner.RunConfig(device=torch.device("cpu"), memory=False, policy=timing.Policy(reps=5))
    real = timing.time_once
    try:
        timing.time_once = lambda step, reset, device: next(times[float(step()[0])])
        recs = {r["provider"]: r for r in runner.run_case(case, cfg, None, log=lambda s: None)}
    finally:
        timing.time_once = real
    assert recs["vidops_cpu"]["median_ms"] == 1.0 and recs["other"]["median_ms"] == 3.0
    assert recs["vidops_cpu"]["paired_speedups"] == {"other": 1.0}
    assert recs["other"]["paired_speedups"] == {"vidops_cpu": 1.0}
    (ev,) = recs["vidops_cpu"]["targets"]
    assert ev["baseline"] == "other" and ev["measured"] == 1.0 and ev["met"] is False
