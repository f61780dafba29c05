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

The avx2 grid's bar is what an AVX2-only machine runs: ORT from a copy whose MLAS stops at
its AVX2/FMA3 kernels (``benchmarks/mlas_avx2.py``; ``--avx2-bar native`` keeps MLAS's own
choice, AVX-512 on an AVX-512 CPU).

Writes ``benchmarks/results/matmul_cpu.md``, ``.json`` and ``.png`` (a heat map).

Usage:
    python -m benchmarks.bench_matmul           # the whole grid (about 10-15 minutes)
    python -m benchmarks.bench_matmul --quick   # a subset (a few minutes)
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shlex
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from benchmarks import harness, mlas_avx2
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


def interleave(runners: list, budget_s: float, min_runs: int, max_runs: int) -> np.ndarray:
    """Calls the runners in turn (one round = each once) and returns seconds [rounds, runner].

    The number of rounds fills about `budget_s`, within [min_runs, max_runs]. Each round
    starts at another runner so that no session always follows the same one.
    """
    for run in runners:  # warm-up, and a first timing for the round count
        run()
    start = time.perf_counter()
    for run in runners:
        run()
    per_round = time.perf_counter() - start
    rounds = int(min(max_runs, max(min_runs, budget_s / max(per_round, 1e-6))))
    times = np.zeros((rounds, len(runners)))
    for i in range(rounds):
        for j in range(len(runners)):
            r = (i + j) % len(runners)
            start = time.perf_counter()
            runners[r]()
            times[i, r] = time.perf_counter() - start
    return times


def measure_shape(args: argparse.Namespace, isa: str, threads: int, k: int, n: int) -> list[Cell]:
    """All cells of one (K, N) at one thread count."""
    rng = np.random.default_rng(k * 100003 + n)
    w = rng.standard_normal((n, k), dtype=np.float32)  # W[N, K]
    w_t = np.ascontiguousarray(w.T)  # W^T[K, N]
    ort_s = session(ort_model(w_t, as_input=False), threads)
    ort_in = session(ort_model(w_t, as_input=True), threads) if args.unprepacked else None
    stored = {"transposed": w, "plain": w_t}
    libraries = [None] + ([args.baseline_library] if args.baseline_library else [])
    icl = {
        (view, dtype, lib): session(
            icl_model(stored[view].astype(dtype), view == "transposed"), threads, lib
        )
        for view in VIEWS
        for dtype in ("float32", args.half)
        for lib in libraries
    }
    cells = []
    for m in args.m:
        a = rng.standard_normal((m, k), dtype=np.float32)
        expected = ort_s.run(None, {"A": a})[0]
        dtypes = ["float32"] + ([args.half] if m == 1 else [])
        keys = [(view, dtype) for view in VIEWS for dtype in dtypes]
        for key in keys:
            for lib in libraries:
                got = icl[(*key, lib)].run(None, {"A": a})[0]
                tol = 1e-3 if key[1] == "float32" else 0.1
                if not np.allclose(got, expected, rtol=tol, atol=tol * np.sqrt(k)):
                    raise SystemExit(f"IclMatMul disagrees with MatMul: {key} M={m} K={k} N={n}")
        feeds = {"A": a}
        runners = [lambda f=feeds: ort_s.run(None, f)]
        if ort_in is not None:
            runners.append(lambda f={"A": a, "WT": w_t}: ort_in.run(None, f))
        columns = {}
        for key in keys:
            for lib in libraries:
                columns[(*key, lib)] = len(runners)
                runners.append(lambda s=icl[(*key, lib)], f=feeds: s.run(None, f))
        times = interleave(runners, args.cell_seconds, args.min_runs, args.max_runs)
        ort_t = times[:, 0]
        for view, dtype in keys:
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
            if ort_in is not None:
                cell.unprepacked_ms = float(np.median(times[:, 1]) * 1e3)
                cell.unprepacked_min_ratio = float(icl_t.min() / times[:, 1].min())
            cells.append(cell)
            print(
                f"{isa:6s} t={threads} K={k:5d} N={n:5d} M={m:4d} {view:10s} {dtype:8s} "
                f"ORT {cell.ort_ms:8.3f} ICL {cell.icl_ms:8.3f} ms  ICL/ORT {cell.ratio:.2f} "
                f"({cell.p10:.2f}-{cell.p90:.2f}) min {cell.min_ratio:.2f}"
                + (
                    f"  ICL/base {cell.baseline_ratio:.2f} "
                    f"({cell.baseline_p10:.2f}-{cell.baseline_p90:.2f})"
                    if cell.baseline_ratio
                    else ""
                )
                + (f"  ORT unprepacked {cell.unprepacked_ms:.3f}" if ort_in else ""),
                file=sys.stderr,
                flush=True,
            )
    return cells


