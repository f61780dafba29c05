"""IclMatMul against ONNX Runtime's prepacked MatMul on the CPU, over a grid of shapes.

The grid: view (transposed, plain) x M x (K, N) x intra-op threads x the library's instruction
set (AVX-512, and AVX2 through ``ICL_CPU_ISA=avx2``, each in its own process since the library
detects it once), plus a row of 16-bit W read by float32 A at M = 1 (a cast view).

- transposed: ``IclMatMul(A, W, transpose=1)`` on W[N, K] (the tied LM head);
- plain: ``IclMatMul(A, W)`` on W[K, N];
- the bar: ``MatMul(A, W^T)`` with W^T[K, N] a float32 initializer, which MLAS prepacks.

For each M the sessions run in turn (ORT, ICL transposed, ICL plain, ...) in one process on
the same weights, so that load from other processes hits all alike; each ICL run's time is
divided by the ORT run next to it and the table gives the median and p10-p90 of those
per-run ratios (ICL time / ORT time: at most 1.00 is the goal). ``--baseline-library``
times another build of the op library in the same rounds (before/after a change);
``--unprepacked`` times ORT's MatMul with W as a graph input as well (no prepacking, what a
MatMul kernel invoked from a custom op would see).

Two runs of identical code move cells by several percent (where W lands in memory, load), so
two flags tell a cell really above 1.00 from one within noise (``benchmarks/noise.py``):
``--aa`` times a second ORT session on its own copy of W^T in the same rounds (the A/A
control: ORT2 time / ORT time is what identical kernels read apart in the cell);
``--placements N`` re-creates every session N times per (K, N, threads) on freshly allocated
weights, in N passes over the grid (so a cell's placements are minutes apart, and sample the
load as well), and pools the rounds, the cell's time and run counts split evenly over the
placements. Either adds per cell a 90% interval of the median, the per-placement medians and
a verdict (meets, within noise, above) to the JSON and the Markdown.

The avx2 grid's bar is what an AVX2-only machine runs: ORT from a copy whose MLAS stops at
its AVX2/FMA3 kernels (``benchmarks/mlas_avx2.py``; ``--avx2-bar native`` keeps MLAS's own
choice, AVX-512 on an AVX-512 CPU).

Writes ``benchmarks/results/matmul_cpu.md``, ``.json`` and ``.png`` (a heat map).

Usage:
    python -m benchmarks.bench_matmul           # the whole grid (about 10-15 minutes)
    python -m benchmarks.bench_matmul --quick   # a subset (a few minutes)
    python -m benchmarks.bench_matmul --unprepacked --aa --placements 3 --cell-seconds 3 \
        --min-runs 25                           # with verdicts (about 1.5x the plain grid)
"""

from __future__ import annotations

import argparse
import datetime
import gc
import json
import math
import os
import platform
import shlex
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks import harness, mlas_avx2, noise
from benchmarks.harness import cpu_flags, cpu_name

ISAS = ("avx512", "avx2")
VIEWS = ("transposed", "plain")
GRID_M = (1, 2, 4, 8, 16, 32, 64, 128, 256)
GRID_KN = ((768, 768), (768, 3072), (3072, 768), (768, 32000))
QUICK_M = (1, 4, 16, 64, 256)
QUICK_KN = ((768, 3072), (768, 32000))
GOAL = 1.00  # ICL time / ORT time, float32 W
GOAL_16BIT = 0.56  # ICL time with 16-bit W / ORT float32 time, M = 1
CAPPED_ENV = "ICL_BENCH_CAPPED_ORT"  # tells a worker which onnxruntime copy it must have imported


@dataclass
class Cell:
    """One ICL session against ORT at one shape: per-run time ratios and medians."""

    isa: str
    threads: int
    k: int
    n: int
    m: int
    view: str
    w_dtype: str
    ort_ms: float
    icl_ms: float
    ratio: float  # median of ICL time / ORT time, run by run
    p10: float
    p90: float
    runs: int
    min_ratio: float  # lowest ICL time / lowest ORT time (robust to one-sided interference)
    baseline_ms: float | None = None
    baseline_ratio: float | None = None  # median of ICL time / baseline time, run by run
    baseline_p10: float | None = None  # p10-p90 of those per-run ratios
    baseline_p90: float | None = None
    baseline_min_ratio: float | None = None  # lowest ICL time / lowest baseline time
    unprepacked_ms: float | None = None  # ORT MatMul with W a graph input
    unprepacked_min_ratio: float | None = None  # lowest ICL time / lowest unprepacked ORT time
    ort_kernels: str = "native"  # MLAS's own choice, or "avx2" (a capped copy, mlas_avx2.py)
    # With --aa or --placements above 1 (None in records measured before, or without them):
    ratio_low: float | None = None  # 90% interval of the median ICL/ORT (noise.median_interval)
    ratio_high: float | None = None
    placements: int | None = None  # weight placements the rounds are pooled over
    placement_ratios: list[float] | None = None  # median ICL/ORT of each placement
    aa_ratio: float | None = None  # A/A: median of ORT2 time / ORT time, run by run (--aa)
    aa_p10: float | None = None  # p10-p90 of those per-run ratios
    aa_p90: float | None = None
    aa_min_ratio: float | None = None  # lowest ORT2 time / lowest ORT time
    aa_low: float | None = None  # 90% interval of the A/A median
    aa_high: float | None = None
    placement_aa_ratios: list[float] | None = None  # median ORT2/ORT of each placement
    verdict: str | None = None  # noise.verdict: meets, within noise, above


