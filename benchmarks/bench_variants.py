"""K fine-tuned variants of one Llama-style base: one base plus factors, against K whole files.

The base is a random-weight Llama (``transformers`` config, untied embedding and LM head); each
variant is the base with a LoRA adapter (``peft``, nonzero B, rank ``--rank`` on every linear
layer) merged by ``merge_and_unload``. Every model is exported with the TorchScript exporter.
For K = 1, 2, 4, 8 variants, side by side in one run:

* bytes on disk: the K variant files as exported, against ``icl-onnx optimize base v1..vK``
  (one data file), against the ideal ``base + adapters`` (the factors icl-onnx stores);
* memory: RSS added by a ``SessionGroup`` of the K optimized variants in one process, against
  K sessions of the exported files in one process; total PSS of K processes each serving one
  variant (``/proc/PID/smaps_rollup``), optimized against exported, less the PSS of K idle
  processes (interpreter and libraries). Each session runs one prefill of ``--tokens`` tokens first;
* latency per variant, optimized against exported, at M = 1 and M = 128 tokens (fastest of
  alternating runs in one process, ``benchmarks._measure_latency``);
* detection: seconds the low-rank search takes per variant, against creating a session of it;
* parity: each variant's logits from the K = 8 group against its own export (max relative).

Writes ``benchmarks/results/variants.md``, ``.json`` and ``.png``.

Each memory configuration runs in a fresh process: ``python -m benchmarks.bench_variants --worker``.

Usage: python -m benchmarks.bench_variants [--hidden 768 --vocab 32000 --layers 1 --rank 16]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks import harness

LINEAR = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def build(args, seed: int | None):
    """The base (``seed`` None) or a merged LoRA variant of it."""
    import torch
    import transformers

    config = transformers.LlamaConfig(
        vocab_size=args.vocab,
        hidden_size=args.hidden,
        intermediate_size=int(2.75 * args.hidden),
        num_hidden_layers=args.layers,
        num_attention_heads=args.hidden // 64,
        num_key_value_heads=args.hidden // 64,
        max_position_embeddings=2048,
        tie_word_embeddings=False,
        use_cache=False,
        attn_implementation="eager",
    )
    torch.manual_seed(0)
    module = transformers.LlamaForCausalLM(config).eval()
    if seed is not None:
        import peft

        torch.manual_seed(seed)
        lora = peft.LoraConfig(
            r=args.rank, lora_alpha=args.rank, target_modules=LINEAR, init_lora_weights=False
        )
        module = peft.get_peft_model(module, lora).merge_and_unload().eval()
    return module


def feeds(vocab: int, tokens: int, seed: int = 0) -> dict[str, np.ndarray]:
    ids = np.random.default_rng(seed).integers(0, vocab, (1, tokens), dtype=np.int64)
    return {"input_ids": ids, "attention_mask": np.ones_like(ids)}


def export_all(args, folder: Path) -> list[Path]:
    import torch

    from icl_onnx.torch_export import export_onnx

    example = {k: torch.from_numpy(v) for k, v in feeds(args.vocab, 8).items()}
    paths = []
    for index in range(max(args.ks) + 1):
        path = folder / ("base.onnx" if index == 0 else f"variant{index}.onnx")
        if not path.exists():
            export_onnx(
                build(args, None if index == 0 else 100 + index), path, example, dynamo=False
            )
        paths.append(path)
    return paths


def optimize_k(paths: list[Path], k: int, out: Path) -> dict:
    """Optimizes base + k variants into ``out``; times the low-rank search per variant."""
    from icl_onnx.pipeline import optimize_files
    from icl_onnx.planning import variants

    spent = [0.0]
    real = variants.find_low_rank_delta

    def timed(*a, **kw):
        start = time.perf_counter()
        try:
            return real(*a, **kw)
        finally:
            spent[0] += time.perf_counter() - start

    variants.find_low_rank_delta = timed
    try:
        out.mkdir(parents=True, exist_ok=True)
        start = time.perf_counter()
        result = optimize_files(paths[: k + 1], out)
        total = time.perf_counter() - start
    finally:
        variants.find_low_rank_delta = real
    relations = result.plan.low_rank
    return {
        "disk_bytes": sum(p.stat().st_size for p in out.iterdir()),
        "base_bytes": result.plan.plans[0].initializer_bytes,
        "factor_bytes": sum(m.factor_bytes for _, m in relations),
        "relations": len(relations),
        "ranks": sorted({m.view.rank for _, m in relations}),
        "max_error_ulps": max((m.error_ulps for _, m in relations), default=0.0),
        "detect_s_per_variant": spent[0] / k,
        "optimize_s": total,
    }


# ---- workers (each a fresh process) -------------------------------------------------------


def _rss() -> int:
    """This process's resident bytes now (VmRSS)."""
    return harness.memory_status("self", ("VmRSS",))["VmRSS"]


