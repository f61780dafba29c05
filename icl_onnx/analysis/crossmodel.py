"""Copies and views that cross model files (encoder/decoder splits, variants, task heads).

The eligible initializers of every model are fingerprinted and joined exactly as within one
model (``analyze.py``, ``derive.py``); a set whose tensors come from two or more models is a
cross-model group. The canonical tensor is a copy of the set's widest tensor, taken from the
first model that holds one. Changes nothing, prints nothing.
"""

from __future__ import annotations

import dataclasses

import onnx_ir as ir

from icl_onnx.analysis.analyze import DEFAULT_MIN_ELEMENTS, _eligible, _readers, _relative
from icl_onnx.analysis.plan import CrossGroup, CrossMember, View

__all__ = ["CrossBinding", "run_cross_analysis"]


@dataclasses.dataclass
class CrossBinding:
    """A cross-model group with its IR values: ``members`` maps value -> (model index, view)."""

    canonical: ir.Value
    owner: int
    members: dict[ir.Value, tuple[int, View]]
    plan: CrossGroup


def run_cross_analysis(
    models: list[ir.Model],
    labels: list[str],
    min_elements: int = DEFAULT_MIN_ELEMENTS,
) -> list[CrossBinding]:
    """Returns the groups of tensors that cross models (each model's main graph).

    Args:
        models: the models, each analysed or optimized on its own before.
        labels: a name per model for the plan (e.g. its file name).
        min_elements: initializers with fewer elements are ignored.
    """
    owner: dict[ir.Value, int] = {}
    values: list[ir.Value] = []
    for index, model in enumerate(models):
        eligible, _ = _eligible(model.graph, min_elements)
        for value in eligible:
            owner[value] = index
        values += eligible
    bindings = []
    for readers in _readers(values, []).values():
        if len({owner[r.value] for r in readers}) < 2:
            continue
        canonical = min(
            (r for r in readers if not r.derived), key=lambda r: (owner[r.value], r.base.transpose)
        )
        members, planned = {}, []
        for reader in readers:
            if reader is canonical:
                continue
            view = _relative(reader, canonical)
            tensor = reader.value.const_value
            assert tensor is not None
            members[reader.value] = (owner[reader.value], view)
            planned.append(
                CrossMember(
                    model=labels[owner[reader.value]],
                    name=reader.value.name or "?",
                    shape=tuple(int(d) for d in tensor.shape.numpy()),
                    dtype=tensor.dtype.name,
                    nbytes=tensor.nbytes,
                    view=view,
                )
            )
        tensor = canonical.value.const_value
        assert tensor is not None
        plan = CrossGroup(
            model=labels[owner[canonical.value]],
            canonical=canonical.value.name or "?",
            shape=tuple(int(d) for d in tensor.shape.numpy()),
            dtype=tensor.dtype.name,
            nbytes=tensor.nbytes,
            members=planned,
        )
        bindings.append(CrossBinding(canonical.value, owner[canonical.value], members, plan))
    return bindings
