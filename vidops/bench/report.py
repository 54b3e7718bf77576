"""The harness's outputs: a text table, JSON, CSV and a PNG chart.

Files (under --out, default bench/results/): `<device_tag>_<UTC timestamp>.{json,csv,png}` and a
copy of each as `latest_<device type>.{json,csv,png}`.

JSON: {"header": run header (device, threads, versions, build config, git commit, time),
       "config": the command line's choices, "copy_bandwidth": the copy measured in the run,
       "records": one per (case, provider)}.
CSV: one row per record, COLUMNS below; the header fields that identify the run are repeated on
every row so that a CSV file stands alone.
"""
from __future__ import annotations

import csv
import json
import math
import os
import shutil
import textwrap
from typing import Optional

RECORD_COLUMNS = [
    "op", "case", "mode", "dtype", "provider", "median_ms", "p20_ms", "p80_ms", "reps",
    "speedup", "gbps", "pct_copy_bw", "tflops", "peak_mem_bytes", "rel_err", "check",
    "target", "target_met", "target_detail", "first_call_ms", "bytes", "flops", "shape", "error", "note",
]
HEADER_COLUMNS = ["device_name", "device_tag", "threads", "copy_gbps", "torch", "triton", "vidops",
                  "git_commit", "timestamp", "label"]
COLUMNS = RECORD_COLUMNS + HEADER_COLUMNS


def _fmt(v, spec: str, missing: str = "-") -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return missing
    return format(v, spec)


def _met(v) -> str:
    return {True: "yes", False: "NO", None: "?"}[v]


def target_detail(rec: dict) -> str:
    """'>=20x reference: 31.2x yes; mem<=3.4MiB: 2.4MiB yes'"""
    parts = []
    for t in rec.get("targets") or []:
        m = t["measured"]
        if m is None:
            val = "n/a"
        elif t["kind"] == "speedup":
            val = f"{m:.2f}x"
        elif t["kind"] == "copy_bw":
            val = f"{m:.1f}%"
        else:
            val = f"{m / 2**20:.3g}MiB"
        parts.append(f"{t['describe']}: {val} {_met(t['met'])}")
    return "; ".join(parts)


