"""The lossy opt-in: a float embedding table reads its quantized LM head instead.

``find_quantized_near_copies`` lists float tables that a ``MatMulNBits`` weight of the same model
approximates within one quantization step (a tied LM built with a quantized head and a float
embedding). This pass makes every ``Gather`` of such a table an ``IclGatherBlockQuantized`` of
the head's weight, and drops the table: the trade ONNX Runtime GenAI's ``shared_embeddings``
makes. The embedding values change (by at most one quantization step), so generation may drift:
``icl-onnx check`` reports by how much. Never applied unless asked for (``--share-quantized``).
"""

from __future__ import annotations

import logging

import onnx_ir as ir

from icl_onnx import schemas
from icl_onnx.analysis.near_copies import QuantizedNearCopy, find_quantized_near_copies
from icl_onnx.ops import GATHER_BLOCK_QUANTIZED
from icl_onnx.rules import replace_with_icl_node
from icl_onnx.views import View

__all__ = ["ShareQuantizedPass"]

logger = logging.getLogger(__name__)


def _head(model: ir.Model, copy: QuantizedNearCopy) -> ir.Node | None:
    for node in ir.traversal.RecursiveGraphIterator(model.graph):
        if node.op_type == "MatMulNBits" and node.inputs[1] is not None:
            if node.inputs[1].name == copy.quantized:
                return node
    return None


def _read_head(gather: ir.Node, head: ir.Node) -> None:
    """Replaces ``gather`` by ``IclGatherBlockQuantized(B, ids, scales[, zp])`` of the head.

    The new node takes the head's weight and layout (``K``, ``bits``, ``block_size``).
    """
    attrs = {name: int(head.attributes[name].value) for name in ("K", "bits", "block_size")}
    inputs = [head.inputs[1], gather.inputs[1], head.inputs[2]]
    if len(head.inputs) > 3 and head.inputs[3] is not None:
        inputs.append(head.inputs[3])
    replace_with_icl_node(gather, GATHER_BLOCK_QUANTIZED, inputs, View(), attrs)


class ShareQuantizedPass(ir.passes.InPlacePass):
    """Makes each float table's Gathers read its quantized near-copy, and drops the table.

    Only near-copies marked shareable (read by Gathers on axis 0 only, scales of the table's
    type, a MatMulNBits head) are rewritten.

    Attributes:
        near_copies: the near-copies to share, found on the model this pass runs on
            (``find_quantized_near_copies``); None finds them when the pass runs.
        min_elements: smaller tables are ignored (when the pass finds them).
        shared: the near-copies the last call rewrote (what ``optimize`` reports).
    """

    def __init__(
        self, near_copies: list[QuantizedNearCopy] | None = None, min_elements: int = 1024
    ) -> None:
        super().__init__()
        self.near_copies = near_copies
        self.min_elements = min_elements
        self.shared: list[QuantizedNearCopy] = []

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        """Rewrites the shareable near-copies; ``modified`` when at least one was."""
        modified = False
        self.shared = []
        copies = self.near_copies
        if copies is None:
            copies = find_quantized_near_copies(model, self.min_elements)
        for copy in copies:
            head = _head(model, copy)
            if not copy.shareable or head is None:
                logger.info("quantized near-copy %s not shared: %s", copy.table, copy.reason)
                continue
            table = model.graph.initializers[copy.table]
            for use in list(table.uses()):
                _read_head(use.node, head)
            model.graph.initializers.pop(copy.table)
            self.shared.append(copy)
            modified = True
            logger.info("%s now reads the quantized %s (lossy)", copy.table, copy.quantized)
        if modified:
            schemas.register()  # so onnx.checker and shape inference accept what it wrote
        return ir.passes.PassResult(model, modified)
