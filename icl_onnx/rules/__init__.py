"""Consumer rules: for each consumer op, how it reads a view of a shared tensor.

A rule is one class in one file of this package (onnxscript's rewrite rules work the same
way): it **matches** a use (a node, the input that holds a member of a group, the member as a
``View`` of the canonical tensor, its rank), says what reading through it **costs** (the
planner picks the canonical tensor of a group with the lowest total cost), and **rewrites**
the node to read the canonical tensor. The planner records the covering rule of every
consumer in the plan (``Consumer.rule`` is its name, ``Consumer.covering`` the object), and
``ApplySharePlanPass`` calls that rule's ``rewrite``. Nothing else names a rule.

How to add a rule (e.g. a new consumer op or a new kind of view):

1. Create ``icl_onnx/rules/<op>.py`` with a subclass of ``ConsumerRule`` decorated with
   ``@register``; give it a unique ``name``, the ``view_parts`` it can express (``View.parts``;
   a new kind of view is a new field of ``View`` plus its part name), and implement
   ``match`` (return ``self.ok()``, ``self.fail("why")`` when the use is yours but cannot be
   rewritten, or ``None`` when it is not yours), ``becomes``, ``cost`` and ``rewrite``
   (``replace_with_icl_node`` writes an ICL node and types its output).
2. Add its test (match, cost and rewrite on a tiny model, numbers against the reference).

Every module of this package is imported here, so the rule is registered by existing. Two
rules must not claim the same use (``cover`` raises): a rule for a new kind of view claims
only views that have its part, so it never overlaps the rules for the existing parts (which
never see it, as it is not in their ``view_parts``). Exact copies no rule claims are rewired
(``RewireExactCopy``), and a use no rule covers keeps its copy, with the reason. Every rule's
match and cost cases are in ``tests/test_rules.py``; add yours there.
"""

from __future__ import annotations

import importlib
import pkgutil

from icl_onnx.rules.base import ConsumerRule, Outcome, Use, node_label, replace_with_icl_node
from icl_onnx.rules.registry import EXACT_COPY, cover, register, registered, unregister

__all__ = [
    "ConsumerRule",
    "EXACT_COPY",
    "Outcome",
    "Use",
    "cover",
    "node_label",
    "register",
    "registered",
    "replace_with_icl_node",
    "unregister",
]

for _module in sorted(m.name for m in pkgutil.iter_modules(__path__)):
    if _module not in ("base", "registry"):
        importlib.import_module(f"{__name__}.{_module}")
