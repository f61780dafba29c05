"""End-to-end latency of icl-onnx's output, default and shared sessions, against the original.

For each model (BERT masked-LM and a tied Llama, TorchScript and dynamo exports, and a tied Llama
decoder with KV-cache inputs, ``model_zoo.export_llama_with_past``; random weights, hidden 768, 2
layers, vocab 30000 (BERT) or 32000 (Llama)) three files are written: the original as exported, icl-
onnx's output without and with ``--read-weights-in-place`` (both with external data). Five sessions
run alternately in one worker process (``_latency_worker``, intra-op spinning off in all), in a
shuffled order each round: the original in a default session (the baseline) and each optimized file
in a default session and in a shared one (``share_across_processes=True``: prepacking off). A cell
is one input: a prompt of 1, 8, 32 or 128 tokens (no cache; an empty cache for the with-past
decoder) and, for the with-past decoder, one token after 128 cached positions (single-row decode;
without a cache, a single row is the 1-token prompt). Each cell reports the median per-round ratio
of a session's time to the baseline's, with the 10th and 90th percentiles.

Memory: the original (default session), the file without the option in a shared session and
the file with it in both sessions are each opened in a fresh process (``_memory_worker
serve``) that runs prompts of 128 tokens; RssAnon (private) and RssFile added by the session
and its runs are set against the weights.

Writes ``benchmarks/results/latency.md`` and ``latency.json`` (or ``--out``).

Usage:
    python -m benchmarks.bench_latency           # every model, 1 and 2 threads (~15 min idle)
    python -m benchmarks.bench_latency --quick   # BERT and the with-past decoder, 2 threads
The ICL op library comes from ``icl_onnx.library_path()`` (``ICL_ONNX_LIBRARY`` overrides it).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

import icl_onnx
from benchmarks import _latency_worker, harness
from benchmarks.bench_processes import run_workers, weight_bytes
from benchmarks.model_zoo import export_llama_with_past
from icl_onnx.models import build_model
from icl_onnx.pipeline import optimize_file
from icl_onnx.torch_export import export_onnx

MODELS = ("bert-torchscript", "llama-torchscript", "llama-dynamo", "llama-withpast")
#: (label, file, share_across_processes); the first is the baseline.
SESSIONS = (
    ("original, default session", "original", False),
    ("before, default", "before", False),
    ("before, shared", "before", True),
    ("after, default", "after", False),
    ("after, shared", "after", True),
)
PROMPTS = (1, 8, 32, 128)
DECODE_PAST = 128
GOAL = 1.03


def build_files(name: str, folder: Path) -> dict[str, Path]:
    """Exports ``name`` (unless ``folder`` has it) and writes the two optimized files."""
    arch, exporter = name.split("-")
    vocab = 30000 if arch == "bert" else 32000
    files = {key: folder / f"{name}.{key}.onnx" for key in ("original", "before", "after")}
    if files["original"].is_file():
        pass  # exported by an earlier run into the same --work folder
    elif exporter == "withpast":
        export_llama_with_past(files["original"], hidden=768, vocab=vocab, layers=2, heads=12)
    else:
        module, inputs = build_model(arch, hidden=768, vocab=vocab, layers=2, heads=12)
        export_onnx(module, files["original"], inputs, dynamo=exporter == "dynamo")
    optimize_file(files["original"], files["before"], external_data=True)
    optimize_file(files["original"], files["after"], external_data=True, read_weights_in_place=True)
    return files


def cells(name: str, prompts: tuple[int, ...]) -> list[tuple[str, int, int]]:
    """``(label, new tokens, past positions)`` of every input ``name`` is measured on."""
    out = [(f"prompt {n}", n, 0) for n in prompts]
    if name.endswith("withpast"):
        out.append((f"decode after {DECODE_PAST}", 1, DECODE_PAST))
    return out


def stats(ratios: list[float]) -> dict[str, float]:
    """Median and 10th/90th percentiles of per-round ratios."""
    p10, median, p90 = np.percentile(ratios, [10, 50, 90])
    return {"median": float(median), "p10": float(p10), "p90": float(p90), "n": len(ratios)}


def latency(
    files: dict[str, Path], name: str, threads: int, args: argparse.Namespace, folder: Path
) -> dict[str, dict[str, dict[str, float]]]:
    """``{cell: {session label: stats}}`` for one model at ``threads`` threads."""
    request = {
        "threads": threads,
        "runs": args.runs,
        "cells": cells(name, tuple(args.prompts)),
        "sessions": [
            {"model": str(files[f]), "shared": s, "spinning": False} for _, f, s in SESSIONS
        ],
    }
    measured = _latency_worker.run(request, folder / "latency-request.json")
    return {
        cell: {label: stats(r) for (label, _, _), r in zip(SESSIONS, per, strict=True)}
        for cell, per in measured.items()
    }


def memory(files: dict[str, Path], folder: Path) -> dict[str, dict[str, int]]:
    """RssAnon and RssFile added by one fresh process's session and 128-token prompts."""
    out = {}
    for label, key, shared in (
        ("original, default session", "original", False),
        ("before, shared", "before", True),
        ("after, default", "after", False),
        ("after, shared", "after", True),
    ):
        request = {"model": str(files[key]), "shared": shared, "vocab": 512, "chunk": 128}
        worker = run_workers({**request, "threads": 2}, [1], folder)["workers"][0]
        out[label] = {k: worker["after"][k] - worker["before"][k] for k in ("RssAnon", "RssFile")}
    return out


