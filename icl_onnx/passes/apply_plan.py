"""ApplySharePlanPass: executes a SharePlan on the model it was computed on, and only that.

For every group: a canonical tensor of another model (``ShareGroup.origin``) is added to the
main graph; every covered consumer is rewritten by the rule the plan names for it
(``Consumer.rule``; rules that only change an input run first, so no rule meets a node
another rule replaced); members nothing reads any more are removed, each from its own graph
(view nodes first: removing one may leave the initializer it read without uses); and the
canonical tensor is moved to the graph and renamed to the name the plan gives it.
"""

from __future__ import annotations

import logging

import onnx_ir as ir

from icl_onnx import schemas
from icl_onnx.analysis.scopes import move_initializer
from icl_onnx.ops import DOMAIN, OPSET_VERSION
from icl_onnx.passes.plan_sharing import PLAN_KEY
from icl_onnx.planning.plan import Consumer, ShareGroup, SharePlan
from icl_onnx.views import View

__all__ = ["ApplySharePlanPass"]

logger = logging.getLogger(__name__)


def _add_foreign(model: ir.Model, group: ShareGroup) -> ir.Value:
    """Adds another model's canonical tensor to ``model`` (the same tensor object).

    The plan may give it the name of a member the rewrite removes (a variant's tensor that
    becomes the base's plus a low-rank delta): that member is renamed until it goes.
    """
    source = group.value
    assert source is not None
    holder = model.graph.initializers.get(group.canonical)
    if holder is not None and any(m.value is holder and not m.kept_reason for m in group.members):
        holder.name = f"{group.canonical}.replaced"
    value = ir.Value(
        name=group.canonical, type=source.type, shape=source.shape, const_value=source.const_value
    )
    model.graph.register_initializer(value)
    return value


def _rewrites(groups: list[tuple[ShareGroup, ir.Value]]):
    """Yields (consumer, canonical, view) for every covered use, in-place rewrites first."""
    first: list[tuple[Consumer, ir.Value, View]] = []
    last: list[tuple[Consumer, ir.Value, View]] = []
    for group, canonical in groups:
        planned = [(c, View()) for c in group.canonical_consumers]
        planned += [(c, m.view) for m in group.members for c in m.consumers]
        for consumer, view in planned:
            if consumer.rule is not None:
                target = last if consumer.rule.replaces_node else first
                target.append((consumer, canonical, view))
    yield from first
    yield from last


def _remove_view_node(node: ir.Node) -> None:
    """Removes a view node, and its constant arguments (a Reshape's shape) nothing else reads."""
    graph = node.graph
    assert graph is not None
    arguments = [v for v in node.inputs[1:] if v is not None]
    graph.remove(node, safe=True)
    for value in arguments:
        if value.uses() or value.is_graph_output() or value in graph.inputs:
            continue
        if value.name is not None and graph.initializers.get(value.name) is value:
            del graph.initializers[value.name]


def _remove_dead_members(groups: list[ShareGroup]) -> None:
    """Removes members nothing reads any more, each from its own graph."""
    for group in groups:
        for member in sorted(group.members, key=lambda m: m.view_node is None):
            value = member.value
            assert value is not None
            if value.uses() or value.is_graph_output():
                continue
            if member.view_node is not None:
                _remove_view_node(member.view_node)
                continue
            graph = value.graph
            if graph is not None and graph.initializers.get(value.name) is value:  # type: ignore[arg-type]
                del graph.initializers[value.name]  # type: ignore[arg-type]


class ApplySharePlanPass(ir.passes.InPlacePass):
    """Rewrites a model as its SharePlan says: one canonical initializer per share set.

    Attributes:
        plan: the plan, computed (``icl_onnx.planning.plan_sharing``) on the model this pass
            is called on, which must not have changed since; None applies the plan a
            ``PlanSharingPass`` left in the model (``model.meta[PLAN_KEY]``), and removes it.
    """

    def __init__(self, plan: SharePlan | None = None) -> None:
        super().__init__()
        self.plan = plan

    def _plan(self, model: ir.Model) -> SharePlan | None:
        return self.plan if self.plan is not None else model.meta.get(PLAN_KEY)

    def requires(self, model: ir.Model) -> None:
        """The plan exists and was computed on ``model``.

        Raises:
            ir.passes.PreconditionError: no plan, or a plan computed on another model.
        """
        plan = self._plan(model)
        if plan is None:
            raise ir.passes.PreconditionError(
                "no plan to apply; run PlanSharingPass on the model first or give the plan"
            )
        if plan.graph is not model.graph:
            raise ir.passes.PreconditionError(
                "the plan was computed on another model; plan the model this pass runs on "
                "(plan_sharing(model)) and apply that plan"
            )

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        """Applies the plan in place."""
        plan = self._plan(model)
        assert plan is not None  # requires() checked it
        if self.plan is None:
            del model.meta[PLAN_KEY]  # applied: it no longer describes the model
        modified = False
        groups = []
        for group in plan.groups:
            if group.origin:
                groups.append((group, _add_foreign(model, group)))
                modified = True
            else:
                assert group.value is not None
                groups.append((group, group.value))
        for consumer, canonical, view in _rewrites(groups):
            rule = consumer.rule
            assert rule is not None and consumer.target is not None
            modified |= rule.rewrite(consumer.target, consumer.input_index, canonical, view)
        _remove_dead_members(plan.groups)
        for group, canonical in groups:
            if not group.origin:
                modified |= move_initializer(canonical, group.home, group.canonical)  # type: ignore[arg-type]
        nodes = ir.traversal.RecursiveGraphIterator(model.graph)
        if modified and any(n.domain == DOMAIN for n in nodes):
            model.opset_imports.setdefault(DOMAIN, OPSET_VERSION)
            schemas.register()  # so onnx.checker and shape inference accept what it wrote
        logger.info(
            "ApplySharePlanPass: %d groups, %d bytes freed",
            len(plan.groups),
            plan.freed_bytes,
        )
        return ir.passes.PassResult(model, modified=modified)
