"""The planner: the SharePlan of one model, or of several models planned together.

``analyze(model)`` is the plan ``optimize`` applies to ``model``: it runs on the model with its
large ``Constant`` nodes lifted (``lifting.py``; on a copy, ``model`` is not changed), finds the
groups of copies and views (``readers.py``), chooses each group's canonical tensor and the rule of
every consumer (``groups.py``, ``icl_onnx.rules``), and plans where each canonical tensor lives
and under which name (``scopes.py``). ``plan_models`` does the same for several models at once
and plans the groups that cross models (``crossmodel.py``) and, the first model being the base,
the other models' tensors that are a base tensor plus a low-rank delta (``variants.py``).
Changes nothing, prints nothing.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence

import onnx_ir as ir

from icl_onnx import rules
from icl_onnx.analysis.findings import Skipped
from icl_onnx.analysis.lifting import lifted
from icl_onnx.analysis.near_copies import find_quantized_near_copies
from icl_onnx.analysis.readers import (
    DEFAULT_MIN_ELEMENTS,
    Reader,
    eligible_initializers,
    group_readers,
)
from icl_onnx.analysis.scopes import Scopes, function_constants
from icl_onnx.analysis.view_nodes import find_view_nodes
from icl_onnx.planning.crossmodel import PlannedCrossGroup, plan_cross_group
from icl_onnx.planning.groups import PlannedGroup, choose_canonical, forms_group
from icl_onnx.planning.plan import CrossGroup, ShareGroup, SharePlan
from icl_onnx.planning.variants import plan_low_rank
from icl_onnx.rules import CONSUMER_RULES, ConsumerRule
from icl_onnx.views import View

__all__ = ["DEFAULT_MIN_ELEMENTS", "analyze", "plan_models", "plan_sharing"]

logger = logging.getLogger(__name__)


@dataclasses.dataclass
class _Model:
    """What the planner gathers from one model before grouping."""

    model: ir.Model
    scopes: Scopes
    eligible: list[ir.Value]
    skipped: list[Skipped]
    view_nodes: set[ir.Node]
    planned: list[PlannedGroup] = dataclasses.field(default_factory=list)

    @classmethod
    def gather(cls, model: ir.Model, min_elements: int) -> _Model:
        """The model's eligible initializers (every graph), skipped ones and view nodes."""
        scopes = Scopes(model)
        eligible, skipped = [], []
        for graph in scopes.graphs():
            mine, why = eligible_initializers(graph, min_elements, main=graph is model.graph)
            eligible += mine
            skipped += why
        skipped += function_constants(model, min_elements)
        view_nodes = find_view_nodes(model.graph, set(eligible))
        return cls(model, scopes, eligible, skipped, set(view_nodes))


def _only_unread_reshapes(group: PlannedGroup, consumer_rules: Sequence[ConsumerRule]) -> bool:
    """Whether the group is a tensor and reshape views of it whose consumers no rule claims.

    Such a group frees nothing, so it is left out of the plan rather than moving the tensor's own
    consumers to ICL operators. A consumer a rule claims but cannot rewrite keeps the group in
    the plan, so the reason is reported.
    """
    members = group.members
    reshapes = [m for m in members if m.reader.view_node is not None and m.view.shape]
    if not members or len(reshapes) != len(members):
        return False
    uses = [
        rules.Use(c.target, c.input_index, m.view, m.reader.rank)
        for m in reshapes
        for c in m.consumers
        if c.target is not None
    ]
    return not any(rules.cover(use, consumer_rules) is not None for use in uses)


def _held(info: _Model) -> tuple[set[ir.Value], set[ir.Value]]:
    """The values of ``info``'s groups: (every one, the ones the rewrite removes)."""
    held, removed = set(), set()
    for group in info.planned:
        held.add(group.canonical.value)
        held.update(p.reader.value for p in group.members)
        removed.update(group.removed_values())
    return held, removed


def _plan_variants(
    infos: list[_Model],
    labels: list[str],
    origins: list[dict[int, tuple[str, int]]],
    consumer_rules: Sequence[ConsumerRule],
) -> list[CrossGroup]:
    """Adds the low-rank groups of every model after the first (the base) to ``infos``."""
    base = infos[0]
    _, removed = _held(base)
    readable = [v for v in base.eligible if v.graph is base.model.graph and v not in removed]
    canonical = {group.canonical.value for group in base.planned}
    reports = []
    for index, info in enumerate(infos[1:], start=1):
        held, _ = _held(info)
        free = [v for v in info.eligible if v.graph is info.model.graph and v not in held]
        found = plan_low_rank(
            readable,
            base.model.graph,
            free,
            info.model.graph,
            info.scopes,
            (labels[0], labels[index]),
            index,
            consumer_rules,
        )
        for variant in found:
            origins[index][len(info.planned)] = (labels[0], 0)
            info.planned.append(variant.group)
            reports.append(variant.report)
            if variant.base_value not in canonical:  # its consumers move to ICL operators too
                canonical.add(variant.base_value)
                reader = Reader(variant.base_value, View(), None)
                planned = choose_canonical(
                    [reader], base.view_nodes, base.scopes, consumer_rules=consumer_rules
                )
                base.planned.append(planned)
    return reports


