"""Weight-deduplication tools side by side on exported Hugging Face architectures.

For each architecture (BERT ForMaskedLM, a Llama-style causal LM with tied embeddings, BART,
and ViT as a control; random weights from transformers configs), exported with the TorchScript
and the dynamo exporter, each tool of ``_tool_passes.TOOLS`` is applied and the result measured:

* file bytes (model plus external data);
* initializer bytes in the graph ORT builds (``optimized_model_filepath``);
* peak RSS added by opening the session and running it (VmHWM after the runs minus after the
  imports), CPU, each model in its own subprocess (``icl_onnx.check.measure.run_worker``);
* session creation time; latency as a ratio to the original export, both run alternately in
  one subprocess (``benchmarks._measure_latency``);
* time of the tool (load, transform, save); max |output - original output|.

Writes ``tools.md``, ``tools.json`` and ``tools.png`` to ``benchmarks/results/`` (or --out).

Usage:
    python -m benchmarks.bench_tools           # hidden 768, vocab 30000, 2 layers, all models
    python -m benchmarks.bench_tools --quick   # tiny sizes, for a smoke run
The ICL op library comes from ``icl_onnx.library_path()`` (``ICL_ONNX_LIBRARY`` overrides it).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

import icl_onnx
from benchmarks import harness
from benchmarks._tool_passes import TOOLS
from benchmarks.harness import mb
from benchmarks.model_zoo import ARCHITECTURES, build_model
from icl_onnx.check.measure import run_worker
from icl_onnx.check.model_info import read_model_info
from icl_onnx.errors import IclUserError
from icl_onnx.torch_export import export_onnx

EXPORTERS = {"torchscript": False, "dynamo": True}


@dataclass
class Row:
    model: str
    exporter: str
    tool: str
    file_bytes: int = 0
    ort_init_bytes: int = 0
    rss_delta: int = 0
    create_s: float = 0.0
    latency_s: float = 0.0
    latency_ratio: float = float("nan")
    pass_s: float = 0.0
    max_abs_diff: float = float("nan")
    error: str = ""


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--quick", action="store_true", help="tiny sizes: hidden 64, vocab 1000, 1 layer"
    )
    p.add_argument("--hidden", type=int, default=768)
    p.add_argument("--vocab", type=int, default=30000)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--heads", type=int, default=12)
    p.add_argument("--models", default=",".join(ARCHITECTURES), help="comma-separated subset")
    p.add_argument("--exporters", default="torchscript,dynamo")
    p.add_argument("--tools", default=",".join(TOOLS), help="comma-separated subset")
    p.add_argument("--runs", type=int, default=20, help="timed runs of each model (latency)")
    p.add_argument("--threads", type=int, default=1, help="ORT intra-op threads (latency)")
    harness.out_argument(p)
    p.add_argument("--name", default="tools", help="base name of the result files")
    args = p.parse_args(argv)
    if args.quick:
        args.hidden, args.vocab, args.layers, args.heads, args.runs = 64, 1000, 1, 4, 5
        if args.name == "tools":
            args.name = "tools_quick"
    return args


def measure(path: Path, feeds: dict[str, np.ndarray], work: Path):
    """Session + one run in a fresh subprocess (icl_onnx.check's worker)."""
    info = read_model_info(path)
    return run_worker(info, [feeds], work, providers=["CPUExecutionProvider"])


def latency(baseline: Path, candidate: Path, inputs: Path, args, work: Path) -> tuple[float, float]:
    """Fastest run of each model, run alternately in one subprocess (``_measure_latency``)."""
    request = work / "latency.json"
    request.write_text(
        json.dumps(
            {
                "baseline": str(baseline),
                "candidate": str(candidate),
                "inputs": str(inputs),
                "runs": args.runs,
                "threads": args.threads,
            }
        )
    )
    proc = subprocess.run(
        harness.child_command("benchmarks._measure_latency", request),
        capture_output=True, text=True, check=False, cwd=harness.ROOT,
    )  # fmt: skip
    if proc.returncode != 0:
        raise RuntimeError((proc.stderr.strip().splitlines() or ["latency worker died"])[-1])
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    return result["baseline_s"], result["candidate_s"]


def bench_model(arch: str, exporter: str, args, work: Path) -> list[Row]:
    module, inputs = build_model(
        arch, hidden=args.hidden, vocab=args.vocab, layers=args.layers, heads=args.heads
    )
    feeds = {k: v.numpy() for k, v in inputs.items()}
    inputs_npz = work / "inputs.npz"
    np.savez(inputs_npz, **feeds)
    exported = work / f"{arch}-{exporter}.onnx"
    export_onnx(module, exported, inputs, dynamo=EXPORTERS[exporter])
    del module
    rows: list[Row] = []
    reference = None
    for tool in args.tools.split(","):
        row = Row(arch, exporter, tool)
        rows.append(row)
        dst = work / f"{arch}-{exporter}-{tool.replace(' ', '_')}.onnx"
        try:
            start = time.perf_counter()
            TOOLS[tool](exported, dst)
            row.pass_s = time.perf_counter() - start
            m, outputs = measure(dst, feeds, work / f"w-{dst.stem}")
            base_s, row.latency_s = latency(exported, dst, inputs_npz, args, work)
        except (IclUserError, Exception) as e:  # noqa: BLE001 - one failing cell is reported
            row.error = f"{type(e).__name__}: {str(e).splitlines()[0][:160]}"
            print(f"  {arch}/{exporter}/{tool}: FAILED {row.error}", flush=True)
            continue
        row.file_bytes = m.file_bytes
        row.ort_init_bytes = m.ort_initializer_bytes
        row.rss_delta = m.rss_run_delta
        row.create_s = m.create_seconds
        row.latency_ratio = row.latency_s / base_s
        if tool == "original":
            reference = outputs[0]
        if reference is not None:
            row.max_abs_diff = max(
                float(np.abs(outputs[0][k].astype(np.float64) - reference[k]).max())
                for k in reference
            )
        dst.unlink(missing_ok=True)
        print(f"  {arch}/{exporter}/{tool}: done", flush=True)
    exported.unlink(missing_ok=True)
    return rows


#: The packages whose versions the results name.
PACKAGES = ("torch", "onnxruntime", "onnx-ir", "onnxoptimizer")


def markdown(rows: list[Row], args, seconds: float, meta: dict) -> list[str]:
    """The results file: how it was measured, then a row per model, exporter and tool."""
    head = (
        f"hidden {args.hidden}, vocab {args.vocab}, layers {args.layers}, heads {args.heads}; "
        f"batch 2, sequence 16 (ViT: {224 if args.hidden >= 256 else 32}px image); random weights. "
        f"CPU: {harness.describe(meta)} ICL op library: {_library()}. "
        f"Latency: the tool's model and the original export run alternately in one "
        f"subprocess, {args.runs} runs each after a warm-up, {args.threads} intra-op "
        f"thread(s); ratio of the fastest runs (the original row shows the noise). "
        f"Peak RSS: added by creating the session and running it once, own subprocess "
        f"(icl_onnx.check's worker); 'ORT initializers' is that worker's count of the "
        f"graph ORT built. "
        f"Tool time includes load and save. Total run {seconds:.0f} s."
    )
    cols = [
        "model",
        "exporter",
        "tool",
        "file MB",
        "ORT initializers MB",
        "peak RSS MB",
        "session create s",
        "latency ×",
        "tool s",
        "max abs diff",
    ]
    cells = []
    for r in rows:
        if r.error:
            row = [r.model, r.exporter, r.tool, f"failed: {r.error}"] + [""] * (len(cols) - 4)
        else:
            row = [
                r.model,
                r.exporter,
                r.tool,
                mb(r.file_bytes),
                mb(r.ort_init_bytes),
                mb(r.rss_delta),
                f"{r.create_s:.2f}",
                f"{r.latency_ratio:.2f}",
                f"{r.pass_s:.2f}",
                f"{r.max_abs_diff:.1e}",
            ]
        cells.append(row)
    return ["# Weight-deduplication tools on exported models", "", head, ""] + harness.table(
        cols, cells
    )


def chart(rows: list[Row], path: Path, title: str) -> None:
    """Bars of ORT's initializer bytes and peak RSS, per model and exporter, a bar per tool."""
    plt = harness.pyplot()
    groups = list(dict.fromkeys((r.model, r.exporter) for r in rows))
    tools = list(dict.fromkeys(r.tool for r in rows))
    cell = {(r.model, r.exporter, r.tool): r for r in rows}
    fig, axes = plt.subplots(2, 1, figsize=(max(8, 1.6 * len(groups)), 8), sharex=True)
    width = 0.8 / len(tools)
    x = np.arange(len(groups))
    for ax, field, label in (
        (axes[0], "ort_init_bytes", "initializers in ORT's graph (MB)"),
        (axes[1], "rss_delta", "peak RSS of session + run (MB)"),
    ):
        for i, tool in enumerate(tools):
            values = [
                getattr(cell[(m, e, tool)], field) / harness.MB if (m, e, tool) in cell else 0
                for m, e in groups
            ]
            ax.bar(x + (i - (len(tools) - 1) / 2) * width, values, width, label=tool)
        ax.set_ylabel(label)
        ax.set_ylim(0, ax.get_ylim()[1] * 1.15)  # room for the legend
        ax.grid(axis="y", alpha=0.3)
    axes[0].legend(ncol=len(tools), fontsize="small")
    axes[0].set_title(title)
    axes[1].set_xticks(x, [f"{m}\n{e}" for m, e in groups])
    fig.tight_layout()
    harness.save_png(fig, path)


def _library() -> str:
    try:
        return icl_onnx.library_path()
    except Exception as e:  # noqa: BLE001
        return f"missing ({e})"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    meta = harness.metadata(PACKAGES)
    start = time.perf_counter()
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="bench-tools.") as tmp:
        for arch in args.models.split(","):
            for exporter in args.exporters.split(","):
                print(f"{arch} / {exporter}", flush=True)
                rows += bench_model(arch, exporter, args, Path(tmp))
    seconds = time.perf_counter() - start
    lines = markdown(rows, args, seconds, meta)
    harness.write_markdown(args.out / f"{args.name}.md", lines)
    harness.write_json(
        args.out / f"{args.name}.json",
        {"machine": meta, "args": vars(args), "rows": [asdict(r) for r in rows]},
    )
    title = f"hidden {args.hidden}, vocab {args.vocab}, {args.layers} layer(s), CPU"
    chart(rows, args.out / f"{args.name}.png", title)
    print("\n".join(lines))
    return 1 if any(r.error for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