def ort_model(w_t: np.ndarray, as_input: bool) -> bytes:
    """MatMul(A, WT) with WT[K, N] an initializer, or a graph input when ``as_input``."""
    from onnx import TensorProto, helper, numpy_helper

    k, n = w_t.shape
    inputs = [helper.make_tensor_value_info("A", TensorProto.FLOAT, ["M", k])]
    if as_input:
        inputs.append(helper.make_tensor_value_info("WT", TensorProto.FLOAT, [k, n]))
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["A", "WT"], ["Y"])],
        "ort_matmul",
        inputs,
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, ["M", n])],
        initializer=[] if as_input else [numpy_helper.from_array(w_t, "WT")],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]).SerializeToString()


def icl_model(w: np.ndarray, transposed: bool) -> bytes:
    """IclMatMul(A, W) with W an initializer, [N, K] when ``transposed`` else [K, N]."""
    from onnx import TensorProto, helper, numpy_helper

    k, n = (w.shape[1], w.shape[0]) if transposed else w.shape
    graph = helper.make_graph(
        [
            helper.make_node(
                "IclMatMul", ["A", "W"], ["Y"], domain="ai.icl", transpose=int(transposed)
            )
        ],
        "icl_matmul",
        [helper.make_tensor_value_info("A", TensorProto.FLOAT, ["M", k])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, ["M", n])],
        initializer=[numpy_helper.from_array(w, "W")],
    )
    opsets = [helper.make_opsetid("", 18), helper.make_opsetid("ai.icl", 1)]
    return helper.make_model(graph, opset_imports=opsets).SerializeToString()


def session(model: bytes, threads: int, library: Path | None = None):
    """A CPU session with `threads` intra-op threads, spinning off.

    With several sessions on two cores, one session's spinning idle workers slow the next
    session's run (ratios swinging from 0.2 to 2 between identical runs), hence no spinning.
    `library` registers that build of the op library instead of the installed one.
    """
    import onnxruntime as ort

    import icl_onnx

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if library is None:
        return icl_onnx.create_session(model, options=options)
    options.register_custom_ops_library(str(library))
    return ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])


def interleave(
    runners: list, budget_s: float, min_runs: int, max_runs: int, seed: int = 0
) -> np.ndarray:
    """Calls the runners in turn (one round = each once) and returns seconds [rounds, runner].

    The number of rounds fills about `budget_s`, within [min_runs, max_runs]. Each round runs
    the runners in a new random order (seeded by `seed`), so that no session always follows
    the same one: with the order only rotated each session had the same predecessor in every
    round but one, and the session run right after ORT's read slower than identical sessions
    elsewhere in the round (in process, one thread, thread CPU time, K=768, N=32000, M=1,
    four copies of one library's session: 0.94 of ORT right after it, 0.91-0.93 elsewhere).
    """
    for run in runners:  # warm-up, and a first timing for the round count
        run()
    start = time.perf_counter()
    for run in runners:
        run()
    per_round = time.perf_counter() - start
    rounds = int(min(max_runs, max(min_runs, budget_s / max(per_round, 1e-6))))
    times = np.zeros((rounds, len(runners)))
    order_rng = np.random.default_rng(seed)
    for i in range(rounds):
        for r in order_rng.permutation(len(runners)):
            start = time.perf_counter()
            runners[r]()
            times[i, r] = time.perf_counter() - start
    return times


@dataclass
class Placement:
    """One set of sessions on freshly allocated weights: one placement of W in memory.

    Every session copies its initializer into an allocation of its own when it is created, so
    re-creating the sessions (after freeing the last set) lands the weights elsewhere.
    """

    w_t: np.ndarray  # W^T[K, N], the unprepacked session's input
    ort: Any  # the bar: MatMul with W^T prepacked
    ort_in: Any  # MatMul with W^T a graph input (--unprepacked), or None
    ort2: Any  # the A/A control: the bar again, on its own copy of W^T (--aa), or None
    icl: dict  # (view, dtype, library) -> IclMatMul session

    @classmethod
    def create(cls, args: argparse.Namespace, w: np.ndarray, threads: int) -> Placement:
        """Sessions on W[N, K]: ORT's, and IclMatMul's for each library (each copies it)."""
        w_t = np.ascontiguousarray(w.T)
        stored = {"transposed": w, "plain": w_t}
        return cls(
            w_t=w_t,
            ort=session(ort_model(w_t, as_input=False), threads),
            ort_in=session(ort_model(w_t, as_input=True), threads) if args.unprepacked else None,
            ort2=session(ort_model(w_t.copy(), as_input=False), threads) if args.aa else None,
            icl={
                (view, dtype, lib): session(
                    icl_model(stored[view].astype(dtype), view == "transposed"), threads, lib
                )
                for view in VIEWS
                for dtype in ("float32", args.half)
                for lib in libraries(args)
            },
        )


def libraries(args: argparse.Namespace) -> list[Path | None]:
    """The op library builds timed: the installed one (None), then the baseline, if any."""
    return [None] + ([args.baseline_library] if args.baseline_library else [])


