"""IclMatMul with ``variant_ids`` (every batch row its own LoRA variant) against the base alone.

One layer of issue 23's model: hidden 768 (K = 768, N in {768, 3072}), 8 variants of rank 16
stacked in U [8, K, 16] and V [8, 16, N], a batch of B = 8 rows, each a different variant (the
mixed batch), at decode (8 rows of A, one token per batch row) and at prefill (B = 8 x 16
tokens: 128 rows). Four CPU sessions over the same W[K, N] (the plain view, how exporters store
a Linear's weight):

- ``variants``: ``IclMatMul(A, W, , U, V, variant_ids)``;
- ``base``: ``IclMatMul(A, W)``, the base alone (the ceiling);
- ``one LoRA``: ``IclMatMul(A, W, , U[1], V[1])``, today's single low-rank term, for scale;
- ``ORT``: ``MatMul(A, W)`` with W an initializer, prepacked by MLAS.

The sessions run in turn, in one process (bench_matmul.interleave), so that load from other
processes hits all alike; each run's time is divided by the base's (or ORT's) run of the same
round and the table gives the median and p10-p90 of those ratios. The low-rank term's share of
the flops is 2 r (K + N) / (K N) per row; at decode every row reads its own variant's factors,
8 r (K + N) floats against K N of W.

Writes ``benchmarks/results/variant_rows.md`` and ``.json``.

Usage:
    python -m benchmarks.bench_variant_rows [--threads 2 1] [--seconds 6]
"""

from __future__ import annotations

import argparse
import os

import numpy as np

from benchmarks.bench_matmul import interleave, session
from benchmarks.harness import RESULTS, describe, metadata, write_json, write_markdown

HIDDEN = 768
WIDTHS = (768, 3072)
VARIANTS, RANK, BATCH = 8, 16, 8
TOKENS = {"decode": 1, "prefill": 16}  # rows of A per batch row


def models(w: np.ndarray, u: np.ndarray, v: np.ndarray) -> dict[str, bytes]:
    """The four one-node models over W[K, N] (and the stacked factors)."""
    from onnx import TensorProto, helper, numpy_helper

    k, n = w.shape
    a = helper.make_tensor_value_info("A", TensorProto.FLOAT, ["M", k])
    ids = helper.make_tensor_value_info("ids", TensorProto.INT64, ["B"])
    y = helper.make_tensor_value_info("Y", TensorProto.FLOAT, ["M", n])
    icl = [helper.make_opsetid("", 18), helper.make_opsetid("ai.icl", 1)]

    def model(node, inputs, inits, opsets=icl) -> bytes:
        graph = helper.make_graph(
            [node], "bench", inputs, [y], [numpy_helper.from_array(x, nm) for nm, x in inits]
        )
        return helper.make_model(graph, opset_imports=opsets).SerializeToString()

    def icl_node(*inputs):
        return helper.make_node("IclMatMul", list(inputs), ["Y"], domain="ai.icl")

    return {
        "variants": model(
            icl_node("A", "W", "", "U", "V", "ids"), [a, ids], [("W", w), ("U", u), ("V", v)]
        ),
        "base": model(icl_node("A", "W"), [a], [("W", w)]),
        "one LoRA": model(
            icl_node("A", "W", "", "U", "V"), [a], [("W", w), ("U", u[1]), ("V", v[1])]
        ),
        "ORT": model(
            helper.make_node("MatMul", ["A", "W"], ["Y"]),
            [a],
            [("W", w)],
            [helper.make_opsetid("", 18)],
        ),
    }


def ratios(times: np.ndarray, num: int, den: int) -> dict[str, float]:
    """Per-round ratios (median, p10, p90) and the lowest time over the lowest time (`min`:
    robust to runs that another process preempted)."""
    r = times[:, num] / times[:, den]
    return {
        "median": float(np.median(r)),
        "p10": float(np.percentile(r, 10)),
        "p90": float(np.percentile(r, 90)),
        "min": float(times[:, num].min() / times[:, den].min()),
    }


