"""BatchVariantsPass: one model serving a base and its low-rank variants, one variant per row.

Called on the base model, with the variants: adds the graph input ``variant_ids`` (int64, one
per batch row: 0 the base, k the k-th variant) and makes every MatMul/Gemm whose weight some
variant changes an ``IclMatMul(A, W, bias, U, V, variant_ids)`` that reads the stacked factors
``BatchPlan`` gives (``planning.batched``): row b of its output is ``A_b @ (W + U[ids[b]] ·
V[ids[b]])``. The rest of the graph is the base's. IclMatMul splits ``A``'s rows into one
contiguous block per batch row, so every weight must be read by activations whose leading axis
is the batch (or a flattening of batch and sequence, batch first), as Hugging Face exports read
their linear layers; ``check --variants`` verifies the model row by row.

Refuses (``IclUserError``, naming the first difference or the tensors) variants whose graph
differs from the base's, or that change a tensor no per-row factors can carry.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import onnx_ir as ir

from icl_onnx import schemas
from icl_onnx.analysis.scopes import Scopes
from icl_onnx.errors import IclUserError
from icl_onnx.ops import DOMAIN, OPSET_VERSION
from icl_onnx.planning.batched import BATCH_RULES, BatchedWeight, BatchPlan, plan_batched_variants
from icl_onnx.planning.variants import factor_value
from icl_onnx.rules import Use, cover
from icl_onnx.views import View

__all__ = ["VARIANT_IDS", "BatchVariantsPass"]

logger = logging.getLogger(__name__)

#: The name of the graph input that picks each batch row's variant.
VARIANT_IDS = "variant_ids"


def _refusal(plan: BatchPlan) -> str:
    if plan.difference:
        return (
            f"cannot batch the variants: {plan.difference}; batched variants need the base's "
            "graph (export every variant the same way), or use --out-dir and SessionGroup"
        )
    listed = "; ".join(f"{d.model} {d.name}: {d.reason}" for d in plan.refused[:5])
    more = f" (and {len(plan.refused) - 5} more)" if len(plan.refused) > 5 else ""
    return (
        f"cannot batch the variants: {len(plan.refused)} tensor(s) differ from the base in a "
        f"way per-row factors cannot carry: {listed}{more}; serve such variants one at a time "
        "(optimize --out-dir and SessionGroup)"
    )


def _batch_dim(graph: ir.Graph) -> ir.SymbolicDim | int:
    """The leading dim of the first input that has one (the batch), else ``batch``."""
    for value in graph.inputs:
        if not value.is_initializer() and value.shape is not None and len(value.shape) > 0:
            return value.shape[0]
    return ir.SymbolicDim("batch")


def _rewrite(weight: BatchedWeight, ids: ir.Value, scopes: Scopes) -> None:
    """Makes every consumer of the weight an IclMatMul reading its stacked factors per row."""
    assert weight.value is not None and weight.u is not None and weight.v is not None
    u = factor_value(f"{weight.name}.batched_u", weight.u, scopes)
    v = factor_value(f"{weight.name}.batched_v", weight.v, scopes)
    home = weight.value.graph  # beside the weight: every graph that reads it sees them
    assert home is not None
    home.register_initializer(u)
    home.register_initializer(v)
    view = View(rank=weight.rank, factors=(u, v))
    for use in list(weight.value.uses()):
        outcome = cover(Use(use.node, use.idx, view, 2), BATCH_RULES)
        assert outcome is not None and outcome.covered  # the plan offered only these rules
        before = {u_use.node for u_use in u.uses()}
        outcome.rule.rewrite(use.node, use.idx, weight.value, view)
        for node in {u_use.node for u_use in u.uses()} - before:
            node.resize_inputs(6)
            node.replace_input_with(5, ids)


class BatchVariantsPass(ir.passes.InPlacePass):
    """Makes the base model compute each batch row with its own variant's weights.

    Attributes:
        variants: the variants (constants lifted like the base), variant id 1, 2, ... in order.
        labels: a label per model, the base's first (messages and the plan).
        plan: the plan of the last call (None before).
    """

    def __init__(self, variants: Sequence[ir.Model], labels: Sequence[str]) -> None:
        super().__init__()
        if len(labels) != len(variants) + 1:
            raise ValueError("labels: one per model, the base's first")
        self.variants = list(variants)
        self.labels = list(labels)
        self.plan: BatchPlan | None = None

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        """Adds ``variant_ids`` and the stacked factors; always modifies the model.

        Raises:
            IclUserError: a variant's graph differs from the base's, a variant changes a
                tensor per-row factors cannot carry, or the base has an input ``variant_ids``.
        """
        scopes = Scopes(model)
        if scopes.taken(VARIANT_IDS):
            raise IclUserError(f"the base model already has a value named {VARIANT_IDS}")
        plan = plan_batched_variants(model, self.variants, self.labels)
        self.plan = plan
        if not plan.feasible:
            raise IclUserError(_refusal(plan))
        ids = ir.Value(
            name=VARIANT_IDS,
            type=ir.TensorType(ir.DataType.INT64),
            shape=ir.Shape([_batch_dim(model.graph)]),
        )
        model.graph.inputs.append(ids)
        for weight in plan.weights:
            _rewrite(weight, ids, scopes)
        if plan.weights:
            model.opset_imports.setdefault(DOMAIN, OPSET_VERSION)
            schemas.register()
        logger.info(
            "BatchVariantsPass: %d models, %d weights with stacked factors (%d bytes)",
            len(self.labels),
            len(plan.weights),
            plan.factor_bytes,
        )
        return ir.passes.PassResult(model, modified=True)