def time_placement(
    args: argparse.Namespace, pl: Placement, a: np.ndarray, keys: list[tuple[str, str]]
) -> tuple[np.ndarray, dict]:
    """Checks every ICL session against ORT at A, then times one placement's rounds.

    Returns seconds [rounds, runner] and the column of each runner: "ort" (always 0),
    "unprepacked", "aa", and (view, dtype, library) for the ICL sessions. The cell's
    seconds and run counts are split evenly over the placements.
    """
    m, k = a.shape
    expected = pl.ort.run(None, {"A": a})[0]
    for key in keys:
        for lib in libraries(args):
            got = pl.icl[(*key, lib)].run(None, {"A": a})[0]
            tol = 1e-3 if key[1] == "float32" else 0.1
            if not np.allclose(got, expected, rtol=tol, atol=tol * np.sqrt(k)):
                n = expected.shape[1]
                raise SystemExit(f"IclMatMul disagrees with MatMul: {key} M={m} K={k} N={n}")
    feeds = {"A": a}
    runners = [lambda f=feeds: pl.ort.run(None, f)]
    columns: dict = {"ort": 0}
    if pl.ort_in is not None:
        columns["unprepacked"] = len(runners)
        runners.append(lambda f={"A": a, "WT": pl.w_t}: pl.ort_in.run(None, f))
    if pl.ort2 is not None:
        columns["aa"] = len(runners)
        runners.append(lambda f=feeds: pl.ort2.run(None, f))
    for key in keys:
        for lib in libraries(args):
            columns[(*key, lib)] = len(runners)
            runners.append(lambda s=pl.icl[(*key, lib)], f=feeds: s.run(None, f))
    p = args.placements
    times = interleave(
        runners, args.cell_seconds / p, math.ceil(args.min_runs / p), math.ceil(args.max_runs / p)
    )
    return times, columns


def cell_verdict(cell: Cell) -> str | None:
    """The cell's :func:`noise.verdict`, or None for a record without its interval."""
    if cell.ratio_low is None:
        return None
    goal = GOAL if cell.w_dtype == "float32" else GOAL_16BIT
    return noise.verdict(cell.ratio, cell.ratio_low, goal, cell.aa_low, cell.aa_high)


def placement_interval(placed: list[np.ndarray], column: int) -> tuple[float, float, list]:
    """The 90% interval of the median ratio of `column`'s time to ORT's (column 0), pooled
    over the placements (:func:`noise.median_interval`), and each placement's median."""
    groups = [t[:, column] / t[:, 0] for t in placed]
    low, high = noise.median_interval(groups)
    return low, high, [float(np.median(g)) for g in groups]


def make_cell(
    args: argparse.Namespace,
    where: tuple[str, int, int, int, int],
    key: tuple[str, str],
    placed: list[np.ndarray],
    columns: dict,
) -> Cell:
    """One cell from the seconds of every placement's rounds (pooled; see `time_placement`)."""
    isa, threads, k, n, m = where
    view, dtype = key
    times = np.vstack(placed)
    ort_t = times[:, 0]
    icl_t = times[:, columns[view, dtype, None]]
    ratio = icl_t / ort_t
    cell = Cell(
        isa, threads, k, n, m, view, dtype,
        ort_ms=float(np.median(ort_t) * 1e3),
        icl_ms=float(np.median(icl_t) * 1e3),
        ratio=float(np.median(ratio)),
        p10=float(np.percentile(ratio, 10)),
        p90=float(np.percentile(ratio, 90)),
        runs=len(ratio),
        min_ratio=float(icl_t.min() / ort_t.min()),
    )  # fmt: skip
    if args.baseline_library:
        base_t = times[:, columns[view, dtype, args.baseline_library]]
        cell.baseline_ms = float(np.median(base_t) * 1e3)
        cell.baseline_ratio = float(np.median(icl_t / base_t))
        cell.baseline_p10 = float(np.percentile(icl_t / base_t, 10))
        cell.baseline_p90 = float(np.percentile(icl_t / base_t, 90))
        cell.baseline_min_ratio = float(icl_t.min() / base_t.min())
    if "unprepacked" in columns:
        cell.unprepacked_ms = float(np.median(times[:, columns["unprepacked"]]) * 1e3)
        cell.unprepacked_min_ratio = float(icl_t.min() / times[:, columns["unprepacked"]].min())
    if args.aa or args.placements > 1:
        cell.ratio_low, cell.ratio_high, cell.placement_ratios = placement_interval(
            placed, columns[view, dtype, None]
        )
        cell.placements = len(placed)
    if "aa" in columns:
        aa_t = times[:, columns["aa"]]
        aa = aa_t / ort_t
        cell.aa_ratio = float(np.median(aa))
        cell.aa_p10 = float(np.percentile(aa, 10))
        cell.aa_p90 = float(np.percentile(aa, 90))
        cell.aa_min_ratio = float(aa_t.min() / ort_t.min())
        cell.aa_low, cell.aa_high, cell.placement_aa_ratios = placement_interval(
            placed, columns["aa"]
        )
    cell.verdict = cell_verdict(cell)
    return cell


def describe_cell(cell: Cell) -> str:
    """One line of progress for stderr."""
    c = cell
    text = (
        f"{c.isa:6s} t={c.threads} K={c.k:5d} N={c.n:5d} M={c.m:4d} {c.view:10s} {c.w_dtype:8s} "
        f"ORT {c.ort_ms:8.3f} ICL {c.icl_ms:8.3f} ms  ICL/ORT {c.ratio:.2f} "
        f"({c.p10:.2f}-{c.p90:.2f}) min {c.min_ratio:.2f}"
    )
    if c.baseline_ratio:
        text += f"  ICL/base {c.baseline_ratio:.2f} ({c.baseline_p10:.2f}-{c.baseline_p90:.2f})"
    if c.unprepacked_ms is not None:
        text += f"  ORT unprepacked {c.unprepacked_ms:.3f}"
    if c.ratio_low is not None:
        text += f"  [{c.ratio_low:.2f}-{c.ratio_high:.2f}]"
    if c.placement_ratios and len(c.placement_ratios) > 1:
        text += " placements " + "/".join(f"{r:.2f}" for r in c.placement_ratios)
    if c.aa_ratio is not None:
        text += f"  A/A {c.aa_ratio:.2f} [{c.aa_low:.2f}-{c.aa_high:.2f}]"
        if len(c.placement_aa_ratios) > 1:
            text += " (" + "/".join(f"{r:.2f}" for r in c.placement_aa_ratios) + ")"
    if c.verdict:
        text += f"  {c.verdict}"
    return text


