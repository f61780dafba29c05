"""Quantized tied LMs as ONNX Runtime GenAI builds them: GenAI's builds against icl-onnx's.

For random-weight tied Llama (hidden 768, vocab 32000) and Qwen2 (hidden 512, vocab 32000), 2
layers, ONNX Runtime GenAI's builder (``-p int4 -e cpu``) makes:

* ``int4 default``: the builder's default for tied models (``shared_embeddings``): the 4-bit head
  weight once in the file, the embedding reading it through ``Reshape -> GatherBlockQuantized``;
* ``int4 shared_embeddings=false``: a float32 embedding table beside the 4-bit head;
* ``int8 head default``: ``algo_config=rtn_last`` (4-bit layers, an 8-bit head), shared the same
  way with ``GatherBlockQuantized(bits=8)``;

and icl-onnx makes ``icl-onnx optimize DIR -o OUT`` of each shared build (exact: the same
values) and ``--share-quantized`` of the unshared one (lossy: the embedding reads the 4-bit head).

Each folder runs in its own subprocess with a clean environment: ``og.Model`` then greedy
generation of ``--steps`` tokens after an 8-token prompt. Measured: the model files' bytes; the
initializer bytes of the graph ORT builds (``optimized_model_filepath``, as ``icl-onnx check``
measures it); the peak RSS (``VmHWM``) and private memory (``RssAnon``) after generation; the
tokens, compared with the GenAI default build's; decode tokens/s (tokens after the first),
median over ``--rounds`` rounds run in turn, as a ratio to the GenAI default build.

MatMulNBits prepacking: a session holding only the head's ``MatMulNBits`` (``[32000, 768]``,
4 and 8 bits, block 32) is created with prepacking on and off (``session.disable_prepacking``);
the ``RssAnon`` it adds and its M=1 latency say what ORT's prepacked copy costs.

Each measurement runs in ``benchmarks._quantized_worker`` (a fresh process).

Usage: python -m benchmarks.bench_quantized [--work DIR] [--steps 32] [--rounds 3]
    [--archs llama,qwen2] [--out DIR] [--report-only]
Writes quantized.md and .json under --out (benchmarks/results).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from benchmarks import harness

ARCHS = {
    "llama": {"hidden": 768, "vocab": 32000, "layers": 2, "heads": 12, "intermediate": 2048},
    "qwen2": {"hidden": 512, "vocab": 32000, "layers": 2, "heads": 8, "intermediate": 1376},
}
PROMPT = [1, 17, 404, 9001, 23, 5, 777, 12345]
#: Each row is compared (tokens, decode speed) with the folder it was made from; GenAI's untied
#: build with the default build (the trade the builder's default makes).
SOURCE = {
    "int4 shared_embeddings=false": "int4 default",
    "int4 default + icl-onnx": "int4 default",
    "int8 head default + icl-onnx": "int8 head default",
    "int4 shared_embeddings=false + --share-quantized (lossy)": "int4 shared_embeddings=false",
}


# ---------------------------------------------------------------- building the folders

#: Architectures by name: (transformers config class, its extra keyword arguments).
CONFIGS = {"llama": ("LlamaConfig", {}), "qwen2": ("Qwen2Config", {})}
#: The packages whose versions the results name.
PACKAGES = ("onnxruntime", "onnxruntime-genai", "numpy")


def tied_hf_folder(
    folder: Path,
    arch: str = "llama",
    *,
    hidden: int = 64,
    vocab: int = 512,
    layers: int = 1,
    heads: int = 2,
    intermediate: int | None = None,
    layer_scale: float = 10.0,
    seed: int = 0,
) -> Path:
    """Writes a random-weight causal LM with tied embeddings and a tokenizer to ``folder``.

    The decoder layers' weights are multiplied by ``layer_scale``: with the default random
    initialisation a tied model's residual stream is its input embedding, so greedy decoding
    repeats the last prompt token forever, and a test of identical tokens would prove little.
    """
    import torch
    import transformers

    config_cls, extra = CONFIGS[arch]
    config = getattr(transformers, config_cls)(
        vocab_size=vocab,
        hidden_size=hidden,
        intermediate_size=intermediate or 2 * hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=heads,
        max_position_embeddings=256,
        tie_word_embeddings=True,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=0,
        **extra,
    )
    torch.manual_seed(seed)
    model = transformers.AutoModelForCausalLM.from_config(config).eval()
    with torch.no_grad():
        for name, param in model.named_parameters():
            if ".layers." in name and "norm" not in name:
                param.mul_(layer_scale)
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    _word_tokenizer(vocab).save_pretrained(folder)
    return folder


def _word_tokenizer(vocab: int):
    """A word-level tokenizer over ``vocab`` made-up words (ids 0-2: pad, bos, eos)."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    words = {"<pad>": 0, "<s>": 1, "</s>": 2, "<unk>": 3}
    words.update({f"w{i}": i for i in range(4, vocab)})
    tok = Tokenizer(models.WordLevel(vocab=words, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<s>",
        eos_token="</s>",
        unk_token="<unk>",
        pad_token="<pad>",
    )


def genai_build(
    hf_dir: Path,
    out_dir: Path,
    precision: str = "int4",
    cache_dir: Path | None = None,
    **extra_options: object,
) -> Path:
    """Runs ``onnxruntime_genai.models.builder`` for the CPU and returns ``out_dir``.

    ``extra_options`` become ``--extra_options key=value`` (for example
    ``shared_embeddings=False``, ``algo_config="rtn_last"``).
    """
    cmd = [
        sys.executable,
        "-m",
        "onnxruntime_genai.models.builder",
        "-i",
        str(hf_dir),
        "-o",
        str(out_dir),
        "-p",
        precision,
        "-e",
        "cpu",
        "-c",
        str(cache_dir or out_dir.parent / f"{out_dir.name}.cache"),
    ]
    if extra_options:
        cmd += ["--extra_options", *(f"{k}={_option(v)}" for k, v in extra_options.items())]
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false"}
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if done.returncode != 0 or not (out_dir / "genai_config.json").is_file():
        raise RuntimeError(f"the GenAI builder failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return out_dir


def _option(value: object) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def build_folders(work: Path, arch: str) -> dict[str, Path]:
    """Builds (or reuses) the GenAI folders and icl-onnx's outputs for ``arch``."""
    hf = work / arch / "hf"
    if not (hf / "config.json").is_file():
        tied_hf_folder(hf, arch, **ARCHS[arch])
    builds = {
        "int4 default": {},
        "int4 shared_embeddings=false": {"shared_embeddings": False},
        "int8 head default": {"algo_config": "rtn_last"},
    }
    folders: dict[str, Path] = {}
    for label, options in builds.items():
        out = work / arch / label.replace(" ", "_").replace("=", "-")
        if not (out / "genai_config.json").is_file():
            genai_build(hf, out, "int4", work / arch / "cache", **options)
        folders[label] = out
    for label, source, flags in (
        ("int4 default + icl-onnx", "int4 default", []),
        ("int8 head default + icl-onnx", "int8 head default", []),
        (
            "int4 shared_embeddings=false + --share-quantized (lossy)",
            "int4 shared_embeddings=false",
            ["--share-quantized"],
        ),
    ):
        out = work / arch / (folders[source].name + "_icl" + ("_sq" if flags else ""))
        if not (out / "genai_config.json").is_file():
            shutil.rmtree(out, ignore_errors=True)
            cli = Path(sys.executable).parent / "icl-onnx"
            subprocess.run(
                [str(cli), "optimize", str(folders[source]), "-o", str(out), *flags],
                check=True,
                capture_output=True,
            )
        folders[label] = out
    return folders


def _child(*args: str) -> dict:
    """Runs ``_quantized_worker`` with ``args`` in a clean environment; returns its JSON."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": os.environ.get("HOME", "/")}
    env["OMP_NUM_THREADS"] = "1"
    done = subprocess.run(
        harness.child_command("benchmarks._quantized_worker", *args),
        capture_output=True, text=True, env=env, check=False, cwd=harness.ROOT,
    )  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(f"child {args[:2]} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def file_bytes(folder: Path) -> int:
    """Bytes of the model files (.onnx and external data)."""
    return sum(
        p.stat().st_size
        for p in folder.iterdir()
        if p.suffix in (".onnx", ".data") or p.name.endswith(".onnx.data")
    )


def measure(folders: dict[str, Path], steps: int, rounds: int) -> dict[str, dict]:
    """Runs every folder ``rounds`` times in turn; memory from the last round."""
    rows: dict[str, dict] = {label: {"decode_s": []} for label in folders}
    for label, folder in folders.items():
        rows[label]["file_bytes"] = file_bytes(folder)
        rows[label].update(_child("graph", str(folder)))
    for _ in range(rounds):
        for label, folder in folders.items():
            run = _child("generate", str(folder), json.dumps(PROMPT), str(steps))
            rows[label]["decode_s"].append(run["decode_s"])
            rows[label].update({k: v for k, v in run.items() if k != "decode_s"})
    for row in rows.values():
        row["decode_tok_s"] = row["decoded"] / statistics.median(row["decode_s"])
    for label, row in rows.items():
        if label not in SOURCE:
            continue
        source = rows[SOURCE[label]]
        row["source"] = SOURCE[label]
        row["tokens_identical"] = row["tokens"] == source["tokens"]
        row["first_difference"] = next(
            (
                i - len(PROMPT)
                for i, (a, b) in enumerate(zip(row["tokens"], source["tokens"], strict=True))
                if a != b
            ),
            None,
        )
        row["decode_ratio"] = row["decode_tok_s"] / source["decode_tok_s"]
    return rows


# ---------------------------------------------------------------- MatMulNBits prepacking


def head_model(folder: Path, n: int, k: int, bits: int, block: int) -> Path:
    """Writes a model holding one MatMulNBits of a random [n, k] head (external data)."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from icl_onnx import block_quant

    w = np.random.default_rng(0).standard_normal((n, k)).astype(np.float32) * 0.05
    b, scales, _, _ = block_quant.quantize(w, bits, block)
    node = helper.make_node(
        "MatMulNBits",
        ["A", "B", "scales"],
        ["Y"],
        domain="com.microsoft",
        K=k,
        N=n,
        bits=bits,
        block_size=block,
        accuracy_level=4,
    )
    graph = helper.make_graph(
        [node],
        "head",
        [helper.make_tensor_value_info("A", TensorProto.FLOAT, [1, k])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [1, n])],
        [numpy_helper.from_array(b, "B"), numpy_helper.from_array(scales.reshape(n, -1), "scales")],
    )
    opsets = [helper.make_opsetid("", 21), helper.make_opsetid("com.microsoft", 1)]
    path = folder / f"head{bits}.onnx"
    onnx.save(
        helper.make_model(graph, opset_imports=opsets),
        path,
        save_as_external_data=True,
        location=path.name + ".data",
        size_threshold=0,
    )
    return path


def prepacking(work: Path, n: int = 32000, k: int = 768, block: int = 32) -> list[dict]:
    """RssAnon a session of the head's MatMulNBits adds, and its M=1 latency, prepacking on/off."""
    rows = []
    for bits in (4, 8):
        path = head_model(work, n, k, bits, block)
        b_bytes = n * -(-k // block) * block * bits // 8
        for prepack in (1, 0):
            done = subprocess.run(
                harness.child_command("benchmarks._quantized_worker", "prepack", path, k, prepack),
                capture_output=True, text=True, check=True, cwd=harness.ROOT,
            )  # fmt: skip
            row = json.loads(done.stdout.strip().splitlines()[-1])
            rows.append(
                {"bits": bits, "prepack": bool(prepack), "n": n, "k": k, "b_bytes": b_bytes, **row}
            )
    return rows


# ---------------------------------------------------------------- the report


def _mb(b: int) -> str:
    return f"{harness.mb(b)} MB"


def render(results: dict, prepack: list[dict], steps: int, rounds: int, meta: dict) -> list[str]:
    """The results file: how it was measured, the builds, prepacking, the findings."""
    lines = [
        "# Quantized tied LMs: ONNX Runtime GenAI's builds against icl-onnx",
        "",
        f"{harness.describe(meta)} CPU. Random-weight tied models, 2 layers "
        "(`benchmarks/bench_quantized.py`; decoder-layer weights scaled by 10 so that greedy "
        "tokens vary), built by "
        "`python -m onnxruntime_genai.models.builder -p int4 -e cpu`. Each folder in its own "
        f"subprocess: `og.Model`, then greedy generation of {steps} tokens after an "
        f"{len(PROMPT)}-token prompt. ORT-graph bytes: initializers of the graph ORT builds "
        "(`optimized_model_filepath`). Peak RSS: `VmHWM`; private: `RssAnon` after generation. "
        "Greedy tokens and decode tokens/s (tokens after the first; median of "
        f"{rounds} rounds, all folders run in turn) are compared with the folder a row was made "
        "from; GenAI's untied build with its default build (the trade the default makes). On "
        "this shared 2-core machine decode ratios are noisy: in two runs of this benchmark the "
        "same pair (llama, int4 default + icl-onnx) measured 0.96 and 1.16.",
        "",
        "| model | build | file bytes | ORT-graph bytes | peak RSS | private RSS "
        "| compared with | greedy tokens | decode tok/s ratio |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for arch, rows in results.items():
        cfg = ARCHS[arch]
        for label, row in rows.items():
            source, same, ratio = "-", "-", "-"
            if "source" in row:
                source = row["source"]
                same = (
                    "identical"
                    if row["tokens_identical"]
                    else (f"differ from step {row['first_difference']}")
                )
                ratio = f"{row['decode_ratio']:.2f}"
            lines.append(
                f"| {arch} {cfg['hidden']}/{cfg['vocab']} | {label} | {_mb(row['file_bytes'])} "
                f"| {_mb(row['ort_graph_bytes'])} | {_mb(row['vmhwm'])} | {_mb(row['rss_anon'])} "
                f"| {source} | {same} | {ratio} |"
            )
    lines += [
        "",
        "## MatMulNBits prepacking (the head alone: N=32000, K=768, block 32)",
        "",
        "A session holding one `MatMulNBits`; `RssAnon` added by creating the session, and the "
        "median latency of one M=1 product (2 threads), with ORT's prepacking on and off "
        "(`session.disable_prepacking`).",
        "",
        "| bits | prepacking | B bytes | session RssAnon | M=1 latency |",
        "|---|---|---|---|---|",
    ]
    for row in prepack:
        lines.append(
            f"| {row['bits']} | {'on' if row['prepack'] else 'off'} | {_mb(row['b_bytes'])} "
            f"| {_mb(row['session_rss_anon'])} | {row['m1_ms']:.3f} ms |"
        )
    return lines + findings(results, prepack)


def findings(results: dict, prepack: list[dict]) -> list[str]:
    """The figures the issue asks for, read off the tables."""
    lines = ["", "## Findings", ""]
    for arch, rows in results.items():
        for source in ("int4 default", "int8 head default"):
            base, icl = rows[source], rows[f"{source} + icl-onnx"]
            lines.append(
                f"- {arch}, {source}: ORT's graph {_mb(base['ort_graph_bytes'])} -> "
                f"{_mb(icl['ort_graph_bytes'])} (the file's {_mb(icl['file_bytes'])}); peak RSS "
                f"{_mb(base['vmhwm'])} -> {_mb(icl['vmhwm'])}, private "
                f"{_mb(base['rss_anon'])} -> {_mb(icl['rss_anon'])}; greedy tokens "
                f"{'identical' if icl['tokens_identical'] else 'DIFFERENT'}."
            )
        untied, lossy = (
            rows["int4 shared_embeddings=false"],
            rows["int4 shared_embeddings=false + --share-quantized (lossy)"],
        )
        same = (
            "identical"
            if lossy["tokens_identical"]
            else (f"differ from step {lossy['first_difference']}")
        )
        lines.append(
            f"- {arch}, shared_embeddings=false + --share-quantized (lossy): file "
            f"{_mb(untied['file_bytes'])} -> {_mb(lossy['file_bytes'])}, peak RSS "
            f"{_mb(untied['vmhwm'])} -> {_mb(lossy['vmhwm'])}; greedy tokens against the float "
            f"embedding {same}."
        )
    by = {(r["bits"], r["prepack"]): r for r in prepack}
    for bits in (4, 8):
        on, off = by[(bits, True)], by[(bits, False)]
        lines.append(
            f"- Prepacking, {bits}-bit head: ORT's packed copy adds {_mb(on['session_rss_anon'])} "
            f"of private memory ({on['session_rss_anon'] / on['b_bytes']:.2f}x B's "
            f"{_mb(on['b_bytes'])}; {_mb(off['session_rss_anon'])} with prepacking off, B stays "
            f"file-backed); without it ORT's MatMulNBits takes {off['m1_ms']:.0f} ms per M=1 "
            f"product instead of {on['m1_ms']:.1f} ms ({off['m1_ms'] / on['m1_ms']:.0f}x)."
        )
    packed = [by[(b, True)]["session_rss_anon"] / by[(b, True)]["b_bytes"] for b in (4, 8)]
    slower = [by[(b, False)]["m1_ms"] / by[(b, True)]["m1_ms"] for b in (4, 8)]
    lines += [
        f"- So an ICL kernel that reads the head in MatMulNBits' unpacked layout would save that "
        f"private copy in every process ({min(packed):.2f}-{max(packed):.2f}x the head's bytes "
        f"here), but it pays only if it comes close to MLAS's prepacked speed: ORT's own path "
        f"over the unpacked layout is {min(slower):.0f}-{max(slower):.0f}x slower at M=1. The "
        "sharing above does not depend on it: the head is read by MatMulNBits (prepacked, as "
        "before) and by the ICL gather (in place).",
        "- The untied build's peak RSS is low although its file is large: the float table is "
        "memory-mapped and the embedding touches only the rows of the tokens it reads, while "
        "ORT's folded Reshape in the default build is a private copy of the whole head.",
    ]
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=None)
    parser.add_argument("--steps", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--archs", default="llama,qwen2")
    harness.output_arguments(parser, "quantized")
    args = parser.parse_args()
    if args.report_only:
        saved = json.loads((args.out / "quantized.json").read_text())
        lines = render(
            saved["models"], saved["prepacking"], saved["steps"], saved["rounds"], saved["machine"]
        )
        harness.write_markdown(args.out / "quantized.md", lines)
        print("\n".join(lines))
        return 0
    meta = harness.metadata(PACKAGES)
    work = args.work or Path(tempfile.mkdtemp(prefix="bench_quantized_"))
    results = {}
    for arch in args.archs.split(","):
        folders = build_folders(work, arch)
        results[arch] = measure(folders, args.steps, args.rounds)
    prepack = prepacking(work)
    harness.write_json(
        args.out / "quantized.json",
        {
            "machine": meta,
            "models": results,
            "prepacking": prepack,
            "steps": args.steps,
            "rounds": args.rounds,
        },
    )
    lines = render(results, prepack, args.steps, args.rounds, meta)
    harness.write_markdown(args.out / "quantized.md", lines)
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
