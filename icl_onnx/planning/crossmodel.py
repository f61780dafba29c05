"""Groups of tensors that cross model files (encoder/decoder splits, variants, task heads).

The eligible initializers of every model are grouped in one pass (``readers.py``); a group whose
tensors come from two or more models is planned here, once, into one group per model it
touches and one ``CrossGroup``:

* the owner is the first model that holds a copy of the group's widest tensor; its group is
  planned as within one model, and its canonical tensor is the group's canonical tensor ``C``;
* a model holding an exact copy of ``C`` makes that copy its canonical tensor (the shared data
  file stores the two once, ``shared_store.py``);
* any other model reads ``C`` itself: the plan names ``C`` as the canonical tensor of its
  group with ``origin`` set, and the rewrite adds ``C``'s tensor to the model; unless sharing
  its tensors among its own costs less (the rules cover fewer of its consumers on ``C``), then
  its group is planned as within one model and it takes no part in the cross-model group.

Each group that shares ``C`` forms even with a single tensor, so MatMul/Gemm consumers of a
tensor other models share read it through IclMatMul (no private prepacked copy). A group that
no other model joins is planned as within one model. Changes nothing.
"""

from __future__ import annotations

import collections
import dataclasses
from collections.abc import Sequence

import onnx_ir as ir

from icl_onnx.analysis.readers import Reader, relative_view
from icl_onnx.analysis.scopes import Scopes
from icl_onnx.planning.groups import PlannedGroup, choose_canonical, forms_group
from icl_onnx.planning.plan import CrossGroup, CrossMember, ShareGroup
from icl_onnx.rules import CONSUMER_RULES, ConsumerRule

__all__ = ["PlannedCrossGroup", "cross_member", "plan_cross_group"]


@dataclasses.dataclass
class PlannedCrossGroup:
    """A group planned across models: one ``PlannedGroup`` per model it touches.

    Attributes:
        owner: the model whose canonical tensor is the group's.
        shared: the groups of the models that share the owner's canonical tensor, the owner's
            first.
        foreign: the models among them whose group reads the owner's tensor itself.
        alone: the groups of models that share the group's tensors among their own only.
    """

    owner: int
    shared: dict[int, PlannedGroup]
    foreign: set[int] = dataclasses.field(default_factory=set)
    alone: dict[int, PlannedGroup] = dataclasses.field(default_factory=dict)

    @property
    def crosses(self) -> bool:
        """Whether a model other than the owner shares the canonical tensor."""
        return len(self.shared) > 1

    def report(self, groups: dict[int, ShareGroup], labels: list[str]) -> CrossGroup:
        """The CrossGroup, given each model's ShareGroup of this group (final names)."""
        canonical = self.shared[self.owner].canonical
        members = []
        for model, planned in self.shared.items():
            if model == self.owner:
                continue
            if model in self.foreign:
                members += [
                    cross_member(labels[model], m.value, m.view)
                    for m in groups[model].members
                    if m.view_node is None and not m.kept_reason
                ]
            else:
                group = groups[model]
                view = relative_view(planned.canonical, canonical)
                members.append(cross_member(labels[model], planned.canonical.value, view, group))
        owner = groups[self.owner]
        return CrossGroup(
            model=labels[self.owner],
            canonical=owner.canonical,
            shape=owner.shape,
            dtype=owner.dtype,
            nbytes=owner.nbytes,
            members=members,
        )


def cross_member(label: str, value, view, group: ShareGroup | None = None) -> CrossMember:
    """The report row of one model's tensor in a group that crosses models."""
    tensor = value.const_value
    assert tensor is not None
    return CrossMember(
        model=label,
        name=group.canonical if group is not None else value.name or "?",
        shape=tuple(int(d) for d in tensor.shape.numpy()),
        dtype=tensor.dtype.name,
        nbytes=tensor.nbytes,
        view=view,
    )


def plan_cross_group(
    readers: list[Reader],
    view_nodes: list[set[ir.Node]],
    scopes: list[Scopes],
    consumer_rules: Sequence[ConsumerRule] = CONSUMER_RULES,
) -> PlannedCrossGroup:
    """Plans a group whose ``readers`` come from several models.

    Args:
        readers: the group's tensors, of two models or more.
        view_nodes: each model's view nodes.
        scopes: each model's graph scopes.
        consumer_rules: the rules every use is offered to.
    """
    by_model: dict[int, list[Reader]] = collections.defaultdict(list)
    for reader in readers:
        by_model[reader.model].append(reader)
    owner = min(r.model for r in readers if r.view_node is None and not r.derived)
    first = choose_canonical(
        by_model[owner], view_nodes[owner], scopes[owner], consumer_rules=consumer_rules
    )
    cross = PlannedCrossGroup(owner, {owner: first})
    for model in sorted(by_model):
        if model != owner:
            _join(cross, model, by_model[model], view_nodes[model], scopes[model], consumer_rules)
    if not cross.crosses:  # nobody shares the owner's tensor: the owner's group is its own
        cross.shared = {}
        if forms_group(by_model[owner], view_nodes[owner]):
            cross.alone[owner] = first
    return cross


def _join(
    cross: PlannedCrossGroup,
    model: int,
    mine: list[Reader],
    view_nodes: set[ir.Node],
    scopes: Scopes,
    consumer_rules: Sequence[ConsumerRule],
) -> None:
    """Plans ``model``'s tensors of the group: on its copy of ``C``, on ``C`` itself, or alone.

    With no exact copy of ``C``, the model reads ``C`` unless planning its tensors among
    themselves costs less (their consumers read a local tensor where ``C`` has no rule for
    them); on equal costs it reads ``C``.
    """
    canonical = cross.shared[cross.owner].canonical
    copies = [
        r
        for r in mine
        if r.view_node is None and not r.derived and relative_view(r, canonical).is_identity
    ]
    if copies:
        cross.shared[model] = choose_canonical(mine, view_nodes, scopes, copies, consumer_rules)
        return
    stand_in = dataclasses.replace(canonical, model=model, foreign=True, derived=False)
    borrowed = choose_canonical([*mine, stand_in], view_nodes, scopes, [stand_in], consumer_rules)
    own = None
    if forms_group(mine, view_nodes):
        own = choose_canonical(mine, view_nodes, scopes, consumer_rules=consumer_rules)
    if own is not None and own.cost < borrowed.cost:
        cross.alone[model] = own
    elif borrowed.covers_any:
        cross.shared[model] = borrowed
        cross.foreign.add(model)