def worker(args: argparse.Namespace) -> int:
    """Measures every shape and thread count for the ISA this process was started with."""
    import onnxruntime as ort

    capped = os.environ.get(CAPPED_ENV)
    if capped and not Path(ort.__file__).is_relative_to(capped):
        raise SystemExit(f"expected the capped onnxruntime in {capped}, imported {ort.__file__}")
    cells = []
    for k, n in args.kn:
        for threads in args.threads:
            cells += measure_shape(args, args.worker, threads, k, n)
    for cell in cells:
        cell.ort_kernels = "avx2" if capped else "native"
    args.worker_output.write_text(json.dumps([asdict(c) for c in cells]))
    return 0


def grid_table(cells: list[Cell], isa: str, threads: int, ms: list[int]) -> list[str]:
    """One Markdown table: a row per (view, K, N), a column per M.

    A cell is the median (p10-p90) of the per-run ratios, then the ratio of the lowest times.
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
                mark = "" if c is None or c.ratio <= GOAL else " **>**"
                row.append(
                    ""
                    if c is None
                    else f"{c.ratio:.2f} ({c.p10:.2f}-{c.p90:.2f}) min {c.min_ratio:.2f}{mark}"
                )
            lines.append("| " + " | ".join(row) + " |")
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
        "- Each cell: the sessions run in turn in one process on the same weights (the first "
        "session of each round rotates); each ICL run's time is divided by the ORT run of the "
        "same round. Cell = median (p10-p90) of those ratios, **ICL time / ORT time: at most "
        f"{GOAL:.2f} meets the goal**; cells above it are marked **>**. After `min`: the "
        "lowest ICL time over the lowest ORT time, which interference from other processes "
        "(it only ever adds time) disturbs least.",
        "- ISA: the library's instruction set (`ICL_CPU_ISA=avx2` caps it, one process per ISA). "
        + bar_note(cells),
        f"- Intra-op spinning off in all sessions. 1-minute load average before / after: "
        f"{load[0]:.2f} / {load[1]:.2f}. **The machine is shared and loaded by other "
        "processes**: cells carry that noise (the p10-p90 spread shows it); single cells near "
        "1.00 should be re-measured before drawing conclusions.",
        "",
        "## Worst cell per view, threads and ISA (float32 W)",
        "",
        "| ISA | threads | view | worst median ICL/ORT | at (M, K x N) | cells meeting goal "
        "| worst min-ratio | at (M, K x N) | cells meeting goal by min-ratio |",
        "|---|---:|---|---:|---|---:|---:|---|---:|",
    ]
    f32 = [c for c in cells if c.w_dtype == "float32"]
    for isa in args.isa:
        for threads in args.threads:
            for view in VIEWS:
                group = [c for c in f32 if (c.isa, c.threads, c.view) == (isa, threads, view)]
                if not group:
                    continue
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
    lines += ["", "## The grid", ""]
    for isa in args.isa:
        for threads in args.threads:
            group = [c for c in cells if (c.isa, c.threads) == (isa, threads)]
            if group:
                lines += grid_table(group, isa, threads, ms)
    half = [c for c in cells if c.w_dtype != "float32"]
    if half:
        lines += [
            f"## {args.half} W read by float32 A (cast view), M = 1",
            "",
            f"ICL time with {args.half} W / ORT time with float32 W; goal at most "
            f"{GOAL_16BIT:.2f} (W moves half the bytes).",
            "",
            "| ISA | threads | view | K x N | ORT f32 (ms) | ICL (ms) | ICL/ORT (p10-p90) | "
            "min-ratio |",
            "|---|---:|---|---|---:|---:|---:|---:|",
        ]
        for c in half:
            lines.append(
                f"| {c.isa} | {c.threads} | {c.view} | {c.k} x {c.n} | {c.ort_ms:.3f} | "
                f"{c.icl_ms:.3f} | {c.ratio:.2f} ({c.p10:.2f}-{c.p90:.2f}) | {c.min_ratio:.2f} |"
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
    return lines


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
    parser.add_argument("--cell-seconds", type=float, default=1.5, help="time per cell")
    parser.add_argument("--min-runs", type=int, default=15)
    parser.add_argument("--max-runs", type=int, default=41)
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


def measure(args: argparse.Namespace) -> dict:
    """Runs one worker process per ISA; returns the record the JSON file holds."""
    load_before = os.getloadavg()[0]
    when = datetime.datetime.now(datetime.UTC)
    cells: list[dict] = []
    with tempfile.TemporaryDirectory() as tmp:
        for isa in args.isa:
            env = dict(os.environ)
            env.pop("ICL_CPU_ISA", None)
            env.pop(CAPPED_ENV, None)
            if isa == "avx2":
                env["ICL_CPU_ISA"] = "avx2"
                if args.avx2_bar == "capped":
                    capped = mlas_avx2.capped_onnxruntime()
                    if capped.path is None:
                        print(f"avx2 bar: {capped.reason}; MLAS's own kernels", file=sys.stderr)
                    else:
                        env[CAPPED_ENV] = str(capped.path)
                        env["PYTHONPATH"] = os.pathsep.join(
                            [str(capped.path)] + env.get("PYTHONPATH", "").split(os.pathsep)
                        ).rstrip(os.pathsep)
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
