"""Memory and speed of real serving stacks before and after ``icl-onnx optimize DIR -o OUTDIR``.

For each case a random-weight tied model (2 layers) is exported by the client's own tool:
onnxruntime-genai's model builder (fp32, CPU; its default for tied models and
``shared_embeddings=false``) and optimum-onnx's ``optimum-cli export onnx --task
text-generation-with-past`` (plain: ``--no-post-process``; dedup: its post-processing, which with
accelerate installed ties the duplicate initializers). The folder is optimized and both folders
are measured:

- file bytes, bytes of initializers in ORT's optimized graph and session RSS, through
  ``icl_onnx.check.check_models`` on ``model.onnx`` (8 past + 8 new tokens);
- peak RSS (VmHWM) of a fresh process that loads the folder with the client (``og.Model``, or
  ``ORTModelForCausalLM`` with ``icl_onnx.session_options()``) and generates greedily, and the
  decode speed (tokens after the first, per second; best of ``--rounds`` runs, original and
  optimized alternating);
- whether the generated tokens are identical.

Run from the repository root (builds the Optimum venv on first use):
    .venv/bin/python -m benchmarks.deploy --out benchmarks/results
Writes ``deploy.md`` and ``deploy.json`` under ``--out``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import tempfile
from pathlib import Path

from benchmarks import harness
from benchmarks.harness import describe, mb, metadata, table, write_json, write_markdown
from icl_onnx.check import check_models
from icl_onnx.folders import optimize_folder
from icl_onnx.testing import clients

#: The issue's sizes: tied Llama 768/32000, Qwen2 512/32000, GPT-2 768/30000, 2 layers.
SIZES = {
    "llama": dict(
        hidden_size=768, intermediate_size=2048, num_attention_heads=12, num_key_value_heads=4,
        vocab_size=32000, num_hidden_layers=2,
    ),
    "qwen2": dict(
        hidden_size=512, intermediate_size=1408, num_attention_heads=8, num_key_value_heads=2,
        vocab_size=32000, num_hidden_layers=2,
    ),
    "gpt2": dict(n_embd=768, n_head=12, vocab_size=30000, n_layer=2),
}  # fmt: skip


#: Greedy tokens generated per run (after the 8-token prompt).
NEW_TOKENS = 64


@dataclasses.dataclass
class Case:
    """One exported folder to measure."""

    client: str  # "genai" or "optimum"
    model: str
    variant: str

    @property
    def label(self) -> str:
        return f"{self.client} {self.model} {self.variant}"

    def build(self) -> Path:
        sizes = SIZES[self.model]
        if self.client == "genai":
            shared = {"default": None, "shared_embeddings=false": False}[self.variant]
            return clients.genai_build(self.model, shared, **sizes)
        return clients.optimum_export(self.model, self.variant == "dedup", **sizes)

    def generate(self, folder: Path, optimized: bool) -> dict:
        if self.client == "genai":
            return clients.genai_generate(folder, NEW_TOKENS)
        return clients.optimum_generate(folder, "icl" if optimized else "plain", NEW_TOKENS)


CASES = [
    Case("genai", "llama", "default"),
    Case("genai", "llama", "shared_embeddings=false"),
    Case("genai", "qwen2", "default"),
    Case("genai", "qwen2", "shared_embeddings=false"),
    Case("optimum", "gpt2", "plain"),
    Case("optimum", "gpt2", "dedup"),
    Case("optimum", "llama", "plain"),
    Case("optimum", "llama", "dedup"),
]


def measure(case: Case, work: Path, rounds: int) -> dict:
    """Builds, optimizes and measures one case."""
    src = case.build()
    out = work / case.label.replace(" ", "_").replace("=", "_")
    optimize_folder(src, out, force=True)
    report = check_models(src / "model.onnx", out / "model.onnx")
    runs: dict[str, list[dict]] = {"original": [], "optimized": []}
    for _ in range(rounds):
        runs["original"].append(case.generate(src, optimized=False))
        runs["optimized"].append(case.generate(out, optimized=True))
    row: dict = {"case": case.label, "check_passed": report.passed}
    for side, folder, m in (
        ("original", src, report.memory.original),
        ("optimized", out, report.memory.optimized),
    ):
        best = min(runs[side], key=lambda r: r["decode_s"])
        row[side] = {
            "folder_bytes": sum(p.stat().st_size for p in folder.iterdir() if p.is_file()),
            "file_bytes": m.file_bytes,
            "ort_graph_bytes": m.ort_initializer_bytes,
            "session_rss_delta": m.rss_run_delta,
            "peak_rss": max(r["peak_rss"] for r in runs[side]),
            "decode_tokens_per_s": (NEW_TOKENS - 1) / best["decode_s"],
            "tokens": runs[side][0]["tokens"],
        }
    row["tokens_identical"] = all(
        r["tokens"] == row["original"]["tokens"] for r in runs["original"] + runs["optimized"]
    )
    print(json.dumps({k: v for k, v in row.items() if k not in ("original", "optimized")}))
    return row


def write_report(rows: list[dict], path: Path, rounds: int, meta: dict) -> None:
    """The table: each measure before → after, and the decode speed ratio."""
    lines = [
        "# Deploy: serving stacks before and after `icl-onnx optimize DIR -o OUTDIR`",
        "",
        "Random-weight tied models, 2 layers: Llama hidden 768 / vocab 32000, Qwen2 512 / 32000,",
        "GPT-2 768 / 30000; fp32, CPU. Written by `benchmarks/deploy.py` (see its docstring for",
        f"how each figure is taken); decode speed: best of {rounds} alternating runs of",
        f"{NEW_TOKENS} greedy tokens after an {len(clients.PROMPT)}-token prompt; MB = 1e6 B.",
        "",
        describe(meta),
        "",
    ]
    header = [
        "case", "model.onnx + data, MB", "initializers in ORT's graph, MB",
        "session RSS (check), MB", "peak RSS of generation, MB", "tokens identical",
        "decode tokens/s, optimized / original", "check",
    ]  # fmt: skip
    cells = []
    for row in rows:
        a, b = row["original"], row["optimized"]
        cells.append(
            [row["case"]]
            + [f"{mb(a[key])} → {mb(b[key])}" for key in _BYTES]
            + [
                "yes" if row["tokens_identical"] else "**no**",
                f"{b['decode_tokens_per_s'] / a['decode_tokens_per_s']:.2f}",
                "pass" if row["check_passed"] else "**fail**",
            ]
        )
    write_markdown(path, lines + table(header, cells))


#: The byte columns of the table, in order.
_BYTES = ("file_bytes", "ort_graph_bytes", "session_rss_delta", "peak_rss")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    harness.out_argument(parser)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--only", help="run the cases whose label contains this text")
    args = parser.parse_args()
    cases = [c for c in CASES if not args.only or args.only in c.label]
    meta = metadata(("onnxruntime", "onnxruntime-genai", "numpy"))
    rows: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="icl-deploy-") as work:
        for case in cases:  # the files are rewritten after each case
            rows.append(measure(case, Path(work), args.rounds))
            write_json(args.out / "deploy.json", {"machine": meta, "rows": rows}, indent=2)
            write_report(rows, args.out / "deploy.md", args.rounds, meta)
    print(f"wrote {args.out / 'deploy.md'}")


if __name__ == "__main__":
    main()
