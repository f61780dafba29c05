"""Fine-tuned variants of a base model: tensors stored as the base's tensor plus a low-rank delta.

With several models, the first is the base. After the exact, transposed, sliced, scaled and cast
relations are planned, each other model's 2-D float32 tensors that no group holds are paired
with the base's (``lowrank.pair_tensors``: by name, then by shape and graph position) and tested
(``lowrank.find_low_rank_delta``). An accepted pair becomes a group of the variant whose
canonical tensor is the base's (``ShareGroup.origin``) and whose one member reads it through a
low-rank view; it forms only when a rule covers every consumer (``MatMul``, ``Gemm``, ``Gather``
read factors; ``icl_onnx.rules``). The base tensor's own consumers move to the ICL operators
too (a group with no members), so no session keeps a private prepacked copy of it.
Changes nothing: the factors are new values the rewrite adds.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence

import numpy as np
import onnx_ir as ir

from icl_onnx.analysis.lowrank import LowRankDelta, TensorSlot, find_low_rank_delta, pair_tensors
from icl_onnx.analysis.readers import Reader
from icl_onnx.analysis.scopes import Scopes
from icl_onnx.planning.crossmodel import cross_member
from icl_onnx.planning.groups import PlannedGroup, PlannedMember, plan_consumer
from icl_onnx.planning.plan import CrossGroup, CrossMember
from icl_onnx.rules import CONSUMER_RULES, ConsumerRule
from icl_onnx.views import View

__all__ = ["LowRankGroup", "factor_value", "plan_low_rank"]

logger = logging.getLogger(__name__)


@dataclasses.dataclass
class LowRankGroup:
    """A share set of one variant tensor planned as the base tensor plus factors.

    Attributes:
        group: the variant's group (the base tensor is its foreign canonical tensor).
        base_value: the base model's tensor.
        report: the relation as the cross-model plan reports it.
    """

    group: PlannedGroup
    base_value: ir.Value
    report: CrossGroup


def _slots(values: list[ir.Value], graph: ir.Graph) -> list[TensorSlot]:
    """Name, shape and position (index of the first reading node) of each 2-D value."""
    position = {}
    for index, node in enumerate(graph):
        for value in node.inputs:
            if value is not None:
                position.setdefault(value, index)
    return [
        TensorSlot(v.name or "", tuple(int(d) for d in v.const_value.shape), position.get(v, -1))  # type: ignore[union-attr]
        for v in values
        if v.const_value is not None and len(v.const_value.shape) == 2
    ]


def factor_value(name: str, array: np.ndarray, scopes: Scopes) -> ir.Value:
    """A new initializer value (not in any graph yet) with a name free in the model."""
    name = scopes.free_name(name, "_")
    value = ir.Value(
        name=name,
        shape=ir.Shape(array.shape),
        type=ir.TensorType(ir.DataType.FLOAT),
        const_value=ir.tensor(array, name=name),
    )
    scopes.reserve(value, name)
    return value


def _member_report(label: str, value: ir.Value, view: View, found: LowRankDelta) -> CrossMember:
    return dataclasses.replace(
        cross_member(label, value, view),
        factor_bytes=found.factor_bytes,
        max_error=found.max_error,
        error_ulps=found.error_ulps,
    )


def _all_covered(consumers: list) -> bool:
    return bool(consumers) and all(c.covered for c in consumers)


def _candidates(
    base: list[ir.Value], variant: list[ir.Value], base_graph: ir.Graph, graph: ir.Graph
) -> list[tuple[ir.Value, ir.Value, bool]]:
    by_name_base = {v.name: v for v in base}
    by_name_variant = {v.name: v for v in variant}
    pairs = pair_tensors(_slots(base, base_graph), _slots(variant, graph))
    return [(by_name_base[b], by_name_variant[v], t) for b, v, t in pairs]


def plan_low_rank(
    base: list[ir.Value],
    base_graph: ir.Graph,
    variant: list[ir.Value],
    graph: ir.Graph,
    scopes: Scopes,
    labels: tuple[str, str],
    model: int,
    consumer_rules: Sequence[ConsumerRule] = CONSUMER_RULES,
) -> list[LowRankGroup]:
    """Plans the variant's tensors that are a base tensor plus a low-rank delta.

    Args:
        base: the base model's tensors a variant may read (canonical or standalone, main graph).
        base_graph: the base model's main graph.
        variant: the variant's tensors no group holds (main graph).
        graph: the variant's main graph.
        scopes: the variant's graph scopes (the factors' names are reserved there).
        labels: the base's and the variant's labels.
        model: the variant's index among the models (the base is 0).
        consumer_rules: the rules every use is offered to.
    """
    arrays: dict[ir.Value, np.ndarray] = {}

    def array(value: ir.Value) -> np.ndarray:  # external data stays a memory map
        if value not in arrays:
            arrays[value] = value.const_value.numpy()  # type: ignore[union-attr]
        return arrays[value]

    planned = []
    for base_value, value, transpose in _candidates(base, variant, base_graph, graph):
        tensor = value.const_value
        if tensor is None or tensor.dtype != ir.DataType.FLOAT:
            continue
        if base_value.const_value.dtype != ir.DataType.FLOAT:  # type: ignore[union-attr]
            continue
        # Whether every consumer can read a low-rank view does not depend on the rank: asked
        # first, it spares the search for tensors that would be stored whole anyway.
        probe = View(transpose=transpose, rank=1)
        if not _all_covered(
            [plan_consumer(u.node, u.idx, probe, 2, consumer_rules) for u in value.uses()]
        ):
            logger.info("%s: a consumer cannot read a low-rank view; stored whole", value.name)
            continue
        found = find_low_rank_delta(array(base_value), array(value), transpose)
        arrays.pop(value)  # each variant tensor is tested once
        if not isinstance(found, LowRankDelta):
            logger.info(
                "%s is not a low-rank delta of %s: %s", value.name, base_value.name, found.reason
            )
            continue
        view = View(transpose=transpose, rank=found.rank)
        consumers = [plan_consumer(u.node, u.idx, view, 2, consumer_rules) for u in value.uses()]
        if not _all_covered(consumers):  # not expected after the probe; never planned unread
            logger.info("%s: a consumer cannot read a low-rank view; stored whole", value.name)
            continue
        factors = (
            factor_value(f"{value.name}.lowrank_u", found.u, scopes),
            factor_value(f"{value.name}.lowrank_v", found.v, scopes),
        )
        view = dataclasses.replace(view, factors=factors)
        stand_in = Reader(base_value, View(), None, model=0, foreign=True)
        reader = Reader(value, View(), None, model=model)
        group = PlannedGroup(stand_in, [PlannedMember(reader, view, consumers)], [], 0)
        tensor_b = base_value.const_value
        assert tensor_b is not None
        report = CrossGroup(
            model=labels[0],
            canonical=base_value.name or "?",
            shape=tuple(int(d) for d in tensor_b.shape.numpy()),
            dtype=tensor_b.dtype.name,
            nbytes=tensor_b.nbytes,
            members=[_member_report(labels[1], value, view, found)],
        )
        planned.append(LowRankGroup(group, base_value, report))
    return planned