def cell_keys(args: argparse.Namespace) -> dict[int, list[tuple[str, str]]]:
    """Each M's (view, dtype) cells: both views in float32, and the 16-bit W at M = 1."""
    dtypes = {m: ["float32"] + ([args.half] if m == 1 else []) for m in args.m}
    return {m: [(view, dtype) for view in VIEWS for dtype in dtypes[m]] for m in args.m}


def shape_inputs(args: argparse.Namespace, k: int, n: int) -> tuple[np.ndarray, dict]:
    """W[N, K] and A for each M; the same in every placement."""
    rng = np.random.default_rng(k * 100003 + n)
    w = rng.standard_normal((n, k), dtype=np.float32)  # W[N, K]
    feeds = {m: rng.standard_normal((m, k), dtype=np.float32) for m in args.m}
    return w, feeds


def measure_placement(args: argparse.Namespace, threads: int, k: int, n: int) -> dict:
    """One placement of one (K, N) at one thread count: M -> (seconds, columns) of its rounds.

    The sessions and their weights are freed on return, before the next placement is made.
    """
    w, feeds = shape_inputs(args, k, n)
    keys = cell_keys(args)
    pl = Placement.create(args, w, threads)
    timed = {m: time_placement(args, pl, feeds[m], keys[m]) for m in args.m}
    del pl
    gc.collect()
    return timed


def shape_cells(
    args: argparse.Namespace, isa: str, threads: int, k: int, n: int, placed: list[dict]
) -> list[Cell]:
    """All cells of one (K, N) at one thread count from its placements (`measure_placement`)."""
    keys = cell_keys(args)
    cells = []
    for m in args.m:
        times = [timed[m][0] for timed in placed]
        columns = placed[0][m][1]  # the same in every placement
        for key in keys[m]:
            cell = make_cell(args, (isa, threads, k, n, m), key, times, columns)
            cells.append(cell)
            print(describe_cell(cell), file=sys.stderr, flush=True)
    return cells


def worker(args: argparse.Namespace) -> int:
    """Measures every shape and thread count for the ISA this process was started with.

    With ``--placements N`` the grid is measured in N passes, one placement of every shape
    per pass: a cell's placements are then a pass apart in time as well as in memory, so
    that their spread (and the cell's interval) also holds the load of other processes
    changing over minutes. Measured back to back (all placements of a shape, then the next
    shape; load 3-4 on 2 cores), the three placements of a cell agreed within a run while
    the cell moved by up to 0.2 between two runs, and 4 of 72 verdicts flipped between
    meets and above (the raw ratio's side of 1.00: 14 of 72). Measured in passes (two runs,
    load 3.7-5.2), 1 of 72 flipped between meets and above (raw: 17 of 72); the intervals
    were wider (median width 0.16 and 0.11 against 0.11 and 0.09), more cells read
    within noise.
    """
    check_capped_ort()
    shapes = [(k, n, threads) for k, n in args.kn for threads in args.threads]
    placed: dict[tuple[int, int, int], list[dict]] = {shape: [] for shape in shapes}
    cells = []
    for p in range(args.placements):
        for k, n, threads in shapes:
            placed[k, n, threads].append(measure_placement(args, threads, k, n))
            if p + 1 < args.placements:
                note = f"placement {p + 1} of {args.placements} timed"
                print(f"{args.worker:6s} t={threads} K={k:5d} N={n:5d} {note}", file=sys.stderr)
            else:
                cells += shape_cells(args, args.worker, threads, k, n, placed.pop((k, n, threads)))
    for cell in cells:
        cell.ort_kernels = "avx2" if os.environ.get(CAPPED_ENV) else "native"
    args.worker_output.write_text(json.dumps([asdict(c) for c in cells]))
    return 0


def grid_table(cells: list[Cell], isa: str, threads: int, ms: list[int]) -> list[str]:
    """One Markdown table: a row per (view, K, N), a column per M.

    A cell is the median (p10-p90) of the per-run ratios, then the ratio of the lowest times,
    then its mark (:func:`goal_mark`).
    """
    lines = [
        f"### {isa}, {threads} thread{'s' if threads > 1 else ''}",
        "",
        "| view | K x N | " + " | ".join(f"M={m}" for m in ms) + " |",
        "|---|---|" + "---:|" * len(ms),
    ]
    by_key = {(c.view, c.k, c.n, c.m): c for c in cells if c.w_dtype == "float32"}
    for view in VIEWS:
        for k, n in sorted({(c.k, c.n) for c in cells}):
            row = [f"{view}", f"{k} x {n}"]
            for m in ms:
                c = by_key.get((view, k, n, m))
                row.append(
                    ""
                    if c is None
                    else f"{c.ratio:.2f} ({c.p10:.2f}-{c.p90:.2f}) min {c.min_ratio:.2f}"
                    + goal_mark(c)
                )
            lines.append("| " + " | ".join(row) + " |")
    return lines + [""]


def goal_mark(cell: Cell) -> str:
    """A float32 cell's mark: " **>**" above the goal (by its verdict where it has one), " ~"
    above 1.00 but within noise, else nothing."""
    if cell.verdict is None:
        return "" if cell.ratio <= GOAL else " **>**"
    return {noise.ABOVE: " **>**", noise.WITHIN_NOISE: " ~"}.get(cell.verdict, "")


def spread(values: list[float] | None) -> float | None:
    """Highest minus lowest of per-placement medians; None with fewer than two."""
    return max(values) - min(values) if values and len(values) > 1 else None


