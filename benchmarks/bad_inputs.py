"""Issue 5's bad-input table: each broken input through the installed ``icl-onnx`` command.

Every case is built in a fresh folder, then ``icl-onnx optimize`` (or ``check``) runs as a
subprocess. The hostile-file rows (negative or absurd dimensions, data shorter than the shape,
external-data lengths and offsets past the file or past 2^63, subgraphs nested past protobuf's
limit) are issue #20's; ``tests/test_bad_input.py`` runs them through scan, optimize and
check. Recorded per case: the exit code, stderr as printed, whether stderr is one line without
a traceback, whether the input files kept their bytes, and whether the folder holds anything
new afterwards (partial output or staging leftovers).
Writes ``bad_inputs.md`` under --out (benchmarks/results).

Usage: python -m benchmarks.bad_inputs [--out DIR]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import onnx_ir as ir
from onnx import TensorProto
from onnx import helper as h
from onnx import numpy_helper as nh

from benchmarks import harness
from benchmarks.harness import write_markdown
from icl_onnx.testing.protobuf_wire import field as _field

V, H = 64, 32
W = np.random.default_rng(0).standard_normal((V, H)).astype(np.float32)


def tied(extra_nodes=(), extra_opsets=()) -> onnx.ModelProto:
    """Gather(emb) and MatMul(., embT) with embT a transposed copy of emb."""
    graph = h.make_graph(
        [h.make_node("Gather", ["emb", "ids"], ["e"]), h.make_node("MatMul", ["e", "embT"], ["y"])]
        + list(extra_nodes),
        "tied",
        [h.make_tensor_value_info("ids", TensorProto.INT64, ["b", "s"])],
        [h.make_tensor_value_info("y", TensorProto.FLOAT, ["b", "s", V])],
        [nh.from_array(W, "emb"), nh.from_array(np.ascontiguousarray(W.T), "embT")],
    )
    return h.make_model(graph, opset_imports=[h.make_opsetid("", 18), *extra_opsets])


def _external(folder: Path) -> Path:
    src = folder / "ext.onnx"
    ir.save(ir.from_proto(tied()), src, external_data="ext.onnx.data", size_threshold_bytes=0)
    return src


def truncated(folder: Path) -> list[str]:
    src = folder / "model.onnx"
    data = tied().SerializeToString()
    src.write_bytes(data[: len(data) // 2])
    return ["optimize", str(src), "-o", str(folder / "out.onnx")]


def not_onnx(folder: Path) -> list[str]:
    src = folder / "model.onnx"
    src.write_text("name,value\nweights,1\n")
    return ["optimize", str(src), "-o", str(folder / "out.onnx")]


def empty_file(folder: Path) -> list[str]:
    src = folder / "model.onnx"
    src.write_bytes(b"")
    return ["optimize", str(src), "-o", str(folder / "out.onnx")]


def empty_graph(folder: Path) -> list[str]:
    src = folder / "model.onnx"
    model = h.make_model(h.make_graph([], "empty", [], []))
    onnx.save(model, src)
    return ["optimize", str(src), "-o", str(folder / "out.onnx")]


def missing_input(folder: Path) -> list[str]:
    return ["optimize", str(folder / "nowhere.onnx"), "-o", str(folder / "out.onnx")]


def missing_data(folder: Path) -> list[str]:
    src = _external(folder)
    (folder / "ext.onnx.data").unlink()
    return ["optimize", str(src), "-o", str(folder / "out.onnx")]


def short_data(folder: Path) -> list[str]:
    src = _external(folder)
    data = folder / "ext.onnx.data"
    data.write_bytes(data.read_bytes()[:-100])
    return ["optimize", str(src), "-o", str(folder / "out.onnx")]


def output_folder_missing(folder: Path) -> list[str]:
    src = folder / "model.onnx"
    onnx.save(tied(), src)
    return ["optimize", str(src), "-o", str(folder / "no" / "such" / "out.onnx")]


def output_is_a_folder(folder: Path) -> list[str]:
    src = folder / "model.onnx"
    onnx.save(tied(), src)
    (folder / "out").mkdir()
    return ["optimize", str(src), "-o", str(folder / "out")]


def unwritable_output(folder: Path) -> list[str]:
    src = folder / "model.onnx"
    onnx.save(tied(), src)
    # sysfs refuses new files even for root (a chmod-ed folder does not stop root).
    return ["optimize", str(src), "-o", "/sys/kernel/icl-out.onnx"]


def output_is_input(folder: Path) -> list[str]:
    src = _external(folder)
    return ["optimize", str(src), "-o", str(src)]


def unknown_domain(folder: Path) -> list[str]:
    src = folder / "model.onnx"
    custom = h.make_node("Mystery", ["embT"], ["m"], domain="com.example")
    onnx.save(tied([custom], [h.make_opsetid("com.example", 1)]), src)
    return ["optimize", str(src), "-o", str(folder / "out.onnx")]


def _inline(folder: Path, dims=None, raw_cut=None) -> list[str]:
    model = tied()
    emb = model.graph.initializer[0]
    if dims is not None:
        emb.dims[:] = dims
    if raw_cut is not None:
        emb.raw_data = emb.raw_data[:raw_cut]
    src = folder / "model.onnx"
    onnx.save(model, src)
    return ["optimize", str(src), "-o", str(folder / "out.onnx")]


def _external_entries(folder: Path, **entries: int) -> list[str]:
    src = _external(folder)
    proto = onnx.load(src, load_external_data=False)
    emb = proto.graph.initializer[0]
    kept = [e for e in emb.external_data if e.key not in entries]
    del emb.external_data[:]
    emb.external_data.extend(kept)
    for key, value in entries.items():
        emb.external_data.add(key=key, value=str(value))
    onnx.save(proto, src)
    return ["optimize", str(src), "-o", str(folder / "out.onnx")]


def negative_dim(folder: Path) -> list[str]:
    return _inline(folder, dims=[-V, H])


def absurd_dims(folder: Path) -> list[str]:
    return _inline(folder, dims=[1 << 40, 1 << 40])


def short_raw_data(folder: Path) -> list[str]:
    return _inline(folder, raw_cut=100)


def length_past_end(folder: Path) -> list[str]:
    return _external_entries(folder, length=1 << 20)


def length_past_2_64(folder: Path) -> list[str]:
    return _external_entries(folder, length=(1 << 64) + 5)


def offset_overflow(folder: Path) -> list[str]:
    return _external_entries(folder, offset=(1 << 63) - 8, length=V * H * 4)


def deep_subgraphs(folder: Path) -> list[str]:
    graph = _field(1, _field(4, b"Identity"))
    for _ in range(3000):  # If whose then_branch (type GRAPH) holds the previous graph
        attribute = _field(1, b"then_branch") + bytes([20 << 3, 1, 5]) + _field(6, graph)
        graph = _field(1, _field(4, b"If") + _field(5, attribute))
    src = folder / "model.onnx"
    src.write_bytes(tied().SerializeToString() + _field(7, graph))  # appends the If node
    return ["optimize", str(src), "-o", str(folder / "out.onnx")]


def check_negative_dim(folder: Path) -> list[str]:
    src = Path(negative_dim(folder)[1])
    return ["check", str(src), str(src)]


#: (case, builder, expected outcome)
CASES: list[tuple[str, Callable[[Path], list[str]], str]] = [
    ("truncated .onnx (half the bytes)", truncated, "exit 2"),
    ("not an ONNX file (CSV text)", not_onnx, "exit 2"),
    ("empty file", empty_file, "exit 2"),
    ("empty graph", empty_graph, "exit 2"),
    ("input file missing", missing_input, "exit 2"),
    ("external-data file missing", missing_data, "exit 2"),
    ("external-data file 100 bytes short", short_data, "exit 2"),
    ("output folder missing", output_folder_missing, "exit 2"),
    ("output is a folder", output_is_a_folder, "exit 2"),
    ("output on a file system that refuses writes", unwritable_output, "exit 2"),
    ("output equal to input (external data)", output_is_input, "exit 0, rewritten in place"),
    ("node of an unknown domain reading a weight", unknown_domain, "exit 0, node kept"),
    ("negative dimension [-64, 32]", negative_dim, "exit 2"),
    ("absurd dimensions [2^40, 2^40], 8 kB of data", absurd_dims, "exit 2"),
    ("raw data shorter than the shape (100 of 8192 bytes)", short_raw_data, "exit 2"),
    ("external length past the end of the file (1 MiB)", length_past_end, "exit 2"),
    ("external length past 2^64", length_past_2_64, "exit 2"),
    ("external offset 2^63 - 8 (offset + length past 2^63)", offset_overflow, "exit 2"),
    ("If subgraphs nested 3000 deep", deep_subgraphs, "exit 2"),
    ("`check` on the negative dimension", check_negative_dim, "exit 2"),
]


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def run_case(builder: Callable[[Path], list[str]]) -> dict:
    """Builds one case in a fresh folder and runs the command on it."""
    folder = Path(tempfile.mkdtemp(prefix="icl-bad-"))
    try:
        argv = builder(folder)
        before = _snapshot(folder)
        cli = shutil.which("icl-onnx", path=os.path.dirname(sys.executable)) or "icl-onnx"
        proc = subprocess.run([cli, *argv], capture_output=True, text=True, timeout=300)
        after = _snapshot(folder)
        inputs_kept = all(after.get(k) == v for k, v in before.items())
        return {
            "command": "icl-onnx " + " ".join(Path(a).name if "/" in a else a for a in argv),
            "exit": proc.returncode,
            "stderr": proc.stderr.strip(),
            "stdout_last": (proc.stdout.strip().splitlines() or [""])[-1],
            "one_line": len(proc.stderr.strip().splitlines()) == 1
            and "Traceback" not in proc.stderr,
            "inputs_kept": inputs_kept,
            "new_files": sorted(set(after) - set(before)),
        }
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def main() -> None:
    """Runs every case and writes the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    harness.out_argument(parser)
    args = parser.parse_args()
    lines = [
        "# Bad input: what `icl-onnx optimize` says and leaves behind",
        "",
        "Each case in a fresh folder; the installed `icl-onnx` command as a subprocess. "
        "'input kept': every file present before the run has the same bytes after it. "
        "'new files': files that appeared in the folder (partial output, staging leftovers).",
        "",
        "| case | expected | exit | one line, no traceback | input kept | new files "
        "| stderr (stdout's last line on success) |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, builder, expected in CASES:
        r = run_case(builder)
        shown = r["stderr"] if r["exit"] else r["stdout_last"]
        stderr = shown.replace("|", "\\|").replace("\n", " ⏎ ") or "(none)"
        for tmp in ("/tmp/", tempfile.gettempdir() + "/"):
            stderr = stderr.replace(tmp, "…/")
        new = ", ".join(r["new_files"]) or "none"
        lines.append(
            f"| {name} | {expected} | {r['exit']} | "
            f"{('yes' if r['one_line'] else 'no') if r['exit'] else 'n/a'} | "
            f"{'yes' if r['inputs_kept'] else 'no'} | {new} | {stderr} |"
        )
        print(f"{name}: exit {r['exit']}: {r['stderr'][:150]}", flush=True)
    write_markdown(args.out / "bad_inputs.md", lines)


if __name__ == "__main__":
    main()
