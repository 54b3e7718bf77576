"""The benchmark harness end to end, in-process, on its tiny "smoke" shapes (a few seconds)."""
import csv
import json
import os

import pytest
import torch

from vidops import _dispatch
from vidops.bench import registry, report
from vidops.bench.__main__ import main
from vidops.reference.motion_band_pass import motion_band_pass_backward, motion_band_pass_temporal_first


class _FakeCpuBackend:
    """Stands in for the C++ cpu backend so that the vidops_* provider path and the targets are
    exercised whether or not the extension is built."""

    @staticmethod
    def forward(x, sw, tw, stride, sp, tp):
        return motion_band_pass_temporal_first(x, sw, tw, stride, sp, tp)

    @staticmethod
    def backward(grad, x, sw, tw, stride, sp, tp):
        return motion_band_pass_backward(grad, x, sw, tw, stride, sp, tp)


@pytest.fixture
def fake_cpu_backend(monkeypatch):
    backends = _dispatch.registered_ops()["motion_band_pass"].backends
    monkeypatch.setitem(backends, "cpu", _dispatch.Backend("cpu", _dispatch.always, _FakeCpuBackend))


def test_smoke_run_writes_json_csv_png(tmp_path, fake_cpu_backend):
    out = tmp_path / "results"
    result = main(["--smoke", "--no-compile", "--device", "cpu", "--dtype", "float32",
                   "--ops", "motion_band_pass,busy_quiet", "--cases", "stem", "--out", str(out),
                   "--allow-no-vidops"])  # busy_quiet has no vidops kernel where the extension is not built
    files = result["files"]
    assert set(files) >= {"json", "csv", "png"}
    for kind in ("json", "csv", "png"):
        assert os.path.getsize(files[kind]) > 0
        assert (out / f"latest_cpu.{kind}").exists()

    data = json.loads((out / "latest_cpu.json").read_text())
    h = data["header"]
    for key in ("device_name", "threads", "cpu_count", "torch", "triton", "python", "vidops",
                "vidops_build_config", "git_commit", "timestamp"):
        assert key in h, key
    assert data["copy_bandwidth"]["gbps"] > 0
    recs = data["records"]
    keys = {(r["op"], r["mode"], r["provider"]) for r in recs}
    assert ("motion_band_pass", "fwd", "vidops_cpu") in keys
    assert ("motion_band_pass", "fwd+bwd", "vidops_cpu") in keys
    assert ("busy_quiet", "fwd", "reference") in keys
    assert not any("compiled" in r["provider"] for r in recs)  # --no-compile
    for r in recs:
        assert not r.get("error"), r
        assert r["median_ms"] > 0 and r["p20_ms"] <= r["median_ms"] <= r["p80_ms"]
        assert r["speedup"] > 0 and r["gbps"] > 0 and r["pct_copy_bw"] > 0
        assert r["rel_err"] < 1e-4, r
    mine = [r for r in recs if r["provider"] == "vidops_cpu" and r["op"] == "motion_band_pass"]
    for r in mine:  # targets evaluated from the run: speedups over reference and temporal_first
        kinds = {(t["kind"], t["baseline"]) for t in r["targets"]}
        assert ("speedup", "reference") in kinds and ("speedup", "temporal_first") in kinds
        for t in r["targets"]:
            assert t["measured"] is not None and t["met"] in (True, False)
    fwd = next(r for r in mine if r["mode"] == "fwd")
    assert any(t["kind"] == "peak_memory" for t in fwd["targets"])

    with open(out / "latest_cpu.csv") as f:
        rows = list(csv.DictReader(f))
    assert rows and list(rows[0].keys()) == report.COLUMNS
    assert len(rows) == len(recs)
    assert all(row["git_commit"] and row["device_name"] for row in rows)


def test_provider_error_is_recorded_not_raised(monkeypatch, tmp_path):
    real = registry.load_cases

    def broken(*args, **kwargs):
        cases = real(*args, **kwargs)
        for c in cases:
            c.providers["broken"] = lambda inputs: (_ for _ in ()).throw(RuntimeError("boom"))
        return cases

    monkeypatch.setattr(registry, "load_cases", broken)
    result = main(["--smoke", "--no-compile", "--device", "cpu", "--ops", "motion_band_pass",
                   "--modes", "fwd", "--cases", "stem", "--no-write", "--no-memory", "--allow-no-vidops"])
    recs = {r["provider"]: r for r in result["records"]}
    assert "boom" in recs["broken"]["error"]
    assert recs["reference"]["median_ms"] > 0


def test_list_and_case_interface():
    cases = registry.load_cases(None, torch.device("cpu"), True,
                                registry.CaseOptions(dtypes=("float32",), smoke=True))
    assert {c.op for c in cases} == set(registry.CASE_MODULES) - set(registry.OPT_IN)
    for c in cases:
        assert "reference" in c.providers and c.bytes > 0 and c.shape
    models = registry.load_cases(["models"], torch.device("cpu"), True,
                                 registry.CaseOptions(dtypes=("float32",), smoke=True))
    assert models and {c.mode for c in models} == set(registry.MODES)
    for c in models:
        assert {"reference", "vidops_cpu"} <= set(c.providers) and c.breakdown is not None
        assert c.shape["params"] > 0 and c.shape["gmacs_per_clip"] > 0
        assert c.mode in registry.MODES


def test_models_breakdown_is_the_per_layer_median_of_its_runs():
    from vidops.bench.cases.models import _median_breakdown

    runs = [{"band-pass": 3.0, "rest": 10.0}, {"band-pass": 1.0, "shift": 4.0, "rest": 30.0},
            {"band-pass": 2.0, "rest": 20.0}]
    assert _median_breakdown(runs) == {"band-pass": 2.0, "rest": 20.0, "shift": 0.0}


def test_targets_are_evaluated_from_the_records():
    from vidops.bench.runner import _targets

    case = registry.Case(op="x", name="s", mode="fwd", dtype="float32", setup=dict, targets=[
        registry.Target("speedup", 2.0, "reference"),
        registry.Target("tflops", 10.0),
        registry.Target("copy_bw", 50.0),
        registry.Target("peak_memory", 1000),
    ])
    recs = [{"provider": "reference", "median_ms": 4.0},
            {"provider": "vidops_cpu", "median_ms": 1.0, "tflops": 12.0, "pct_copy_bw": 40.0,
             "peak_mem_bytes": 1001}]
    _targets(case, recs)
    got = {t["kind"]: (t["measured"], t["met"]) for t in recs[1]["targets"]}
    assert got == {"speedup": (4.0, True), "tflops": (12.0, True), "copy_bw": (40.0, False),
                   "peak_memory": (1001, False)}
    assert recs[1]["target_met"] is False
    assert recs[0]["targets"] == []  # targets apply to the vidops_* providers only
    assert "TFLOP/s" in case.targets[1].describe()