def _mb(n: int) -> float:
    """MB (10^6 bytes, as the disk columns), the unit of the JSON's ``*_mb`` figures."""
    return n / harness.MB


def worker(argv: list[str]) -> None:
    """``--worker MODE VOCAB TOKENS [REF.npz] PATH...``: open, run once, report, then wait."""
    import onnxruntime as ort

    import icl_onnx
    from icl_onnx.session_group import SessionGroup

    mode, vocab, tokens = argv[0], int(argv[1]), int(argv[2])
    ref = np.load(argv[3]) if mode == "group-check" else None
    paths = argv[4:] if ref is not None else argv[3:]
    data = feeds(vocab, tokens)
    before = _rss()
    if mode.startswith("group"):
        sessions = SessionGroup(paths, share_buffers=not mode.endswith("own-buffers")).sessions
    else:
        sessions = [icl_onnx.create_session(p) for p in paths] if mode != "idle" else []
    for session in sessions:  # one decode-sized step first: the weights, little working memory
        session.run(None, feeds(vocab, 1))
    one_token = _rss() - before
    errors = []
    for i, session in enumerate(sessions):  # an output is dropped before the next run
        out = session.run(None, data)[0]
        if ref is not None:
            errors.append(float(np.abs(out - ref[f"v{i}"]).max() / np.abs(ref[f"v{i}"]).max()))
        del out
    report = {"rss_added_bytes": _rss() - before, "rss_one_token_bytes": one_token}
    if errors:
        report["max_rel_error"] = max(errors)
    print(json.dumps(report), flush=True)
    sys.stdin.readline()  # the parent reads our PSS, then closes stdin
    del ort