def table(result: dict) -> str:
    h = result["header"]
    cb = result.get("copy_bandwidth") or {}
    lines = [
        f"vidops.bench on {h['device_name']} ({h['device']}, {h['threads']} threads of "
        f"{h['cpu_affinity']} CPUs) | torch {h['torch']} | triton {h['triton']} | vidops {h['vidops']} "
        f"| commit {h['git_commit'][:12]} | {h['timestamp']}",
        f"vidops build: {h['vidops_build']}",
    ]
    if h.get("label"):
        lines.append(f"label: {h['label']}")
    if cb:
        lines.append(f"copy bandwidth (read+write): {cb['gbps']:.1f} GB/s (copy_ {cb['copy_gbps']:.1f}, "
                     f"elementwise {cb['elementwise_gbps']:.1f}; {cb['buffer_bytes'] / 2**20:.0f} MiB buffer)")
    cols = ("provider", "median ms", "p20..p80 ms", "speedup", "GB/s", "%copy", "TFLOP/s", "peak MiB",
            "rel err", "target (measured, met)")
    widths = (20, 10, 19, 8, 8, 6, 8, 9, 9, 0)
    key = None
    for r in result["records"]:
        k = (r["op"], r["case"], r["mode"], r["dtype"])
        if k != key:
            key = k
            extra = f"{r['bytes'] / 1e6:.1f} MB min traffic" if r.get("bytes") else ""
            if r.get("flops"):
                extra += f", {r['flops'] / 1e9:.2f} GFLOP"
            lines.append("")
            lines.append(f"{r['op']} | {r['case']} | {r['mode']} | {r['dtype']}   ({extra})")
            by_pattern = {}
            for t in r.get("case_targets") or []:
                by_pattern.setdefault(t["providers"], []).append(t["describe"])
            for pattern, descs in by_pattern.items():
                lines.append(f"  targets for {pattern}: {'; '.join(descs)}")
            lines.append("  " + " ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(cols, widths))))
        if r.get("error"):
            lines.append(f"  {r['provider']:<20} ERROR {r['error']}")
            continue
        spread = f"{_fmt(r.get('p20_ms'), '.3f')}..{_fmt(r.get('p80_ms'), '.3f')}"
        peak = r.get("peak_mem_bytes")
        err = r.get("rel_err")
        err_s = _fmt(err, ".1e") + ("!" if r.get("check") == "MISMATCH" else "")
        cells = (
            r["provider"].ljust(20),
            _fmt(r.get("median_ms"), ".3f").rjust(10),
            spread.rjust(19),
            (_fmt(r.get("speedup"), ".2f") + "x").rjust(8),
            _fmt(r.get("gbps"), ".2f").rjust(8),
            _fmt(r.get("pct_copy_bw"), ".1f").rjust(6),
            _fmt(r.get("tflops"), ".3f").rjust(8),
            (_fmt(peak / 2**20, ".1f") if peak is not None else "n/a").rjust(9),
            err_s.rjust(9),
            target_detail(r),
        )
        lines.append("  " + " ".join(cells).rstrip())
    lines.append("")
    lines.append("speedup: reference (authors' formulation, eager) median / provider median. GB/s: minimum "
                 "traffic / median; %copy: of the copy bandwidth above. peak MiB: allocated by one call "
                 f"beyond its inputs ({_memory_method(result)}). rel err: relative L2 error vs the reference "
                 "(outputs and input gradients; float32 reference for half precision), '!' above tolerance.")
    return "\n".join(lines)


def _memory_method(result: dict) -> str:
    for r in result["records"]:
        if r.get("peak_mem_method"):
            return r["peak_mem_method"]
    return "not measured"


def _row(rec: dict, header: dict, copy_gbps) -> dict:
    row = {c: rec.get(c) for c in RECORD_COLUMNS}
    row["shape"] = json.dumps(rec.get("shape", {}), sort_keys=True)
    row["target_detail"] = target_detail(rec)
    row["target_met"] = "" if rec.get("target_met") is None else ("yes" if rec["target_met"] else "no")
    for c in HEADER_COLUMNS:
        row[c] = header.get(c)
    row["copy_gbps"] = copy_gbps
    return {k: ("" if v is None else v) for k, v in row.items()}


def write_json(result: dict, path: str) -> None:
    def clean(o):
        if isinstance(o, float) and not math.isfinite(o):
            return None if math.isnan(o) else str(o)
        if isinstance(o, dict):
            return {k: clean(v) for k, v in o.items()}
        if isinstance(o, (list, tuple)):
            return [clean(v) for v in o]
        return o

    with open(path, "w") as f:
        json.dump(clean(result), f, indent=1, sort_keys=False, default=str)
        f.write("\n")


def write_csv(result: dict, path: str) -> None:
    copy_gbps = (result.get("copy_bandwidth") or {}).get("gbps")
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=COLUMNS)
        w.writeheader()
        for rec in result["records"]:
            w.writerow(_row(rec, result["header"], copy_gbps))


