"""IclMatMul with W in transparent huge pages against W in 4 KiB pages (cpu/huge_pages.h).

The CPU kernel asks Linux to collapse a constant W into 2 MiB pages when ORT creates it (in
the background by default; ``ICL_ONNX_HUGE_PAGES=sync`` during creation, ``0`` never). Per
cell, in one process, three sessions run alternated round by round
(``bench_matmul.interleave``): ORT's MatMul with W^T prepacked (the bar), IclMatMul created
with the collapse off (its W in 4 KiB pages), and IclMatMul created with ``sync`` (W collapsed
when its creation returns); each on its own copy of W. Ratios are per round: ICL over the ORT
run of the same round, and huge over 4 KiB. Then every anonymous mapping of the process of
4 MiB or more is collapsed too, ORT's prepacked buffers with it, and ORT and the collapsed
IclMatMul run alternated again: what is left of the gain when ORT reads huge pages as well
(as on a system whose THP setting is ``always``). Each cell runs in a fresh process: memory
freed by an earlier cell's sessions stays in huge pages, and a later W placed there would not
be in 4 KiB pages when created with the collapse off::

    python -m benchmarks.bench_huge_pages --output benchmarks/results/huge_pages.md
"""

from __future__ import annotations

import argparse
import ctypes
import datetime
import json
import os
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from benchmarks import harness
from benchmarks.bench_matmul import (
    GRID_KN,
    ISAS,
    VIEWS,
    check_capped_ort,
    icl_model,
    interleave,
    isa_environment,
    ort_model,
    session,
)
from icl_onnx._proc import proc_bytes

MADV_COLLAPSE = 25


def anon_huge_mib() -> float:
    """The process's AnonHugePages, MiB."""
    return proc_bytes("/proc/self/smaps_rollup", ("AnonHugePages",)).get("AnonHugePages", 0) / 2**20


def madvise_collapse(address: int, length: int) -> bool:
    """Whether Linux collapsed [address, address + length) into huge pages (MADV_COLLAPSE)."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    return libc.madvise(address, length, MADV_COLLAPSE) == 0


def collapse_process() -> int:
    """Asks the kernel to collapse every writable anonymous mapping of 4 MiB or more; MiB asked."""
    asked = 0
    for line in Path("/proc/self/maps").read_text().splitlines():
        fields = line.split()
        low, high = (int(x, 16) for x in fields[0].split("-"))
        anonymous = len(fields) < 6 or fields[5] == "[heap]"
        if anonymous and "w" in fields[1] and high - low >= 4 << 20:
            if madvise_collapse(low, high - low):
                asked += high - low
    return asked >> 20


def summary(ratios: np.ndarray) -> list[float]:
    """Median, 10th and 90th percentile."""
    return [float(np.median(ratios)), *map(float, np.percentile(ratios, [10, 90]))]


def icl_session(model: bytes, threads: int, huge: bool):
    """An IclMatMul session (its own copy of W), W collapsed during its creation (``sync``, so
    that no run meets the collapse in progress) or not at all (``0``)."""
    with harness.huge_pages_mode("sync" if huge else "0"):
        return session(model, threads)


def measure_cell(args: argparse.Namespace, k: int, n: int, m: int, view: str, threads: int):
    """One cell's ratios (see the module docstring); run in a process of its own."""
    rng = np.random.default_rng(k * 100003 + n * 7 + m)
    w = rng.standard_normal((n, k), dtype=np.float32)
    ort = session(ort_model(np.ascontiguousarray(w.T), as_input=False), threads)
    stored = w if view == "transposed" else np.ascontiguousarray(w.T)
    model = icl_model(stored, view == "transposed")
    del w, stored  # numpy's large arrays are in huge pages of their own: freed before counting
    small = icl_session(model, threads, huge=False)
    huge_before = anon_huge_mib()
    huge = icl_session(model, threads, huge=True)
    collapsed_mib = anon_huge_mib() - huge_before
    feeds = {"A": rng.standard_normal((m, k), dtype=np.float32)}
    runners = [lambda s=s: s.run(None, feeds) for s in (ort, small, huge)]
    t = interleave(runners, args.cell_seconds, args.min_runs, args.max_runs, seed=m)
    asked = collapse_process()
    t_all = interleave(runners[::2], args.cell_seconds, args.min_runs, args.max_runs, seed=m + 1)
    return {
        "isa": args.worker,
        "threads": threads,
        "view": view,
        "k": k,
        "n": n,
        "m": m,
        "w_mib": k * n * 4 / 2**20,
        "icl_collapsed_mib": collapsed_mib,
        "process_asked_mib": asked,
        "ort_ms": float(np.median(t[:, 0]) * 1e3),
        "small_over_ort": summary(t[:, 1] / t[:, 0]),
        "huge_over_ort": summary(t[:, 2] / t[:, 0]),
        "huge_over_small": summary(t[:, 2] / t[:, 1]),
        "all_huge_over_ort": summary(t_all[:, 1] / t_all[:, 0]),
        "rounds": [len(t), len(t_all)],
    }


def worker(args: argparse.Namespace) -> int:
    """Measures the cell `--cell` names and writes it to --worker-output."""
    check_capped_ort()
    k, n, m, view, threads = args.cell.split(",")
    cell = measure_cell(args, int(k), int(n), int(m), view, int(threads))
    harness.write_json(args.worker_output, cell)
    return 0