def _place(info: _Model, origins: dict[int, tuple[str, int]]) -> list[ShareGroup]:
    """Each planned group as a ShareGroup, its canonical tensor's graph and name after the rewrite.

    ``origins`` maps the index of a planned group whose canonical tensor is another model's to that
    model's label and index: the rewrite adds the tensor to this model's main graph under its
    name, or with ``.m<index>`` appended while another value of the model holds that name.
    """
    scopes = info.scopes
    scopes.release(v for planned in info.planned for v in planned.removed_values())
    groups = []
    for index, planned in enumerate(info.planned):
        value = planned.canonical.value
        label = ""
        if index in origins:
            label, owner = origins[index]
            home, name = info.model.graph, scopes.free_name(value.name or "shared", f".m{owner}")
            scopes.reserve(value, name)
        else:
            graphs = {node.graph for node in planned.reading_nodes()}
            home, name = scopes.destination(value, graphs)  # type: ignore[arg-type]
        groups.append(planned.report(name, home, label))
    return groups


def _plan(info: _Model, groups: list[ShareGroup], min_elements: int) -> SharePlan:
    initializers = [v for g in info.scopes.graphs() for v in g.initializers.values()]
    total = sum(v.const_value.nbytes for v in initializers if v.const_value)
    for group in groups:
        logger.info(
            "group %s: %d members, %d bytes freed",
            group.canonical,
            len(group.members),
            group.freed_bytes,
        )
    return SharePlan(
        groups=groups,
        skipped=info.skipped,
        initializer_count=len(initializers),
        initializer_bytes=total,
        near_copies=find_quantized_near_copies(info.model, min_elements),
        graph=info.model.graph,
    )


def plan_models(
    models: list[ir.Model],
    labels: list[str],
    min_elements: int = DEFAULT_MIN_ELEMENTS,
    low_rank: bool = True,
    *,
    consumer_rules: Sequence[ConsumerRule] = CONSUMER_RULES,
) -> tuple[list[SharePlan], list[CrossGroup]]:
    """Plans several models together: one plan per model and the groups that cross models.

    The models must have their constants lifted already (``lifting.lift_constants_pass``);
    each is analysed once, and nothing is changed. A group within one model is planned as by
    ``plan_sharing``; a group across models as ``crossmodel.py`` describes; low-rank deltas of
    the first model's tensors as ``variants.py`` describes.

    Args:
        models: the models.
        labels: a name per model for the plans (e.g. its file name).
        min_elements: initializers with fewer elements are ignored.
        low_rank: look for tensors of later models that are a first-model tensor plus a
            low-rank delta.
        consumer_rules: the rules every use is offered to (``icl_onnx.rules``).
    """
    infos = [_Model.gather(model, min_elements) for model in models]
    model_of = {v: i for i, info in enumerate(infos) for v in info.eligible}
    eligible = [v for info in infos for v in info.eligible]
    view_nodes = [n for info in infos for n in info.view_nodes]
    crossing: list[tuple[PlannedCrossGroup, dict[int, int]]] = []
    for readers in group_readers(eligible, view_nodes, model_of).values():
        if len({r.model for r in readers}) == 1:
            info = infos[readers[0].model]
            if forms_group(readers, info.view_nodes):
                planned = choose_canonical(
                    readers, info.view_nodes, info.scopes, consumer_rules=consumer_rules
                )
                if not _only_unread_reshapes(planned, consumer_rules):
                    info.planned.append(planned)
            continue
        cross = plan_cross_group(
            readers, [i.view_nodes for i in infos], [i.scopes for i in infos], consumer_rules
        )
        for model, planned in cross.alone.items():
            infos[model].planned.append(planned)
        slots = {}
        for model, planned in cross.shared.items():
            slots[model] = len(infos[model].planned)
            infos[model].planned.append(planned)
        if cross.crosses:
            crossing.append((cross, slots))
    origins: list[dict[int, tuple[str, int]]] = [{} for _ in infos]
    for cross, slots in crossing:
        for model in cross.foreign:
            origins[model][slots[model]] = (labels[cross.owner], cross.owner)
    variants = []
    if low_rank and len(infos) > 1:
        variants = _plan_variants(infos, labels, origins, consumer_rules)
    groups = [_place(info, origins[i]) for i, info in enumerate(infos)]
    cross_groups = [
        cross.report({m: groups[m][slot] for m, slot in slots.items()}, labels)
        for cross, slots in crossing
    ]
    plans = [_plan(info, g, min_elements) for info, g in zip(infos, groups, strict=True)]
    return plans, cross_groups + variants


def plan_sharing(
    model: ir.Model,
    min_elements: int = DEFAULT_MIN_ELEMENTS,
    *,
    consumer_rules: Sequence[ConsumerRule] = CONSUMER_RULES,
) -> SharePlan:
    """The SharePlan of ``model`` as it is (constants already lifted); changes nothing.

    Initializers of ``If``, ``Loop`` and ``Scan`` bodies take part like the main graph's; a
    group may span graph levels, and its canonical tensor is planned into a graph that
    encloses every reader. Functions hold no initializers and are left alone; their large
    ``Constant`` tensors are reported skipped.
    """
    (plan,), _ = plan_models([model], [""], min_elements, consumer_rules=consumer_rules)
    return plan


def analyze(
    model: ir.Model,
    min_elements: int = DEFAULT_MIN_ELEMENTS,
    *,
    consumer_rules: Sequence[ConsumerRule] = CONSUMER_RULES,
) -> SharePlan:
    """Returns the SharePlan ``optimize`` applies to ``model``; prints nothing, changes nothing.

    Large ``Constant`` nodes take part as ``optimize`` lifts them: the plan is computed on a
    lifted copy when the model has any, and then describes (and applies to) that copy only.

    Args:
        model: the model; external data is read through memory maps, one tensor at a time.
        min_elements: initializers with fewer elements are ignored.
        consumer_rules: the rules every use is offered to (``icl_onnx.rules``).
    """
    return plan_sharing(lifted(model, min_elements), min_elements, consumer_rules=consumer_rules)
