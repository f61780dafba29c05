"""Variants batched in one model: which base weights take per-row factors, and which cannot.

K fine-tunes of one base (the same graph, ``analysis.same_graph``) are served by one model in
which every batch row picks its variant. For each base weight that some variant changes, the
variants' low-rank deltas (``planning.variants.plan_low_rank``, offered only the MatMul and
Gemm rules: IclMatMul is the operator that reads factors per row) are stacked on a first axis,
one slice per model (the base's first, zeros; zeros too for a variant that leaves the weight
alone), ranks padded with zero columns to the largest.

A change that is not a low-rank delta of a MatMul/Gemm weight (a dense fine-tune of a tensor, a
bias, a norm weight, an embedding table read by a Gather) is refused, named: serving it per row
would store a full copy per variant and read each row's copy in every step, which is what
running the variants one at a time (``optimize --out-dir`` + ``SessionGroup``) already does
without a special graph. Changes nothing.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np
import onnx_ir as ir

from icl_onnx.analysis.lowrank import NotLowRank, find_low_rank_delta
from icl_onnx.analysis.same_graph import match_graphs
from icl_onnx.analysis.scopes import Scopes
from icl_onnx.planning.variants import plan_low_rank
from icl_onnx.rules import GemmRule, MatMulRule, Use, cover, node_label
from icl_onnx.views import View, ir_field

__all__ = [
    "BATCH_RULES",
    "BatchPlan",
    "BatchedWeight",
    "DenseDifference",
    "plan_batched_variants",
]

#: The consumer rules that can read a weight with per-row factors (IclMatMul's variant_ids).
BATCH_RULES = (MatMulRule(), GemmRule())


@dataclasses.dataclass
class BatchedWeight:
    """A base weight that some variants change by a low-rank delta.

    Attributes:
        name: the base tensor.
        shape: its shape.
        ranks: each model's rank, the base's first (0: the model leaves the weight alone).
        max_error: the largest ``|base + U·V - variant|`` over the variants' elements.
        consumers: the nodes that read it.
        value: the base tensor (IR).
        u: the stacked left factors ``[models, m, rank]`` (IR side, not serialised).
        v: the stacked right factors ``[models, rank, n]``.
    """

    name: str
    shape: tuple[int, ...]
    ranks: list[int]
    max_error: float
    consumers: list[str]
    value: ir.Value | None = ir_field()
    u: np.ndarray | None = ir_field()
    v: np.ndarray | None = ir_field()

    @property
    def rank(self) -> int:
        """The stacked rank: the largest of the models'."""
        return max(self.ranks)

    @property
    def factor_bytes(self) -> int:
        """Bytes of the two stacked float32 factors."""
        m, n = self.shape
        return 4 * len(self.ranks) * self.rank * (m + n)


@dataclasses.dataclass
class DenseDifference:
    """A variant's tensor that differs from the base's in a way per-row factors cannot carry."""

    model: str
    name: str  # the variant's tensor
    base: str  # the base's tensor in the same place
    reason: str


@dataclasses.dataclass
class BatchPlan:
    """What batching the variants into the base does, or why it cannot.

    Attributes:
        models: the labels, the base's first; a row's variant id is its index here.
        weights: the base weights that take stacked factors.
        refused: the tensors no factors can carry (batching is refused when any).
        difference: the first graph difference, prefixed with the variant's label ("" if none).
    """

    models: list[str]
    weights: list[BatchedWeight] = dataclasses.field(default_factory=list)
    refused: list[DenseDifference] = dataclasses.field(default_factory=list)
    difference: str = ""

    @property
    def factor_bytes(self) -> int:
        """Bytes of all stacked factors."""
        return sum(w.factor_bytes for w in self.weights)

    @property
    def feasible(self) -> bool:
        """Whether the variants can be batched: the same graph and no refused tensor."""
        return not self.difference and not self.refused


