"""The consumer-rule protocol: match, cost and rewrite of one consumer op, in one object."""

from __future__ import annotations

import abc
import dataclasses
from typing import ClassVar

import onnx_ir as ir

from icl_onnx.ops import DOMAIN, GATHER, MATMUL
from icl_onnx.views import View

__all__ = [
    "ICL_VIEW_PARTS",
    "LOW_RANK_PARTS",
    "factor_inputs",
    "ConsumerRule",
    "Outcome",
    "Use",
    "attr",
    "is_onnx",
    "node_label",
    "replace_with_icl_node",
]

#: The view parts the ICL operators' attributes express (``View.parts``).
ICL_VIEW_PARTS = frozenset({"slice", "transpose", "scale", "cast"})
#: The same with a low-rank delta, which a rule expresses with ``factor_inputs``.
LOW_RANK_PARTS = ICL_VIEW_PARTS | {"low-rank"}


def node_label(node: ir.Node) -> str:
    """Returns the node's name, or ``op_type(first output)`` for unnamed nodes."""
    if node.name:
        return node.name
    first = node.outputs[0].name if node.outputs else "?"
    return f"{node.op_type}({first})"


def attr(node: ir.Node, name: str, default):
    """The value of ``node``'s attribute ``name``, or ``default`` when it is not set."""
    found = node.attributes.get(name)
    return default if found is None else found.value


def is_onnx(node: ir.Node) -> bool:
    """Whether ``node`` is in the default ONNX domain."""
    return node.domain in ("", "ai.onnx")


@dataclasses.dataclass(frozen=True)
class Use:
    """Input ``index`` of ``node`` holds ``view(canonical)``, a tensor of rank ``rank``."""

    node: ir.Node
    index: int
    view: View
    rank: int


@dataclasses.dataclass(frozen=True)
class Outcome:
    """A rule's answer for a use it claims: covered (``reason == ""``) or why not."""

    rule: ConsumerRule
    reason: str = ""

    @property
    def covered(self) -> bool:
        """Whether the rule rewrites the use."""
        return not self.reason


class ConsumerRule(abc.ABC):
    """How one consumer op reads a view of the canonical tensor: match, cost, rewrite.

    Attributes:
        name: the rule's name in the plan (``Consumer.rule_name``, JSON and ``scan`` output).
        view_parts: the ``View.parts`` the rewritten node can express; the rule never sees a
            view with any other part (another rule may claim it).
        replaces_node: whether ``rewrite`` replaces the node (``False``: it only changes an
            input; such rewrites run first, so no rule touches a node already replaced).
    """

    name: ClassVar[str]
    view_parts: ClassVar[frozenset[str]] = ICL_VIEW_PARTS
    replaces_node: ClassVar[bool] = True

    def claim(self, use: Use) -> Outcome | None:
        """Returns the rule's outcome for ``use``, or ``None`` when the use is not its kind."""
        if not set(use.view.parts) <= self.view_parts:
            return None
        return self.match(use)

    @abc.abstractmethod
    def match(self, use: Use) -> Outcome | None:
        """``self.ok()``, ``self.fail(reason)``, or ``None`` when the use is not this rule's."""

    @abc.abstractmethod
    def becomes(self, node: ir.Node) -> str:
        """The op type ``node`` has after the rewrite."""

    @abc.abstractmethod
    def cost(self, node: ir.Node, view: View) -> int:
        """What ``node`` reading ``view`` after the rewrite costs (0: a plain read; more: slower).

        The planner chooses the canonical tensor of a group with the lowest total cost.
        """

    @abc.abstractmethod
    def rewrite(self, node: ir.Node, index: int, canonical: ir.Value, view: View) -> bool:
        """Makes ``node`` read ``view(canonical)`` at input ``index``; returns if it changed."""

    def ok(self) -> Outcome:
        """The rule covers the use."""
        return Outcome(self)

    def fail(self, reason: str) -> Outcome:
        """The use is this rule's kind, but the rule cannot rewrite it, because ``reason``."""
        return Outcome(self, reason)

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


def icl_cost(view: View) -> int:
    """The cost of an ICL operator reading ``view``: 1, plus 1 for a slice, scale or cast."""
    return 1 + bool(set(view.parts) - {"transpose"})


def factor_inputs(view: View, graph: ir.Graph) -> list[ir.Value]:
    """The factor inputs ``[U, V]`` of a low-rank view (``[]`` for any other view).

    The factors are initializers of ``graph``, added there by the first rewrite that reads them.
    """
    if not view.rank:
        return []
    assert view.factors is not None
    for factor in view.factors:
        if factor.graph is None:
            graph.register_initializer(factor)
    return list(view.factors)


def replace_with_icl_node(
    node: ir.Node,
    op: str,
    inputs: list[ir.Value | None],
    view: View,
    extra: dict[str, int] | None = None,
) -> ir.Node:
    """Replaces ``node`` in its graph by an ICL node ``op`` reading ``view`` of its weight.

    Returns the new node, whose output is typed when the model did not type it: ORT cannot
    infer the output type of a custom op whose output constraint differs from its inputs'
    (IclGather), so the file must carry it.
    """
    attrs = {**view.attributes(), **(extra or {})}
    new = ir.Node(
        DOMAIN,
        op,
        inputs=inputs,
        attributes=ir.convenience.convert_attributes(attrs),
        name=node.name,
        num_outputs=1,
        doc_string=node.doc_string,
    )
    graph = node.graph
    assert graph is not None
    ir.convenience.replace_nodes_and_values(
        graph, node, [node], [new], list(node.outputs), list(new.outputs)
    )
    _declare_output_type(new)
    return new


def _declare_output_type(node: ir.Node) -> None:
    out = node.outputs[0]
    if out.type is not None:
        return
    if node.op_type == MATMUL:
        out.type = node.inputs[0].type  # type: ignore[union-attr]
    elif node.op_type == GATHER:
        out_dtype = int(attr(node, "output_dtype", 0))
        table = node.inputs[0].const_value  # type: ignore[union-attr]
        dtype = ir.DataType(out_dtype) if out_dtype else (table.dtype if table else None)
        if dtype is not None:
            out.type = ir.TensorType(dtype)
