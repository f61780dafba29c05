"""``icl-onnx serve`` on Ray Serve: total PSS of N replicas, and throughput under load.

The model: a tied Llama-style LM (``icl_onnx.models.llama_tied_lm``, hidden 768, vocab 32000,
2 layers, random weights) that returns the last position's logits, exported with the
TorchScript exporter (the tied table stored twice: once as the embedding, once transposed for
the head). Rows, each served by the product's own application (``icl_onnx.serve.app``, every
replica opening the model with ``share_across_processes=True``, 1 ONNX Runtime thread):

- empty replica: a deployment that imports what a replica imports (Ray, onnxruntime, onnx,
  icl_onnx.serve, the op library) and opens no model: the baseline;
- the original as exported (weights inside the .onnx file: each replica copies them);
- the original re-saved with external data (mapped; prepacking off, as serve opens it);
- icl-onnx's output (``optimize_file`` default: external data, one tied table).

Memory: for N = 1, 2, 4 replicas (a fresh application each), a warm-up of ``8 N`` requests
(256 ids each, consecutive blocks of the vocabulary, one at a time), then the PSS of the replica
processes (found through Ray's named actors) summed from ``/proc/PID/smaps_rollup``. Requests
are routed by Ray Serve, so a replica sees only some of the warm-up's ids: the head reads the
whole table on every request, but the original-with-external-data row's separate embedding
table is resident only for the ids its replica read (that row is a lower bound).

Load: the original and the optimized model served side by side at N = 4 (two applications),
a closed loop of ``--clients`` threads on 127.0.0.1 sending ``--requests`` requests of one
prompt length, alternated original / optimized, short then long prompts, ``--rounds`` times;
throughput (requests per second of wall time) and p50 / p99 latency per request; then the PSS
of both applications' replicas after that load (requests stacked up to 8 per run).

Writes ``benchmarks/results/serve.md``, ``.json`` and ``.png``.

Usage: python -m benchmarks.bench_serve [--hidden 768 --vocab 32000 --layers 2]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import sys
import tempfile
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import onnx_ir as ir

from benchmarks import harness
from benchmarks.bench_processes import weight_bytes
from icl_onnx.model_io import save_model
from icl_onnx.pipeline import optimize_file

ROWS = ("empty", "original", "original_external", "icl")
LABELS = {
    "empty": "empty replica (Ray + imports)",
    "original": "original as exported (inline)",
    "original_external": "original, external data (prepacking off)",
    "icl": "icl-onnx optimized",
}


def build_files(args: argparse.Namespace, folder: Path) -> dict[str, Path]:
    """Exports the last-token tied LM, re-saves it with external data and optimizes it."""
    import torch

    from icl_onnx.models import llama_tied_lm
    from icl_onnx.torch_export import export_onnx

    module, inputs = llama_tied_lm(
        hidden=args.hidden, vocab=args.vocab, layers=args.layers, heads=args.hidden // 64
    )

    class LastLogits(torch.nn.Module):
        def __init__(self, lm: Any) -> None:
            super().__init__()
            self.lm = lm

        def forward(self, input_ids: Any, attention_mask: Any) -> Any:
            return self.lm(
                input_ids=input_ids, attention_mask=attention_mask, logits_to_keep=1
            ).logits

    files = {key: folder / f"{key}.onnx" for key in ROWS[1:]}
    export_onnx(
        LastLogits(module).eval(),
        files["original"],
        inputs,
        dynamo=False,
        dynamic_axes={n: {0: "batch", 1: "sequence"} for n in inputs},
        external_data=False,
    )
    save_model(ir.load(files["original"]), files["original_external"], external_data=True)
    optimize_file(files["original"], files["icl"])
    return files


class EmptyReplica:
    """A replica that imports what the product's replica imports and opens no model."""

    def __init__(self) -> None:
        # the imports are the point: a replica's own and those of opening a model
        import icl_onnx._inline_weights  # noqa: F401
        import icl_onnx.serve.deployment  # noqa: F401
        import icl_onnx.session_group  # noqa: F401

        icl_onnx.session_options()

    async def __call__(self, request: Any) -> dict:
        return {"replicas": "empty"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def post(url: str, body: dict) -> dict:
    request = urllib.request.Request(url, data=json.dumps(body).encode())
    with urllib.request.urlopen(request, timeout=300) as reply:
        return json.loads(reply.read())


def replica_pids(app: str) -> list[int]:
    """Process ids of an application's replicas, through Ray's named actors."""
    import ray

    pids = []
    for actor in ray.util.list_named_actors(all_namespaces=True):
        if actor["name"].startswith(f"SERVE_REPLICA::{app}#"):
            handle = ray.get_actor(actor["name"], namespace=actor["namespace"])
            pids.append(ray.get(handle.__ray_call__.remote(lambda _: os.getpid())))
    return pids


def deploy(row: str, path: Path | None, replicas: int, prefix: str) -> Any:
    from ray import serve

    import icl_onnx.serve

    if row == "empty":
        application = serve.deployment(
            EmptyReplica, num_replicas=replicas, ray_actor_options={"num_cpus": 0}
        ).bind()
    else:
        application = icl_onnx.serve.app(path, replicas=replicas, threads=1)
    serve.run(application, name=prefix.strip("/"), route_prefix=prefix)


def feeds(ids: np.ndarray) -> dict:
    """An ``/infer`` body for a batch of token ids (attention mask all ones)."""
    return {"inputs": {"input_ids": ids.tolist(), "attention_mask": np.ones_like(ids).tolist()}}


def warm_up(base: str, replicas: int, vocab: int) -> None:
    """``8 N`` requests of 256 ids, consecutive blocks of the vocabulary, one at a time."""
    for k in range(8 * replicas):
        first = (k * 256) % vocab
        post(base + "/infer", feeds((np.arange(first, first + 256) % vocab)[None]))


def pss(app: str) -> dict[str, int]:
    """Summed PSS of an application's replicas, their count and the largest peak RSS."""
    pids = replica_pids(app)
    sums = {"Pss": 0, "Pss_Anon": 0, "Pss_File": 0}
    for pid in pids:
        for key, value in harness.proportional_set_size(pid).items():
            sums[key] += value
    peaks = [harness.peak_rss(pid) for pid in pids]
    return {**sums, "replicas": len(pids), "peak": max(peaks)}


def memory(files: dict[str, Path], args: argparse.Namespace, port: int) -> dict[str, Any]:
    """Total PSS of the replicas of each row at each N, after the warm-up."""
    from ray import serve

    out: dict[str, Any] = {}
    for row in ROWS:
        out[row] = {}
        for n in args.replicas:
            print(f"memory: {row}, {n} replica(s)", file=sys.stderr, flush=True)
            deploy(row, files.get(row), n, "/mem")
            if row != "empty":
                warm_up(f"http://127.0.0.1:{port}/mem", n, args.vocab)
            out[row][str(n)] = pss("mem")
            serve.delete("mem")
    return out


def load_round(url: str, clients: int, requests: int, length: int, vocab: int) -> dict:
    """A closed loop: ``clients`` threads send ``requests`` requests in all; latencies, wall."""
    rng = np.random.default_rng(length)
    bodies = [feeds(rng.integers(0, vocab, (1, length))) for _ in range(8)]

    def one(i: int) -> float:
        start = time.perf_counter()
        reply = post(url, bodies[i % len(bodies)])
        (logits,) = reply["outputs"].values()
        assert len(logits[0][0]) == vocab
        return time.perf_counter() - start

    start = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        latencies = list(pool.map(one, range(requests)))
    return {"wall": time.perf_counter() - start, "latencies": latencies}


def load(files: dict[str, Path], args: argparse.Namespace, port: int) -> dict[str, Any]:
    """Original and optimized at N = 4, alternated round by round."""
    from ray import serve

    n = max(args.replicas)
    for row in ("original", "icl"):
        deploy(row, files[row], n, f"/{row}")
    out: dict[str, Any] = {}
    for length in args.lengths:
        for r in range(args.rounds):
            for row in ("original", "icl"):
                print(f"load: {row}, {length} tokens, round {r + 1}", file=sys.stderr, flush=True)
                url = f"http://127.0.0.1:{port}/{row}/infer"
                done = load_round(
                    url, args.clients, args.requests // args.rounds, length, args.vocab
                )
                entry = out.setdefault(f"{row}/{length}", {"wall": [], "latencies": []})
                entry["wall"].append(done["wall"])
                entry["latencies"] += done["latencies"]
    out["pss_after"] = {row: pss(row) for row in ("original", "icl")}
    for row in ("original", "icl"):
        serve.delete(row)
    return out


def summarize_load(raw: dict[str, Any]) -> dict[str, Any]:
    out = {"pss_after": raw.pop("pss_after")}
    for key, entry in raw.items():
        lat = np.array(entry["latencies"])
        out[key] = {
            "requests": len(lat),
            "throughput": [len(lat) / len(entry["wall"]) / w for w in entry["wall"]],  # per round
            "p50": float(np.percentile(lat, 50)),
            "p99": float(np.percentile(lat, 99)),
        }
    return out


def mb(n: float) -> str:
    """Whole MB (10^6 bytes)."""
    return harness.mb(n, 0)


def to_markdown(result: dict[str, Any], args: argparse.Namespace) -> list[str]:
    """The results file: how it was measured, memory per replica count, then load."""
    mem, counts = result["memory"], args.replicas
    n = max(counts)
    unique = result["unique_weight_bytes"]
    empty = {c: mem["empty"][str(c)]["Pss"] for c in counts}
    # a replica's activations and runtime pages: its peak RSS less the empty replica's and the
    # unique weights (all resident after the warm-up)
    act = max(0, mem["icl"]["1"]["peak"] - mem["empty"]["1"]["peak"] - unique)
    lines = [
        "# `icl-onnx serve`: N Ray Serve replicas of one model",
        "",
        f"Tied Llama-style LM, hidden {args.hidden}, vocab {args.vocab}, {args.layers} layers, "
        f"last-position logits; {mb(result['original_weight_bytes'])} MB of weights as "
        f"exported, {mb(unique)} MB unique after `optimize`. Ray {result['ray']}; "
        f"{harness.describe(result['machine'])} 1 ONNX Runtime thread per replica. The whole "
        f"run took {result['seconds'] / 60:.1f} min.",
        "",
        "## Memory: total PSS of the replica processes, MB (private + shared)",
        "",
        "After a warm-up of 8 N requests of 256 ids over consecutive vocabulary blocks, sent "
        "one at a time (routed by Ray Serve). PSS from /proc/PID/smaps_rollup summed over the "
        "replicas; private = Pss_Anon, shared = Pss_File. MB = 10^6 bytes.",
        "",
        "| replicas | " + " | ".join(LABELS[r] for r in ROWS) + " |",
        "|---:|" + "---:|" * len(ROWS),
    ]
    for c in counts:
        cells = []
        for row in ROWS:
            t = mem[row][str(c)]
            cells.append(f"{mb(t['Pss'])} ({mb(t['Pss_Anon'])} + {mb(t['Pss_File'])})")
        lines.append(f"| {c} | " + " | ".join(cells) + " |")
    icl_above = mem["icl"][str(n)]["Pss"] - empty[n]
    orig_above = mem["original"][str(n)]["Pss"] - empty[n]
    limit = 1.25 * unique + n * act
    lines += [
        "",
        f"- N = {n}, icl-onnx above the empty replicas: {mb(icl_above)} MB; goal ≤ 1.25 × "
        f"unique + {n} × activations = 1.25 × {mb(unique)} + {n} × {mb(act)} = {mb(limit)} MB: "
        f"{'met' if icl_above <= limit else 'NOT met'}. The original as exported: "
        f"{mb(orig_above)} MB above the empty replicas ({orig_above / max(1, icl_above):.2f} × "
        "icl-onnx's).",
        f"- Activations (and runtime pages) of one replica: its peak RSS less the empty "
        f"replica's and the unique weights = {mb(act)} MB.",
        "- The original-with-external-data row is a lower bound: its embedding table (not the "
        "head's transposed copy) is resident only for the ids its replica read.",
        "",
        f"## Load: {args.clients} concurrent clients on 127.0.0.1, N = {n} replicas each",
        "",
        f"{args.requests} requests per model and prompt length, in {args.rounds} rounds "
        "alternated original / optimized; one prompt of batch 1 per request; throughput = "
        "requests / wall time of a round (median over rounds, range in brackets); latency "
        "per request, p50 / p99 over all rounds.",
        "",
        "| prompt tokens | model | requests/s | p50 ms | p99 ms |",
        "|---:|---|---:|---:|---:|",
    ]
    load = result["load"]
    for length in args.lengths:
        for row in ("original", "icl"):
            s = load[f"{row}/{length}"]
            t = s["throughput"]
            lines.append(
                f"| {length} | {LABELS[row]} | {statistics.median(t):.1f} "
                f"[{min(t):.1f}–{max(t):.1f}] | {s['p50'] * 1e3:.0f} | {s['p99'] * 1e3:.0f} |"
            )
        ratio = statistics.median(load[f"icl/{length}"]["throughput"]) / statistics.median(
            load[f"original/{length}"]["throughput"]
        )
        lines.append(f"| {length} | optimized / original throughput | {ratio:.2f} | | |")
    after = load["pss_after"]
    lines += [
        "",
        f"After this load, total PSS of the {n} replicas (private + shared), MB: "
        + " / ".join(
            f"{LABELS[row]} {mb(after[row]['Pss'])} ({mb(after[row]['Pss_Anon'])} + "
            f"{mb(after[row]['Pss_File'])})"
            for row in ("original", "icl")
        )
        + f"; the empty replicas: {mb(empty[n])}.",
    ]
    return lines


def plot(result: dict[str, Any], counts: list[int], path: Path) -> None:
    """Total PSS of the replicas per row, private and shared, a group per replica count."""
    plt = harness.pyplot()
    fig, ax = plt.subplots(figsize=(8, 5))
    width = 0.8 / len(ROWS)
    x = np.arange(len(counts))
    for j, row in enumerate(ROWS):
        pos = x + (j - (len(ROWS) - 1) / 2) * width
        totals = [result["memory"][row][str(c)] for c in counts]
        harness.pss_bars(ax, pos, totals, width, j, LABELS[row])
    ax.set_xticks(x, [f"N={c}" for c in counts])
    ax.set_ylabel("total PSS of the replicas, MB (hatched: shared)")
    ax.set_title("icl-onnx serve: Ray Serve replicas of one model")
    ax.legend(fontsize=8)
    fig.tight_layout()
    harness.save_png(fig, path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hidden", type=int, default=768)
    parser.add_argument("--vocab", type=int, default=32000)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--replicas", type=int, nargs="*", default=[1, 2, 4])
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--lengths", type=int, nargs="*", default=[16, 128])
    harness.out_argument(parser)
    args = parser.parse_args(argv)
    args.replicas = sorted(set(args.replicas))

    import ray
    from ray import serve

    started = time.perf_counter()
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="icl-serve-") as tmp:
        print("exporting and optimizing", file=sys.stderr, flush=True)
        files = build_files(args, Path(tmp))
        result: dict[str, Any] = {
            "machine": harness.metadata(),
            "ray": ray.__version__,
            "original_weight_bytes": weight_bytes(files["original"]),
            "unique_weight_bytes": weight_bytes(files["icl"]),
        }
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="error")
        try:
            serve.start(http_options={"host": "127.0.0.1", "port": port})
            result["memory"] = memory(files, args, port)
            result["load"] = summarize_load(load(files, args, port))
        finally:
            serve.shutdown()
            ray.shutdown()
    result["seconds"] = time.perf_counter() - started
    lines = to_markdown(result, args)
    harness.write_markdown(args.out / "serve.md", lines)
    harness.write_json(args.out / "serve.json", result, indent=2)
    plot(result, args.replicas, args.out / "serve.png")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
