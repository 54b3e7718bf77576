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

from .registry import layer_share

RECORD_COLUMNS = [
    "op", "case", "mode", "dtype", "provider", "median_ms", "p20_ms", "p80_ms", "reps",
    "speedup", "gbps", "pct_copy_bw", "tflops", "peak_mem_bytes", "rel_err", "ref_rel_err", "err_bound", "check",
    "target", "target_met", "target_detail", "first_call_ms", "bytes", "flops", "shape", "breakdown", "error",
    "note",
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
        elif t["kind"] in ("copy_bw", "layer_share"):
            val = f"{m:.1f}%"
        else:
            val = f"{m / 2**20:.3g}MiB"
        parts.append(f"{t['describe']}: {val} {_met(t['met'])}")
    return "; ".join(parts)


def breakdown_text(breakdown: dict) -> str:
    """'depthwise conv 61.2 ms (13.9%), rest of the network 380 ms (86.1%)'"""
    parts = []
    for k, v in breakdown.items():
        share = layer_share(breakdown, k)
        parts.append(f"{k} {v:.3g} ms" + ("" if share is None else f" ({share:.1f}%)"))
    return ", ".join(parts)


def table(result: dict) -> str:
    h = result["header"]
    cb = result.get("copy_bandwidth") or {}
    lines = [
        f"vidops.bench on {h['device_name']} ({h['device']}, {h['threads']} threads of "
        f"{h['cpu_affinity']} CPUs) | torch {h['torch']} | triton {h['triton']} | vidops {h['vidops']} "
        f"| commit {h['git_commit'][:12]} | {h['timestamp']}",
        f"vidops build: {h['vidops_build']}",
    ]
    if h.get("vidops_origin"):
        lines.append(f"vidops: {h['vidops_origin']}")
    if h.get("label"):
        lines.append(f"label: {h['label']}")
    if cb:
        lines.append(f"copy bandwidth (read+write): {cb['gbps']:.1f} GB/s (copy_ {cb['copy_gbps']:.1f}, "
                     f"elementwise {cb['elementwise_gbps']:.1f}; {cb['buffer_bytes'] / 2**20:.0f} MiB buffer)")
    cols = ("provider", "median ms", "p20..p80 ms", "speedup", "GB/s", "%copy", "TFLOP/s", "peak MiB",
            "rel err", "ref err", "target (measured, met)")
    widths = (20, 10, 19, 8, 8, 6, 8, 9, 9, 8, 0)
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
            _fmt(r.get("ref_rel_err"), ".1e").rjust(8),
            target_detail(r),
        )
        lines.append("  " + " ".join(cells).rstrip())
        if r.get("breakdown"):
            lines.append("  " + " " * 21 + "layers: " + breakdown_text(r["breakdown"]))
    lines.append("")
    lines.append("speedup: reference (authors' formulation, eager) median / provider median (models and X3D "
                 "layers: providers timed in alternation, the median of the per-round ratios, against the "
                 "reference and in the targets against any other provider). GB/s: minimum "
                 "traffic / median; %copy: of the copy bandwidth above. peak MiB: allocated by one call "
                 f"beyond its inputs ({_memory_method(result)}). rel err: relative L2 error vs the reference run in "
                 "float64 (outputs and input gradients); ref err: the same-dtype reference's own error vs that "
                 f"float64 run; '!': rel err above {_err_rule()}.")
    fallbacks = sorted({r["oracle"] for r in result["records"] if r.get("oracle") and "failed" in r["oracle"]})
    for f in fallbacks:
        lines.append(f"note: some cases compare with the {f}.")
    return "\n".join(lines)


def _err_rule() -> str:
    from .runner import ERR_FACTOR, ERR_FLOOR_EPS

    return f"{ERR_FACTOR:g} x max(ref err, {ERR_FLOOR_EPS:g} x the dtype's machine epsilon)"


def _memory_method(result: dict) -> str:
    for r in result["records"]:
        if r.get("peak_mem_method"):
            return r["peak_mem_method"]
    return "not measured"


def _row(rec: dict, header: dict, copy_gbps) -> dict:
    row = {c: rec.get(c) for c in RECORD_COLUMNS}
    row["shape"] = json.dumps(rec.get("shape", {}), sort_keys=True)
    row["breakdown"] = json.dumps(rec["breakdown"]) if rec.get("breakdown") else None
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


