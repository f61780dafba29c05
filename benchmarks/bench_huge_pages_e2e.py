"""End to end: icl-onnx's output stored inline, its IclMatMul weights in huge pages or not.

Huge pages apply where ORT holds a weight in its own memory (docs/operators.md, Kernels): a
model saved without external data. For each model (a tied Llama, TorchScript export, and a tied
Llama decoder with KV-cache inputs, as ``bench_latency``: random weights, hidden 768, 2 layers,
vocab 32000) the original and icl-onnx's outputs with ``--no-external-data`` (default, and with
``--read-weights-in-place``, which routes every MatMul weight through IclMatMul) run alternated
in one worker process (``_latency_worker``), each optimized file in a session created with
``ICL_ONNX_HUGE_PAGES=sync`` (W collapsed when creation returns) and one created with ``0``. A
cell is one input, as in ``bench_latency``; its value is the median per-round ratio of a
session's time to the original's (10th-90th percentiles)::

    python -m benchmarks.bench_huge_pages_e2e
"""

from __future__ import annotations

import argparse
import datetime
import shlex
import sys
import tempfile
from pathlib import Path

from benchmarks import _latency_worker, harness
from benchmarks.bench_latency import cells, stats
from benchmarks.model_zoo import export_llama_with_past
from icl_onnx.models import build_model
from icl_onnx.pipeline import optimize_file
from icl_onnx.torch_export import export_onnx

MODELS = ("llama-torchscript", "llama-withpast")
#: (label, file, ICL_ONNX_HUGE_PAGES or None); the first is the baseline.
SESSIONS = (
    ("original", "original", None),
    ("optimized, huge pages", "before", "sync"),
    ("optimized, 4 KiB pages", "before", "0"),
    ("in place, huge pages", "after", "sync"),
    ("in place, 4 KiB pages", "after", "0"),
)


def build_files(name: str, folder: Path) -> dict[str, Path]:
    """Exports ``name`` and writes icl-onnx's two outputs, weights inline."""
    files = {key: folder / f"{name}.{key}.onnx" for key in ("original", "before", "after")}
    if name == "llama-withpast":
        export_llama_with_past(files["original"], hidden=768, vocab=32000, layers=2, heads=12)
    else:
        module, inputs = build_model("llama", hidden=768, vocab=32000, layers=2, heads=12)
        export_onnx(module, files["original"], inputs, dynamo=False)
    optimize_file(files["original"], files["before"], external_data=False)
    optimize_file(
        files["original"], files["after"], external_data=False, read_weights_in_place=True
    )
    return files


def measure(name: str, threads: int, args: argparse.Namespace, files: dict, folder: Path):
    sessions = []
    for _, key, huge in SESSIONS:
        spec = {"model": str(files[key]), "spinning": False}
        if huge is not None:
            spec["huge_pages"] = huge
        sessions.append(spec)
    request = {"threads": threads, "runs": args.runs, "cells": cells(name, (1, 8, 32, 128)),
               "sessions": sessions}  # fmt: skip
    measured = _latency_worker.run(request, folder / "request.json")
    return {
        cell: {label: stats(r) for (label, _, _), r in zip(SESSIONS, per, strict=True)}
        for cell, per in measured.items()
    }


def markdown(record: dict) -> list[str]:
    labels = [label for label, _, _ in SESSIONS[1:]]
    when = datetime.datetime.fromisoformat(record["measured"])
    lines = [
        "# End to end with the weights in huge pages (inline models)",
        "",
        f"`python -m benchmarks.bench_huge_pages_e2e {record['command']}`, "
        f"{when:%Y-%m-%d %H:%M} UTC.",
        "",
        f"- {harness.describe(record['machine'])}",
        "- " + __doc__.split("\n\n")[1].replace("\n", " "),
        f"- {record['runs']} rounds per cell (three times as many for inputs of at most 8 "
        "tokens), intra-op spinning off.",
        "",
        "| model | threads | input | " + " | ".join(labels) + " |",
        "|---|---:|---|" + "---:|" * len(labels),
    ]
    for r in record["results"]:
        for cell, by_session in r["latency"].items():
            values = " | ".join(
                f"{by_session[x]['median']:.2f} ({by_session[x]['p10']:.2f}-"
                f"{by_session[x]['p90']:.2f})"
                for x in labels
            )
            lines.append(f"| {r['model']} | {r['threads']} | {cell} | {values} |")
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="*", default=list(MODELS), choices=MODELS)
    parser.add_argument("--threads", type=int, nargs="*", default=[1, 2])
    parser.add_argument("--runs", type=int, default=40)
    parser.add_argument("--output", type=Path, default=harness.RESULTS / "huge_pages_e2e.md")
    args = parser.parse_args()
    when = datetime.datetime.now(datetime.UTC)
    machine = harness.metadata()
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models:
            print(f"{name}: export and optimize", file=sys.stderr, flush=True)
            files = build_files(name, Path(tmp))
            for threads in args.threads:
                print(f"{name}: {threads} thread(s)", file=sys.stderr, flush=True)
                latency = measure(name, threads, args, files, Path(tmp))
                results.append({"model": name, "threads": threads, "latency": latency})
    record = {
        "command": shlex.join(sys.argv[1:]),
        "measured": when.isoformat(),
        "machine": machine,
        "runs": args.runs,
        "results": results,
    }
    harness.write_record(args.output, record, markdown)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
