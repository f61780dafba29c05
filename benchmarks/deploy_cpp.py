"""Peak RSS of a C++ host (``examples/cpp/run_model.cc``) before and after ``icl-onnx optimize``.

The example registers the op library with ``RegisterCustomOpsLibrary``, creates a CPU session
and runs the model once (dynamic dimensions set to 1). Each tied model (random weights, 2
layers, TorchScript export, which stores ``W`` and ``W^T``) is run as exported and after
``icl-onnx optimize``, each in a fresh process under ``/usr/bin/time -v``; the figure is its
maximum resident set size. The example is compiled by ``tests/cpp_example.py`` as in its test.

Run from the repository root:
    .venv/bin/python benchmarks/deploy_cpp.py --out benchmarks/results
Writes ``deploy_cpp.md`` and ``deploy_cpp.json`` under ``--out``.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # the example's build helper (tests/cpp_example.py)

from cpp_example import build_example  # noqa: E402

import icl_onnx  # noqa: E402
from icl_onnx.models import build_model  # noqa: E402
from icl_onnx.pipeline import optimize_file  # noqa: E402
from icl_onnx.torch_export import export_onnx  # noqa: E402

#: The core issue's sizes: hidden 768, vocab 30000, 2 layers.
SIZES = {"hidden": 768, "vocab": 30000, "layers": 2}


def peak_rss_kb(exe: Path, model: Path) -> int:
    """Runs the example once under ``/usr/bin/time -v``; returns its maximum RSS in kB."""
    out = subprocess.run(
        ["/usr/bin/time", "-v", str(exe), str(model), icl_onnx.library_path()],
        capture_output=True, text=True, check=True, timeout=600,
    )  # fmt: skip
    return int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", out.stderr).group(1))


def measure(arch: str, exe: Path, work: Path, rounds: int) -> dict:
    """Exports one tied model, optimizes it and measures both in the C++ host."""
    built = build_model(arch, **SIZES)
    original, optimized = work / f"{arch}.onnx", work / f"{arch}.icl.onnx"
    export_onnx(built.module, original, built.inputs, dynamo=False)
    optimize_file(original, optimized)
    files = lambda path: sum(p.stat().st_size for p in work.glob(path.name + "*"))  # noqa: E731
    before = min(peak_rss_kb(exe, original) for _ in range(rounds))
    after = min(peak_rss_kb(exe, optimized) for _ in range(rounds))
    return {
        "model": f"{arch}-torchscript",
        "file_bytes": [files(original), files(optimized)],
        "peak_rss_kb": [before, after],
    }


def write_markdown(rows: list[dict], path: Path, rounds: int) -> None:
    """Writes the table."""
    lines = [
        "# C++ host: peak RSS before and after icl-onnx optimize",
        "",
        f"`examples/cpp/run_model.cc` (RegisterCustomOpsLibrary, CPU session, one run with "
        f"dynamic dimensions 1), a fresh process per run, lowest of {rounds} runs of "
        f"`/usr/bin/time -v`. Tied models, hidden {SIZES['hidden']}, vocab {SIZES['vocab']}, "
        f"{SIZES['layers']} layers, TorchScript export. MB = 10^6 bytes.",
        "",
        "| model | file MB (original → optimized) | peak RSS MB (original → optimized) |",
        "|---|---:|---:|",
    ]
    for row in rows:
        (fa, fb), (ra, rb) = row["file_bytes"], row["peak_rss_kb"]
        lines.append(
            f"| {row['model']} | {fa / 1e6:.1f} → {fb / 1e6:.1f} | "
            f"{ra * 1024 / 1e6:.1f} → {rb * 1024 / 1e6:.1f} |"
        )
    path.write_text("\n".join(lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="icl-deploy-cpp-") as tmp:
        work = Path(tmp)
        (work / "build").mkdir()
        exe = build_example(work / "build")
        rows = [measure(arch, exe, work, args.rounds) for arch in ("bert", "llama")]
    (args.out / "deploy_cpp.json").write_text(json.dumps(rows, indent=1) + "\n")
    write_markdown(rows, args.out / "deploy_cpp.md", args.rounds)
    print((args.out / "deploy_cpp.md").read_text())


if __name__ == "__main__":
    main()