CHART_DPI = 100
CHART_COLUMNS = 3          # panels per row (a panel with many cases spans more than one column)
PANEL_W_IN, PANEL_H_IN = 6.4, 4.3   # one column's panel, in inches: 3 columns are 1920 pixels
GROUPS_PER_COLUMN = 6      # cases per panel column before the panel spans another column
BREAKDOWN_H_IN = 4.8
MIN_CHART_W_IN = 9.6       # a chart of one or two panels is still this wide: its title and legend fit
HEADER_H_IN = 1.0          # title + legend + bottom margin, for a one-line title and a one-row legend
TITLE_PT, LEGEND_PT = 10, 8
CHAR_W = 0.62              # a generous mean character width of the chart font, in font sizes
MAX_LAYERS = 15            # breakdown layers drawn by name; the rest are summed as "other layers"


def _key(r: dict) -> tuple:
    return (r["op"], r["case"], r["mode"], r["dtype"])


def case_labels(names: list) -> dict:
    """Short labels for an op's case names: the words before the first "k=v" word ("res3 softmax",
    "stem"); for names without such words, the words that tell them apart ("56x56", "D=1")."""
    out = {}
    bare = []
    for n in names:
        words = n.split()
        head = []
        for w in words:
            if "=" in w:
                break
            head.append(w)
        if head and len(head) < len(words):
            out[n] = " ".join(head)
        else:
            bare.append(n)
    if bare:
        common = set(bare[0].split()).intersection(*[set(b.split()) for b in bare[1:]]) if len(bare) > 1 else set()
        for n in bare:
            distinct = [w for w in n.split() if w not in common]
            out[n] = " ".join(distinct if len(bare) > 1 and distinct else n.split()[:3])
    return out


def chart_layout(result: dict) -> dict:
    """What the chart draws: {"panels": [(op, span in columns, row, column)], "columns", "rows",
    "breakdown": records with a per-layer breakdown, "size_px": (width, height)}."""
    records = [r for r in result["records"] if r.get("speedup")]
    ops, groups = [], {}
    for r in records:
        if r["op"] not in ops:
            ops.append(r["op"])
        g = groups.setdefault(r["op"], [])
        if _key(r) not in g:
            g.append(_key(r))
    columns = max(1, min(CHART_COLUMNS, sum(min(CHART_COLUMNS, math.ceil(len(groups[o]) / GROUPS_PER_COLUMN))
                                           for o in ops)))
    rows_free, panels = [], []
    for op in ops:  # first fit: each panel in the first row with room for it
        span = min(columns, math.ceil(len(groups[op]) / GROUPS_PER_COLUMN))
        row = next((i for i, free in enumerate(rows_free) if free >= span), None)
        if row is None:
            rows_free.append(columns)
            row = len(rows_free) - 1
        panels.append((op, span, row, columns - rows_free[row]))
        rows_free[row] -= span
    breakdown = [r for r in result["records"] if r.get("breakdown")]
    width = max(PANEL_W_IN * columns, MIN_CHART_W_IN)
    header = chart_header(result, width)
    height = header["height_in"] + PANEL_H_IN * len(rows_free) + (BREAKDOWN_H_IN if breakdown else 0)
    return {"panels": panels, "columns": columns, "rows": len(rows_free), "groups": groups,
            "breakdown": breakdown, "header": header,
            "size_px": (round(width * CHART_DPI), round(height * CHART_DPI))}


def _providers(result: dict) -> list:
    out = []
    for r in result["records"]:
        if r.get("speedup") and r["provider"] not in out:
            out.append(r["provider"])
    return out


LEGEND_EXTRA = ["speedup target over the reference", "target over another provider (e.g. 1.5x sdpa)"]


