"""Sets of tensors that cross model files (encoder/decoder splits, variants, task heads).

The eligible initializers of every model are grouped in one pass (``readers.py``); a set whose
tensors come from two or more models is planned here, once, into one group per model it
touches and one ``CrossGroup``:

* the owner is the first model that holds a copy of the set's widest tensor; its group is
  planned as within one model, and its canonical tensor is the set's canonical tensor ``C``;
* a model holding an exact copy of ``C`` makes that copy its canonical tensor (the shared data
  file stores the two once, ``shared_store.py``);
* any other model reads ``C`` itself: the plan names ``C`` as the canonical tensor of its
  group with ``origin`` set, and the rewrite adds ``C``'s tensor to the model.

Each such group forms even with a single tensor, so MatMul/Gemm consumers of a tensor other
models share read it through IclMatMul (no private prepacked copy). Changes nothing.
"""

from __future__ import annotations

import collections
import dataclasses

import onnx_ir as ir

from icl_onnx.analysis.groups import Choice, choose_canonical
from icl_onnx.analysis.plan import CrossGroup, CrossMember, ShareGroup
from icl_onnx.analysis.readers import Reader, relative_view
from icl_onnx.analysis.scopes import Scopes

__all__ = ["CrossSet", "plan_cross_set"]


@dataclasses.dataclass
class CrossSet:
    """A set planned across models: each model's choice, the owner's first."""

    owner: int
    choices: dict[int, Choice]  # model index -> its plan of the set
    foreign: set[int]  # models whose group reads the owner's tensor itself

    def report(self, groups: dict[int, ShareGroup], labels: list[str]) -> CrossGroup:
        """The CrossGroup, given each model's ShareGroup of this set (final names)."""
        canonical = self.choices[self.owner].canonical
        members = []
        for model, choice in self.choices.items():
            if model == self.owner:
                continue
            if model in self.foreign:
                members += [
                    _cross_member(labels[model], m.value, m.view)
                    for m in groups[model].members
                    if m.view_node is None and not m.kept_reason
                ]
            else:
                group = groups[model]
                view = relative_view(choice.canonical, canonical)
                members.append(_cross_member(labels[model], choice.canonical.value, view, group))
        owner = groups[self.owner]
        return CrossGroup(
            model=labels[self.owner],
            canonical=owner.canonical,
            shape=owner.shape,
            dtype=owner.dtype,
            nbytes=owner.nbytes,
            members=members,
        )


def _cross_member(label: str, value, view, group: ShareGroup | None = None) -> CrossMember:
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


def plan_cross_set(
    readers: list[Reader], view_nodes: list[set[ir.Node]], scopes: list[Scopes]
) -> CrossSet:
    """Plans a set whose ``readers`` come from several models.

    Args:
        readers: the set's tensors, of two models or more.
        view_nodes: each model's view nodes.
        scopes: each model's graph scopes.
    """
    by_model: dict[int, list[Reader]] = collections.defaultdict(list)
    for reader in readers:
        by_model[reader.model].append(reader)
    owner = min(r.model for r in readers if r.view_node is None and not r.derived)
    first = choose_canonical(by_model[owner], view_nodes[owner], scopes[owner])
    canonical = first.canonical
    cross = CrossSet(owner, {owner: first}, set())
    for model in sorted(by_model):
        if model == owner:
            continue
        mine = by_model[model]
        copies = [
            r
            for r in mine
            if r.view_node is None and not r.derived and relative_view(r, canonical).is_identity
        ]
        if copies:
            cross.choices[model] = choose_canonical(mine, view_nodes[model], scopes[model], copies)
            continue
        stand_in = dataclasses.replace(canonical, model=model, foreign=True, derived=False)
        choice = choose_canonical([*mine, stand_in], view_nodes[model], scopes[model], [stand_in])
        if choice.covers_any:
            cross.choices[model] = choice
            cross.foreign.add(model)
    return cross