def verdict_note(cells: list[Cell]) -> list[str]:
    """The bullets saying how the verdicts were reached; none for a record without them."""
    judged = [c for c in cells if c.verdict is not None]
    if not judged:
        return []
    placements = max(c.placements or 1 for c in judged)
    has_aa = any(c.aa_ratio is not None for c in judged)
    lines = []
    if placements > 1:
        lines.append(
            "- Placements: for each (K, N, threads) every session of the cells (ORT, ICL and "
            f"each other one timed) was created {placements} times, each time on freshly allocated "
            "weights (the previous set freed first), in passes over the grid (one placement of "
            "every shape per pass, so a cell's placements are also a pass apart in time), and "
            "the cell's rounds were split evenly over them (time and run counts); medians and "
            "p10-p90 are over the pooled rounds. The per-placement medians show how much where "
            "W lands in memory, and the load of the moment, move a cell."
        )
    if has_aa:
        lines.append(
            "- A/A control (`--aa`): a second ORT session (ORT2) on its own copy of W^T, timed "
            "in the same rounds; ORT2 time / ORT time, run by run, is what identical kernels "
            "read apart in that cell."
        )
    lines.append(
        "- Verdict per cell (`noise.verdict`): **meets**: median ICL/ORT at most the goal. "
        "**above** (marked **>**): the median is above the goal and neither noise source "
        "explains it: the low end of its 90% interval is above the goal"
        + (
            ", and the median is above goal x (1 + d), d = the largest distance from 1.00 of "
            "the A/A median's 90% interval (what identical kernels read apart in this cell)"
            if has_aa
            else " (no A/A control in this run)"
        )
        + ". **within noise** (marked ~): above the goal otherwise. The 90% intervals are "
        "bootstrap percentiles of the median of the pooled per-run ratios (2000 resamples "
        "drawing placements, then rounds within each, so that placements that disagree widen "
        "them)."
    )
    return lines


def by_isa_threads_view(cells: list[Cell], args: argparse.Namespace):
    """Yields (isa, threads, view, the cells of that group) for each group that has cells."""
    for isa in args.isa:
        for threads in args.threads:
            for view in VIEWS:
                group = [c for c in cells if (c.isa, c.threads, c.view) == (isa, threads, view)]
                if group:
                    yield isa, threads, view, group


def judged_float32(cells: list[Cell]) -> list[Cell]:
    """The float32 cells that carry a verdict (none in a record made without them)."""
    return [c for c in cells if c.w_dtype == "float32" and c.verdict is not None]