def chart_header(result: dict, width_in: float) -> dict:
    """The chart's title wrapped to the width and the legend's columns, so that both fit whole:
    {"title": lines, "legend": names, "ncol", "legend_rows", "height_in"}. Text widths are
    estimated from the font size (CHAR_W, on the generous side)."""
    h = result.get("header", {})
    title = (f"vidops.bench: speedup over the reference (log scale, higher is better); {h.get('device_name', '?')} "
             f"({h.get('threads', '?')} threads), torch {h.get('torch', '?')}, commit {str(h.get('git_commit', ''))[:10]}, "
             f"{h.get('timestamp', '')}")
    usable = width_in * 72 - 2 * 18  # points, less a margin on each side
    per_line = max(20, int(usable / (TITLE_PT * CHAR_W)))
    lines = textwrap.wrap(title, per_line) or [""]
    names = _providers(result) + LEGEND_EXTRA
    entry = max(len(n) for n in names) * LEGEND_PT * CHAR_W + 2.5 * LEGEND_PT + 8  # text + handle + gap
    ncol = max(1, min(8, len(names), int(usable // entry)))
    legend_rows = math.ceil(len(names) / ncol)
    height = HEADER_H_IN + 0.2 * (len(lines) - 1) + 0.2 * (legend_rows - 1)
    return {"title": lines, "legend": names, "ncol": ncol, "legend_rows": legend_rows, "height_in": height}


def write_chart(result: dict, path: str) -> Optional[str]:
    """A grid of panels, one per op: per case (group), one bar per provider of its speedup over
    the reference on a log axis; a black line across a bar marks a speedup target over the
    reference, a dotted one a target over another provider (drawn at that provider's speedup
    times the factor); vidops bars are labelled with their speedup. When records carry a
    per-layer `breakdown`, a last full-width panel stacks each record's step time by layer.
    The image is PANEL_W_IN * columns * CHART_DPI pixels wide (1920 for 3 columns), at least
    MIN_CHART_W_IN; the title wraps and the legend takes more rows where the width needs it
    (chart_header). Returns None, or why no chart was drawn."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.lines import Line2D
        from matplotlib.ticker import NullFormatter
    except Exception as exc:
        return f"matplotlib unavailable: {type(exc).__name__}: {exc}"
    layout = chart_layout(result)
    if not layout["panels"] and not layout["breakdown"]:
        return "no speedups to draw"
    records = [r for r in result["records"] if r.get("speedup")]
    by_key = {(_key(r), r["provider"]): r for r in records}
    providers = []
    for r in records:
        if r["provider"] not in providers:
            providers.append(r["provider"])
    cmap = plt.get_cmap("tab10")
    color = {p: cmap(i % 10) for i, p in enumerate(providers)}
    multi_dtype = len({r["dtype"] for r in records}) > 1
    w_px, h_px = layout["size_px"]
    fig = plt.figure(figsize=(w_px / CHART_DPI, h_px / CHART_DPI), dpi=CHART_DPI)
    n_rows = layout["rows"] + (1 if layout["breakdown"] else 0)
    ratios = [PANEL_H_IN] * layout["rows"] + ([BREAKDOWN_H_IN] if layout["breakdown"] else [])
    grid = fig.add_gridspec(n_rows, layout["columns"], height_ratios=ratios)
    for op, span, row, col in layout["panels"]:
        ax = fig.add_subplot(grid[row, col:col + span])
        keys = layout["groups"][op]
        labels = case_labels([k[1] for k in keys])
        present = [p for p in providers if any((k, p) in by_key for k in keys)]
        width = 0.8 / max(1, len(present))
        rotate = len(keys) * len(present) > 14
        top = 1.0
        for j, p in enumerate(present):
            for i, k in enumerate(keys):
                r = by_key.get((k, p))
                if r is None:
                    continue
                x = i - 0.4 + width * (j + 0.5)
                y = r["speedup"]
                top = max(top, y)
                ax.bar(x, y, width, color=color[p])
                if p.startswith("vidops_"):
                    ax.annotate(f"{y:.3g}x", (x, y), ha="center", va="bottom", fontsize=7,
                                rotation=90 if rotate else 0, xytext=(0, 2), textcoords="offset points")
                for t in r.get("targets") or []:
                    if t["kind"] != "speedup":
                        continue
                    if t["baseline"] == "reference":
                        level, style = t["value"], "-"
                    else:
                        b = by_key.get((k, t["baseline"]))
                        if b is None:
                            continue
                        level, style = t["value"] * b["speedup"], ":"
                    top = max(top, level)
                    ax.plot([x - 0.6 * width, x + 0.6 * width], [level] * 2, color="black", lw=1.8, ls=style)
        ax.set_yscale("log")
        ax.yaxis.set_minor_formatter(NullFormatter())
        ax.axhline(1.0, color="grey", lw=0.8)
        ax.set_ylim(top=max(20.0, top * 4))
        ax.set_xlim(-0.5, max(len(keys), 3) - 0.5)  # a panel of one or two cases keeps narrow bars
        ax.set_xticks(range(len(keys)))
        ax.set_xticklabels([f"{textwrap.fill(labels[k[1]], 16)}\n{k[2]}" + (f" {k[3]}" if multi_dtype else "")
                            for k in keys], fontsize=7)
        ax.set_title(op, fontsize=10)
        ax.tick_params(axis="y", labelsize=7)
        if col == 0:
            ax.set_ylabel("speedup over reference", fontsize=8)
        ax.grid(axis="y", which="major", lw=0.3, alpha=0.5)
    if layout["breakdown"]:
        _draw_breakdown(fig.add_subplot(grid[n_rows - 1, :]), layout["breakdown"], plt)
    handles = [plt.Rectangle((0, 0), 1, 1, color=color[p]) for p in providers]
    handles += [Line2D([], [], color="black", lw=1.8), Line2D([], [], color="black", lw=1.8, ls=":")]
    head = layout["header"]
    names = providers + LEGEND_EXTRA
    fig_h = h_px / CHART_DPI
    title_h = 0.2 * (len(head["title"]) - 1)   # the lines the title takes beyond one
    legend_h = 0.2 * (head["legend_rows"] - 1)
    fig.legend(handles, names, loc="upper center", ncol=head["ncol"], fontsize=LEGEND_PT, frameon=False,
               bbox_to_anchor=(0.5, 1 - (0.45 + title_h) / fig_h))
    fig.suptitle("\n".join(head["title"]), fontsize=TITLE_PT, y=1 - 0.12 / fig_h, va="top")
    fig.tight_layout(rect=(0, 0, 1, 1 - (0.75 + title_h + legend_h) / fig_h))
    fig.savefig(path, dpi=CHART_DPI)
    plt.close(fig)
    return None


def _draw_breakdown(ax, records: list, plt) -> None:
    """Stacked bars: each record's breakdown {layer: ms}, plus "other" (median_ms not covered)."""
    totals = {}
    for r in records:
        for name, ms in r["breakdown"].items():
            totals[name] = totals.get(name, 0.0) + ms
    named = [n for n in totals if n in sorted(totals, key=totals.get, reverse=True)[:MAX_LAYERS]]
    cmap = plt.get_cmap("tab20")
    colors = {n: cmap(i % 20) for i, n in enumerate(named)}
    labels = case_labels(sorted({r["case"] for r in records}))
    drawn = set()
    for i, r in enumerate(records):
        bottom = 0.0
        parts = [(n, r["breakdown"].get(n, 0.0)) for n in named]
        rest = sum(ms for n, ms in r["breakdown"].items() if n not in colors)
        parts.append(("other layers", rest))
        if r.get("median_ms") is not None:
            parts.append(("other (not in a layer)", max(0.0, r["median_ms"] - bottom - sum(ms for _, ms in parts))))
        for name, ms in parts:
            if ms <= 0:
                continue
            c = colors.get(name, "lightgrey" if name.startswith("other (") else "darkgrey")
            ax.bar(i, ms, 0.7, bottom=bottom, color=c, label=name if name not in drawn else None)
            drawn.add(name)
            bottom += ms
        ax.annotate(f"{bottom:.3g} ms", (i, bottom), ha="center", va="bottom", fontsize=7)
    ax.set_xticks(range(len(records)))
    ax.set_xticklabels([f"{textwrap.fill(labels[r['case']], 18)}\n{r['mode']}\n{r['provider']}" for r in records],
                       fontsize=7)
    ax.set_xlim(-0.5, max(len(records), 10) - 0.5)
    legend_rows = math.ceil(len(drawn) / 2)
    ax.set_ylim(top=ax.get_ylim()[1] * (1.1 + 0.08 * legend_rows))  # headroom: the legend clears the bars
    ax.tick_params(axis="y", labelsize=7)
    ax.set_ylabel("ms per step", fontsize=8)
    ax.set_title("models: step time by layer (stacked)", fontsize=10)
    ax.legend(fontsize=7, ncol=2, loc="upper right")


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
