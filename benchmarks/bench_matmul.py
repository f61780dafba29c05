"""IclMatMul(transpose=1) on W[N, K] against ONNX Runtime's MatMul on the materialised W^T[K, N].

Both run in ONNX Runtime sessions on the CPU with the same intra-op thread count. ORT's
MatMul gets its weight as an initializer, so MLAS prepacks it: that is the bar. The runs of
the two sessions are interleaved so that noise from other processes hits both alike, and
the median of each is reported.

Usage:
    ICL_ONNX_LIBRARY=build/cpu/libicl_ops.so python benchmarks/bench_matmul.py --repeats 30
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

import icl_onnx

RESULTS = Path(__file__).resolve().parent / "results" / "matmul_cpu.md"
OPSETS = [helper.make_opsetid("", 18), helper.make_opsetid("ai.icl", 1)]


@dataclass
class Row:
    """One line of the table: median seconds per run of each session."""

    m: int
    w_dtype: str
    ort_s: float
    icl_s: float

    @property
    def ratio(self) -> float:
        """Throughput of IclMatMul relative to ORT's MatMul (higher is better)."""
        return self.ort_s / self.icl_s


def ort_matmul_model(w_t: np.ndarray) -> bytes:
    node = helper.make_node("MatMul", ["A", "WT"], ["Y"])
    graph = helper.make_graph(
        [node],
        "ort_matmul",
        [helper.make_tensor_value_info("A", TensorProto.FLOAT, ["M", w_t.shape[0]])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, ["M", w_t.shape[1]])],
        initializer=[numpy_helper.from_array(w_t, "WT")],
    )
    return helper.make_model(graph, opset_imports=OPSETS).SerializeToString()


def icl_matmul_model(w: np.ndarray) -> bytes:
    node = helper.make_node("IclMatMul", ["A", "W"], ["Y"], domain="ai.icl", transpose=1)
    graph = helper.make_graph(
        [node],
        "icl_matmul",
        [helper.make_tensor_value_info("A", TensorProto.FLOAT, ["M", w.shape[1]])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, ["M", w.shape[0]])],
        initializer=[numpy_helper.from_array(w, "W")],
    )
    return helper.make_model(graph, opset_imports=OPSETS).SerializeToString()


def make_options(threads: int, spinning: bool) -> ort.SessionOptions:
    """Session options shared by both sessions.

    Each session owns an intra-op pool whose idle workers spin after a run; with two sessions
    on two cores, one session's spinning workers then slow the other's next run (measured:
    ratios swinging from 0.2 to 2 between identical runs). Spinning is off unless asked for.
    """
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
    return options


