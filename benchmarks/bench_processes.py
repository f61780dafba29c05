"""What N processes serving one model pay: total PSS split into private and shared memory.

For each model (tied-embedding BERT and Llama from transformers configs, random weights,
exported with TorchScript or dynamo) and each way of storing and opening it, N = 1, 2, 4 worker
processes (``benchmarks._memory_worker``) each open a session and run prefill chunks that
cover the whole vocabulary. The workers are started one after another and kept alive; when N are
alive the parent sums ``Pss_Anon`` (private) and ``Pss_File`` (file-backed pages shared
through the page cache) from ``/proc/PID/smaps_rollup`` over them and subtracts the same sum
for N workers that open no session (interpreter, numpy, onnxruntime and the op library). Each
worker also reports its own peak RSS, RssAnon and RssFile added by the session and workload.

Rows (the issue's table): the original as exported (inline), the original re-saved with
external data, the zero-tool workaround (external data, ConstantFolding off,
``session.disable_prepacking``), icl-onnx's output kept inline (``--no-external-data``),
icl-onnx's default output (external data above 16 MiB) and the same opened with
``share_across_processes=True``.

``--optimum-model PATH`` adds an Optimum export (``text-generation-with-past``) of a tied
Llama of the same sizes. optimum-onnx needs ``transformers<4.58``, so it is made in a venv of its
own: ``LlamaConfig(vocab_size=V, hidden_size=H, intermediate_size=2*H, num_hidden_layers=L,
num_attention_heads=H//64, num_key_value_heads=H//64, tie_word_embeddings=True)``, random
weights (``torch.manual_seed(0)``), ``save_pretrained(SRC)``, then ``optimum-cli export onnx
--model SRC --task text-generation-with-past OUT``; pass ``OUT/model.onnx``.

Latency: the original, icl-onnx default and icl-onnx shared sessions (shared also on the output
of ``--read-weights-in-place``, which the shared mode's warning advises) run in one process
(``benchmarks._latency_worker``: a shuffled order each round, intra-op spinning off) on a
prefill chunk and on one token (a decode step after a zero KV cache as long as the prefill for
the Optimum export; the other exports have no cache, so one token without one); each session's
time over the original's in the same round, medians over the rounds.

Writes ``benchmarks/results/processes.md``, ``.json`` and ``.png``.

Usage: python -m benchmarks.bench_processes [--hidden 512 --vocab 8192 --layers 2]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnx_ir as ir

from benchmarks import _latency_worker, harness
from icl_onnx.model_io import save_model
from icl_onnx.models import build_model
from icl_onnx.pipeline import optimize_file
from icl_onnx.torch_export import export_onnx

WORKER = "benchmarks._memory_worker"
MODELS = ("bert-torchscript", "bert-dynamo", "llama-torchscript", "llama-dynamo")


@dataclasses.dataclass(frozen=True)
class Row:
    """One way of storing and opening a model."""

    label: str
    file: str  # original_inline, original_external, icl_inline, icl_external
    shared: bool = False  # icl-onnx's share_across_processes
    prepacking: bool = True
    constant_folding: bool = True


ROWS = (
    Row("original, inline (as exported)", "original_inline"),
    Row("original re-saved with external data", "original_external"),
    Row(
        "original, external data, ConstantFolding off, disable_prepacking (zero-tool workaround)",
        "original_external",
        prepacking=False,
        constant_folding=False,
    ),
    Row("icl-onnx output, inline (`--no-external-data`)", "icl_inline"),
    Row("icl-onnx default (external data, page-aligned)", "icl_external"),
    Row("icl-onnx shared (`share_across_processes=True`)", "icl_external", shared=True),
)


def weight_bytes(path: Path) -> int:
    """Bytes of all initializers of a model (inline or external), each counted once."""
    model = onnx.load(str(path), load_external_data=False)
    return sum(
        int(np.prod(t.dims, dtype=np.int64))
        * onnx.helper.tensor_dtype_to_np_dtype(t.data_type).itemsize
        for t in model.graph.initializer
    )


def build_files(name: str, args: argparse.Namespace, folder: Path) -> dict[str, Path]:
    """Exports one model (or copies the Optimum export) and writes the files it is read from.

    The four files the rows open, and the output of ``--read-weights-in-place`` (the latency
    line's fourth session).
    """
    keys = ("original_inline", "original_external", "icl_inline", "icl_external", "icl_in_place")
    files = {key: folder / f"{name}.{key}.onnx" for key in keys}
    arch, exporter = name.split("-")
    if exporter == "optimum":
        shutil.copyfile(args.optimum_model, files["original_inline"])
    else:
        module, inputs = build_model(
            arch, hidden=args.hidden, vocab=args.vocab, layers=args.layers, heads=args.hidden // 64
        )
        export_onnx(module, files["original_inline"], inputs, dynamo=exporter == "dynamo")
    save_model(ir.load(files["original_inline"]), files["original_external"], external_data=True)
    optimize_file(files["original_inline"], files["icl_inline"], external_data=False)
    # what optimize writes by default above 16 MiB of weights (forced for smaller test runs)
    optimize_file(files["original_inline"], files["icl_external"], external_data=True)
    # every other large float MatMul weight read in place too (latency of the shared mode only)
    optimize_file(
        files["original_inline"], files["icl_in_place"], external_data=True,
        read_weights_in_place=True,
    )  # fmt: skip
    return files


def run_workers(request: dict[str, Any], counts: list[int], folder: Path) -> dict[str, Any]:
    """Starts workers one by one; at each count in ``counts`` sums their PSS."""
    path = folder / "request.json"
    path.write_text(json.dumps(request))
    procs: list[subprocess.Popen] = []
    reports: list[dict] = []
    totals: dict[int, dict[str, int]] = {}
    try:
        for n in range(1, max(counts) + 1):
            proc = subprocess.Popen(
                harness.child_command(WORKER, path),
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
                cwd=harness.ROOT,
            )
            procs.append(proc)
            line = proc.stdout.readline()
            if not line:
                raise SystemExit(f"worker died on {request.get('model')} (exit {proc.wait()})")
            reports.append(json.loads(line))
            if n in counts:
                sums = {"Pss": 0, "Pss_Anon": 0, "Pss_File": 0}
                for p in procs:
                    for key, value in harness.proportional_set_size(p.pid).items():
                        sums[key] += value
                totals[n] = sums
    finally:
        for proc in procs:
            proc.stdin.close()
            proc.wait()
    return {"totals": totals, "workers": reports}


def latency(files: dict[str, Path], args: argparse.Namespace, folder: Path) -> dict[str, Any]:
    """Prefill and one-token time of icl-onnx default and shared against the original.

    Shared twice: on icl-onnx's default output, where ORT packs the layers' weights on every
    call (``create_session`` warns), and on the output of ``--read-weights-in-place``, which
    reads them in place (what the warning advises).

    The sessions run in one process in a shuffled order each round, intra-op spinning off
    (``_latency_worker``, as ``bench_latency``): with spinning on, three pools of two threads on
    two cores slowed whichever session ran next (shared / default for one token read 1.31 in a
    fixed order and 2.29 in a shuffled one, 0.99 and 1.03 with spinning off). Returns, per
    cell, the median over rounds of each session's time over the original's in the same round,
    and of shared's over default's.
    """
    request = {
        "threads": args.threads,
        "runs": args.latency_runs,
        "cells": [["prefill", args.prefill, 0], ["decode", 1, args.prefill]],
        "sessions": [
            {"model": str(files["original_inline"]), "spinning": False},
            {"model": str(files["icl_external"]), "spinning": False},
            {"model": str(files["icl_external"]), "shared": True, "spinning": False},
            {"model": str(files["icl_in_place"]), "shared": True, "spinning": False},
        ],
    }
    ratios = _latency_worker.run(request, folder / "latency.json")
    out: dict[str, Any] = {
        "labels": [
            "original",
            "icl-onnx default",
            "icl-onnx shared",
            "icl-onnx --read-weights-in-place, shared",
        ]
    }
    for cell, per_session in ratios.items():
        out[cell] = [statistics.median(r) for r in per_session]
        shared, default = per_session[2], per_session[1]
        out[f"{cell}_shared_vs_default"] = statistics.median(
            a / b for a, b in zip(shared, default, strict=True)
        )
    return out


def measure_model(name: str, args: argparse.Namespace, baseline: dict, folder: Path) -> dict:
    files = build_files(name, args, folder)
    out: dict[str, Any] = {
        "model": name,
        "original_weight_bytes": weight_bytes(files["original_inline"]),
        "unique_weight_bytes": weight_bytes(files["icl_external"]),
        "rows": [],
    }
    for row in ROWS:
        print(f"{name}: {row.label}", file=sys.stderr, flush=True)
        request = {
            "model": str(files[row.file]),
            "shared": row.shared,
            "prepacking": row.prepacking,
            "constant_folding": row.constant_folding,
            "vocab": args.vocab,
            "chunk": args.chunk,
            "threads": args.threads,
        }
        measured = run_workers(request, args.workers, folder)
        first = measured["workers"][0]
        added = {k: first["after"][k] - first["before"][k] for k in first["after"]}
        totals = {
            str(n): {k: v - baseline[n][k] for k, v in sums.items()}
            for n, sums in measured["totals"].items()
        }
        out["rows"].append(
            {
                "label": row.label,
                "single": added,
                "workload_s": first["workload_s"],
                "totals": totals,
            }
        )
    # activations (and the runtime's own pages): the shared row's peak minus the weights,
    # all of them resident after the vocabulary-covering workload
    out["activation_bytes"] = max(
        0, out["rows"][-1]["single"]["VmHWM"] - out["unique_weight_bytes"]
    )
    out["latency"] = latency(files, args, folder)
    for path in folder.iterdir():
        path.unlink()
    return out


def mb(n: float) -> str:
    """Whole MB (10^6 bytes)."""
    return harness.mb(n, 0)


def goals(result: dict, counts: list[int]) -> dict[str, Any]:
    """The issue's two memory goals for one model, with the numbers they compare."""
    unique, act = result["unique_weight_bytes"], result["activation_bytes"]
    by_label = {r["label"]: r for r in result["rows"]}
    default = by_label[ROWS[4].label]["single"]["VmHWM"]
    n = max(counts)
    shared_total = by_label[ROWS[5].label]["totals"][str(n)]["Pss"]
    original_total = by_label[ROWS[0].label]["totals"][str(n)]["Pss"]
    return {
        "single_peak": default,
        "single_limit": 1.1 * unique + act,
        "shared_total": shared_total,
        "shared_limit": 1.25 * unique + n * act,
        "original_total": original_total,
        "original_copies": original_total / max(1, result["original_weight_bytes"]),
    }


def summary(results: list[dict], counts: list[int]) -> list[str]:
    """One table of every model: total PSS at the fewest and the most workers."""
    lo, hi = min(counts), max(counts)
    lines = [
        f"Total PSS added, MB: N={lo} → N={hi} workers (N={hi}: private + shared).",
        "",
        "| model as stored, session options | " + " | ".join(r["model"] for r in results) + " |",
        "|---|" + "---:|" * len(results),
    ]
    for i, row in enumerate(ROWS):
        cells = []
        for r in results:
            a, b = r["rows"][i]["totals"][str(lo)], r["rows"][i]["totals"][str(hi)]
            cells.append(
                f"{mb(a['Pss'])} → {mb(b['Pss'])} ({mb(b['Pss_Anon'])} + {mb(b['Pss_File'])})"
            )
        lines.append(f"| {row.label} | " + " | ".join(cells) + " |")
    lines.append(
        "| unique weights / activations per process | "
        + " | ".join(
            f"{mb(r['unique_weight_bytes'])} / {mb(r['activation_bytes'])}" for r in results
        )
        + " |"
    )
    return lines


def to_markdown(results: list[dict], args: argparse.Namespace, meta: dict) -> list[str]:
    """The results file: how it was measured, the summary, a table and the goals per model."""
    counts = args.workers
    lines = [
        "# Processes serving one model: total PSS, private and shared",
        "",
        f"Models: hidden {args.hidden} ({args.hidden // 64} heads), vocab {args.vocab}, "
        f"{args.layers} layers, random weights, tied embeddings. CPU: {harness.describe(meta)} "
        f"{args.threads} intra-op threads per session. Each worker is a fresh process that opens "
        f"the session and runs prefill chunks of {args.chunk} tokens covering all {args.vocab} "
        "ids, then stays alive while the others start. PSS from /proc/PID/smaps_rollup summed "
        "over the N live workers, minus the same sum for N workers that open no session; private "
        "= Pss_Anon, shared = Pss_File. 'peak / private / file' = one worker's VmHWM, RssAnon and "
        "RssFile added by its session and workload. MB = 10^6 bytes. Unique weights = the "
        "initializers of icl-onnx's output; activations = the shared row's peak minus the unique "
        "weights (so they include the pages of onnxruntime's code and arenas the "
        "session touches).",
        "",
    ]
    lines += summary(results, counts) + [""]
    for result in results:
        g = goals(result, counts)
        n = max(counts)
        lines += [
            f"## {result['model']}: weights {mb(result['original_weight_bytes'])} MB as "
            f"exported, {mb(result['unique_weight_bytes'])} MB unique; activations "
            f"{mb(result['activation_bytes'])} MB",
            "",
            "| model as stored, session options | peak / private / file MB (1 process) | "
            + " | ".join(f"N={c}: total PSS (private + shared) MB" for c in counts)
            + " |",
            "|---|---:|" + "---:|" * len(counts),
        ]
        for row in result["rows"]:
            s = row["single"]
            cells = [
                f"{mb(t['Pss'])} ({mb(t['Pss_Anon'])} + {mb(t['Pss_File'])})"
                for t in (row["totals"][str(c)] for c in counts)
            ]
            lines.append(
                f"| {row['label']} | {mb(s['VmHWM'])} / {mb(s['RssAnon'])} / "
                f"{mb(s['RssFile'])} | " + " | ".join(cells) + " |"
            )
        lat = result["latency"]
        ratios = ", ".join(
            f"{label} {lat['prefill'][i]:.3f} / {lat['decode'][i]:.3f}"
            for i, label in enumerate(lat["labels"])
            if i > 0
        )
        shared_vs_default = (
            f"{lat['prefill_shared_vs_default']:.3f} prefill, "
            f"{lat['decode_shared_vs_default']:.3f} decode"
        )
        lines += [
            "",
            f"- Single process, icl-onnx default: peak {mb(g['single_peak'])} MB; goal "
            f"≤ 1.1 × unique + activations = {mb(g['single_limit'])} MB: "
            f"{'met' if g['single_peak'] <= g['single_limit'] else 'NOT met'}.",
            f"- N={n}, icl-onnx shared: {mb(g['shared_total'])} MB; goal ≤ 1.25 × unique + "
            f"{n} × activations = {mb(g['shared_limit'])} MB: "
            f"{'met' if g['shared_total'] <= g['shared_limit'] else 'NOT met'}. The original "
            f"as exported: {mb(g['original_total'])} MB ({g['original_copies']:.2f} × its "
            "weights).",
            f"- Latency (the sessions in one process, a shuffled order each round, "
            f"intra-op spinning off; median over rounds of the time over the original's in the "
            f"same round), prefill {args.prefill} tokens / one token: {ratios}. Shared against "
            f"icl-onnx default: {shared_vs_default}.",
            "",
        ]
    return lines[:-1]


def plot(results: list[dict], counts: list[int], path: Path) -> None:
    """Total PSS per row, private and shared, a bar per worker count; a panel per model."""
    plt = harness.pyplot()
    fig, axes = plt.subplots(1, len(results), figsize=(6 * len(results), 5.5), squeeze=False)
    width = 0.8 / len(counts)
    for ax, result in zip(axes[0], results, strict=True):
        x = np.arange(len(result["rows"]))
        for j, c in enumerate(counts):
            pos = x + (j - (len(counts) - 1) / 2) * width
            totals = [r["totals"][str(c)] for r in result["rows"]]
            harness.pss_bars(ax, pos, totals, width, j, f"N={c} private")
        ax.axhline(result["unique_weight_bytes"] / harness.MB, color="k", ls=":", lw=1)
        ax.set_xticks(x, [f"{i + 1}" for i in x])
        ax.set_title(f"{result['model']} (dotted: unique weights)")
        ax.set_ylabel("total PSS added, MB (hatched: shared)")
        ax.set_xlabel("row (see processes.md)")
        ax.legend(fontsize=8)
    fig.tight_layout()
    harness.save_png(fig, path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hidden", type=int, default=512)
    parser.add_argument("--vocab", type=int, default=8192)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--models", nargs="*", default=list(MODELS), choices=MODELS)
    parser.add_argument(
        "--optimum-model",
        type=Path,
        help="an Optimum text-generation-with-past export of the same sizes (see above)",
    )
    parser.add_argument("--workers", type=int, nargs="*", default=[1, 2, 4])
    parser.add_argument("--chunk", type=int, default=256, help="prefill tokens per run")
    parser.add_argument("--prefill", type=int, default=128, help="latency: prefill tokens")
    parser.add_argument("--latency-runs", type=int, default=60)
    parser.add_argument("--threads", type=int, default=2)
    harness.out_argument(parser)
    parser.add_argument(
        "--merge",
        action="store_true",
        help="keep the other models of an earlier processes.json (same sizes) in the report",
    )
    parser.add_argument(
        "--report-only",
        nargs="+",
        type=Path,
        metavar="JSON",
        help="measure nothing: write the report of these processes.json files (runs made with "
        "the same sizes, e.g. the Optimum export run on its own)",
    )
    args = parser.parse_args(argv)
    args.workers = sorted(set(args.workers))
    names = list(args.models) + (["llama-optimum"] if args.optimum_model else [])
    if args.report_only:
        results = [r for path in args.report_only for r in json.loads(path.read_text())]
    else:
        with tempfile.TemporaryDirectory(prefix="icl-processes-") as tmp:
            folder = Path(tmp)
            print("baseline workers", file=sys.stderr, flush=True)
            baseline = run_workers({"model": None}, args.workers, folder)["totals"]
            results = [measure_model(name, args, baseline, folder) for name in names]
    earlier = args.out / "processes.json"
    if args.merge and earlier.is_file() and not args.report_only:
        kept = [r for r in json.loads(earlier.read_text()) if r["model"] not in names]
        results = kept + results
    lines = to_markdown(results, args, harness.metadata())
    harness.write_markdown(args.out / "processes.md", lines)
    harness.write_json(args.out / "processes.json", results, indent=2)
    plot(results, args.workers, args.out / "processes.png")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
