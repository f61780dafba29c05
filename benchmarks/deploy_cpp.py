"""Peak RSS of a C++ host (``examples/cpp/run_model.cc``) before and after ``icl-onnx optimize``.

The example registers the op library with ``RegisterCustomOpsLibrary``, creates a CPU session
and runs the model once (dynamic dimensions set to 1). Each tied model (random weights, 2
layers, TorchScript export, which stores ``W`` and ``W^T``) is run as exported and after
``icl-onnx optimize``, each in a fresh process under ``/usr/bin/time -v``; the figure is its
maximum resident set size. The example is compiled by ``icl_onnx.testing.cpp_example`` as in its
test.

Run from the repository root:
    .venv/bin/python -m benchmarks.deploy_cpp --out benchmarks/results
Writes ``deploy_cpp.md`` and ``deploy_cpp.json`` under ``--out``.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import tempfile
from pathlib import Path

import icl_onnx
from benchmarks import harness
from benchmarks.harness import describe, mb, metadata, table, write_json, write_markdown
from icl_onnx.models import build_model
from icl_onnx.pipeline import optimize_file
from icl_onnx.testing.cpp_example import build_example
from icl_onnx.torch_export import export_onnx

#: The core issue's sizes: hidden 768, vocab 30000, 2 layers.
SIZES = {"hidden": 768, "vocab": 30000, "layers": 2}


def peak_rss(exe: Path, model: Path) -> int:
    """Runs the example once under ``/usr/bin/time -v``; returns its maximum RSS in bytes."""
    out = subprocess.run(
        ["/usr/bin/time", "-v", str(exe), str(model), icl_onnx.library_path()],
        capture_output=True, text=True, check=True, timeout=600,
    )  # fmt: skip
    kib = re.search(r"Maximum resident set size \(kbytes\): (\d+)", out.stderr).group(1)
    return int(kib) * 1024


def measure(arch: str, exe: Path, work: Path, rounds: int) -> dict:
    """Exports one tied model, optimizes it and measures both in the C++ host."""
    built = build_model(arch, **SIZES)
    original, optimized = work / f"{arch}.onnx", work / f"{arch}.icl.onnx"
    export_onnx(built.module, original, built.inputs, dynamo=False)
    optimize_file(original, optimized)
    files = lambda path: sum(p.stat().st_size for p in work.glob(path.name + "*"))  # noqa: E731
    before = min(peak_rss(exe, original) for _ in range(rounds))
    after = min(peak_rss(exe, optimized) for _ in range(rounds))
    return {
        "model": f"{arch}-torchscript",
        "file_bytes": [files(original), files(optimized)],
        "peak_rss_bytes": [before, after],
    }


def write_markdown_report(rows: list[dict], path: Path, rounds: int, meta: dict) -> None:
    """Writes the table."""
    lines = [
        "# C++ host: peak RSS before and after icl-onnx optimize",
        "",
        f"`examples/cpp/run_model.cc` (RegisterCustomOpsLibrary, CPU session, one run with "
        f"dynamic dimensions 1), a fresh process per run, lowest of {rounds} runs of "
        f"`/usr/bin/time -v`. Tied models, hidden {SIZES['hidden']}, vocab {SIZES['vocab']}, "
        f"{SIZES['layers']} layers, TorchScript export. MB = 10^6 bytes.",
        "",
        describe(meta),
        "",
    ]
    lines += table(
        ["model", "file MB (original → optimized)", "peak RSS MB (original → optimized)"],
        [
            [row["model"], " → ".join(map(mb, row["file_bytes"])),
             " → ".join(map(mb, row["peak_rss_bytes"]))]
            for row in rows
        ],
        align="lrr",
    )  # fmt: skip
    write_markdown(path, lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    harness.out_argument(parser)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    meta = metadata()
    with tempfile.TemporaryDirectory(prefix="icl-deploy-cpp-") as tmp:
        work = Path(tmp)
        (work / "build").mkdir()
        exe = build_example(work / "build")
        rows = [measure(arch, exe, work, args.rounds) for arch in ("bert", "llama")]
    write_json(args.out / "deploy_cpp.json", {"machine": meta, "rows": rows})
    write_markdown_report(rows, args.out / "deploy_cpp.md", args.rounds, meta)
    print((args.out / "deploy_cpp.md").read_text())


if __name__ == "__main__":
    main()