def verdict_summary(cells: list[Cell], args: argparse.Namespace) -> list[str]:
    """Counts of each verdict per (ISA, threads, view), the A/A's median and spread, the
    placements' spread; nothing for a record without verdicts."""
    f32 = judged_float32(cells)
    if not f32:
        return []
    lines = [
        "## Verdicts: above 1.00, or within noise? (float32 W)",
        "",
        "Cells per verdict; the A/A columns: the median over the cells of ORT2/ORT's median, "
        "p10 and p90, and the median (max) over the cells of d; placement spread: the median "
        "(max) over the cells of the highest minus the lowest per-placement median ICL/ORT.",
        "",
        "| ISA | threads | view | meets | within noise | above | A/A median (p10-p90) "
        "| A/A d median (max) | placement spread median (max) |",
        "|---|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    for isa, threads, view, group in by_isa_threads_view(f32, args):
        counts = [sum(c.verdict == v for c in group) for v in noise.VERDICTS]
        aa = [c for c in group if c.aa_ratio is not None]
        aa_text = d_text = ""
        if aa:
            fields = ("aa_ratio", "aa_p10", "aa_p90")
            med = [float(np.median([getattr(c, f) for c in aa])) for f in fields]
            aa_text = f"{med[0]:.2f} ({med[1]:.2f}-{med[2]:.2f})"
            d = [noise.aa_deviation(c.aa_low, c.aa_high) for c in aa]
            d_text = f"{np.median(d):.3f} ({max(d):.3f})"
        spreads = [s for c in group if (s := spread(c.placement_ratios)) is not None]
        spread_text = f"{np.median(spreads):.3f} ({max(spreads):.3f})" if spreads else ""
        lines.append(
            f"| {isa} | {threads} | {view} | "
            + " | ".join(f"{x} / {len(group)}" for x in counts)
            + f" | {aa_text} | {d_text} | {spread_text} |"
        )
    return lines + [""]


def noise_table(cells: list[Cell]) -> list[str]:
    """A row per judged float32 cell: its interval, the placements, the A/A, the verdict."""
    f32 = judged_float32(cells)
    if not f32:
        return []
    lines = [
        "## Noise per cell (float32 W)",
        "",
        "ICL/ORT: median [90% interval]; per placement: the median ICL/ORT of each placement; "
        "A/A: ORT2/ORT median [90% interval] (p10-p90), then per placement.",
        "",
        "| ISA | threads | view | K x N | M | ICL/ORT [90%] | per placement | A/A [90%] (p10-p90) "
        "| A/A per placement | verdict |",
        "|---|---:|---|---|---:|---:|---|---:|---|---|",
    ]
    for c in f32:
        per = "/".join(f"{r:.2f}" for r in c.placement_ratios or [])
        aa = aa_per = ""
        if c.aa_ratio is not None:
            aa = (
                f"{c.aa_ratio:.2f} [{c.aa_low:.2f}-{c.aa_high:.2f}] ({c.aa_p10:.2f}-{c.aa_p90:.2f})"
            )
            aa_per = "/".join(f"{r:.2f}" for r in c.placement_aa_ratios or [])
        lines.append(
            f"| {c.isa} | {c.threads} | {c.view} | {c.k} x {c.n} | {c.m} | "
            f"{c.ratio:.2f} [{c.ratio_low:.2f}-{c.ratio_high:.2f}] | {per} | {aa} | {aa_per} | "
            f"{c.verdict} |"
        )
    return lines + [""]


def bar_note(cells: list[Cell]) -> str:
    """Which MLAS kernels the ORT bar of each ISA's grid ran."""
    capped = {c.isa for c in cells if c.ort_kernels == "avx2"}
    native = sorted({c.isa for c in cells if c.ort_kernels == "native"})
    text = ""
    if capped:
        text += (
            f"In the {', '.join(sorted(capped))} grid ORT is a copy whose MLAS is capped to its "
            "AVX2/FMA3 kernels, what it runs on a machine without AVX-512 "
            "(`benchmarks/mlas_avx2.py`: the one jump into MLAS's AVX-512 set-up made a no-op). "
        )
    if native:
        text += f"In the {', '.join(native)} grid ORT's MLAS picks its own kernels" + (
            " (AVX-512 on this CPU)." if "avx512f" in cpu_flags() else "."
        )
    return text


def markdown(
    cells: list[Cell],
    args: argparse.Namespace,
    load: tuple[float, float],
    command: str,
    when: datetime.datetime,
) -> list[str]:
    """The results file: how it was measured, the worst cells, every grid, the 16-bit row."""
    import onnxruntime as ort

    ms = sorted({c.m for c in cells})
    lines = [
        "# IclMatMul vs ONNX Runtime's prepacked MatMul (CPU)",
        "",
        f"`python -m benchmarks.bench_matmul {command}`, {when:%Y-%m-%d %H:%M} UTC.",
        "",
        f"- CPU: {cpu_name()}, {os.cpu_count()} logical cores visible"
        f" ({'AVX-512F' if 'avx512f' in cpu_flags() else 'no AVX-512'}); onnxruntime "
        f"{ort.__version__}, numpy {np.__version__}, Python {platform.python_version()}.",
        "- Bar: ORT `MatMul(A, W^T)` with W^T[K, N] a float32 initializer (MLAS prepacks it). "
        "ICL: `IclMatMul(A, W, transpose=1)` on W[N, K] (transposed) and `IclMatMul(A, W)` on "
        "W[K, N] (plain), W an initializer.",
        "- Each cell: the sessions run once each per round in one process on the same weights "
        "(each round in a new random order; results measured before 2026-12-04: in one order, "
        "rotated); each ICL run's time is divided by the ORT run of the same round. "
        "Cell = median (p10-p90) of those ratios, **ICL time / ORT time: at most "
        f"{GOAL:.2f} meets the goal**; cells above it are marked **>**. After `min`: the "
        "lowest ICL time over the lowest ORT time, which interference from other processes "
        "(it only ever adds time) disturbs least.",
        "- ISA: the library's instruction set (`ICL_CPU_ISA=avx2` caps it, one process per ISA). "
        + bar_note(cells),
        f"- Intra-op spinning off in all sessions. 1-minute load average before / after: "
        f"{load[0]:.2f} / {load[1]:.2f}. **The machine is shared and loaded by other "
        "processes**: cells carry that noise (the p10-p90 spread shows it); single cells near "
        "1.00 should be re-measured before drawing conclusions.",
        *verdict_note(cells),
        "",
        "## Worst cell per view, threads and ISA (float32 W)",
        "",
        "| ISA | threads | view | worst median ICL/ORT | at (M, K x N) | cells meeting goal "
        "| worst min-ratio | at (M, K x N) | cells meeting goal by min-ratio |",
        "|---|---:|---|---:|---|---:|---:|---|---:|",
    ]
    f32 = [c for c in cells if c.w_dtype == "float32"]
    for isa, threads, view, group in by_isa_threads_view(f32, args):
        worst = max(group, key=lambda c: c.ratio)
        met = sum(c.ratio <= GOAL for c in group)
        worst_min = max(group, key=lambda c: c.min_ratio)
        met_min = sum(c.min_ratio <= GOAL for c in group)
        lines.append(
            f"| {isa} | {threads} | {view} | {worst.ratio:.2f} | "
            f"{worst.m}, {worst.k} x {worst.n} | {met} / {len(group)} | "
            f"{worst_min.min_ratio:.2f} | {worst_min.m}, {worst_min.k} x {worst_min.n} | "
            f"{met_min} / {len(group)} |"
        )
    lines += [""] + verdict_summary(cells, args)
    lines += ["## The grid", ""]
    for isa in args.isa:
        for threads in args.threads:
            group = [c for c in cells if (c.isa, c.threads) == (isa, threads)]
            if group:
                lines += grid_table(group, isa, threads, ms)
    half = [c for c in cells if c.w_dtype != "float32"]
    judged = any(c.verdict is not None for c in half)
    if half:
        lines += [
            f"## {args.half} W read by float32 A (cast view), M = 1",
            "",
            f"ICL time with {args.half} W / ORT time with float32 W; goal at most "
            f"{GOAL_16BIT:.2f} (W moves half the bytes).",
            "",
            "| ISA | threads | view | K x N | ORT f32 (ms) | ICL (ms) | ICL/ORT (p10-p90) | "
            "min-ratio |" + (" verdict |" if judged else ""),
            "|---|---:|---|---|---:|---:|---:|---:|" + ("---|" if judged else ""),
        ]
        for c in half:
            lines.append(
                f"| {c.isa} | {c.threads} | {c.view} | {c.k} x {c.n} | {c.ort_ms:.3f} | "
                f"{c.icl_ms:.3f} | {c.ratio:.2f} ({c.p10:.2f}-{c.p90:.2f}) | {c.min_ratio:.2f} |"
                + (f" {c.verdict or ''} |" if judged else "")
            )
        lines.append("")
    if args.baseline_library:
        lines += [
            "## Against the baseline library",
            "",
            f"Baseline: {args.baseline_label}. Median of this build's time / the baseline's "
            "time, run by run (p10-p90), and the ratio of the lowest times (below 1: faster "
            "now).",
            "",
            "| ISA | threads | view | W | K x N | M | ICL/ORT | ICL/baseline | min-ratio |",
            "|---|---:|---|---|---|---:|---:|---:|---:|",
        ]
        for c in cells:
            # Records measured before the spread was kept have none.
            spread = (
                "" if c.baseline_p10 is None else f" ({c.baseline_p10:.2f}-{c.baseline_p90:.2f})"
            )
            lines.append(
                f"| {c.isa} | {c.threads} | {c.view} | {c.w_dtype} | {c.k} x {c.n} | {c.m} | "
                f"{c.ratio:.2f} | {c.baseline_ratio:.2f}{spread} | {c.baseline_min_ratio:.2f} |"
            )
        lines.append("")
    if args.unprepacked:
        lines += [
            "## ORT MatMul without prepacking (W a graph input)",
            "",
            "What an ORT MatMul kernel invoked from a custom op (`Ort::Op` / `InvokeOp`) on the "
            "mapped weight would do at best (an invoked kernel is not prepacked): MLAS packs W "
            "on every call. Median ms, and the lowest ICL time over the lowest unprepacked ORT "
            "time (below 1: ICL is faster than the invoked kernel could be).",
            "",
            "| ISA | threads | K x N | M | ORT prepacked | ORT unprepacked | ICL transposed | "
            "ICL plain | transposed / unprepacked | plain / unprepacked |",
            "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|",
        ]
        by = {(c.isa, c.threads, c.k, c.n, c.m, c.view): c for c in f32}
        for c in f32:
            plain = by.get((c.isa, c.threads, c.k, c.n, c.m, "plain"))
            if c.view != "transposed" or plain is None:
                continue
            lines.append(
                f"| {c.isa} | {c.threads} | {c.k} x {c.n} | {c.m} | {c.ort_ms:.3f} | "
                f"{c.unprepacked_ms:.3f} | {c.icl_ms:.3f} | {plain.icl_ms:.3f} | "
                f"{c.unprepacked_min_ratio:.2f} | {plain.unprepacked_min_ratio:.2f} |"
            )
        lines.append("")
    return lines + noise_table(cells)


def heat_map(cells: list[Cell], args: argparse.Namespace, path: Path) -> None:
    """One panel per (ISA, threads): rows (view, K x N), columns M, colour ICL/ORT."""
    plt = harness.pyplot()
    from matplotlib.colors import TwoSlopeNorm

    f32 = [c for c in cells if c.w_dtype == "float32"]
    ms = sorted({c.m for c in f32})
    kns = sorted({(c.k, c.n) for c in f32})
    rows = [(v, k, n) for v in VIEWS for k, n in kns]
    panels = [(isa, t) for isa in args.isa for t in args.threads]
    size = (6.5 * len(args.threads), 0.45 * len(rows) * len(args.isa) + 1.5)
    fig, axes = plt.subplots(len(args.isa), len(args.threads), figsize=size, squeeze=False)
    norm = TwoSlopeNorm(vmin=0.5, vcenter=1.0, vmax=1.6)
    by = {(c.isa, c.threads, c.view, c.k, c.n, c.m): c.ratio for c in f32}
    image = None
    for (isa, t), ax in zip(panels, axes.flat, strict=True):
        grid = np.array([[by.get((isa, t, v, k, n, m), np.nan) for m in ms] for v, k, n in rows])
        image = ax.imshow(grid, cmap="RdYlGn_r", norm=norm, aspect="auto")
        for i in range(grid.shape[0]):
            for j in range(grid.shape[1]):
                if not np.isnan(grid[i, j]):
                    ax.text(j, i, f"{grid[i, j]:.2f}", ha="center", va="center", fontsize=7)
        ax.set_xticks(range(len(ms)), [str(m) for m in ms])
        labels = [f"{v[:5]} {k}x{n}" for v, k, n in rows] if ax in axes[:, 0] else []
        ax.set_yticks(range(len(rows)), labels, fontsize=8)
        ax.set_xlabel("M")
        ax.set_title(f"ICL {isa}, {t} thread{'s' if t > 1 else ''}: ICL time / ORT time")
    fig.colorbar(image, ax=axes, shrink=0.6, label="ICL / ORT (time, below 1 is faster)")
    harness.save_png(fig, path, tight=True)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help=f"M {QUICK_M}, (K, N) {QUICK_KN}")
    parser.add_argument("--m", type=int, nargs="+", help=f"rows of A (default {GRID_M})")
    parser.add_argument("--kn", type=int, nargs="+", help="K N pairs, e.g. --kn 768 3072 768 32000")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--isa", nargs="+", choices=ISAS, default=list(ISAS))
    parser.add_argument("--half", choices=["float16", "bfloat16"], default="float16",
                        help="16-bit W type of the M = 1 cast-view row")  # fmt: skip
    parser.add_argument("--cell-seconds", type=float, default=1.5,
                        help="time per cell (split evenly over --placements)")  # fmt: skip
    parser.add_argument("--min-runs", type=int, default=15,
                        help="rounds per cell at least (each placement: this / placements, "
                        "rounded up)")  # fmt: skip
    parser.add_argument("--max-runs", type=int, default=41,
                        help="rounds per cell at most (each placement: this / placements, "
                        "rounded up)")  # fmt: skip
    parser.add_argument(
        "--aa",
        action="store_true",
        help="A/A control: time a second ORT session on its own copy of W^T in the same rounds "
        "(what identical kernels read apart in each cell); adds a verdict per cell",
    )
    parser.add_argument(
        "--placements",
        type=int,
        default=1,
        help="re-create every session on freshly allocated weights this many times per (K, N, "
        "threads), in that many passes over the grid, and pool the rounds (where W lands in "
        "memory and the load of the moment move cells by several percent); above 1 adds a "
        "verdict per cell",
    )
    parser.add_argument(
        "--unprepacked",
        action="store_true",
        help="also time ORT MatMul with W a graph input (no prepacking)",
    )
    parser.add_argument(
        "--baseline-library", type=Path, help="another libicl_ops.so, timed in the same rounds"
    )
    parser.add_argument("--baseline-label", default="the library given by --baseline-library")
    parser.add_argument("--output", type=Path, default=harness.RESULTS / "matmul_cpu.md",
                        help="Markdown file; the .json and .png go beside it")  # fmt: skip
    parser.add_argument(
        "--replot", type=Path, help="rewrite the Markdown and PNG from this JSON, measuring nothing"
    )
    parser.add_argument(
        "--avx2-bar",
        choices=["capped", "native"],
        default="capped",
        help="ORT for the avx2 grid: a copy with MLAS capped to AVX2, what an AVX2-only machine "
        "runs (default), or MLAS's own choice",
    )
    parser.add_argument("--worker", choices=ISAS, help=argparse.SUPPRESS)
    parser.add_argument("--worker-output", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.kn and len(args.kn) % 2:
        parser.error("--kn takes K N pairs")
    if args.placements < 1:
        parser.error("--placements takes a count of at least 1")
    args.kn = (
        list(zip(args.kn[::2], args.kn[1::2], strict=True))
        if args.kn
        else list(QUICK_KN if args.quick else GRID_KN)
    )
    args.m = args.m or list(QUICK_M if args.quick else GRID_M)
    return args


def main() -> int:
    args = parse_args()
    if args.worker:
        return worker(args)
    if args.replot:
        record = json.loads(args.replot.read_text())
    else:
        record = measure(args)
    cells = [Cell(**c) for c in record["cells"]]
    for cell in cells:  # by the rule of this version (None for records without intervals)
        cell.verdict = cell_verdict(cell)
    args.isa = [isa for isa in ISAS if any(c.isa == isa for c in cells)]
    args.threads = sorted({c.threads for c in cells})
    args.baseline_library = args.baseline_library or (
        Path(record["baseline"]) if record.get("baseline") else None
    )
    args.baseline_label = record.get("baseline_label", args.baseline_label)
    args.unprepacked = any(c.unprepacked_ms is not None for c in cells)
    args.half = next((c.w_dtype for c in cells if c.w_dtype != "float32"), args.half)
    when = datetime.datetime.fromisoformat(record["measured"])
    load = tuple(record["load_average"])
    lines = markdown(cells, args, load, record["command"], when)
    harness.write_markdown(args.output, lines[:-1])
    if not args.replot:
        harness.write_json(args.output.with_suffix(".json"), record)
    heat_map(cells, args, args.output.with_suffix(".png"))
    print("\n".join(lines))
    return 0


def check_capped_ort() -> None:
    """Exits unless a worker told to use the capped ORT (isa_environment) imported that copy."""
    import onnxruntime as ort

    capped = os.environ.get(CAPPED_ENV)
    if capped and not Path(ort.__file__).is_relative_to(capped):
        raise SystemExit(f"expected the capped onnxruntime in {capped}, imported {ort.__file__}")


def isa_environment(isa: str, capped_bar: bool) -> dict[str, str]:
    """The environment of a worker process for `isa`: the library capped with ICL_CPU_ISA for
    avx2, and there (with `capped_bar`) ORT's copy whose MLAS is capped to AVX2 first on the path.
    """
    env = dict(os.environ)
    env.pop("ICL_CPU_ISA", None)
    env.pop(CAPPED_ENV, None)
    if isa != "avx2":
        return env
    env["ICL_CPU_ISA"] = "avx2"
    if capped_bar:
        capped = mlas_avx2.capped_onnxruntime()
        if capped.path is None:
            print(f"avx2 bar: {capped.reason}; MLAS's own kernels", file=sys.stderr)
        else:
            env[CAPPED_ENV] = str(capped.path)
            env["PYTHONPATH"] = os.pathsep.join(
                [str(capped.path)] + env.get("PYTHONPATH", "").split(os.pathsep)
            ).rstrip(os.pathsep)
    return env


def measure(args: argparse.Namespace) -> dict:
    """Runs one worker process per ISA; returns the record the JSON file holds."""
    load_before = os.getloadavg()[0]
    when = datetime.datetime.now(datetime.UTC)
    cells: list[dict] = []
    with tempfile.TemporaryDirectory() as tmp:
        for isa in args.isa:
            env = isa_environment(isa, capped_bar=args.avx2_bar == "capped")
            out = Path(tmp) / f"{isa}.json"
            command = harness.child_command(
                "benchmarks.bench_matmul", *sys.argv[1:], "--worker", isa, "--worker-output", out
            )
            subprocess.run(command, env=env, check=True, cwd=harness.ROOT)
            cells += json.loads(out.read_text())
    return {
        "command": shlex.join(sys.argv[1:]),
        "measured": when.isoformat(),
        "cpu": cpu_name(),
        "machine": harness.metadata(),
        "load_average": [load_before, os.getloadavg()[0]],
        "baseline": str(args.baseline_library) if args.baseline_library else None,
        "baseline_label": args.baseline_label,
        "cells": cells,
    }


if __name__ == "__main__":
    raise SystemExit(main())
