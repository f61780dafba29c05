"""Where a decode step's time goes, for the ways of ``bench_variant_batches``.

Opens the ways of :mod:`benchmarks.bench_variant_batches` for K conversations (its cached
``--work`` folder: run it, or its ``--build-only``, first) with ONNX Runtime's profiling on,
runs the batch once untimed and then ``--rounds`` times, the ways alternately in a shuffled
order each round, and prints per way the milliseconds of one decode step of the K rows (for the
ways that run one row at a time, the K one-row steps together), median (p10-p90) over rounds:
each op type's nodes (the LM head apart), ONNX Runtime around its nodes (``model_run`` less its
nodes) and ``decode_steps`` outside ``model_run`` (numpy feeds, argmax, binding the inputs and
outputs). Profiling adds its own cost to each node; read the shares, not the totals.

Usage:
    python -m benchmarks.profile_decode --work DIR [--k 8] [--rounds 3] [--modes batched base]
    python -m benchmarks.profile_decode --work DIR --dry-run --k 2  # after the bench's --dry-run
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks import bench_variant_batches as bvb
from benchmarks import harness

#: Op types with less than this share of every way's step are summed as "other ops".
MIN_SHARE = 0.01


def _sessions(run: Any) -> list[Any]:
    """The sessions behind one of ``bvb.open_mode``'s runners."""
    keep = run.keep
    if not isinstance(keep, tuple):
        return [keep]  # batched, base: one session
    _, runs = keep
    return list({id(s): s for s, _ in runs}.values())


def step_profile(path: str, steps: int) -> list[dict[str, float]]:
    """Per generation of ``steps`` runs: ms of its decode runs (all but the first) by category.

    Categories: op types (``MatMul (lm_head)`` apart), ``model_run`` and ``nodes``.
    """
    events = json.loads(Path(path).read_text())
    runs = [e for e in events if e.get("name") == "model_run"]
    starts = np.array([e["ts"] for e in runs])
    per_run: list[dict[str, float]] = [defaultdict(float) for _ in runs]
    for e in events:
        if e.get("cat") != "Node" or not e.get("name", "").endswith("_kernel_time"):
            continue
        i = int(np.searchsorted(starts, e["ts"], side="right")) - 1
        if i < 0 or e["ts"] > runs[i]["ts"] + runs[i]["dur"]:
            continue
        op = e["args"]["op_name"] + (" (lm_head)" if "lm_head" in e["name"] else "")
        per_run[i][op] += e["dur"] / 1e3
        per_run[i]["nodes"] += e["dur"] / 1e3
    for run, totals in zip(runs, per_run, strict=True):
        totals["model_run"] = run["dur"] / 1e3
    generations = []
    for g in range(len(runs) // steps):
        out: dict[str, float] = defaultdict(float)
        for totals in per_run[g * steps + 1 : (g + 1) * steps]:
            for key, ms in totals.items():
                out[key] += ms
        generations.append(out)
    return generations


def profile(args: argparse.Namespace) -> dict[str, list[dict[str, float]]]:
    """Per way, per timed round: ms of one decode step of the K rows by category."""
    sizes = bvb.parse_args(["--ks", str(args.k), *(["--dry-run"] if args.dry_run else [])])
    batched = args.work / "batched" / f"k{args.k}.onnx"
    if not batched.is_file():
        raise SystemExit(f"{batched} is missing: run bench_variant_batches --build-only first")
    folder = Path(tempfile.mkdtemp(prefix="profile_decode-"))
    request = {
        "k": args.k,
        "decode": sizes.decode,
        "work": str(args.work),
        "prompts": bvb.prompts(sizes, args.k),
        "batched": str(batched),
    }
    runners = {}
    for mode in args.modes:
        runners[mode] = bvb.open_mode(mode, {**request, "profile": str(folder / mode)})
    decode_s: dict[str, list[float]] = defaultdict(list)
    rng = np.random.default_rng(args.k)
    for _ in range(1 + args.rounds):
        for mode in rng.permutation(list(runners)):
            decode_s[mode].append(runners[mode](None)[1])  # round 0: untimed
    out: dict[str, list[dict[str, float]]] = {}
    for mode, run in runners.items():
        per_session = [step_profile(s.end_profiling(), 1 + sizes.decode) for s in _sessions(run)]
        rounds = []
        for r in range(1, 1 + args.rounds):
            total: dict[str, float] = defaultdict(float)
            for session in per_session:  # each session runs its rows_per_round / len generations
                n = len(session) // (1 + args.rounds)
                for g in session[r * n : (r + 1) * n]:
                    for key, ms in g.items():
                        total[key] += ms / sizes.decode
            total["outside model_run"] = decode_s[mode][r] * 1e3 / sizes.decode - total["model_run"]
            rounds.append(dict(total))
        out[mode] = rounds
    return out


def to_markdown(results: dict[str, list[dict[str, float]]], k: int) -> list[str]:
    """One table: categories by way, ms per decode step of the K rows, median (p10-p90)."""
    medians = {
        m: {key: float(np.median([r[key] for r in rs])) for key in rs[0]}
        for m, rs in results.items()
    }
    ops = sorted(
        {
            key
            for m in medians.values()
            for key in m
            if key not in ("model_run", "nodes", "outside model_run")
        },
        key=lambda op: -max(m.get(op, 0.0) for m in medians.values()),
    )
    shown = [
        op
        for op in ops
        if any(m.get(op, 0.0) >= MIN_SHARE * m["model_run"] for m in medians.values())
    ]
    for rs in results.values():
        for r in rs:
            r["other ops"] = sum(v for op, v in r.items() if op in ops and op not in shown)
            r["ORT around the nodes"] = r["model_run"] - r["nodes"]
            r["step"] = r["model_run"] + r["outside model_run"]
    keys = [*shown, "other ops", "ORT around the nodes", "outside model_run", "step"]

    def cell(mode: str, key: str) -> str:
        values = [r.get(key, 0.0) for r in results[mode]]
        p10, median, p90 = np.percentile(values, [10, 50, 90])
        return f"{median:.2f} ({p10:.2f}–{p90:.2f})"

    header = ["ms per decode step of the K rows", *(bvb.LABELS[m] for m in results)]
    rows = [[key, *(cell(m, key) for m in results)] for key in keys]
    return [
        f"K = {k}, {len(next(iter(results.values())))} rounds.",
        "",
        *harness.table(header, rows, "l" + "r" * len(results)),
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, required=True, help="bench_variant_batches' --work")
    parser.add_argument("--k", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--modes", nargs="+", default=list(bvb.MODES), choices=bvb.MODES)
    parser.add_argument("--dry-run", action="store_true", help="the sizes of the bench's dry run")
    args = parser.parse_args(argv)
    print("\n".join(to_markdown(profile(args), args.k)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
