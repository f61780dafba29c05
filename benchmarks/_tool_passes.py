"""The weight-deduplication tools compared by bench_tools.py, each as ``apply(src, dst)``.

* ``original``: the export, copied unchanged.
* ``onnx-ir dedup``: onnx-ir's ``DeduplicateHashedInitializersPass`` (exact copies only).
* ``onnxoptimizer``: onnxoptimizer's ``eliminate_duplicate_initializer`` (exact copies only).
* ``transpose insert``: the fix Hugging Face Optimum applies to tied weights, written here from
  its description: an initializer that equals the transpose of another and feeds a MatMul is
  replaced by ``Transpose(other)``, so the file holds one copy.
* ``icl-onnx``: ``icl_onnx.optimize_file``.

Every tool reads and writes files, and its time includes load and save.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx_ir as ir

import icl_onnx

Tool = Callable[[Path, Path], None]


def original(src: Path, dst: Path) -> None:
    shutil.copyfile(src, dst)


def onnx_ir_dedup(src: Path, dst: Path) -> None:
    from onnx_ir.passes.common import DeduplicateHashedInitializersPass

    model = ir.load(src)
    DeduplicateHashedInitializersPass()(model)
    ir.save(model, dst)


def onnxoptimizer_dedup(src: Path, dst: Path) -> None:
    import onnx
    import onnxoptimizer

    model = onnxoptimizer.optimize(onnx.load(src), ["eliminate_duplicate_initializer"])
    onnx.save(model, dst)


def _feeds_matmul_weight(value: ir.Value) -> bool:
    uses = list(value.uses())
    return bool(uses) and all(
        node.op_type in ("MatMul", "Gemm") and index == 1 for node, index in uses
    )


def insert_transpose(src: Path, dst: Path) -> None:
    """Replaces each transposed copy of a 2-D initializer that feeds MatMul by Transpose(W)."""
    model = ir.load(src)
    graph = model.graph
    by_shape: dict[tuple[int, ...], list[ir.Value]] = {}
    for value in graph.initializers.values():
        if (
            value.const_value is not None
            and len(value.shape) == 2
            and value.shape[0] != value.shape[1]
        ):
            by_shape.setdefault(tuple(value.shape.numpy()), []).append(value)
    for value in list(graph.initializers.values()):
        if value.const_value is None or len(value.shape) != 2 or not _feeds_matmul_weight(value):
            continue
        copy = value.const_value.numpy()
        for source in by_shape.get(tuple(reversed(copy.shape)), []):
            if source is value or source.name not in graph.initializers:
                continue
            if np.array_equal(source.const_value.numpy().T, copy):
                node = ir.node(
                    "Transpose",
                    [source],
                    attributes={"perm": [1, 0]},
                    name=f"{value.name}/Transpose",
                )
                graph.append(node)
                node.outputs[0].name = f"{value.name}_transposed"
                value.replace_all_uses_with(node.outputs[0])
                graph.initializers.pop(value.name)
                break
    graph.sort()
    ir.save(model, dst)


def icl(src: Path, dst: Path) -> None:
    icl_onnx.optimize_file(src, dst)


#: Tools in table order.
TOOLS: dict[str, Tool] = {
    "original": original,
    "onnx-ir dedup": onnx_ir_dedup,
    "onnxoptimizer": onnxoptimizer_dedup,
    "transpose insert": insert_transpose,
    "icl-onnx": icl,
}
