"""`python -m vidops.bench`: run the registered benchmarks and report.

    python -m vidops.bench --quick                      # small CPU shapes, ~3-5 min on 2 cores
    python -m vidops.bench                              # full shapes on CUDA (CPU: see below)
    python -m vidops.bench --ops motion_band_pass --modes fwd --providers 'vidops_*,temporal_first'
    python -m vidops.bench --list                       # the cases and providers, nothing run

Prints a table per case (median time, p20..p80, speedup over the reference, GB/s, % of the copy
bandwidth measured in the same run, TFLOP/s, peak memory, error vs the reference, each target
next to its measured value and whether it is met), then writes JSON, CSV and a PNG chart under
--out (see vidops/bench/report.py for the files and columns).

Shapes: on CUDA the full shapes; --quick the small ones. On CPU the small (N=2) shapes are used
with or without --quick: they are the shapes the CPU targets are stated on, and the full shapes
take minutes per case on 2 cores; without --quick CPU runs get more repetitions. --smoke runs
tiny shapes, one repetition and no torch.compile providers (a few seconds: the harness's own
tests, and a check of which providers run).

The bench refuses to run when an op it would time has no vidops kernel that can run (e.g. vidops
imported from a source checkout without a built extension): the message says why and how to fix
it; --allow-no-vidops times those ops' references alone. Which vidops was imported and where its extension came from is
printed at the start and stored in the run header.

Defaults: --device cuda when available, else cpu; --dtype bfloat16 on CUDA, float32 on CPU;
torch's own thread count unless --threads. The reference provider always runs (speedups are
relative to it). Options are listed by --help.
"""
from __future__ import annotations

import argparse
import fnmatch
import os
import sys
import time

import torch

from .. import _ext
from . import environment, registry, report, runner, timing


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m vidops.bench",
                                description="vidops micro-benchmarks: time, bandwidth, memory, targets.")
    p.add_argument("--quick", action="store_true", help="small shapes and short timing (CPU shapes)")
    p.add_argument("--smoke", action="store_true",
                   help="tiny shapes, one repetition, no torch.compile providers: a few seconds, to check the "
                        "harness and which providers run (its numbers mean nothing)")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (default)")
    p.add_argument("--ops", default=None,
                   help=f"comma-separated ops (default every op: "
                        f"{','.join(m for m in registry.CASE_MODULES if m not in registry.OPT_IN)}; "
                        f"whole models only when named: {','.join(registry.OPT_IN)})")
    p.add_argument("--providers", default=None,
                   help="comma-separated provider names or fnmatch patterns, e.g. 'vidops_*,temporal_first' "
                        "(reference always runs)")
    p.add_argument("--modes", default="fwd,fwd+bwd", help="comma-separated: fwd, fwd+bwd (default both)")
    p.add_argument("--dtype", default=None,
                   help="comma-separated dtypes (default bfloat16 on CUDA, float32 on CPU)")
    p.add_argument("--cases", default=None, help="only cases whose name contains one of these comma-separated strings")
    p.add_argument("--reps", type=int, default=None,
                   help="timed repetitions per provider (default: as many as fit a time budget)")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    p.add_argument("--out", default=None, help="output folder (default bench/results in the checkout)")
    p.add_argument("--no-chart", action="store_true", help="skip the PNG chart")
    p.add_argument("--no-compile", action="store_true", help="skip the torch.compile providers")
    p.add_argument("--no-memory", action="store_true", help="skip the peak-memory measurement")
    p.add_argument("--no-write", action="store_true", help="print the table only; write no files")
    p.add_argument("--label", default="", help="free text stored in the run header (e.g. where the "
                   "extension was built from, or what else ran on the machine)")
    p.add_argument("--list", action="store_true", help="list cases and providers, run nothing")
    p.add_argument("--allow-no-vidops", action="store_true",
                   help="run even when no vidops kernel can run here (only the references are timed); "
                        "without it the bench stops with the reason and the fix")
    return p.parse_args(argv)


def _split(s):
    return [x.strip() for x in s.split(",") if x.strip()] if s else None


def default_out_dir() -> str:
    """bench/results next to the vidops package when it runs from a checkout, else ./bench/results."""
    import vidops

    root = os.path.dirname(os.path.dirname(os.path.abspath(vidops.__file__)))
    if os.path.isdir(os.path.join(root, "bench")):
        return os.path.join(root, "bench", "results")
    return os.path.join(os.getcwd(), "bench", "results")


def no_vidops_message(ops: list, device: torch.device) -> str:
    """Why no vidops kernel can run for these ops, and the fix."""
    from vidops import _dispatch

    lines = [f"vidops.bench: no vidops kernel can run on {device} here for {', '.join(ops)}, so the bench "
             f"would time only their reference implementations.", f"  {_ext.describe_origin()}."]
    if not _ext.EXTENSION_LOADED:
        lines.append(f"  {_ext.EXTENSION_ERROR}.")
    else:
        try:
            reasons = _dispatch.reasons(ops[0], device)
        except Exception:  # a bench op that is not a dispatched op: nothing to add
            reasons = {}
        for name, why in reasons.items():
            if name != "reference":
                lines.append(f"  {ops[0]} {name}: {why or 'available, but left out of the bench on this device'}")
    if not _ext.EXTENSION_LOADED and not _ext.IS_SOURCE_TREE:  # (a checkout's error states its fix)
        lines.append(f"  Fix: {_ext.REBUILD_HINT}.")
    return "\n".join(lines)


