"""ONNX Runtime GenAI on CUDA: an optimized folder generates what the original does (GPU.md).

Two steps, on two machines:

- ``python -m benchmarks.gpu_genai prepare OUT_DIR`` (no GPU needed): random-weight tied
  Llama models (:func:`icl_onnx.testing.clients.hf_model`'s config, larger) built by
  onnxruntime-genai's model builder for the CUDA execution provider (``-e cuda``): fp16 with a
  32000-word vocabulary (its LM head a 16 MB table) and bf16 with 8000 words (4 MB), made here
  and carried; with ``--names llama-v128k-bf16-cuda``, bf16 with hidden 2048 and Llama 3's
  128256 words (525 MB), made on the GPU machine (too large to carry). Not fp32: for fp32 on
  CUDA the builder of onnxruntime-genai 0.18 uses the packed ``Attention`` op and leaves the
  ``present.*`` outputs unproduced, a model ORT refuses to load.
- ``python -m benchmarks.gpu_genai run FOLDER... --out DIR`` (on the GPU machine, with
  onnxruntime-gpu and onnxruntime-genai-cuda): ``icl-onnx optimize`` each folder, as a user
  would (the op library copied in is ``ICL_ONNX_LIBRARY``'s, the CUDA build); then, each in a
  fresh process and the two models alternated, greedy tokens from ``og.Model(folder)`` on
  CUDA, the first step's logits, the device memory the model takes (``cudaMemGetInfo``, as
  ``check`` reads it), and, from ORT's profile (as ``check`` reads it), the execution provider
  each ICL node ran on. Writes
  ``gpu_h200_genai.md`` and ``.json``; exit status 1 where tokens differ or an ICL node is
  not on CUDA.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks import harness

#: The builds: name -> (precision, config sizes). Llama's small config (clients) made wider.
BUILDS = {
    "llama-v32k-fp16-cuda": (
        "fp16",
        dict(hidden_size=256, intermediate_size=704, vocab_size=32000, num_attention_heads=8,
             num_key_value_heads=4),
    ),
    # Built on the GPU machine (`prepare --names`): a Llama-3-sized vocabulary, a 525 MB table.
    "llama-v128k-bf16-cuda": (
        "bf16",
        dict(hidden_size=2048, intermediate_size=5632, vocab_size=128256,
             num_attention_heads=16, num_key_value_heads=8),
    ),
    "llama-v8k-bf16-cuda": (
        "bf16",
        dict(hidden_size=256, intermediate_size=704, vocab_size=8000, num_attention_heads=8,
             num_key_value_heads=4),
    ),
}  # fmt: skip
ROUNDS = 3


def prepare(out_dir: Path, names: list[str]) -> None:
    """Builds the :data:`BUILDS` folders ``names`` into ``out_dir`` (replacing them)."""
    from icl_onnx.testing.clients import hf_model, run

    for name in names:
        precision, sizes = BUILDS[name]
        with tempfile.TemporaryDirectory() as cache:
            args = [
                sys.executable, "-m", "onnxruntime_genai.models.builder",
                "-i", str(hf_model("llama", **sizes)), "-o", str(out_dir / name),
                "-p", precision, "-e", "cuda", "-c", cache,
            ]  # fmt: skip
            env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
            run(args, timeout=900, env=env)
        print(f"built {out_dir / name}")


def generate(folder: str, profile: str | None, cpu: bool, exact_arena: bool = False) -> dict:
    """Greedy tokens, first-step logits and the process's GPU memory (in this process).

    Args:
        folder: the GenAI folder.
        profile: ORT profiles the decoder's session into a JSON file named from this prefix,
            written when the model is released.
        cpu: the folder's providers cleared (GenAI's CPU), for a dry run without a GPU.
        exact_arena: the CUDA provider's arena grows by what is asked
            (``arena_extend_strategy=kSameAsRequested``), not in powers of two.
    """
    import onnxruntime_genai as og

    from icl_onnx.check.gpu import GpuMemoryProbe
    from icl_onnx.testing._generate_genai import greedy
    from icl_onnx.testing.clients import NEW_TOKENS, PROMPT

    probe = None if cpu else GpuMemoryProbe()
    before = probe.used() if probe else None
    config = og.Config(folder)
    if cpu:
        config.clear_providers()
    options: dict = {}
    if profile:
        options["enable_profiling"] = profile
    if exact_arena:
        decoder = json.loads((Path(folder) / "genai_config.json").read_text())["model"]["decoder"]
        providers = decoder["session_options"]["provider_options"]
        for entry in providers:
            if "cuda" in entry:
                entry["cuda"]["arena_extend_strategy"] = "1"  # kSameAsRequested
        options["provider_options"] = providers
    if options:
        config.overlay(json.dumps({"model": {"decoder": {"session_options": options}}}))
    model = og.Model(config)
    loaded = probe.used() if probe else None
    result = {
        **greedy(model, PROMPT, NEW_TOKENS, with_logits=True),
        "gpu_mib": {
            "model": _mib(before, loaded),
            "after_generation": _mib(before, probe.used() if probe else None),
            "source": probe.source if probe else "none",
        },
    }
    del model  # ends the session, which writes the profile
    return result


def _mib(before: int | None, after: int | None) -> float | None:
    """Device memory taken between two readings, MiB (None without readings)."""
    return None if before is None or after is None else round((after - before) / 2**20, 1)


def child(folder: Path, cpu: bool, profile: str | None = None, exact_arena: bool = False) -> dict:
    """:func:`generate` in a fresh process; returns its JSON."""
    flags = [f for f, on in (("--cpu", cpu), ("--exact-arena", exact_arena)) if on]
    flags += ["--profile", profile] if profile else []
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.gpu_genai", "_generate", str(folder), *flags],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    if proc.returncode != 0:
        raise RuntimeError(f"generation from {folder} exited {proc.returncode}:\n"
                           f"{(proc.stdout + proc.stderr)[-3000:]}")  # fmt: skip
    return json.loads(proc.stdout.strip().splitlines()[-1])


def icl_providers(folder: Path, cpu: bool) -> dict[str, list[str]]:
    """ICL op types per execution provider that ran them, from a profiled run of ``folder``."""
    from icl_onnx.check.profile import ICL_OPS, node_providers

    with tempfile.TemporaryDirectory() as tmp:
        child(folder, cpu, profile=str(Path(tmp) / "profile"))
        (path,) = Path(tmp).glob("profile*.json")
        nodes, _ = node_providers(path)
    ran: dict[str, list[str]] = {}
    for op, provider in nodes.values():
        if op in ICL_OPS:
            ran.setdefault(provider, []).append(op)
    return ran


def exact_arena_mib(src: Path, dst: Path) -> dict[str, float | str | None]:
    """GPU MiB after ``og.Model`` with an arena that grows by what is asked, per model.

    A failure (a GenAI that refuses the provider option) is recorded, not raised: the other
    readings stand without it.
    """
    taken: dict[str, float | str | None] = {}
    for label, folder in (("original", src), ("optimized", dst)):
        try:
            taken[label] = child(folder, False, exact_arena=True)["gpu_mib"]["model"]
        except RuntimeError as error:
            taken[label] = f"failed: {str(error).splitlines()[-1][:200]}"
    return taken


def run_folders(folders: list[Path], out: Path, cpu: bool = False) -> int:
    """Optimizes each folder and compares it with the original on CUDA; writes the report.

    ``cpu``: a dry run on GenAI's CPU (the ICL nodes then expected on the CPU provider).
    """
    from icl_onnx.cli.main import main as cli_main

    rows = []
    failed = False
    for src in folders:
        dst = src.with_name(src.name + ".icl")
        started = time.perf_counter()
        code = cli_main(["optimize", str(src), "-o", str(dst), "--force", "-q"])
        optimize_s = time.perf_counter() - started
        if code != 0:
            raise RuntimeError(f"icl-onnx optimize {src} exited {code}")
        runs: dict[str, list[dict]] = {"original": [], "optimized": []}
        for _ in range(ROUNDS):  # alternated, each run a fresh process
            for label, folder in (("original", src), ("optimized", dst)):
                runs[label].append(child(folder, cpu))
        exact = {} if cpu else exact_arena_mib(src, dst)
        placed = icl_providers(dst, cpu)
        orig, opt = runs["original"][0], runs["optimized"][0]
        same = all(r["tokens"] == orig["tokens"] for r in runs["original"] + runs["optimized"])
        logit_diff = max(abs(a - b) for a, b in zip(orig["logits"], opt["logits"], strict=True))
        want = "CPUExecutionProvider" if cpu else "CUDAExecutionProvider"
        elsewhere = sorted({op for p, ops in placed.items() if p != want for op in ops})
        ok = same and bool(placed.get(want)) and not elsewhere
        failed |= not ok
        rows.append({
            "folder": src.name,
            "optimize_s": optimize_s,
            "tokens_equal": same,
            "tokens": orig["tokens"],
            "max_abs_logit_diff": logit_diff,
            "gpu_mib_model": {k: [r["gpu_mib"]["model"] for r in v] for k, v in runs.items()},
            "gpu_mib_after_generation": {
                k: [r["gpu_mib"]["after_generation"] for r in v] for k, v in runs.items()
            },
            "gpu_mib_model_exact_arena": exact,
            "gpu_memory_source": orig["gpu_mib"]["source"],
            "decode_s": {k: [r["decode_s"] for r in v] for k, v in runs.items()},
            "icl_nodes_by_provider": {p: sorted(set(ops)) for p, ops in placed.items()},
            "icl_node_count_by_provider": {p: len(ops) for p, ops in placed.items()},
            "passed": ok,
        })  # fmt: skip
    write_report(rows, out, cpu)
    return 1 if failed else 0


def write_report(rows: list[dict], out: Path, cpu: bool) -> None:
    import onnxruntime  # noqa: F401  (imported: metadata reports the modules in use, not
    import onnxruntime_genai  # noqa: F401  another distribution of the same name)

    meta = harness.metadata(("onnxruntime", "onnxruntime_genai", "numpy"))
    where = "GenAI's CPU (a dry run)" if cpu else "CUDA"
    lines = [
        f"# ONNX Runtime GenAI on {where}: original and optimized folders",
        "",
        f"`python -m benchmarks.gpu_genai run{' --cpu' if cpu else ''}` (benchmarks/GPU.md, "
        f"stage `genai`). {harness.describe(meta)}",
        "",
        "Folders built by onnxruntime-genai's model builder for CUDA (`-e cuda`) from random-"
        "weight tied Llama models (2 layers; hidden 256, 2048 for the 128256-word one), then "
        "`icl-onnx optimize` on the GPU machine. Each model generates in a fresh process, the "
        "two alternated, "
        f"{ROUNDS} rounds; GPU memory: device memory in use (`check`'s probe, "
        "`cudaMemGetInfo`) after `og.Model` and after generating, less what was in use before "
        "(the primary context made); a list holds one value per round. With ORT's default "
        "arena, which grows in powers of two, a reading moves with the order of allocations; "
        "`exact arena`: one more run of each with the CUDA provider's "
        "`arena_extend_strategy=kSameAsRequested`. ICL nodes by provider: from ORT's "
        "profile (the provider each ICL node ran on).",
        "",
        "| folder | tokens equal | max abs logit diff (first step) | GPU MiB after og.Model, "
        "original / optimized | after generating | exact arena, after og.Model | "
        "ICL nodes by provider | passed |",
        "|---|---|---:|---|---|---|---|---|",
    ]
    for r in rows:
        nodes = (
            "; ".join(
                f"{p}: {', '.join(ops)} ({r['icl_node_count_by_provider'][p]})"
                for p, ops in r["icl_nodes_by_provider"].items()
            )
            or "none found"
        )
        lines.append(
            f"| {r['folder']} | {r['tokens_equal']} | {r['max_abs_logit_diff']:.3g} | "
            f"{r['gpu_mib_model']['original']} / {r['gpu_mib_model']['optimized']} | "
            f"{r['gpu_mib_after_generation']['original']} / "
            f"{r['gpu_mib_after_generation']['optimized']} | "
            f"{r['gpu_mib_model_exact_arena'].get('original')} / "
            f"{r['gpu_mib_model_exact_arena'].get('optimized')} | {nodes} | "
            f"{r['passed']} |"
        )
    lines += ["", "Decode seconds (16 tokens, for the record; no speed claim from these):", ""]
    for r in rows:
        med = {k: statistics.median(v) for k, v in r["decode_s"].items()}
        lines.append(f"- {r['folder']}: original {med['original']:.4f} s, optimized "
                     f"{med['optimized']:.4f} s")  # fmt: skip
    harness.write_json(out / "gpu_h200_genai.json", {"meta": meta, "rows": rows})
    harness.write_markdown(out / "gpu_h200_genai.md", lines)
    print("\n".join(lines))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("prepare", help="build the GenAI CUDA folders (no GPU needed)")
    p.add_argument("out_dir", type=Path)
    p.add_argument(
        "--names",
        nargs="+",
        choices=list(BUILDS),
        default=["llama-v32k-fp16-cuda", "llama-v8k-bf16-cuda"],
        help="builds to make (default: the two small ones, which travel to the GPU machine)",
    )
    r = sub.add_parser("run", help="optimize and compare on CUDA (GPU machine)")
    r.add_argument("folders", type=Path, nargs="+")
    r.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    r.add_argument("--cpu", action="store_true", help="dry run on GenAI's CPU (no GPU here)")
    g = sub.add_parser("_generate", help=argparse.SUPPRESS)
    g.add_argument("folder")
    g.add_argument("--profile")
    g.add_argument("--cpu", action="store_true")
    g.add_argument("--exact-arena", action="store_true")
    args = parser.parse_args(argv)
    if args.command == "prepare":
        prepare(args.out_dir, args.names)
        return 0
    if args.command == "_generate":
        print(json.dumps(generate(args.folder, args.profile, args.cpu, args.exact_arena)))
        return 0
    return run_folders(args.folders, args.out, args.cpu)


if __name__ == "__main__":
    sys.exit(main())