def measure_model(name: str, args: argparse.Namespace, folder: Path) -> dict[str, Any]:
    print(f"{name}: export and optimize", file=sys.stderr, flush=True)
    files = build_files(name, folder)
    result: dict[str, Any] = {
        "model": name,
        "weight_bytes": weight_bytes(files["after"]),
        "latency": {},
    }
    for threads in args.threads:
        print(f"{name}: latency, {threads} thread(s)", file=sys.stderr, flush=True)
        result["latency"][str(threads)] = latency(files, name, threads, args, folder)
    print(f"{name}: memory", file=sys.stderr, flush=True)
    result["memory"] = memory(files, folder)
    return result


def _cell(s: dict[str, float]) -> str:
    return f"{s['median']:.2f} ({s['p10']:.2f}–{s['p90']:.2f})"


def worst(results: list[dict[str, Any]], threads: str) -> dict[str, float]:
    """The highest median ratio of each optimized session over every model and cell."""
    out = {}
    for label, _, _ in SESSIONS[1:]:
        out[label] = max(
            by_session[label]["median"]
            for r in results
            for by_session in r["latency"].get(threads, {}).values()
        )
    return out


def to_markdown(
    results: list[dict[str, Any]],
    args: argparse.Namespace,
    seconds: float,
    meta: dict[str, Any],
    load: str = "",
) -> list[str]:
    """The results file: how it was measured, the worst ratios, every cell, private memory."""
    labels = [label for label, _, _ in SESSIONS[1:]]
    lines = [
        "# End-to-end latency: icl-onnx default and shared sessions against the original",
        "",
        "`python -m benchmarks.bench_latency"
        + (" --quick" if args.quick else "")
        + f"`. CPU: {harness.describe(meta)} Op library {icl_onnx.library_path()}. "
        "Models: random weights, hidden 768, 12 heads, 2 layers, vocab 30000 (BERT) / 32000 "
        "(Llama), tied embeddings; `withpast`: a Llama decoder with KV-cache inputs (Optimum's "
        "names, TorchScript export). before = `icl-onnx optimize` (external data); after = the "
        "same with `--read-weights-in-place`. default = `create_session(path)`, shared = "
        "`create_session(path, share_across_processes=True)` (prepacking off); intra-op spinning "
        "off in every session (five pools spinning on two cores slow each other's runs). Each "
        f"cell: the five sessions run once each per round in a shuffled order, {args.runs} rounds "
        f"({3 * args.runs} for inputs of at most 8 tokens) after 2 warm-up runs, in one process; "
        "the value is the median of the per-round ratios time / time of the original in a default "
        f"session, with the 10th–90th percentiles. Goal: after, shared ≤ {GOAL}. Total run "
        f"{seconds:.0f} s" + (f"; 1-minute load average {load}." if load else "."),
        "",
        "Worst median ratio per mode (every model and cell):",
        "",
        *(
            f"- {threads} thread(s): "
            + ", ".join(f"{label} {v:.2f}" for label, v in worst(results, threads).items())
            for threads in results[0]["latency"]
        ),
        "",
        "| model | threads | input | " + " | ".join(labels) + " |",
        "|---|---:|---|" + "---:|" * len(labels),
    ]
    for r in results:
        for threads, per_cell in r["latency"].items():
            for cell, by_session in per_cell.items():
                values = " | ".join(_cell(by_session[label]) for label in labels)
                lines.append(f"| {r['model']} | {threads} | {cell} | {values} |")
    lines += [
        "",
        "## Private memory",
        "",
        "Added by opening one session and running 128-token prompts, each in a fresh process "
        "(MB = 10^6 bytes; weights = the initializers of icl-onnx's output).",
        "",
        "| model | weights MB | "
        + " | ".join(f"{label}: RssAnon / RssFile MB" for label in next(iter(results))["memory"])
        + " |",
        "|---|---:|" + "---:|" * len(next(iter(results))["memory"]),
    ]
    for r in results:
        cells_ = " | ".join(
            f"{harness.mb(m['RssAnon'], 0)} / {harness.mb(m['RssFile'], 0)}"
            for m in r["memory"].values()
        )
        lines.append(f"| {r['model']} | {harness.mb(r['weight_bytes'], 0)} | {cells_} |")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="*", default=list(MODELS), choices=MODELS)
    parser.add_argument("--threads", type=int, nargs="*", default=[1, 2])
    parser.add_argument("--prompts", type=int, nargs="*", default=list(PROMPTS))
    parser.add_argument("--runs", type=int, default=40, help="rounds per cell")
    parser.add_argument(
        "--quick", action="store_true", help="BERT and the with-past decoder, 2 threads, 20 rounds"
    )
    harness.out_argument(parser)
    parser.add_argument(
        "--work", type=Path, help="keep the models here, reuse their exports (default: a temp dir)"
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.models, args.threads, args.runs = ["bert-torchscript", "llama-withpast"], [2], 20
    meta = harness.metadata()
    start, load = time.perf_counter(), os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="icl-latency-") as tmp:
        work = args.work or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        results = [measure_model(name, args, work) for name in args.models]
    load_text = f"{load:.1f} before, {os.getloadavg()[0]:.1f} after"
    lines = to_markdown(results, args, time.perf_counter() - start, meta, load_text)
    harness.write_markdown(args.out / "latency.md", lines)
    harness.write_json(args.out / "latency.json", results, indent=2)
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