def policy_for(device: torch.device, args) -> timing.Policy:
    if args.smoke:
        return timing.Policy(reps=args.reps or 1)
    if device.type == "cuda":
        return (timing.Policy(args.reps, budget_s=0.3, min_reps=10, max_reps=200, max_s=10) if args.quick
                else timing.Policy(args.reps, budget_s=1.0, min_reps=30, max_reps=500, max_s=30))
    return (timing.Policy(args.reps, budget_s=1.0, min_reps=3, max_reps=50, max_s=8) if args.quick
            else timing.Policy(args.reps, budget_s=3.0, min_reps=5, max_reps=100, max_s=30))


def main(argv=None) -> dict:
    """Run the harness; return the result dict (header, config, copy_bandwidth, records, files)."""
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.device == "auto":
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    else:
        device = torch.device(args.device)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dtypes = tuple(_split(args.dtype) or (["bfloat16"] if device.type == "cuda" else ["float32"]))
    for d in dtypes:
        registry.dtype_of(d)
    modes = tuple(_split(args.modes) or registry.MODES)
    for m in modes:
        if m not in registry.MODES:
            sys.exit(f"vidops.bench: unknown mode {m!r} (known: {', '.join(registry.MODES)})")
    shapes_quick = args.quick or device.type == "cpu"
    options = registry.CaseOptions(dtypes=dtypes, modes=modes, smoke=args.smoke)
    try:
        cases = registry.load_cases(_split(args.ops), device, shapes_quick, options)
    except ValueError as exc:
        sys.exit(str(exc))
    if args.cases:
        wanted = _split(args.cases)
        cases = [c for c in cases if any(w in c.name for w in wanted)]
    cfg = runner.RunConfig(device=device, providers=_split(args.providers),
                           compile=not (args.no_compile or args.smoke),
                           memory=not args.no_memory, policy=policy_for(device, args))
    if cfg.providers:
        known = sorted({n for c in cases for n in c.providers})
        for pattern in cfg.providers:
            if not any(fnmatch.fnmatchcase(n, pattern) for n in known):
                print(f"vidops.bench: --providers {pattern!r} matches none of: {', '.join(known)}",
                      file=sys.stderr)
    if args.list:
        for c in cases:
            print(f"{c.op} | {c.name} | {c.mode} | {c.dtype}: {', '.join(runner.select_providers(c, cfg))}")
        return {"cases": cases}

    bare = [op for op in dict.fromkeys(c.op for c in cases)
            if not any(n.startswith("vidops_") for c in cases if c.op == op for n in c.providers)]
    if bare:
        why = no_vidops_message(bare, device)
        if not args.allow_no_vidops:
            sys.exit(why + "\nTo time the reference implementations of these ops alone, pass --allow-no-vidops.")
        print(f"vidops.bench: WARNING (--allow-no-vidops): {why}", file=sys.stderr, flush=True)
    elif not _ext.EXTENSION_LOADED:
        print(f"vidops.bench: WARNING: the C++ extension is not loaded, so no vidops C++ kernel is timed: "
              f"{_ext.EXTENSION_ERROR}", file=sys.stderr, flush=True)

    header = environment.header(device)
    header["label"] = args.label
    print(f"vidops.bench: {len(cases)} cases on {header['device_name']} ({device}), "
          f"{header['threads']} threads, dtypes {','.join(dtypes)}", file=sys.stderr, flush=True)
    print(f"vidops.bench: {_ext.describe_origin()}", file=sys.stderr, flush=True)
    t0 = time.perf_counter()
    copy = timing.copy_bandwidth(device, reps=5 if args.smoke else 20)
    print(f"copy bandwidth: {copy['gbps']:.1f} GB/s (read+write)", file=sys.stderr, flush=True)
    records = runner.run(cases, cfg, copy["gbps"])
    config = {"argv": list(sys.argv[1:] if argv is None else argv), "device": str(device),
              "quick": args.quick, "smoke": args.smoke, "shapes": "smoke" if args.smoke else
              ("quick" if shapes_quick else "full"), "dtypes": list(dtypes), "modes": list(modes),
              "providers": cfg.providers, "compile": cfg.compile, "memory": cfg.memory,
              "policy": vars(cfg.policy), "allow_no_vidops": args.allow_no_vidops,
              "ops_without_vidops": bare, "wall_s": round(time.perf_counter() - t0, 1)}
    result = {"header": header, "config": config, "copy_bandwidth": copy, "records": records}
    print(report.table(result))
    if not args.no_write:
        paths = report.write_all(result, args.out or default_out_dir(), chart=not args.no_chart)
        print("\nwrote " + ", ".join(paths.values()))
    return result


if __name__ == "__main__":
    main()
