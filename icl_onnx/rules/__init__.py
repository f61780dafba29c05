"""Consumer rules: for each consumer op, how it reads a view of a shared tensor.

A rule is one class in one file of this package (onnxscript's rewrite rules work the same
way): it **matches** a use (a node, the input that holds a member of a share set, the member as
a ``View`` of the canonical tensor, its rank), says what reading through it **costs** (the
planner picks the canonical tensor of a set with the lowest total cost), and **rewrites** the
node to read the canonical tensor. The planner records the covering rule of every consumer in
the plan (``Consumer.rule`` is the object, ``Consumer.rule_name`` its name), and
``ApplySharePlanPass`` calls that rule's ``rewrite``.

The planner offers every use to the rules it is given, ``CONSUMER_RULES`` unless the caller
passes its own list (``plan_sharing(model, consumer_rules=...)``); importing a rule's module
registers nothing. How to add a rule (e.g. a new consumer op or a new kind of view):

1. Create ``icl_onnx/rules/<op>.py`` with a subclass of ``ConsumerRule``; give it a unique
   ``name``, the ``view_parts`` it can express (``View.parts``; a new kind of view is a new
   field of ``View`` plus its part name), and implement ``match`` (return ``self.ok()``,
   ``self.fail("why")`` when the use is yours but cannot be rewritten, or ``None`` when it is
   not yours), ``becomes``, ``cost`` and ``rewrite`` (``replace_with_icl_node`` writes an ICL
   node and types its output).
2. Add an instance to ``CONSUMER_RULES`` below.
3. Add its match and cost cases to ``tests/test_rules.py`` (numbers against the reference).

Two rules must not claim the same use (``cover`` raises): a rule for a new kind of view claims
only views that have its part, so it never overlaps the rules for the existing parts (which
never see it, as it is not in their ``view_parts``). Exact copies no rule claims are rewired
(``EXACT_COPY``), and a use no rule covers keeps its copy, with the reason.
"""

from __future__ import annotations

from collections.abc import Sequence

from icl_onnx.rules.base import ConsumerRule, Outcome, Use, node_label, replace_with_icl_node
from icl_onnx.rules.exact_copy import RewireExactCopy
from icl_onnx.rules.gather import GatherRule
from icl_onnx.rules.gather_block_quantized import GatherBlockQuantizedRule
from icl_onnx.rules.gemm import GemmRule
from icl_onnx.rules.icl_node import IclNodeRule
from icl_onnx.rules.matmul import MatMulRule

__all__ = [
    "CONSUMER_RULES",
    "ConsumerRule",
    "EXACT_COPY",
    "GatherBlockQuantizedRule",
    "GatherRule",
    "GemmRule",
    "IclNodeRule",
    "MatMulRule",
    "Outcome",
    "RewireExactCopy",
    "Use",
    "cover",
    "node_label",
    "replace_with_icl_node",
]

#: The rules the planner offers every use to (their matches do not overlap).
CONSUMER_RULES: tuple[ConsumerRule, ...] = (
    MatMulRule(),
    GemmRule(),
    GatherRule(),
    GatherBlockQuantizedRule(),
    IclNodeRule(),
)
#: The fallback for exact copies no rule of the list claims.
EXACT_COPY = RewireExactCopy()


def cover(use: Use, rules: Sequence[ConsumerRule] = CONSUMER_RULES) -> Outcome | None:
    """Returns the outcome of the one rule of ``rules`` that claims ``use``, or ``None``.

    Exact copies no rule of ``rules`` claims are covered by ``EXACT_COPY``.

    Raises:
        RuntimeError: two rules claim the same use (their matches must not overlap), or two
            rules of ``rules`` have one name.
    """
    names = [rule.name for rule in rules]
    if len(set(names)) != len(names):
        raise RuntimeError(f"two consumer rules have one name: {sorted(names)}")
    claims = [(rule, outcome) for rule in rules if (outcome := rule.claim(use)) is not None]
    if len(claims) > 1:
        names = ", ".join(rule.name for rule, _ in claims)
        raise RuntimeError(f"consumer rules {names} all claim {use.node.op_type} input {use.index}")
    if claims:
        return claims[0][1]
    return EXACT_COPY.claim(use)
