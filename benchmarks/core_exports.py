"""The core issue's measurement: tied-embedding exports before and after ``icl-onnx optimize``.

For BERT (ForMaskedLM) and a Llama-style causal LM with tied embeddings (random weights from
transformers configs), each exported with the TorchScript and the dynamo exporter, it measures
side by side in one run:

* copies (exact or transposed initializers) in the file and in the graph ORT builds
  (``SessionOptions.optimized_model_filepath``), found by icl-onnx's own analysis;
* initializer bytes in the file and in ORT's graph;
* parity (max abs error per output) and peak RSS of opening the session and running once,
  each model in its own subprocess (``icl_onnx.check.check_models``).

Writes ``benchmarks/results/core_exports.md`` and ``.json``.

Usage: python -m benchmarks.core_exports [--hidden 768 --vocab 30000 --layers 2] [--out DIR]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import onnxruntime as ort

import icl_onnx
from benchmarks import harness
from benchmarks.harness import describe, mb, metadata, table, write_json, write_markdown
from icl_onnx.check import check_models
from icl_onnx.model_io import load_model
from icl_onnx.models import build_model
from icl_onnx.pipeline import optimize_file
from icl_onnx.planning import analyze
from icl_onnx.torch_export import export_onnx


def copies(path: Path) -> tuple[int, int]:
    """Returns (tensors that are an exact/transposed copy of another, their bytes) in a model.

    Transpose nodes on an initializer count too: ORT folds each into a copy at load.
    """
    plan = analyze(load_model(path))
    members = [m for g in plan.groups for m in g.members]
    return len(members), sum(g.nbytes for g in plan.groups for m in g.members)


def ort_built_graph(path: Path, folder: Path) -> Path:
    """Saves the graph ORT builds for ``path`` (CPU, default optimizations) and returns it."""
    options = icl_onnx.session_options()
    options.log_severity_level = 3
    out = folder / f"{path.stem}.ort.onnx"
    options.optimized_model_filepath = str(out)
    options.add_session_config_entry(
        "session.optimized_model_external_initializers_file_name", f"{out.name}.data"
    )
    options.add_session_config_entry(
        "session.optimized_model_external_initializers_min_size_in_bytes", "1024"
    )
    ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return out


def measure_one(arch: str, exporter: str, args: argparse.Namespace, folder: Path) -> dict:
    module, inputs = build_model(arch, hidden=args.hidden, vocab=args.vocab, layers=args.layers)
    tied_bytes = args.vocab * args.hidden * 4
    original = folder / f"{arch}-{exporter}.onnx"
    export_onnx(module, original, inputs, dynamo=exporter == "dynamo")
    del module
    optimized = folder / f"{arch}-{exporter}.icl.onnx"
    result = optimize_file(original, optimized)
    row: dict = {"arch": arch, "exporter": exporter, "tied_weight_bytes": tied_bytes}
    for label, path in (("original", original), ("optimized", optimized)):
        n, nbytes = copies(path)
        built = ort_built_graph(path, folder)
        ort_n, ort_bytes = copies(built)
        plan = analyze(load_model(built))
        row[label] = {
            "file_bytes": path.stat().st_size,
            "initializer_bytes": analyze(load_model(path)).initializer_bytes,
            "file_copies": n,
            "file_copy_bytes": nbytes,
            "ort_graph_initializer_bytes": plan.initializer_bytes,
            "ort_graph_copies": ort_n,
            "ort_graph_copy_bytes": ort_bytes,
        }
    shapes = {name: (2, 16) for name in inputs}  # batch 2, sequence 16 for every token input
    report = check_models(original, optimized, atol=1e-4, rtol=1e-4, input_shapes=shapes)
    row["parity_passed"] = report.parity.passed
    row["max_abs_error"] = max(o.max_abs for o in report.parity.outputs)
    for label, m in (("original", report.memory.original), ("optimized", report.memory.optimized)):
        row[label]["peak_rss_create"] = m.rss_after_create
        row[label]["peak_rss_run"] = m.rss_after_run
        row[label]["rss_baseline"] = m.rss_baseline
    row["rss_saved"] = row["original"]["peak_rss_run"] - row["optimized"]["peak_rss_run"]
    row["rss_saved_in_tied_copies"] = row["rss_saved"] / tied_bytes
    row["plan_freed_bytes"] = result.plan.freed_bytes
    return row


def to_markdown(rows: list[dict], args: argparse.Namespace, meta: dict) -> list[str]:
    """The results file: how it was measured, then a row per model and exporter."""
    lines = [
        "# Core issue: tied-embedding exports before and after `icl-onnx optimize`",
        "",
        f"Models: hidden {args.hidden}, vocab {args.vocab}, {args.layers} layers, random weights "
        f"(tied weight {mb(args.vocab * args.hidden * 4)} MB). CPU: {describe(meta)} "
        "Copies = initializers (or Transpose nodes on one) that are an exact or transposed copy "
        "of another, counted by icl-onnx's analysis; 'ORT graph' = the graph ORT builds "
        "(optimized_model_filepath). Peak RSS = VmHWM after creating the session and running "
        "once, each model in its own subprocess, inputs of batch 2 x sequence 16. "
        "Parity: every output within atol 1e-4 or rtol 1e-4. MB = 10^6 bytes. "
        "The dynamo BERT export also holds two all-zero biases that are exact copies.",
        "",
    ]
    header = [
        "model", "exporter", "copies in file (before → after)", "copies in ORT graph",
        "file initializers MB", "ORT-graph initializers MB", "peak RSS MB",
        "RSS saved (tied copies)", "max abs err", "parity",
    ]  # fmt: skip
    cells = []
    for r in rows:
        o, p = r["original"], r["optimized"]
        cells.append(
            [
                r["arch"],
                r["exporter"],
                f"{o['file_copies']} → {p['file_copies']}",
                f"{o['ort_graph_copies']} → {p['ort_graph_copies']}",
                *(
                    f"{mb(o[key])} → {mb(p[key])}"
                    for key in ("initializer_bytes", "ort_graph_initializer_bytes", "peak_rss_run")
                ),
                f"{mb(r['rss_saved'])} ({r['rss_saved_in_tied_copies']:.2f})",
                f"{r['max_abs_error']:.2e}",
                "pass" if r["parity_passed"] else "FAIL",
            ]
        )
    return lines + table(header, cells)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hidden", type=int, default=768)
    parser.add_argument("--vocab", type=int, default=30000)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--arch", nargs="*", default=["bert", "llama"])
    parser.add_argument("--exporter", nargs="*", default=["torchscript", "dynamo"])
    harness.out_argument(parser)
    args = parser.parse_args(argv)
    meta = metadata()
    rows = []
    with tempfile.TemporaryDirectory(prefix="icl-core-") as tmp:
        for arch in args.arch:
            for exporter in args.exporter:
                print(f"{arch} / {exporter} ...", file=sys.stderr, flush=True)
                rows.append(measure_one(arch, exporter, args, Path(tmp)))
    lines = to_markdown(rows, args, meta)
    write_markdown(args.out / "core_exports.md", lines)
    write_json(args.out / "core_exports.json", {"machine": meta, "rows": rows}, indent=2)
    print("\n".join(lines))
    return 0 if all(r["parity_passed"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
