"""Each consumer rule's match and cost on one node: which rule covers a use, or why none does.

The rewrites themselves run in test_share_weights.py, test_views.py and test_subgraphs.py
(structure and numbers against the reference); a new rule adds its cases here and its rewrite
test beside it.
"""

from __future__ import annotations

import subprocess
import sys

import onnx_ir as ir
import pytest

from icl_onnx import rules
from icl_onnx.planning.groups import plan_consumer
from icl_onnx.views import View

EXACT = View()
T = View(transpose=True)
ROWS = View(slice_size=4)
SCALE = View(scale=0.5)


def node(op, n_inputs=2, domain="", **attrs):
    inputs = [ir.Value(name=f"i{k}") for k in range(n_inputs)]
    return ir.node(op, inputs, attributes=attrs, domain=domain)


CASES = [
    # (node, input index, view, rank, rule name or "", cost or the reason)
    (node("MatMul"), 1, EXACT, 2, "matmul", 1),
    (node("MatMul"), 1, T, 2, "matmul", 1),
    (node("MatMul"), 1, ROWS, 2, "matmul", 2),
    (node("MatMul"), 1, EXACT, 3, "rewire", 0),
    (node("MatMul"), 1, SCALE, 3, "", "a scale view of a rank-3 tensor has no ICL operator"),
    (node("MatMul"), 0, T, 2, "", "MatMul input 0 reads it; no ICL operator covers MatMul"),
    (node("Gemm", 2, transB=1, alpha=2.0), 1, T, 2, "gemm", 1),
    (node("Gemm", 3), 1, T, 2, "", "Gemm bias is not 1-D"),
    (node("Gemm", 3, transA=1), 1, T, 2, "", "Gemm with transA=1"),
    (node("Gemm", 3, transA=1), 1, EXACT, 2, "rewire", 0),
    (node("Gather"), 0, T, 2, "gather", 3),
    (node("Gather"), 0, SCALE, 2, "gather", 2),
    (node("Gather"), 0, EXACT, 2, "rewire", 0),
    (node("Gather", axis=1), 0, T, 2, "", "Gather on axis 1"),
    (node("IclMatMul", domain="ai.icl", transpose=1), 1, T, 2, "icl-node", 1),
    (node("IclGather", domain="ai.icl"), 0, T, 2, "icl-node", 3),
    (
        node("IclGather", domain="ai.icl", slice_size=2),
        0,
        T,
        2,
        "",
        "IclGather already reads a row-slice view; views do not compose here",
    ),
    (node("IclMatMul", domain="ai.icl"), 1, ROWS, 2, "", "views do not compose here"),
    (node("IclMatMul", domain="ai.icl", transpose=3), 1, T, 2, "", "malformed view attributes"),
    (node("Neg", 1), 0, T, 2, "", "Neg input 0 reads it; no ICL operator covers Neg"),
    (node("Neg", 1), 0, EXACT, 2, "rewire", 0),
]


@pytest.mark.parametrize(("consumer", "index", "view", "rank", "rule", "expected"), CASES)
def test_the_covering_rule_and_its_cost_or_the_reason(consumer, index, view, rank, rule, expected):
    planned = plan_consumer(consumer, index, view, rank)
    assert planned.rule_name == rule
    if rule:
        assert planned.covered and planned.rule.name == rule and not planned.reason
        assert planned.rule.cost(consumer, view) == expected
    else:
        assert not planned.covered and planned.rule is None
        assert expected in planned.reason


def test_the_planner_offers_every_use_to_the_built_in_rules_once():
    names = [rule.name for rule in rules.CONSUMER_RULES]
    assert sorted(names) == ["gather", "gather-block-quantized", "gemm", "icl-node", "matmul"]
    assert rules.EXACT_COPY.name == "rewire" and "rewire" not in names


def test_a_rule_never_sees_a_view_part_it_does_not_list():
    class TransposeOnly(rules.ConsumerRule):
        name = "transpose-only"
        view_parts = frozenset({"transpose"})

        def match(self, use):
            return self.ok()

        def becomes(self, node):
            return node.op_type

        def cost(self, node, view):
            return 0

        def rewrite(self, node, index, canonical, view):
            return False

    rule = TransposeOnly()
    use = rules.Use(node("Neg", 1), 0, T, 2)
    assert rule.claim(use) == rules.Outcome(rule)
    assert rule.claim(rules.Use(use.node, 0, View(transpose=True, scale=2.0), 2)) is None


def test_two_rules_with_one_name_are_refused():
    class Again(rules.MatMulRule):
        def match(self, use):
            return None

    with pytest.raises(RuntimeError, match="one name"):
        rules.cover(rules.Use(node("Neg", 1), 0, T, 2), [*rules.CONSUMER_RULES, Again()])


def test_every_rule_class_of_the_package_is_in_the_list_the_planner_uses():
    # Rules are listed, not registered by import: a rule file whose class is missing from
    # CONSUMER_RULES would never be offered a use.
    code = (
        "import icl_onnx.rules as r, inspect, importlib, pkgutil\n"
        "mods = [importlib.import_module('icl_onnx.rules.' + m.name)"
        " for m in pkgutil.iter_modules(r.__path__)]\n"
        "classes = {c for m in mods for _, c in inspect.getmembers(m, inspect.isclass)"
        " if issubclass(c, r.ConsumerRule) and c.__module__ == m.__name__"
        " and not inspect.isabstract(c)}\n"
        "listed = {type(x) for x in (*r.CONSUMER_RULES, r.EXACT_COPY)}\n"
        "print(sorted(c.__name__ for c in classes ^ listed))"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert run.stdout.strip() == "[]"
