"""One prepared GPU check of the CUDA kernels (see benchmarks/GPU.md for how to run it).

1. Build facts: archs compiled, the kernel image the driver loaded, the cuBLAS in the process.
2. Correctness: every kernel x dtype combination x view against a float64 torch reference,
   through the ctypes harness (max abs error per case, pass/fail per case).
3. Throughput: IclMatMul (harness, transposed view of a stored W[N, K], the LM-head case)
   against torch.matmul on the materialised view W^T (a contiguous [K, N] copy), bf16 and fp32,
   K=768/N=30000 and K=4096/N=128256, M in 1, 16, 512. Timed with CUDA events over CUDA-graph
   replays (no Python overhead in either) and eagerly; ratio = torch time / ICL time (goal
   >= 0.95).
4. Optional: an ORT CUDA session parity check when onnxruntime-gpu and libicl_ops.so load.

Writes gpu_h200.md and gpu_h200.json to --out (default benchmarks/results). Needs torch, numpy
and the repository (run from its root: ``python3 -m benchmarks.gpu_check``): the harness driver
and the view cases are ``icl_onnx.testing.cuda_harness`` and ``icl_onnx.testing.view_cases``.
Exit status 1 when a correctness case fails, 2 when there is no GPU or no harness.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

from benchmarks import harness
from icl_onnx.testing import cuda_harness
from icl_onnx.testing.view_cases import view_cases

FLOAT, FLOAT16, BFLOAT16 = 1, 10, 16
K, N = 300, 200  # correctness shapes: not multiples of any tile
VIEWS = view_cases(K, N)
# Float32 accumulation in both, one rounding to the output type: errors of a few units in the
# last place of sums of ~K products of unit-variance values.
MATMUL_TOL = {"float32": 1e-3, "float16": 5e-2, "bfloat16": 0.25}
PERF_SHAPES = [(768, 30000), (4096, 128256)]
PERF_M = [1, 16, 512]
GOAL = 0.95


def load_harness_module():
    """Returns ``icl_onnx.testing.cuda_harness``, the ctypes driver of the harness library."""
    return cuda_harness


def loaded_cublas() -> list[str]:
    with open("/proc/self/maps") as maps:
        return sorted({line.split()[-1] for line in maps if "libcublas.so" in line})


# --- correctness ---------------------------------------------------------------------------


def check_matmul(h, hm, torch) -> list[dict]:
    rows = []
    names = ["float32", "float16", "bfloat16"]
    gen = torch.Generator(device="cuda").manual_seed(0)
    for a_name in names:
        for w_name in names:
            for view_name, (attrs, w_shape) in VIEWS.items():
                for m in (1, 33):
                    a_dt, w_dt = getattr(torch, a_name), getattr(torch, w_name)
                    w = torch.randn(w_shape, generator=gen, device="cuda").to(w_dt)
                    a = torch.randn((m, K), generator=gen, device="cuda").to(a_dt)
                    bias = torch.randn((N,), generator=gen, device="cuda").to(a_dt)
                    y = h.matmul(a, w, bias, **attrs)
                    v = hm.materialize_view(w, dtype=torch.float64, **attrs)
                    want = (a.double() @ v + bias.double()).to(a_dt).double()
                    err = (y.double() - want).abs().max().item()
                    rows.append(
                        {
                            "kernel": "IclMatMul",
                            "a": a_name,
                            "w": w_name,
                            "view": view_name,
                            "m": m,
                            "max_abs_err": err,
                            "tol": MATMUL_TOL[a_name],
                            "ok": err <= MATMUL_TOL[a_name],
                        }
                    )
    # A cast view wide enough to be widened in several chunks.
    w = torch.randn((20000, 4096), generator=gen, device="cuda").to(torch.bfloat16)
    a = torch.randn((3, 4096), generator=gen, device="cuda")
    err = (h.matmul(a, w, transpose=1).double() - a.double() @ w.double().t()).abs().max().item()
    rows.append(
        {
            "kernel": "IclMatMul",
            "a": "float32",
            "w": "bfloat16",
            "view": "transpose, N=20000 K=4096 (chunked)",
            "m": 3,
            "max_abs_err": err,
            "tol": 1e-2,
            "ok": err <= 1e-2,
        }
    )
    return rows


def check_gather(h, hm, torch) -> list[dict]:
    rows = []
    names = {"float32": FLOAT, "float16": FLOAT16, "bfloat16": BFLOAT16}
    for w_name in names:
        for out_name, out_code in names.items():
            for index_name in ("int32", "int64"):
                for view_name, (attrs, w_shape) in VIEWS.items():
                    w = torch.randn(w_shape, device="cuda").to(getattr(torch, w_name))
                    index_dtype = getattr(torch, index_name)
                    idx = torch.tensor(
                        [[0, K - 1, -1], [3, -K, 5]], device="cuda", dtype=index_dtype
                    )
                    y = h.gather(w, idx, output_dtype=out_code, **attrs)
                    v = hm.materialize_view(w, dtype=torch.float64, **attrs)
                    want = v[idx.long() % K].float().to(getattr(torch, out_name))
                    err = (y.double() - want.double()).abs().max().item()
                    ok = err == 0.0 and y.dtype == want.dtype
                    rows.append(
                        {
                            "kernel": "IclGather",
                            "a": index_name,
                            "w": w_name,
                            "out": out_name,
                            "view": view_name,
                            "max_abs_err": err,
                            "tol": 0.0,
                            "ok": ok,
                        }
                    )
    w = torch.randn((5, 4), device="cuda")
    y = h.gather(w, torch.tensor([1, 5, -6], device="cuda"))
    ok = torch.equal(y[0], w[1]) and torch.count_nonzero(y[1:]).item() == 0
    rows.append(
        {
            "kernel": "IclGather",
            "a": "int64",
            "w": "float32",
            "view": "out-of-range indices give zero rows",
            "max_abs_err": 0.0 if ok else float("nan"),
            "tol": 0.0,
            "ok": ok,
        }
    )
    return rows


# --- throughput ----------------------------------------------------------------------------


def time_graph(torch, fn, iters: int, rounds: int) -> float:
    """Median seconds per call of `fn` replayed from a CUDA graph of `iters` calls."""
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        for _ in range(3):
            fn()  # warm-up outside the capture: handles, workspaces, kernel selection
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        for _ in range(iters):
            fn()
    graph.replay()
    times = []
    for _ in range(rounds):
        start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        graph.replay()
        stop.record()
        stop.synchronize()
        times.append(start.elapsed_time(stop) / 1e3 / iters)
    return statistics.median(times)


def time_eager(torch, fn, iters: int, rounds: int) -> float:
    """Median seconds per call of `fn` called back to back (Python overhead included)."""
    for _ in range(3):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(rounds):
        start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(iters):
            fn()
        stop.record()
        stop.synchronize()
        times.append(start.elapsed_time(stop) / 1e3 / iters)
    return statistics.median(times)


def benchmark(h, torch) -> list[dict]:
    rows = []
    for dtype_name in ("bfloat16", "float32"):
        dt = getattr(torch, dtype_name)
        for k, n in PERF_SHAPES:
            w = torch.randn((n, k), device="cuda").to(dt)  # stored like an embedding: [V, H]
            materialised = w.t().contiguous()  # the copy ICL avoids: [K, N]
            for m in PERF_M:
                a = torch.randn((m, k), device="cuda").to(dt)
                flops = 2.0 * m * k * n
                probe = time_eager(torch, lambda: torch.matmul(a, materialised), 3, 1)  # noqa: B023
                iters = max(5, min(200, int(0.02 / max(probe, 1e-6))))
                fns = {
                    "icl": lambda: h.matmul(a, w, transpose=1),  # noqa: B023
                    "torch": lambda: torch.matmul(a, materialised),  # noqa: B023
                    "torch_wt": lambda: torch.matmul(a, w.t()),  # noqa: B023
                }
                row = {"dtype": dtype_name, "K": k, "N": n, "M": m, "iters": iters}
                for name, fn in fns.items():
                    row[f"{name}_eager_s"] = time_eager(torch, fn, iters, 5)
                    try:
                        row[f"{name}_graph_s"] = time_graph(torch, fn, iters, 5)
                    except RuntimeError as exc:  # capture refused: keep the eager figure
                        row[f"{name}_graph_s"] = None
                        row.setdefault("notes", []).append(f"{name} graph: {exc}")
                g_icl, g_torch = row["icl_graph_s"], row["torch_graph_s"]
                row["ratio_graph"] = g_torch / g_icl if g_icl and g_torch else None
                row["ratio_eager"] = row["torch_eager_s"] / row["icl_eager_s"]
                best_icl = g_icl or row["icl_eager_s"]
                row["icl_tflops"] = flops / best_icl / 1e12
                row["icl_weight_gbps"] = n * k * w.element_size() / best_icl / 1e9
                rows.append(row)
                print(
                    f"  {dtype_name:8s} K={k:5d} N={n:6d} M={m:4d}  "
                    f"graph ratio {row['ratio_graph'] or float('nan'):.3f}  "
                    f"eager ratio {row['ratio_eager']:.3f}  icl {best_icl * 1e6:9.1f} us",
                    flush=True,
                )
            w = materialised = a = None  # free this shape's tensors before the next one
            torch.cuda.empty_cache()
    return rows


# --- optional: ORT CUDA session --------------------------------------------------------------


def ort_parity(torch) -> dict:
    try:
        import numpy as np
        import onnxruntime as ort
        from onnx import TensorProto, helper
    except ImportError as exc:
        return {"status": f"skipped: {exc}"}
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        return {"status": "skipped: onnxruntime has no CUDAExecutionProvider (not onnxruntime-gpu)"}
    lib = os.environ.get("ICL_ONNX_LIBRARY", str(harness.ROOT / "build" / "cuda" / "libicl_ops.so"))
    k, n = 768, 30000
    rng = np.random.default_rng(0)
    w = rng.standard_normal((n, k)).astype(np.float32)
    a = rng.standard_normal((4, k)).astype(np.float32)
    idx = np.array([0, 7, -1], dtype=np.int64)
    nodes = [
        helper.make_node("IclMatMul", ["A", "W"], ["Y"], domain="ai.icl", transpose=1),
        helper.make_node("IclGather", ["W", "I"], ["E"], domain="ai.icl"),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [
            helper.make_tensor_value_info("A", TensorProto.FLOAT, [4, k]),
            helper.make_tensor_value_info("I", TensorProto.INT64, [3]),
        ],
        [
            helper.make_tensor_value_info("Y", TensorProto.FLOAT, [4, n]),
            helper.make_tensor_value_info("E", TensorProto.FLOAT, [3, k]),
        ],
        initializer=[helper.make_tensor("W", TensorProto.FLOAT, w.shape, w.ravel())],
    )
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", 18), helper.make_opsetid("ai.icl", 1)],
        ir_version=10,  # onnx 1.23 writes 14 by default, which ORT 1.31 refuses
    )
    want_y = a.astype(np.float64) @ w.astype(np.float64).T
    result: dict = {"status": "ran", "weight_bytes": int(w.nbytes), "ort": ort.__version__}
    # ORT's default (TF32 for float32 products) and full float32.
    for label, provider_options in (("default", {}), ("use_tf32=0", {"use_tf32": "0"})):
        try:
            options = ort.SessionOptions()
            options.register_custom_ops_library(lib)
            options.add_session_config_entry("session.disable_cpu_ep_fallback", "1")
            free_before = torch.cuda.mem_get_info()[0]
            sess = ort.InferenceSession(
                model.SerializeToString(),
                sess_options=options,
                providers=[("CUDAExecutionProvider", provider_options)],
            )
            y, e = sess.run(None, {"A": a, "I": idx})
            free_after = torch.cuda.mem_get_info()[0]
            del sess
        except Exception as exc:  # report, do not fail the whole check
            return {"status": f"failed ({label}): {type(exc).__name__}: {exc}"}
        result[label] = {
            "matmul_max_abs_err": float(np.abs(y - want_y).max()),
            "gather_exact": bool(np.array_equal(e, w[[0, 7, n - 1]])),
            "session_device_bytes": int(free_before - free_after),
        }
    return result


# --- report --------------------------------------------------------------------------------


def fmt(x, spec: str = ".3f") -> str:
    return "n/a" if x is None else format(x, spec)


def write_report(out_dir: Path, name: str, result: dict) -> None:
    """Writes ``name``.json and ``name``.md under ``out_dir``."""
    harness.write_json(out_dir / f"{name}.json", result)
    lines = [
        "# CUDA kernels on the GPU (benchmarks/gpu_check.py)",
        "",
        f"- machine: {harness.describe(result['machine'])}",
        f"- device: {result['device']}, capability {result['capability']}",
        f"- torch {result['torch']}, CUDA {result['torch_cuda']}; harness built with CUDA "
        f"{result['harness_cuda']} for archs {result['archs']}; loaded kernel image: binary "
        f"{result['kernel_binary']}, PTX {result['kernel_ptx']}",
        f"- harness: {result['harness_path']}; op library (ORT sessions): {result['library']}",
        f"- cuBLAS in the process: {', '.join(result['cublas']) or 'none'}",
        f"- free device memory before/after: {result['mem_free_before']} / "
        f"{result['mem_free_after']} bytes",
        f"- run time: {result['seconds']:.0f} s",
        "",
        "## Correctness (max abs error against a float64 reference)",
        "",
    ]
    checks = result["checks"]
    failed = [c for c in checks if not c["ok"]]
    if checks:
        lines.append(f"{len(checks) - len(failed)} of {len(checks)} cases pass.")
    else:
        lines.append("Not run in this call (--skip-correctness).")
    lines += ["", "| kernel | A / indices | W | Y | view | M | max abs err | tol | ok |"]
    lines.append("|---|---|---|---|---|---|---|---|---|")
    for c in checks:
        lines.append(
            f"| {c['kernel']} | {c['a']} | {c['w']} | {c.get('out', c['a'])} | {c['view']} | "
            f"{c.get('m', '')} | {c['max_abs_err']:.3g} | {c['tol']:.3g} | "
            f"{'yes' if c['ok'] else '**NO**'} |"
        )
    lines += [
        "",
        "## IclMatMul throughput against torch.matmul on the materialised view",
        "",
        "W is stored [N, K] and read through `transpose=1`; torch multiplies by the contiguous "
        "copy W^T [K, N] (`torch`) or by the strided `W.t()` (`torch_wt`). Ratio = torch time / "
        f"ICL time, goal >= {GOAL}. Graph: CUDA-graph replay (kernel time only); eager: "
        "Python calls back to back.",
        "",
        "| dtype | K | N | M | ICL us | torch us | torch_wt us | ratio (graph) | ratio (eager) "
        "| ICL TFLOP/s | ICL weight GB/s | goal |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    if not result["benchmark"]:
        lines.append("| not run in this call (--skip-benchmark) |||||||||||")
    for r in result["benchmark"]:
        icl = r["icl_graph_s"] or r["icl_eager_s"]
        tor = r["torch_graph_s"] or r["torch_eager_s"]
        twt = r["torch_wt_graph_s"] or r["torch_wt_eager_s"]
        ratio = r["ratio_graph"] if r["ratio_graph"] is not None else r["ratio_eager"]
        lines.append(
            f"| {r['dtype']} | {r['K']} | {r['N']} | {r['M']} | {icl * 1e6:.1f} | "
            f"{tor * 1e6:.1f} | {twt * 1e6:.1f} | {fmt(r['ratio_graph'])} | "
            f"{fmt(r['ratio_eager'])} | {r['icl_tflops']:.1f} | {r['icl_weight_gbps']:.0f} | "
            f"{'met' if ratio >= GOAL else 'MISSED'} |"
        )
    notes = [n for r in result["benchmark"] for n in r.get("notes", [])]
    if notes:
        lines += ["", "Notes: " + "; ".join(notes)]
    lines += ["", "## ORT CUDA session", "", "```", json.dumps(result["ort"], indent=1), "```"]
    harness.write_markdown(out_dir / f"{name}.md", lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    harness.out_argument(parser)
    parser.add_argument("--skip-correctness", action="store_true", help="no correctness cases")
    parser.add_argument("--skip-benchmark", action="store_true", help="no throughput table")
    parser.add_argument("--skip-ort", action="store_true", help="no ORT CUDA session check")
    parser.add_argument(
        "--name", default="gpu_h200", help="report file stem (default gpu_h200: .md and .json)"
    )
    args = parser.parse_args()
    started = time.time()
    try:
        import torch
    except ImportError:
        print("torch is not installed", file=sys.stderr)
        return 2
    if not torch.cuda.is_available():
        print("no CUDA GPU visible to torch", file=sys.stderr)
        return 2
    hm = load_harness_module()
    try:
        h = hm.load()
    except hm.HarnessNotFoundError as exc:
        print(exc, file=sys.stderr)
        return 2
    print(f"harness: {h.path}, archs {h.arch_list()}", flush=True)
    mem_before = torch.cuda.mem_get_info()[0]
    binary, ptx = h.loaded_kernel_versions()
    checks: list[dict] = []
    if not args.skip_correctness:
        print("correctness ...", flush=True)
        checks = check_matmul(h, hm, torch) + check_gather(h, hm, torch)
        torch.cuda.synchronize()
        print(f"  {sum(c['ok'] for c in checks)} of {len(checks)} cases pass", flush=True)
        for c in checks:
            if not c["ok"]:
                print(f"  FAIL {c}", flush=True)
    bench: list[dict] = []
    if not args.skip_benchmark:
        print("throughput ...", flush=True)
        bench = benchmark(h, torch)
    ort_result = {"status": "not run (--skip-ort)"}
    if not args.skip_ort:
        print("ORT CUDA session ...", flush=True)
        ort_result = ort_parity(torch)
        print(f"  {ort_result}", flush=True)
    result = {
        "device": torch.cuda.get_device_name(),
        "capability": ".".join(map(str, torch.cuda.get_device_capability())),
        "torch": torch.__version__,
        "torch_cuda": torch.version.cuda,
        "machine": harness.metadata(("torch", "numpy", "onnxruntime")),
        "harness_path": h.path,
        "library": os.environ.get("ICL_ONNX_LIBRARY", "(icl_onnx.library_path())"),
        "harness_cuda": h.cuda_version(),
        "archs": h.arch_list(),
        "kernel_binary": binary,
        "kernel_ptx": ptx,
        "cublas": loaded_cublas(),
        "mem_free_before": mem_before,
        "mem_free_after": torch.cuda.mem_get_info()[0],
        "checks": checks,
        "benchmark": bench,
        "ort": ort_result,
        "seconds": time.time() - started,
    }
    write_report(args.out, args.name, result)
    print(f"wrote {args.out / (args.name + '.md')} in {result['seconds']:.0f} s", flush=True)
    failed = not all(c["ok"] for c in checks) or result["ort"]["status"].startswith("failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