def fmt(values: list[float]) -> str:
    return f"{values[0]:.2f} ({values[1]:.2f}-{values[2]:.2f})"


def markdown(record: dict) -> list[str]:
    cells = record["cells"]
    when = datetime.datetime.fromisoformat(record["measured"])
    lines = [
        "# IclMatMul with W in huge pages (CPU)",
        "",
        f"`python -m benchmarks.bench_huge_pages {record['command']}`, {when:%Y-%m-%d %H:%M} UTC.",
        "",
        f"- {harness.describe(record['machine'])} 1-minute load average before / after: "
        f"{record['load_average'][0]:.2f} / {record['load_average'][1]:.2f}.",
        "- Per cell, in one process, alternated round by round in a random order: ORT's MatMul "
        "on W^T (prepacked), IclMatMul created with `ICL_ONNX_HUGE_PAGES=0` (W in 4 KiB pages) "
        "and IclMatMul created with `ICL_ONNX_HUGE_PAGES=sync` (W collapsed into 2 MiB pages "
        "when its creation returns), each on its own copy "
        "of W. Ratios per round, median (p10-p90): **4k/ORT** and **huge/ORT** (ICL time over "
        "the ORT run of the same round), **huge/4k**. Then every anonymous mapping of 4 MiB or "
        "more in the process was collapsed too (ORT's prepacked buffer with it) and the "
        "collapsed IclMatMul and ORT ran alternated again: **both huge/ORT**.",
        "- Collapsed: the MiB of the process's AnonHugePages that creating the collapsed IclMatMul "
        "session added (only 2 MiB blocks wholly inside W collapse: none or a part of a "
        "2.25 MiB W, depending on where it lands). Each cell ran in a fresh process.",
        "- ISA avx2: the library capped with `ICL_CPU_ISA=avx2` and ORT's MLAS capped to its "
        "AVX2 kernels (`benchmarks/mlas_avx2.py`), as in `bench_matmul`.",
        "",
    ]
    header = [
        "ISA",
        "threads",
        "view",
        "K x N",
        "M",
        "collapsed MiB",
        "ORT ms",
        "4k/ORT",
        "huge/ORT",
        "huge/4k",
        "both huge/ORT",
    ]
    rows = [
        [
            c["isa"],
            c["threads"],
            c["view"],
            f"{c['k']} x {c['n']}",
            c["m"],
            f"{c['icl_collapsed_mib']:.0f} of {c['w_mib']:.1f}",
            f"{c['ort_ms']:.3f}",
            fmt(c["small_over_ort"]),
            fmt(c["huge_over_ort"]),
            fmt(c["huge_over_small"]),
            fmt(c["all_huge_over_ort"]),
        ]
        for c in cells
    ]
    return lines + harness.table(header, rows, "lrllrrrrrrr")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--isa", nargs="+", default=list(ISAS), choices=ISAS)
    parser.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--m", nargs="+", type=int, default=[1, 16, 256])
    parser.add_argument("--cell-seconds", type=float, default=1.5)
    parser.add_argument("--min-runs", type=int, default=25)
    parser.add_argument("--max-runs", type=int, default=400)
    parser.add_argument("--output", type=Path, default=Path("benchmarks/results/huge_pages.md"))
    parser.add_argument("--worker", choices=ISAS, help=argparse.SUPPRESS)
    parser.add_argument("--worker-output", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--cell", help=argparse.SUPPRESS)
    parser.add_argument("--replot", type=Path, help="rewrite --output from this JSON record")
    return parser.parse_args()


def main() -> int:
    args = parse_args()
    if args.worker:
        return worker(args)
    if args.replot:
        lines = markdown(json.loads(args.replot.read_text()))
        harness.write_markdown(args.output, lines)
        print("\n".join(lines))
        return 0
    if not sys.platform.startswith("linux"):
        raise SystemExit("bench_huge_pages: Linux only (MADV_COLLAPSE, /proc/self/smaps_rollup)")
    load_before = os.getloadavg()[0]
    when = datetime.datetime.now(datetime.UTC)
    machine = harness.metadata()
    cells: list[dict] = []
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "cell.json"
        for isa in args.isa:
            env = isa_environment(isa, capped_bar=True)
            for threads in args.threads:
                for k, n in GRID_KN:
                    for m in args.m:
                        for view in VIEWS:
                            command = harness.child_command(
                                "benchmarks.bench_huge_pages",
                                *sys.argv[1:],
                                "--worker",
                                isa,
                                "--cell",
                                f"{k},{n},{m},{view},{threads}",
                                "--worker-output",
                                out,
                            )
                            subprocess.run(command, env=env, check=True, cwd=harness.ROOT)
                            cells.append(json.loads(out.read_text()))
                            print(
                                f"{isa} t={threads} {k}x{n} M={m} {view}: huge/4k "
                                f"{cells[-1]['huge_over_small'][0]:.3f}",
                                file=sys.stderr,
                            )
    record = {
        "command": shlex.join(sys.argv[1:]),
        "measured": when.isoformat(),
        "machine": machine,
        "load_average": [load_before, os.getloadavg()[0]],
        "cells": cells,
    }
    harness.write_record(args.output, record, markdown)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