def measure(n: int, phase: str, threads: int, args: argparse.Namespace) -> dict:
    from icl_onnx import reference

    rng = np.random.default_rng(n)
    k = HIDDEN
    w = rng.standard_normal((k, n), dtype=np.float32) * 0.05
    u = rng.standard_normal((VARIANTS, k, RANK), dtype=np.float32) * 0.05
    v = rng.standard_normal((VARIANTS, RANK, n), dtype=np.float32) * 0.05
    a = rng.standard_normal((BATCH * TOKENS[phase], k), dtype=np.float32)
    ids = np.arange(BATCH, dtype=np.int64) % VARIANTS  # every batch row its own variant
    sessions = {name: session(m, threads) for name, m in models(w, u, v).items()}
    feeds = {name: {"A": a} for name in sessions} | {"variants": {"A": a, "ids": ids}}
    got = sessions["variants"].run(None, feeds["variants"])[0]
    want = reference.icl_matmul(a, w, None, u, v, ids)
    if not np.allclose(got, want, rtol=1e-4, atol=1e-4):
        raise SystemExit(f"IclMatMul with variant_ids disagrees with the reference (N={n})")
    names = list(sessions)
    runners = [lambda s=sessions[nm], f=feeds[nm]: s.run(None, f) for nm in names]
    times = interleave(runners, args.seconds, 20, 20000)
    col = {nm: i for i, nm in enumerate(names)}
    return {
        "threads": threads,
        "k": k,
        "n": n,
        "phase": phase,
        "m": int(a.shape[0]),
        "rounds": int(times.shape[0]),
        "ms": {nm: float(np.median(times[:, col[nm]]) * 1e3) for nm in names},
        "variants/base": ratios(times, col["variants"], col["base"]),
        "one LoRA/base": ratios(times, col["one LoRA"], col["base"]),
        "variants/ORT": ratios(times, col["variants"], col["ORT"]),
        "base/ORT": ratios(times, col["base"], col["ORT"]),
        "term flops / base flops": 2 * RANK * (k + n) / (k * n),
        "factor floats read / W floats": BATCH * RANK * (k + n) / (k * n),
    }


def fmt(r: dict[str, float]) -> str:
    return f"{r['median']:.2f} ({r['p10']:.2f}-{r['p90']:.2f}; min {r['min']:.2f})"


def markdown(rows: list[dict], meta: dict, load: tuple[float, float]) -> list[str]:
    lines = [
        "# IclMatMul with variant_ids against the base alone (CPU)",
        "",
        f"`python -m benchmarks.bench_variant_rows`. {describe(meta)} K = "
        f"{HIDDEN}, {VARIANTS} variants of rank {RANK}, B = {BATCH} batch rows each its own "
        "variant, float32, intra-op spinning off, sessions alternated in one process; each "
        "cell is the median of per-round time ratios (p10-p90; min: lowest time over lowest "
        "time).",
        f"1-minute load average before / after: {load[0]:.2f} / {load[1]:.2f}. **The machine "
        "is shared and loaded by other processes: the spreads are wide.**",
        "",
        "| threads | N | phase | rows | base ms | variants ms | variants / base | one LoRA / base "
        "| variants / ORT | base / ORT | term flops | factor reads |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['threads']} | {r['n']} | {r['phase']} | {r['m']} | {r['ms']['base']:.3f} | "
            f"{r['ms']['variants']:.3f} | {fmt(r['variants/base'])} | "
            f"{fmt(r['one LoRA/base'])} | {fmt(r['variants/ORT'])} | {fmt(r['base/ORT'])} | "
            f"{r['term flops / base flops']:.3f} | {r['factor floats read / W floats']:.3f} |"
        )
    lines += [
        "",
        "term flops: the low-rank term's flops over the base's, 2 r (K + N) / (K N). factor "
        "reads: the floats of the 8 variants' factors over W's (each row its own variant), what "
        "the term adds to the memory traffic of a decode step.",
    ]
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, nargs="+", default=[2, 1])
    parser.add_argument("--seconds", type=float, default=6.0, help="time budget per cell")
    args = parser.parse_args()
    load0 = os.getloadavg()[0]
    rows = [measure(n, ph, t, args) for t in args.threads for n in WIDTHS for ph in TOKENS]
    load = (load0, os.getloadavg()[0])
    meta = metadata()
    write_json(RESULTS / "variant_rows.json", {"metadata": meta, "rows": rows, "load": load})
    lines = markdown(rows, meta, load)
    write_markdown(RESULTS / "variant_rows.md", lines)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