def write_chart(result: dict, path: str) -> Optional[str]:
    """Grouped bars of speedup over the reference (log scale), one group per case, one bar per
    provider; a solid black tick marks each speedup target over the reference, a dotted one each
    target over another provider (at that provider's speedup times the factor). Returns None, or
    why no chart was drawn."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except Exception as exc:
        return f"matplotlib unavailable: {type(exc).__name__}: {exc}"
    records = [r for r in result["records"] if r.get("speedup")]
    if not records:
        return "no speedups to draw"
    groups = []
    for r in records:
        k = (r["op"], r["case"], r["mode"], r["dtype"])
        if k not in groups:
            groups.append(k)
    providers = []
    for r in records:
        if r["provider"] not in providers:
            providers.append(r["provider"])
    n = len(providers)
    width = 0.8 / n
    fig, ax = plt.subplots(figsize=(max(8.0, 1.9 * len(groups) * max(1.0, n / 4)), 6.0))
    cmap = plt.get_cmap("tab10")
    for j, p in enumerate(providers):
        xs, ys = [], []
        for i, g in enumerate(groups):
            r = next((r for r in records if (r["op"], r["case"], r["mode"], r["dtype"]) == g
                      and r["provider"] == p), None)
            if r is None:
                continue
            x = i - 0.4 + width * (j + 0.5)
            xs.append(x)
            ys.append(r["speedup"])
            for t in r.get("targets") or []:
                if t["kind"] != "speedup":
                    continue
                if t["baseline"] == "reference":
                    ax.plot([x - width / 2, x + width / 2], [t["value"]] * 2, color="black", lw=2)
                    continue
                b = next((b for b in records if (b["op"], b["case"], b["mode"], b["dtype"]) == g
                          and b["provider"] == t["baseline"]), None)
                if b is not None:  # e.g. 1.5x temporal_first, drawn in units of the reference
                    ax.plot([x - width / 2, x + width / 2], [t["value"] * b["speedup"]] * 2,
                            color="black", lw=1.5, ls=":")
        bars = ax.bar(xs, ys, width, label=p, color=cmap(j % 10))
        for b, y in zip(bars, ys):
            ax.annotate(f"{y:.3g}", (b.get_x() + b.get_width() / 2, y), ha="center", va="bottom", fontsize=7)
    ax.set_yscale("log")
    ax.axhline(1.0, color="grey", lw=0.8)
    ax.set_ylabel("speedup over reference (eager), higher is better")
    ax.set_xticks(range(len(groups)))
    ax.set_xticklabels([f"{op}\n{textwrap.fill(case, 20)}\n{mode} {dtype}" for op, case, mode, dtype in groups],
                       fontsize=7)
    h = result["header"]
    ax.set_title(f"vidops.bench: {h['device_name']} ({h['threads']} threads), torch {h['torch']}, "
                 f"commit {h['git_commit'][:10]}, {h['timestamp']}\n"
                 f"solid ticks: speedup targets over the reference; dotted: targets over another provider "
                 f"(e.g. 1.5x temporal_first)", fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return None


def write_all(result: dict, out_dir: str, chart: bool = True) -> dict:
    """Write the timestamped JSON/CSV(/PNG) and their latest_<device type> copies; return the paths."""
    os.makedirs(out_dir, exist_ok=True)
    h = result["header"]
    stem = os.path.join(out_dir, f"{h['device_tag']}_{h['timestamp_compact']}")
    latest = os.path.join(out_dir, f"latest_{h['device'].split(':')[0]}")
    paths = {"json": stem + ".json", "csv": stem + ".csv"}
    write_csv(result, paths["csv"])
    if chart:
        why = write_chart(result, stem + ".png")
        if why is None:
            paths["png"] = stem + ".png"
        else:
            result.setdefault("warnings", []).append(f"chart: {why}")
    result["files"] = dict(paths)
    write_json(result, paths["json"])
    for kind, p in list(paths.items()):
        dst = f"{latest}.{kind}"
        shutil.copyfile(p, dst)
        paths[f"latest_{kind}"] = dst
    return paths


def main(argv=None) -> None:
    """`python -m vidops.bench.report RESULT.json [--png OUT.png]`: print a saved run's table and
    redraw its chart (default: next to the JSON, same name)."""
    import argparse

    p = argparse.ArgumentParser(prog="python -m vidops.bench.report")
    p.add_argument("json")
    p.add_argument("--png", default=None)
    args = p.parse_args(argv)
    with open(args.json) as f:
        result = json.load(f)
    print(table(result))
    png = args.png or os.path.splitext(args.json)[0] + ".png"
    why = write_chart(result, png)
    print(f"\n{'chart: ' + why if why else 'wrote ' + png}")


if __name__ == "__main__":
    main()