def _spawn(mode: str, args, paths: list[Path], ref: Path | None = None) -> subprocess.Popen:
    cmd = harness.child_command(
        "benchmarks.bench_variants",
        "--worker",
        mode,
        args.vocab,
        args.tokens,
        *([ref] if ref else []),
        *paths,
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(
        cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env, cwd=harness.ROOT
    )


def _finish(procs: list[subprocess.Popen]) -> tuple[list[dict], int]:
    reports = [json.loads(p.stdout.readline()) for p in procs]  # type: ignore[union-attr]
    pss = sum(harness.proportional_set_size(p.pid)["Pss"] for p in procs)
    for p in procs:
        p.stdin.close()  # type: ignore[union-attr]
        p.wait()
    return reports, pss


def memory(args, originals: list[Path], optimized: list[Path], ref: Path | None) -> dict:
    """RSS of one process holding K sessions, and PSS of K processes, each way."""
    k = len(originals)
    _, idle_pss = _finish([_spawn("idle", args, []) for _ in range(k)])  # K bare interpreters
    out = {}
    group, _ = _finish([_spawn("group-check" if ref else "group", args, optimized, ref)])
    own, _ = _finish([_spawn("group-own-buffers", args, optimized)])
    separate, _ = _finish([_spawn("separate", args, originals)])
    out["group_rss_mb"] = _mb(group[0]["rss_added_bytes"])
    out["group_one_token_rss_mb"] = _mb(group[0]["rss_one_token_bytes"])
    out["group_own_buffers_rss_mb"] = _mb(own[0]["rss_added_bytes"])
    out["separate_rss_mb"] = _mb(separate[0]["rss_added_bytes"])
    if ref:
        out["max_rel_error"] = group[0]["max_rel_error"]
    for name, paths in (("optimized", optimized), ("exported", originals)):
        _, pss = _finish([_spawn("single", args, [p]) for p in paths])
        out[f"{name}_pss_mb"] = _mb(pss - idle_pss)
    return out


def latency(args, original: Path, optimized: Path, folder: Path) -> dict:
    out = {}
    for m in (1, 128):
        inputs = folder / f"feeds{m}.npz"
        np.savez(inputs, **feeds(args.vocab, m, seed=m))
        request = folder / f"latency{m}.json"
        request.write_text(
            json.dumps(
                {
                    "baseline": str(original),
                    "candidate": str(optimized),
                    "inputs": str(inputs),
                    "runs": args.runs,
                    "threads": 2,
                }
            )
        )
        measured = subprocess.run(
            harness.child_command("benchmarks._measure_latency", request),
            check=True,
            capture_output=True,
            text=True,
            cwd=harness.ROOT,
        )
        times = json.loads(measured.stdout.strip().splitlines()[-1])
        out[f"m{m}"] = times["candidate_s"] / times["baseline_s"]
        out[f"m{m}_median"] = times["median_ratio"]
    return out


def load_seconds(path: Path) -> float:
    import icl_onnx

    start = time.perf_counter()
    icl_onnx.create_session(str(path))
    return time.perf_counter() - start


def reference_logits(paths: list[Path], args, folder: Path) -> Path:
    import icl_onnx

    data = feeds(args.vocab, args.tokens)
    ref = {f"v{i}": icl_onnx.create_session(str(p)).run(None, data)[0] for i, p in enumerate(paths)}
    out = folder / "reference.npz"
    np.savez(out, **ref)
    return out


def measure(args, folder: Path) -> dict:
    paths = export_all(args, folder)
    results: dict = {"config": vars(args), "machine": harness.metadata(), "k": {}}
    base_run, _ = _finish([_spawn("separate", args, paths[:1])])
    results["base_session_rss_mb"] = _mb(base_run[0]["rss_added_bytes"])
    results["base_session_one_token_rss_mb"] = _mb(base_run[0]["rss_one_token_bytes"])
    for k in args.ks:
        out = folder / f"out{k}"
        entry = optimize_k(paths, k, out)
        originals = paths[1 : k + 1]
        optimized = [out / p.name for p in originals]
        entry["separate_disk_bytes"] = sum(p.stat().st_size for p in originals)
        ref = reference_logits(originals, args, folder) if k == max(args.ks) else None
        entry.update(memory(args, originals, optimized, ref))
        results["k"][k] = entry
        print(f"K={k}: {json.dumps(entry)}", file=sys.stderr, flush=True)
    out = folder / f"out{max(args.ks)}"
    results["latency_runs"] = [
        latency(args, paths[1], out / paths[1].name, folder) for _ in range(args.latency_repeats)
    ]
    results["latency"] = {
        key: float(np.median([run[key] for run in results["latency_runs"]]))
        for key in results["latency_runs"][0]
    }
    results["load_s"] = load_seconds(paths[1])
    results["variant_file_mb"] = _mb(paths[1].stat().st_size)
    return results


def to_markdown(r: dict) -> list[str]:
    """The results file: a row per K, then what the rows say against the goals."""
    c = r["config"]
    mb = harness.MB
    base_session = r["base_session_rss_mb"]
    lines = [
        "# K fine-tuned variants of one base (issue 15)",
        "",
        f"Llama-style base, hidden {c['hidden']}, vocab {c['vocab']}, {c['layers']} layer(s), "
        f"untied embedding; each variant a merged LoRA of rank {c['rank']} on every linear layer "
        "(peft, nonzero B), exported by TorchScript. `benchmarks/bench_variants.py`, one run, "
        f"CPU: {harness.describe(r['machine'])} Memory is RSS added after one {c['tokens']}-token "
        "prefill per session, each output dropped before the next session runs (embedding rows "
        "are paged in only for the ids read, in every column). The ideal is the base plus the "
        "adapters' factors: as bytes, and as one session of the exported base running the same "
        f"prefill ({base_session:.0f} MB RSS) plus the factors. The columns after 1 token are "
        "the same SessionGroup after a one-token step per session, before the prefill: little "
        "working memory, and the shared tensors are mapped, so of the embedding table only "
        "the pages read (and the kernel's read-ahead around them) are resident.",
        "",
        "| K | exported files MB | optimized MB | base + adapters MB | disk / ideal | "
        "SessionGroup RSS MB | RSS / (base + adapters) | RSS / (base session + adapters) | "
        "SessionGroup RSS after 1 token MB | that / (base + adapters) | "
        "SessionGroup, own buffers MB | K sessions RSS MB | PSS K procs optimized MB | "
        "PSS K procs exported MB | detection s/variant |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for k, e in r["k"].items():
        ideal = e["base_bytes"] + e["factor_bytes"]
        factors_mb = e["factor_bytes"] / mb
        lines.append(
            f"| {k} | {e['separate_disk_bytes'] / mb:.1f} | {e['disk_bytes'] / mb:.1f} | "
            f"{ideal / mb:.1f} | {e['disk_bytes'] / ideal:.3f} | {e['group_rss_mb']:.0f} | "
            f"{e['group_rss_mb'] * mb / ideal:.3f} | "
            f"{e['group_rss_mb'] / (base_session + factors_mb):.3f} | "
            f"{e['group_one_token_rss_mb']:.0f} | {e['group_one_token_rss_mb'] * mb / ideal:.3f} | "
            f"{e['group_own_buffers_rss_mb']:.0f} | {e['separate_rss_mb']:.0f} | "
            f"{e['optimized_pss_mb']:.0f} | {e['exported_pss_mb']:.0f} | "
            f"{e['detect_s_per_variant']:.2f} |"
        )
    k_max = r["k"][max(r["k"], key=int)]
    k_min = r["k"][min(r["k"], key=int)]
    ideal_max = k_max["base_bytes"] + k_max["factor_bytes"]
    steps = int(max(r["k"], key=int)) - int(min(r["k"], key=int))
    per_variant = (k_max["group_rss_mb"] - k_min["group_rss_mb"]) / steps
    own = (k_max["group_own_buffers_rss_mb"] - k_min["group_own_buffers_rss_mb"]) / steps
    factors_mb = (k_max["factor_bytes"] - k_min["factor_bytes"]) / steps / mb
    exported = (k_max["separate_rss_mb"] - k_min["separate_rss_mb"]) / steps
    lat = r["latency"]
    lines += [
        "",
        f"- Each further variant adds {per_variant:.1f} MB to the SessionGroup, of which "
        f"{factors_mb:.2f} MB are its factors; the sessions take their working memory from one "
        f"arena (`share_buffers`, the default). With an arena per session (`share_buffers="
        f"False`) a variant adds {own:.1f} MB (its own buffers for the {c['tokens']}-token "
        f"prefill; the logits alone are {c['tokens'] * c['vocab'] * 4 / mb:.0f} MB), and an "
        f"exported file in its own session {exported:.0f} MB. The base's weights are held once.",
        f"- Against the goal (K variants at most 1.1 x the base plus the adapters), K = "
        f"{max(r['k'], key=int)}: on disk {k_max['disk_bytes'] / ideal_max:.3f}; SessionGroup "
        f"RSS {k_max['group_rss_mb'] / (base_session + k_max['factor_bytes'] / mb):.3f} of one "
        f"base session running the same prefill plus the factors, and "
        f"{k_max['group_rss_mb'] * mb / ideal_max:.3f} of the bytes alone, which leave out the "
        "working memory any session running the prefill needs.",
        f"- Low-rank relations found at K = {max(r['k'], key=int)}: {k_max['relations']} "
        f"(rank {k_max['ranks']}), largest reconstruction error {k_max['max_error_ulps']:.2f} "
        f"ulp of max|W|; logits of the variants in one SessionGroup against their own exports: "
        f"max relative error {k_max.get('max_rel_error', float('nan')):.2e}.",
        f"- Latency per variant, optimized / exported (goal at most 1.1), "
        f"{len(r['latency_runs'])} measurements, each a fresh process running the two models "
        f"alternately {c['runs']} times: the median of the per-run ratios was "
        f"{_listed(r, 'm1_median')} at M = 1 and {_listed(r, 'm128_median')} at M = 128 "
        f"(medians {lat['m1_median']:.3f} and {lat['m128_median']:.3f}); fastest run against "
        f"fastest run, {_listed(r, 'm1')} and {_listed(r, 'm128')}.",
        f"- Detection {k_max['detect_s_per_variant']:.2f} s per variant against "
        f"{r['load_s']:.2f} s to create a session of one exported variant "
        f"({r['variant_file_mb']:.0f} MB).",
    ]
    return lines


def _listed(r: dict, key: str) -> str:
    return ", ".join(f"{run[key]:.2f}" for run in r["latency_runs"])


def plot(r: dict, path: Path) -> None:
    """Disk and memory against K, each way, with the ideal."""
    plt = harness.pyplot()
    ks = [int(k) for k in r["k"]]
    e = list(r["k"].values())
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    disk = axes[0]
    disk.plot(ks, [x["separate_disk_bytes"] / harness.MB for x in e], "o-", label="exported files")
    disk.plot(ks, [x["disk_bytes"] / harness.MB for x in e], "o-", label="icl-onnx optimize")
    disk.plot(
        ks,
        [(x["base_bytes"] + x["factor_bytes"]) / harness.MB for x in e],
        "k--",
        label="base + adapters",
    )
    disk.set(xlabel="variants K", ylabel="MB on disk", title="disk")
    mem = axes[1]
    mem.plot(ks, [x["separate_rss_mb"] for x in e], "o-", label="K sessions (exported)")
    mem.plot(ks, [x["group_rss_mb"] for x in e], "o-", label="SessionGroup (optimized)")
    mem.plot(
        ks, [x["group_own_buffers_rss_mb"] for x in e], "o--", label="SessionGroup, own buffers"
    )
    mem.plot(ks, [x["exported_pss_mb"] for x in e], "s:", label="PSS, K processes (exported)")
    mem.plot(ks, [x["optimized_pss_mb"] for x in e], "s:", label="PSS, K processes (optimized)")
    mem.plot(
        ks,
        [(x["base_bytes"] + x["factor_bytes"]) / harness.MB for x in e],
        "k--",
        label="base + adapters",
    )
    mem.plot(
        ks,
        [r["base_session_rss_mb"] + x["factor_bytes"] / harness.MB for x in e],
        "k:",
        label="one base session + adapters",
    )
    mem.set(xlabel="variants K", ylabel="MB added", title="memory")
    for ax in axes:
        ax.set_xticks(ks)
        ax.legend(fontsize=8)
    fig.tight_layout()
    harness.save_png(fig, path)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        worker(sys.argv[2:])
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hidden", type=int, default=768)
    parser.add_argument("--vocab", type=int, default=32000)
    parser.add_argument("--layers", type=int, default=1)
    parser.add_argument("--rank", type=int, default=16)
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--ks", type=int, nargs="+", default=[1, 2, 4, 8], help="variant counts")
    parser.add_argument(
        "--latency-repeats", type=int, default=4, help="latency measurements (fresh processes)"
    )
    parser.add_argument("--work", type=Path, default=None, help="keep exports here")
    harness.output_arguments(parser, "variants")
    args = parser.parse_args()
    if args.report_only:
        results = json.loads((args.out / "variants.json").read_text())
        harness.write_markdown(args.out / "variants.md", to_markdown(results))
        plot(results, args.out / "variants.png")
        return
    work = args.work or Path(tempfile.mkdtemp(prefix="icl-variants-"))
    work.mkdir(parents=True, exist_ok=True)
    results = measure(args, work)
    results["config"] = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
    harness.write_json(args.out / "variants.json", results, indent=2)
    harness.write_markdown(args.out / "variants.md", to_markdown(results))
    plot(results, args.out / "variants.png")
    print("\n".join(to_markdown(results)))


if __name__ == "__main__":
    main()
