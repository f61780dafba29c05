"""IclMatMul against ONNX Runtime's MatMul on the CPU, for both orientations of the view.

- transpose: IclMatMul(A, W, transpose=1) on W[N, K] against MatMul on the materialised
  W^T[K, N] (the tied LM head);
- plain: IclMatMul(A, W) on W[K, N] against MatMul on the same W[K, N].

Both run in ONNX Runtime sessions on the CPU with the same intra-op thread count. ORT's
MatMul gets its weight as an initializer, so MLAS prepacks it: that is the bar. The runs of
the sessions are interleaved so that noise from other processes hits all alike, and the
median of each is reported. `--baseline-library` adds a session per case on another build of
the op library (say, before a change), timed in the same interleaved runs.

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

    view: str
    m: int
    w_dtype: str
    ort_s: float
    icl_s: float
    baseline_s: float | None = None

    @property
    def ratio(self) -> float:
        """Throughput of IclMatMul relative to ORT's MatMul (higher is better)."""
        return self.ort_s / self.icl_s


def ort_matmul_model(w_t: np.ndarray) -> bytes:
    """MatMul(A, W_T) with W_T[K, N] an initializer."""
    node = helper.make_node("MatMul", ["A", "WT"], ["Y"])
    graph = helper.make_graph(
        [node],
        "ort_matmul",
        [helper.make_tensor_value_info("A", TensorProto.FLOAT, ["M", w_t.shape[0]])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, ["M", w_t.shape[1]])],
        initializer=[numpy_helper.from_array(w_t, "WT")],
    )
    return helper.make_model(graph, opset_imports=OPSETS).SerializeToString()


def icl_matmul_model(w: np.ndarray, transpose: bool) -> bytes:
    """IclMatMul(A, W) with W an initializer, [N, K] when ``transpose`` else [K, N]."""
    k, n = (w.shape[1], w.shape[0]) if transpose else w.shape
    node = helper.make_node(
        "IclMatMul", ["A", "W"], ["Y"], domain="ai.icl", transpose=int(transpose)
    )
    graph = helper.make_graph(
        [node],
        "icl_matmul",
        [helper.make_tensor_value_info("A", TensorProto.FLOAT, ["M", k])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, ["M", n])],
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
) -> list[float]:  # any number of sessions, interleaved
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
    baseline = args.baseline_library is not None
    env = [f"{k}={os.environ[k]}" for k in ("ICL_CPU_ISA", "OPENBLAS_CORETYPE") if k in os.environ]
    isa_note = f" with {' '.join(env)}" if env else ""
    lines = [
        "# IclMatMul vs ONNX Runtime MatMul (CPU)",
        "",
        f"`benchmarks/bench_matmul.py --repeats {args.repeats} --warmup {args.warmup} "
        f"--threads {args.threads} --pause-ms {args.pause_ms:g}"
        f"{' --allow-spinning' if args.allow_spinning else ''}"
        f"{' --baseline-library LIB' if baseline else ''}`"
        f"{isa_note}, {datetime.date.today().isoformat()}.",
        "",
        f"- CPU: {cpu_name()}, {os.cpu_count()} logical cores visible; "
        f"intra-op threads: {args.threads}",
        f"- onnxruntime {ort.__version__}, numpy {np.__version__}, "
        f"Python {platform.python_version()}",
        f"- K = {args.k}, N = {args.n}. transpose: ORT `MatMul(A, W^T)` with W^T[K, N] an "
        "initializer (prepacked by MLAS), ICL `IclMatMul(A, W, transpose=1)` with W[N, K] an "
        "initializer. plain: ORT `MatMul(A, W)` and ICL `IclMatMul(A, W)`, W[K, N].",
        "- Median of the interleaved runs; ratio = ORT time / ICL time (throughput of ICL "
        "relative to ORT, higher is better; goal >= 0.9). Intra-op spinning "
        f"{'on' if args.allow_spinning else 'off'} in all sessions.",
        f"- 1-minute load average before / after the run: {load[0]:.2f} / {load[1]:.2f} "
        "(other processes share the cores; all sessions see the same interference).",
    ]
    if baseline:
        lines.append(
            f"- baseline: the op library {args.baseline_label}, timed in the same "
            "interleaved runs (its ratio = ORT time / baseline time)."
        )
    header = "| view | M | W dtype (ICL) | ORT MatMul (ms) | IclMatMul (ms) | ratio |"
    rule = "|---|---:|---|---:|---:|---:|"
    if baseline:
        header += " baseline (ms) | baseline ratio |"
        rule += "---:|---:|"
    lines += ["", header + " ICL W GB/s |", rule + "---:|"]
    for r in rows:
        w_bytes = args.n * args.k * (2 if r.w_dtype == "float16" else 4)
        line = (
            f"| {r.view} | {r.m} | {r.w_dtype} | {r.ort_s * 1e3:.3f} | {r.icl_s * 1e3:.3f} | "
            f"{r.ratio:.2f} |"
        )
        if baseline:
            line += f" {r.baseline_s * 1e3:.3f} | {r.ort_s / r.baseline_s:.2f} |"
        lines.append(f"{line} {w_bytes / r.icl_s / 1e9:.1f} |")
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
    parser.add_argument(
        "--views",
        nargs="+",
        choices=["transpose", "plain"],
        default=["transpose", "plain"],
        help="orientations of the view to time",
    )
    parser.add_argument(
        "--baseline-library",
        type=Path,
        default=None,
        help="another build of libicl_ops.so to time beside the current one",
    )
    parser.add_argument(
        "--baseline-label",
        default="given by --baseline-library",
        help="how the table names the baseline library",
    )
    parser.add_argument("--output", type=Path, default=RESULTS, help="Markdown table to write")
    return parser.parse_args()


