"""``GatherBlockQuantized(Reshape(B), ids, ...)`` becomes ``IclGatherBlockQuantized(B, ids, ...)``.

ONNX Runtime GenAI's builder shares a tied quantized LM head with the embedding this way: the
MatMulNBits weight ``B [N, n_blocks, blob]`` is read by the head and, through a ``Reshape`` to
``[N, n_blocks * blob]``, by ``com.microsoft.GatherBlockQuantized``. ORT folds the Reshape into a
second copy of ``B`` at load; the ICL operator reads ``B`` in MatMulNBits' layout directly.
"""

from __future__ import annotations

import onnx_ir as ir

from icl_onnx.ops import GATHER_BLOCK_QUANTIZED
from icl_onnx.rules.base import ConsumerRule, Outcome, Use, attr, replace_with_icl_node
from icl_onnx.views import View

__all__ = ["GatherBlockQuantizedRule"]


def _source_shape(node: ir.Node) -> tuple[int, ...] | None:
    """The shape of the tensor the view node feeding ``node``'s data input reads."""
    producer = node.inputs[0].producer() if node.inputs[0] is not None else None
    if producer is None or not producer.inputs or producer.inputs[0] is None:
        return None
    tensor = producer.inputs[0].const_value
    return None if tensor is None else tuple(int(d) for d in tensor.shape)


def _problem(node: ir.Node, view: View) -> str:
    """Why ``node`` reading ``view`` cannot become IclGatherBlockQuantized, or ""."""
    bits, block = int(attr(node, "bits", 4)), int(attr(node, "block_size", 128))
    if bits not in (4, 8):
        return f"GatherBlockQuantized with bits={bits} (the ICL kernels read 4 and 8)"
    if block < 16 or block & (block - 1):
        return f"GatherBlockQuantized with block_size={block}"
    if int(attr(node, "gather_axis", 0)) != 0 or int(attr(node, "quantize_axis", 1)) not in (1, -1):
        return "GatherBlockQuantized not on gather_axis 0 and quantize_axis 1"
    blob = block * bits // 8
    source = _source_shape(node)
    if source is None or len(source) != 3 or source[2] != blob:
        return f"the table is not MatMulNBits' [N, n_blocks, {blob}] layout (shape {source})"
    if view.shape != (source[0], source[1] * source[2]):
        return f"the table is reshaped to {list(view.shape)}, not [N, n_blocks * blob]"
    scales = node.inputs[2] if len(node.inputs) > 2 else None
    zero_points = node.inputs[3] if len(node.inputs) > 3 else None
    if scales is None or scales.dtype not in (ir.DataType.FLOAT, ir.DataType.FLOAT16):
        return "GatherBlockQuantized scales that are not float32 or float16"
    if zero_points is not None and zero_points.dtype != ir.DataType.UINT8:
        return "GatherBlockQuantized zero points that are not packed uint8"
    return ""


class GatherBlockQuantizedRule(ConsumerRule):
    """The data input of ``com.microsoft.GatherBlockQuantized`` reading a reshape of the table."""

    name = "gather-block-quantized"
    view_parts = frozenset({"reshape"})

    def match(self, use: Use) -> Outcome | None:
        """Claims input 0 of a GatherBlockQuantized that reads a reshape of the table."""
        node = use.node
        if node.domain != "com.microsoft" or node.op_type != "GatherBlockQuantized":
            return None
        if use.index != 0 or use.view.parts != ("reshape",):
            return None
        problem = _problem(node, use.view)
        return self.fail(problem) if problem else self.ok()

    def becomes(self, node: ir.Node) -> str:
        """IclGatherBlockQuantized."""
        return GATHER_BLOCK_QUANTIZED

    def cost(self, node: ir.Node, view: View) -> int:
        """A plain read of the table's rows."""
        return 1

    def rewrite(self, node: ir.Node, index: int, canonical: ir.Value, view: View) -> bool:
        """Replaces the node by ``IclGatherBlockQuantized(canonical, ids, scales[, zp])``.

        ``K`` is the GatherBlockQuantized output's row length (whole blocks), so the values and
        the shape stay exactly those of the original node.
        """
        bits, block = int(attr(node, "bits", 4)), int(attr(node, "block_size", 128))
        n_blocks = int(canonical.const_value.shape[1])  # type: ignore[union-attr]
        attrs = {"K": n_blocks * block, "bits": bits, "block_size": block}
        replace_with_icl_node(
            node, GATHER_BLOCK_QUANTIZED, [canonical, *node.inputs[1:]], View(), attrs
        )
        return True