def time_pair(
    sessions: list, a: np.ndarray, warmup: int, repeats: int, pause: float
) -> list[float]:
    """Runs the sessions in turn, `repeats` times each after warm-up; returns their medians.

    Each session has its own intra-op thread pool whose workers spin for a while after a run;
    the pause before each timed run lets them park, so neither session's spinning threads
    steal the cores from the other's run.
    """
    for _ in range(warmup):
        for s in sessions:
            s.run(None, {"A": a})
    times: list[list[float]] = [[] for _ in sessions]
    for _ in range(repeats):
        for s, t in zip(sessions, times, strict=True):
            time.sleep(pause)
            start = time.perf_counter()
            s.run(None, {"A": a})
            t.append(time.perf_counter() - start)
    return [statistics.median(t) for t in times]


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def markdown(rows: list[Row], args: argparse.Namespace, load: tuple[float, float]) -> str:
    lines = [
        "# IclMatMul vs ONNX Runtime MatMul (CPU)",
        "",
        f"`benchmarks/bench_matmul.py --repeats {args.repeats} --warmup {args.warmup} "
        f"--threads {args.threads} --pause-ms {args.pause_ms:g}"
        f"{' --allow-spinning' if args.allow_spinning else ''}`, "
        f"{datetime.date.today().isoformat()}.",
        "",
        f"- CPU: {cpu_name()}, {os.cpu_count()} logical cores visible; "
        f"intra-op threads: {args.threads}",
        f"- onnxruntime {ort.__version__}, numpy {np.__version__}, "
        f"Python {platform.python_version()}",
        f"- K = {args.k}, N = {args.n}. ORT: `MatMul(A, W^T)` with W^T[K, N] an initializer "
        "(prepacked by MLAS). ICL: `IclMatMul(A, W, transpose=1)` with W[N, K] an initializer.",
        "- Median of the interleaved runs; ratio = ORT time / ICL time (throughput of ICL "
        "relative to ORT, higher is better; goal >= 0.9). Intra-op spinning "
        f"{'on' if args.allow_spinning else 'off'} in both sessions.",
        f"- 1-minute load average before / after the run: {load[0]:.2f} / {load[1]:.2f} "
        "(other processes share the cores; both sessions see the same interference).",
        "",
        "| M | W dtype (ICL) | ORT MatMul (ms) | IclMatMul (ms) | ratio | ICL W GB/s |",
        "|---:|---|---:|---:|---:|---:|",
    ]
    for r in rows:
        w_bytes = args.n * args.k * (2 if r.w_dtype == "float16" else 4)
        lines.append(
            f"| {r.m} | {r.w_dtype} | {r.ort_s * 1e3:.3f} | {r.icl_s * 1e3:.3f} | "
            f"{r.ratio:.2f} | {w_bytes / r.icl_s / 1e9:.1f} |"
        )
    return "\n".join(lines) + "\n"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=30, help="timed runs per session and M")
    parser.add_argument("--warmup", type=int, default=5, help="untimed runs first")
    parser.add_argument(
        "--threads", type=int, default=os.cpu_count() or 1, help="intra-op threads of both sessions"
    )
    parser.add_argument(
        "--allow-spinning",
        action="store_true",
        help="let idle intra-op workers spin (ORT's default; see make_options)",
    )
    parser.add_argument(
        "--pause-ms",
        type=float,
        default=5.0,
        help="idle time before each timed run (lets the other pool park)",
    )
    parser.add_argument("--m", type=int, nargs="+", default=[1, 16, 256], help="rows of A")
    parser.add_argument("--k", type=int, default=768)
    parser.add_argument("--n", type=int, default=30000)
    parser.add_argument("--no-fp16", action="store_true", help="skip the float16-W rows")
    parser.add_argument("--output", type=Path, default=RESULTS, help="Markdown table to write")
    return parser.parse_args()


def main() -> int:
    args = parse_args()
    load_before = os.getloadavg()[0]
    rng = np.random.default_rng(0)
    w = rng.standard_normal((args.n, args.k), dtype=np.float32)
    def options() -> ort.SessionOptions:
        return make_options(args.threads, args.allow_spinning)

    ort_session = ort.InferenceSession(
        ort_matmul_model(np.ascontiguousarray(w.T)), options(), providers=["CPUExecutionProvider"]
    )
    icl_sessions = {"float32": icl_onnx.create_session(icl_matmul_model(w), options=options())}
    if not args.no_fp16:
        icl_sessions["float16"] = icl_onnx.create_session(
            icl_matmul_model(w.astype(np.float16)), options=options()
        )

    rows = []
    for m in args.m:
        a = rng.standard_normal((m, args.k), dtype=np.float32)
        expected = ort_session.run(None, {"A": a})[0]
        for dtype, icl_session in icl_sessions.items():
            got = icl_session.run(None, {"A": a})[0]
            tolerance = 1e-3 if dtype == "float32" else 0.1
            if not np.allclose(got, expected, rtol=tolerance, atol=tolerance):
                raise SystemExit(f"IclMatMul disagrees with MatMul at M={m} ({dtype})")
            ort_s, icl_s = time_pair(
                [ort_session, icl_session], a, args.warmup, args.repeats, args.pause_ms / 1e3
            )
            rows.append(Row(m, dtype, ort_s, icl_s))
            print(
                f"M={m:4d} W {dtype:8s} ORT {ort_s * 1e3:8.3f} ms  ICL {icl_s * 1e3:8.3f} ms"
                f"  ratio {ort_s / icl_s:.2f}",
                flush=True,
            )

    table = markdown(rows, args, (load_before, os.getloadavg()[0]))
    print(table)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