def _why_not(base: ir.Value, variant: ir.Value) -> str:
    """Why ``variant`` (which differs from ``base``) takes no per-row factors.

    Only on the refusal path: the low-rank search runs once more to say why it failed.
    """
    tensor = base.const_value
    assert tensor is not None
    if tensor.dtype != ir.DataType.FLOAT:
        return f"a {tensor.dtype.name} tensor changed (only float32 weights take factors)"
    if len(tensor.shape) != 2:
        return (
            f"a {len(tensor.shape)}-D tensor changed (a bias or norm weight?); only the 2-D "
            "weight of a MatMul or Gemm takes per-row factors"
        )
    probe = View(rank=1)
    for use in variant.uses():
        outcome = cover(Use(use.node, use.idx, probe, 2), BATCH_RULES)
        if outcome is None or not outcome.covered:
            why = "" if outcome is None or outcome.covered else f" ({outcome.reason})"
            return (
                f"read by {use.node.op_type} {node_label(use.node)}{why}; only the weight of a "
                "MatMul or Gemm takes per-row factors"
            )
    found = find_low_rank_delta(tensor.numpy(), variant.const_value.numpy(), False)  # type: ignore[union-attr]
    why = found.reason if isinstance(found, NotLowRank) else "its consumers cannot read factors"
    return f"not a low-rank delta of the base's: {why}"


def _stack(base: ir.Value, found: dict[int, tuple[np.ndarray, np.ndarray, float]], models: int):
    tensor = base.const_value
    assert tensor is not None
    m, n = (int(d) for d in tensor.shape)
    ranks = [found[k][0].shape[1] if k in found else 0 for k in range(models)]
    rank = max(ranks)
    u = np.zeros((models, m, rank), np.float32)
    v = np.zeros((models, rank, n), np.float32)
    for k, (uk, vk, _) in found.items():
        u[k, :, : uk.shape[1]] = uk
        v[k, : vk.shape[0], :] = vk
    return BatchedWeight(
        name=base.name or "?",
        shape=(m, n),
        ranks=ranks,
        max_error=max(e for _, _, e in found.values()),
        consumers=[node_label(use.node) for use in base.uses()],
        value=base,
        u=u,
        v=v,
    )


def _low_rank(
    base: ir.Model,
    variant: ir.Model,
    pair: tuple[ir.Value, ir.Value],
    labels: tuple[str, str],
    index: int,
    scopes: Scopes,
) -> tuple[np.ndarray, np.ndarray, float] | None:
    """The factors of ``variant = base + u·v`` for one pair, or None."""
    a, b = pair
    found = plan_low_rank([a], base.graph, [b], variant.graph, scopes, labels, index, BATCH_RULES)
    if not found or found[0].base_value is not a:
        return None
    member = found[0].group.members[0]
    if member.view.transpose or member.view.factors is None:
        return None
    u, v = (np.asarray(f.const_value.numpy(), np.float32) for f in member.view.factors)  # type: ignore[union-attr]
    return u, v, found[0].report.members[0].max_error


def plan_batched_variants(
    base: ir.Model, variants: Sequence[ir.Model], labels: Sequence[str]
) -> BatchPlan:
    """Plans the base weights that take one stacked pair of factors per model.

    Args:
        base: the base model (constants lifted, as the sharing passes leave them).
        variants: the fine-tuned variants, in the order of their ids (1, 2, ...).
        labels: a label for each model, the base's first.
    """
    plan = BatchPlan(list(labels))
    deltas: dict[ir.Value, dict[int, tuple[np.ndarray, np.ndarray, float]]] = {}
    for index, variant in enumerate(variants, start=1):
        match = match_graphs(base, variant)
        if not match.same:
            plan.difference = f"{labels[index]}: {match.difference}"
            return plan
        scopes = Scopes(variant)
        for a, b in match.differing:
            found = _low_rank(base, variant, (a, b), (labels[0], labels[index]), index, scopes)
            if found is None:
                reason = _why_not(a, b)
                plan.refused.append(
                    DenseDifference(labels[index], b.name or "?", a.name or "?", reason)
                )
            else:
                deltas.setdefault(a, {})[index] = found
    plan.weights = [_stack(a, found, len(labels)) for a, found in deltas.items()]
    return plan
