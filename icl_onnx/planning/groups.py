"""The plan of one group within one model: its canonical tensor and every consumer's rule.

Each use of a tensor of the group is offered to the consumer rules (``icl_onnx.rules``) as a
view of a candidate canonical tensor; the candidate whose uses cost least is chosen (a use no
rule covers costs ``UNCOVERED_COST``), and among equally cheap ones, one whose graph already
encloses every node that will read it (otherwise the canonical tensor moves outwards,
``scopes.py``), then the first in graph order.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import onnx_ir as ir

from icl_onnx import rules
from icl_onnx.analysis.readers import Reader, relative_view, uses
from icl_onnx.analysis.scopes import Scopes
from icl_onnx.analysis.view_nodes import node_view
from icl_onnx.planning.plan import Consumer, Member, ShareGroup
from icl_onnx.rules import CONSUMER_RULES, ConsumerRule
from icl_onnx.views import View

__all__ = [
    "PlannedGroup",
    "PlannedMember",
    "UNCOVERED_COST",
    "choose_canonical",
    "forms_group",
    "plan_consumer",
]

#: The cost of a consumer no rule covers (its member keeps its own copy).
UNCOVERED_COST = 100


def plan_consumer(
    node: ir.Node,
    index: int,
    view: View,
    rank: int,
    consumer_rules: Sequence[ConsumerRule] = CONSUMER_RULES,
) -> Consumer:
    """The plan of ``node`` reading ``view(canonical)`` (a rank-``rank`` tensor) at ``index``.

    ``consumer_rules`` are the rules the use is offered to (``rules.cover``).
    """
    label, op = rules.node_label(node), node.op_type
    outcome = rules.cover(rules.Use(node, index, view, rank), consumer_rules)
    if outcome is not None and outcome.covered:
        rule = outcome.rule
        return Consumer(label, op, index, rule.name, rule.becomes(node), target=node, rule=rule)
    if outcome is not None:
        reason = outcome.reason
    elif rank != 2:
        reason = f"a {view.kind} view of a rank-{rank} tensor has no ICL operator"
    else:
        reason = f"{op} input {index} reads it; no ICL operator covers {op}"
    return Consumer(label, op, index, reason=reason, target=node)


def _cost(consumer: Consumer, view: View) -> int:
    if consumer.rule is None:
        return UNCOVERED_COST
    return consumer.rule.cost(consumer.target, view)  # type: ignore[arg-type]


@dataclasses.dataclass
class PlannedMember:
    """A member of a candidate's plan: the reader, its view and its consumers.

    Shared by the within-model plan (``choose_canonical``) and the low-rank variants
    (``icl_onnx.planning.variants``), whose one member reads a foreign canonical tensor.

    Attributes:
        reader: how the member's tensor is read (an initializer or a view node's output).
        view: the member as a view of the candidate canonical tensor.
        consumers: the plan of each node that reads the member.
        held: why the member stays although every consumer is covered (a view node that
            stays reads it, or it is a graph output); empty when it does not.
    """

    reader: Reader
    view: View
    consumers: list[Consumer]
    held: str = ""

    @property
    def kept_reason(self) -> str:
        """Why the rewrite keeps the member ("" when it removes it)."""
        reasons = {c.reason for c in self.consumers if not c.covered} | {self.held}
        return "; ".join(sorted(reasons - {""}))


def _hold(members: list[PlannedMember]) -> None:
    """Marks the members the rewrite cannot remove although their consumers are covered.

    A view node's output that is a graph output stays, and so does the node; a member that a
    staying view node reads stays too.
    """
    for planned in members:
        view_node = planned.reader.view_node
        if view_node is not None and planned.reader.value.is_graph_output():
            planned.held = "graph output"
    staying = {p.reader.view_node: p for p in members if p.reader.view_node and p.kept_reason}
    for planned in members:
        reading = [n for n in staying if n.inputs[0] is planned.reader.value]
        if reading and not planned.kept_reason:
            planned.held = f"read by {rules.node_label(reading[0])}, which stays"


@dataclasses.dataclass
class PlannedGroup:
    """A group planned in one model: the chosen canonical tensor, the members, the rules.

    Not placed yet (the canonical tensor's graph and name); ``report`` gives the plan's
    ``ShareGroup``.
    """

    canonical: Reader
    members: list[PlannedMember]
    canonical_consumers: list[Consumer]
    cost: int

    def reading_nodes(self) -> list[ir.Node]:
        """The nodes that read the canonical tensor after the rewrite."""
        nodes = [c.target for c in self.canonical_consumers]
        for planned in self.members:
            nodes += [c.target for c in planned.consumers if c.covered]
            view_node = planned.reader.view_node
            if planned.kept_reason and view_node is not None:
                if view_node.inputs[0] is self.canonical.value:
                    nodes.append(view_node)  # a view node that stays reads the canonical tensor
        return nodes  # type: ignore[return-value]

    def removed_values(self) -> list[ir.Value]:
        """The members the rewrite removes."""
        return [p.reader.value for p in self.members if not p.kept_reason]

    @property
    def covers_any(self) -> bool:
        """Whether the rewrite changes any consumer."""
        return any(c.covered for p in self.members for c in p.consumers)

    def report(self, name: str, home: ir.Graph | None, origin: str = "") -> ShareGroup:
        """The ShareGroup, its canonical tensor named ``name`` in ``home`` after the rewrite."""
        tensor = self.canonical.value.const_value
        assert tensor is not None
        return ShareGroup(
            canonical=name,
            shape=tuple(int(d) for d in tensor.shape.numpy()),
            dtype=tensor.dtype.name,
            nbytes=tensor.nbytes,
            members=[_member(p) for p in self.members],
            canonical_consumers=self.canonical_consumers,
            origin=origin,
            value=self.canonical.value,
            home=home,
        )


def _member(planned: PlannedMember) -> Member:
    reader = planned.reader
    if reader.view_node is not None:
        read = reader.view_node.inputs[0].const_value  # type: ignore[union-attr]
        assert read is not None
        source, nbytes, dtype = reader.view_node.op_type, 0, read.dtype.name
        own = node_view(reader.view_node)
        shape = own.shape if own and own.shape else tuple(reversed(read.shape.numpy()))
    else:
        tensor = reader.value.const_value
        assert tensor is not None
        source, nbytes, dtype = "initializer", tensor.nbytes, tensor.dtype.name
        shape = tuple(tensor.shape.numpy())
    return Member(
        name=reader.value.name or "?",
        source=source,
        shape=tuple(int(d) for d in shape),
        dtype=dtype,
        nbytes=nbytes,
        view=planned.view,
        consumers=planned.consumers,
        kept_reason=planned.kept_reason,
        value=reader.value,
        view_node=reader.view_node,
    )


def forms_group(readers: list[Reader], view_nodes: set[ir.Node]) -> bool:
    """Whether tensors of one model are worth a group: two copies, or a view node and two uses."""
    direct = [r for r in readers if r.view_node is None]
    views = [r for r in readers if r.view_node is not None]
    base_uses = sum(len(uses(r, view_nodes)) for r in direct)
    return len(direct) >= 2 or bool(views and base_uses + len(views) >= 2)


def _reading_twice(readers: list[Reader], view_nodes: set[ir.Node]) -> set[ir.Node]:
    """Nodes that read two tensors of the group (no rule rewrites one input of such a node)."""
    values = {r.value for r in readers}
    return {
        node
        for r in readers
        for node, _ in uses(r, view_nodes)
        if sum(1 for i in node.inputs if i in values) > 1
    }


def _plan_for(
    canonical: Reader,
    readers: list[Reader],
    view_nodes: set[ir.Node],
    twice: set[ir.Node],
    consumer_rules: Sequence[ConsumerRule],
) -> PlannedGroup:
    """Plans every use of the group's tensors with ``canonical`` as the canonical tensor."""
    members, canonical_consumers, cost = [], [], 0
    for reader in readers:
        if reader is canonical:
            for node, idx in uses(reader, view_nodes):
                consumer = plan_consumer(node, idx, View(), reader.rank, consumer_rules)
                canonical_consumers.append(consumer)
                cost += _cost(consumer, View())
            continue
        view = relative_view(reader, canonical)
        consumers = []
        for node, idx in uses(reader, view_nodes):
            if node in twice:
                label = rules.node_label(node)
                reason = "reads the shared tensor at two inputs"
                consumer = Consumer(label, node.op_type, idx, reason=reason, target=node)
            else:
                consumer = plan_consumer(node, idx, view, reader.rank, consumer_rules)
            consumers.append(consumer)
            cost += _cost(consumer, view)
        members.append(PlannedMember(reader, view, consumers))
    _hold(members)
    return PlannedGroup(canonical, members, canonical_consumers, cost)


def choose_canonical(
    readers: list[Reader],
    view_nodes: set[ir.Node],
    scopes: Scopes,
    preferred: list[Reader] | None = None,
    consumer_rules: Sequence[ConsumerRule] = CONSUMER_RULES,
) -> PlannedGroup:
    """Chooses the canonical tensor of a group's ``readers`` in one model and plans every use.

    Args:
        readers: the group's tensors in the model (and a foreign stand-in, if any).
        view_nodes: every view node of the model (their outputs are readers, not uses).
        scopes: the model's graph scopes.
        preferred: the candidates to choose among (all copies of the widest tensor if none).
        consumer_rules: the rules every use is offered to.
    """
    twice = _reading_twice(readers, view_nodes)
    candidates = preferred or [r for r in readers if r.view_node is None and not r.derived]
    plans = [_plan_for(c, readers, view_nodes, twice, consumer_rules) for c in candidates]

    def key(planned: PlannedGroup) -> tuple[int, bool]:
        canonical = planned.canonical
        if canonical.foreign:  # added to the main graph, which encloses every reader
            return planned.cost, False
        graph = canonical.value.graph
        return planned.cost, not scopes.encloses(graph, planned.reading_nodes())  # type: ignore[arg-type]

    return min(plans, key=key)  # min keeps graph order on ties