def icl_session(model: bytes, options: ort.SessionOptions, library: Path | None):
    """A session of the current op library, or of `library` when given."""
    if library is None:
        return icl_onnx.create_session(model, options=options)
    options.register_custom_ops_library(str(library))
    return ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])


def main() -> int:
    args = parse_args()
    load_before = os.getloadavg()[0]
    rng = np.random.default_rng(0)
    w = rng.standard_normal((args.n, args.k), dtype=np.float32)  # W[N, K]
    w_plain = np.ascontiguousarray(w.T)  # W[K, N]

    def options() -> ort.SessionOptions:
        return make_options(args.threads, args.allow_spinning)

    ort_session = ort.InferenceSession(
        ort_matmul_model(w_plain), options(), providers=["CPUExecutionProvider"]
    )
    dtypes = ["float32"] if args.no_fp16 else ["float32", "float16"]
    # (view, dtype) -> [current, baseline] ICL sessions
    icl: dict[tuple[str, str], list] = {}
    for view in args.views:
        stored = w if view == "transpose" else w_plain
        for dtype in dtypes:
            model = icl_matmul_model(stored.astype(dtype), view == "transpose")
            libraries = [None] + ([args.baseline_library] if args.baseline_library else [])
            icl[view, dtype] = [icl_session(model, options(), lib) for lib in libraries]

    rows = []
    for view in args.views:
        for m in args.m:
            a = rng.standard_normal((m, args.k), dtype=np.float32)
            expected = ort_session.run(None, {"A": a})[0]
            for dtype in dtypes:
                sessions = icl[view, dtype]
                for session in sessions:
                    got = session.run(None, {"A": a})[0]
                    tolerance = 1e-3 if dtype == "float32" else 0.1
                    if not np.allclose(got, expected, rtol=tolerance, atol=tolerance):
                        raise SystemExit(f"IclMatMul disagrees with MatMul: {view} M={m} {dtype}")
                ort_s, icl_s, *base = time_pair(
                    [ort_session, *sessions], a, args.warmup, args.repeats, args.pause_ms / 1e3
                )
                row = Row(view, m, dtype, ort_s, icl_s, base[0] if base else None)
                rows.append(row)
                extra = f"  baseline {row.baseline_s * 1e3:8.3f} ms" if base else ""
                print(
                    f"{view:9s} M={m:4d} W {dtype:8s} ORT {ort_s * 1e3:8.3f} ms  "
                    f"ICL {icl_s * 1e3:8.3f} ms  ratio {row.ratio:.2f}{extra}",
                    flush=True,
                )

    table = markdown(rows, args, (load_before, os.getloadavg()[0]))
    print(table)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
