"""Lossy near-copies: a float table whose quantized counterpart is in the same model.

A tied LM exported with a quantized head and a float embedding (ONNX Runtime GenAI's builder
with ``shared_embeddings=false``, or a QDQ-quantized export) holds the embedding table ``W`` in
float and the head as ``MatMulNBits`` weights (``W`` quantized by rows) or as a
``DequantizeLinear`` weight (``W^T`` quantized). Dequantized, the head matches the table within
one quantization step: a near-copy that only a lossy rewrite can share. It is reported, never
applied silently (``--share-quantized`` is the opt-in). Changes nothing.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import onnx_ir as ir

from icl_onnx.analysis.findings import QuantizedNearCopy
from icl_onnx.block_quant import BlockLayout, dequantize

__all__ = ["QuantizedNearCopy", "find_quantized_near_copies"]

#: Rows compared before a candidate is compared in full.
_SAMPLE_ROWS = 16
#: Rows dequantized at a time.
_CHUNK_ROWS = 4096
#: Slack over one quantization step (the quantizer's rounding of the scale itself).
_STEP_SLACK = 1.001


@dataclasses.dataclass(frozen=True)
class _Quantized:
    """A quantized weight: how to dequantize rows of the [V, H] matrix it approximates."""

    node: ir.Node
    name: str
    nbytes: int
    scheme: str
    shape: tuple[int, int]  # of the dequantized matrix, oriented like the table
    transposed: bool
    rows: object  # callable(row_indices) -> (values [r, H] float32, steps [r, H] float32)


def _const(node: ir.Node, index: int) -> ir.TensorProtocol | None:
    if index >= len(node.inputs) or node.inputs[index] is None:
        return None
    return ir.convenience.get_const_tensor(node.inputs[index])


def _attr(node: ir.Node, name: str, default: int) -> int:
    found = node.attributes.get(name)
    return default if found is None else int(found.value)


def _matmul_nbits(node: ir.Node) -> _Quantized | None:
    """MatMulNBits' B as the dequantized ``W[N, K]`` (``Y = A @ W^T``: W is the tied table)."""
    b, scales, zero_points = _const(node, 1), _const(node, 2), _const(node, 3)
    if b is None or scales is None or len(node.inputs) > 4 and node.inputs[4] is not None:
        return None  # not constant, or act-order (g_idx)
    if zero_points is not None and zero_points.dtype != ir.DataType.UINT8:
        return None
    try:
        layout = BlockLayout(
            _attr(node, "N", 0),
            _attr(node, "K", 0),
            _attr(node, "bits", 4),
            _attr(node, "block_size", 0),
        )
    except ValueError:
        return None
    if b.size != layout.stored_bytes or scales.size != layout.n * layout.n_blocks:
        return None
    b_np, s_np = b.numpy(), scales.numpy().astype(np.float32)
    zp_np = None if zero_points is None else zero_points.numpy()

    def rows(index: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        values = dequantize(b_np, s_np, zp_np, layout, rows=index).astype(np.float32)
        steps = np.repeat(np.abs(s_np.reshape(layout.n, -1)[index]), layout.block_size, axis=1)
        return values, steps[:, : layout.k]

    nbytes = b.nbytes + scales.nbytes + (zero_points.nbytes if zero_points is not None else 0)
    scheme = f"MatMulNBits {layout.bits}-bit, block {layout.block_size}"
    name = node.inputs[1].name or "?"  # type: ignore[union-attr]
    return _Quantized(node, name, nbytes, scheme, (layout.n, layout.k), False, rows)


def _dequantize_linear(node: ir.Node, shapes: set[tuple[int, int]]) -> _Quantized | None:
    """A 2-D constant DequantizeLinear feeding a MatMul's weight: ``W^T`` quantized.

    Only a weight whose ``[V, H]`` orientation is in ``shapes`` (a float table's) is
    dequantized; any other is None.
    """
    x, scale, zero_point = _const(node, 0), _const(node, 1), _const(node, 2)
    if x is None or scale is None or len(x.shape) != 2:
        return None
    if (int(x.shape[1]), int(x.shape[0])) not in shapes:
        return None
    if not any(u.node.op_type in ("MatMul", "Gemm") and u.idx == 1 for u in node.outputs[0].uses()):
        return None
    axis = _attr(node, "axis", 1) % 2
    block = _attr(node, "block_size", 0)
    q = x.numpy().astype(np.float32)
    s = np.abs(scale.numpy().astype(np.float32))
    zp = np.zeros((), np.float32) if zero_point is None else zero_point.numpy().astype(np.float32)
    s_full, zp_full = _broadcast(s, q.shape, axis, block), _broadcast(zp, q.shape, axis, block)
    if s_full is None or zp_full is None:
        return None
    values = (q - zp_full) * _broadcast(scale.numpy().astype(np.float32), q.shape, axis, block)
    values_t, steps_t = values.T, s_full.T  # oriented like the table: [V, H]

    def rows(index: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return values_t[index], steps_t[index]

    nbytes = x.nbytes + scale.nbytes + (zero_point.nbytes if zero_point is not None else 0)
    kind = f"block {block}" if block else ("per-tensor" if s.size == 1 else "per-channel")
    scheme = f"DequantizeLinear {x.dtype.name.lower()}, {kind}"
    name = node.inputs[0].name or "?"  # type: ignore[union-attr]
    return _Quantized(node, name, nbytes, scheme, values_t.shape, True, rows)


def _broadcast(p: np.ndarray, shape: tuple, axis: int, block: int) -> np.ndarray | None:
    """A DequantizeLinear scale or zero point expanded to the data's shape."""
    if p.size == 1:
        return np.broadcast_to(p.reshape(1, 1), shape)
    if block:
        if p.ndim != 2:
            return None
        full = np.repeat(p, block, axis=axis)
        return full[: shape[0], : shape[1]] if full.shape[axis] >= shape[axis] else None
    if p.ndim != 1 or p.size != shape[axis]:
        return None
    return p.reshape((-1, 1) if axis == 0 else (1, -1)) * np.ones(shape, np.float32)


def _quantized_weights(model: ir.Model, shapes: set[tuple[int, int]]) -> list[_Quantized]:
    """The quantized weights of ``model`` that a float table of one of ``shapes`` could match."""
    found = []
    for node in ir.traversal.RecursiveGraphIterator(model.graph):
        if node.op_type == "MatMulNBits" and node.domain == "com.microsoft":
            q = _matmul_nbits(node)
        elif node.op_type == "DequantizeLinear" and node.domain in ("", "ai.onnx"):
            q = _dequantize_linear(node, shapes)
        else:
            q = None
        if q is not None:
            found.append(q)
    return found


def _float_tables(model: ir.Model, min_elements: int) -> list[ir.Value]:
    tables = []
    floats = (ir.DataType.FLOAT, ir.DataType.FLOAT16, ir.DataType.BFLOAT16)
    for value in model.graph.initializers.values():
        tensor = value.const_value
        if tensor is not None and tensor.dtype in floats and len(tensor.shape) == 2:
            if tensor.size >= min_elements and value.uses():
                tables.append(value)
    return tables


def _compare(table: np.ndarray, q: _Quantized) -> tuple[float, float, float] | None:
    """(max error, mean error, max error in steps) when every element is within one step."""
    n = table.shape[0]
    sample = np.unique(np.linspace(0, n - 1, min(n, _SAMPLE_ROWS)).astype(np.int64))
    order = [sample, np.arange(n)]
    total, worst, worst_steps = 0.0, 0.0, 0.0
    for index in order:
        total, worst, worst_steps = 0.0, 0.0, 0.0
        for start in range(0, len(index), _CHUNK_ROWS):
            part = index[start : start + _CHUNK_ROWS]
            values, steps = q.rows(part)  # type: ignore[operator]
            error = np.abs(values - table[part].astype(np.float32))
            over = error > steps * _STEP_SLACK
            if over.any() or not np.isfinite(error).all():
                return None
            total += float(error.sum(dtype=np.float64))
            worst = max(worst, float(error.max(initial=0.0)))
            safe = np.where(steps > 0, steps, 1.0)
            worst_steps = max(worst_steps, float((error / safe).max(initial=0.0)))
    return worst, total / table.size, worst_steps


def _share_problem(table: ir.Value, q: _Quantized) -> str:
    """Why ``--share-quantized`` cannot make the table's readers read ``q``, or ""."""
    if q.transposed:
        return "the quantized weight is a DequantizeLinear (QDQ) weight; no ICL op reads it"
    readers = [u.node for u in table.uses()]
    for node in readers:
        if not (node.op_type == "Gather" and node.domain in ("", "ai.onnx")):
            return f"the table is read by {node.op_type}, not only by Gather"
        axis = node.attributes.get("axis")
        if axis is not None and int(axis.value) != 0:
            return "a Gather on axis 1 reads the table"
    scales = _const(q.node, 2)
    if scales is None or scales.dtype != table.const_value.dtype:  # type: ignore[union-attr]
        return "the scales' type differs from the table's"
    return ""


def find_quantized_near_copies(
    model: ir.Model, min_elements: int = 1024
) -> list[QuantizedNearCopy]:
    """Finds the float 2-D tables that a quantized weight of the same model approximates.

    A table ``[V, H]`` matches a ``MatMulNBits`` with ``N == V`` and ``K == H`` (or a 2-D
    constant ``DequantizeLinear`` weight ``[H, V]`` feeding a MatMul) when every element of the
    dequantized weight is within one quantization step of the table's.
    """
    tables = _float_tables(model, min_elements)
    shapes = {tuple(int(d) for d in t.const_value.shape) for t in tables}  # type: ignore[union-attr]
    quantized = _quantized_weights(model, shapes) if tables else []  # type: ignore[arg-type]
    found = []
    for table in tables:
        tensor = table.const_value
        shape = tuple(int(d) for d in tensor.shape)  # type: ignore[union-attr]
        for q in quantized:
            if q.shape != shape:
                continue
            array = tensor.numpy()  # type: ignore[union-attr]
            errors = _compare(array, q)
            if errors is None:
                continue
            problem = _share_problem(table, q)
            found.append(
                QuantizedNearCopy(
                    table=table.name or "?",
                    shape=shape,  # type: ignore[arg-type]
                    table_bytes=tensor.nbytes,  # type: ignore[union-attr]
                    quantized=q.name,
                    quantized_bytes=q.nbytes,
                    consumer=q.node.name or q.node.op_type,
                    scheme=q.scheme,
                    transposed=q.transposed,
                    max_error=errors[0],
                    mean_error=errors[1],
                    max_abs=float(np.abs(array).max(initial=0.0)),
                    max_steps=errors[2],
                    shareable=not problem,
                    reason=problem,
                )
            )
            break
    return found
