"""ShareWeightsPass: one canonical initializer per group of copies and views.

Applies the plan of ``icl_onnx.analysis``: exact copies are rewired to the canonical tensor;
consumers of a transposed, sliced, scaled or dtype-cast copy, or of ``Transpose(W)``, become
``ai.icl`` nodes that read the canonical tensor through a view (a cast is implied by ``W``'s
type for IclMatMul and set through ``output_dtype`` for IclGather); MatMul/Gemm weights that
read the (shared) canonical tensor become IclMatMul so ORT does not prepack a second copy.
Members whose consumers are all rewritten are removed; the others stay, and the plan says why.

Members and consumers may sit in any graph (``If``/``Loop``/``Scan`` bodies): each node is
rewritten and each dead member removed in its own graph, and the canonical tensor is then
moved, if it must be, to the innermost graph that encloses all its readers
(``icl_onnx.analysis.scopes``).
"""

from __future__ import annotations

import logging

import onnx_ir as ir

from icl_onnx.analysis.analyze import DEFAULT_MIN_ELEMENTS, GroupBinding, run_analysis
from icl_onnx.analysis.consumers import gemm_view
from icl_onnx.analysis.plan import SharePlan, View
from icl_onnx.analysis.scopes import Scopes
from icl_onnx.ops import DOMAIN, GATHER, MATMUL, OPSET_VERSION

__all__ = ["ShareWeightsPass"]

logger = logging.getLogger(__name__)


def _attr(node: ir.Node, name: str, default):
    attr = node.attributes.get(name)
    return default if attr is None else attr.value


def _compose_with_icl(node: ir.Node, view: View) -> View:
    """The view of the canonical tensor for an ICL node that read ``view(canonical)``."""
    inner_t = bool(_attr(node, "transpose", 0))
    scale = view.scale * float(_attr(node, "scale", 1.0))
    return View(transpose=view.transpose ^ inner_t, scale=scale, dtype=view.dtype)


def _icl_node(op: str, inputs: list[ir.Value | None], view: View, old: ir.Node) -> ir.Node:
    attrs = dict(view.attributes())
    if op == GATHER and "output_dtype" in old.attributes:
        attrs["output_dtype"] = int(_attr(old, "output_dtype", 0))
    elif op == GATHER and view.dtype:
        attrs["output_dtype"] = ir.DataType[view.dtype].value
    return ir.Node(
        DOMAIN,
        op,
        inputs=inputs,
        attributes=ir.convenience.convert_attributes(attrs),
        name=old.name,
        num_outputs=1,
        doc_string=old.doc_string,
    )


def _rewrite(node: ir.Node, index: int, rewrite: str, canonical: ir.Value, view: View) -> None:
    """Makes ``node`` read ``view(canonical)`` at input ``index``."""
    if rewrite == "rewire":
        node.replace_input_with(index, canonical)
        return
    if node.domain == DOMAIN:  # an existing ICL node: fold the views together
        new = _icl_node(node.op_type, list(node.inputs), _compose_with_icl(node, view), node)
        new.replace_input_with(index, canonical)
    elif node.op_type == "Gemm":
        gview, _ = gemm_view(node, view)
        assert gview is not None
        new = _icl_node(MATMUL, [node.inputs[0], canonical, *node.inputs[2:3]], gview, node)
    elif node.op_type == "MatMul":
        new = _icl_node(MATMUL, [node.inputs[0], canonical], view, node)
    elif node.op_type == "Gather":
        new = _icl_node(GATHER, [canonical, node.inputs[1]], view, node)
    else:
        raise AssertionError(f"no rewrite {rewrite} for {node.op_type}")
    graph = node.graph
    assert graph is not None
    ir.convenience.replace_nodes_and_values(
        graph, node, [node], [new], list(node.outputs), list(new.outputs)
    )
    _declare_output_type(new)


def _declare_output_type(node: ir.Node) -> None:
    """Types the ICL node's output when the model did not.

    ORT cannot infer the output type of a custom op whose output constraint differs from its
    inputs' (IclGather), so the file must carry it.
    """
    out = node.outputs[0]
    if out.type is not None:
        return
    if node.op_type == MATMUL:
        out.type = node.inputs[0].type  # type: ignore[union-attr]
    else:
        out_dtype = int(_attr(node, "output_dtype", 0))
        table = node.inputs[0].const_value  # type: ignore[union-attr]
        dtype = ir.DataType(out_dtype) if out_dtype else (table.dtype if table else None)
        if dtype is not None:
            out.type = ir.TensorType(dtype)


def _planned_rewrites(groups: list[GroupBinding]):
    """Yields (node, index, rewrite, canonical, view) for every covered use, rewires first.

    Rewires only change an input; ICL rewrites replace the node. Doing every rewire first means
    a node is never touched after it was replaced (a node has at most one weight input).
    """
    rewires, replacements = [], []
    for group in groups:
        for node, idx, consumer in group.canonical_uses:
            if consumer.rewrite == MATMUL:
                replacements.append((node, idx, MATMUL, group.canonical, View()))
        for member in group.members:
            for node, idx, consumer in member.uses:
                if consumer.covered:
                    target = rewires if consumer.rewrite == "rewire" else replacements
                    target.append((node, idx, consumer.rewrite, group.canonical, member.view))
    yield from rewires
    yield from replacements


def _remove_dead_members(groups: list[GroupBinding]) -> None:
    """Removes members nothing reads any more, each from its own graph."""
    for group in groups:
        # View nodes first: removing one may leave the initializer it read without uses.
        for member in sorted(group.members, key=lambda m: m.view_node is None):
            if member.value.uses() or member.value.is_graph_output():
                continue
            if member.view_node is not None:
                member.view_node.graph.remove(member.view_node, safe=True)  # type: ignore[union-attr]
                continue
            graph = member.value.graph
            if graph is not None and graph.initializers.get(member.value.name) is member.value:
                del graph.initializers[member.value.name]  # type: ignore[arg-type]


def _place_canonicals(model: ir.Model, groups: list[GroupBinding]) -> bool:
    """Moves (and renames) canonical tensors so every reader's graph can see them."""
    scopes = Scopes(model)
    placed = False
    for group in groups:
        if scopes.place(group.canonical):
            group.plan.canonical = group.canonical.name or "?"
            placed = True
    return placed


class ShareWeightsPass(ir.passes.InPlacePass):
    """Rewrites a model so each group of copies and views holds one canonical initializer.

    After ``call``, ``self.plan`` holds the SharePlan that was applied.

    Attributes:
        min_elements: initializers with fewer elements are left alone.
        preferred: initializer names chosen as canonical when a group holds one.
        shared: initializer names whose bytes other models share (see ``run_analysis``).
    """

    def __init__(
        self,
        min_elements: int = DEFAULT_MIN_ELEMENTS,
        *,
        preferred: frozenset[str] = frozenset(),
        shared: frozenset[str] = frozenset(),
    ):
        super().__init__()
        self.min_elements = min_elements
        self.preferred = preferred
        self.shared = shared
        self.plan: SharePlan | None = None

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        """Analyses ``model`` and applies the plan in place."""
        analysis = run_analysis(
            model, self.min_elements, preferred=self.preferred, shared=self.shared
        )
        self.plan = analysis.plan
        modified = False
        for node, idx, rewrite, canonical, view in _planned_rewrites(analysis.groups):
            _rewrite(node, idx, rewrite, canonical, view)
            modified = True
        _remove_dead_members(analysis.groups)
        modified |= _place_canonicals(model, analysis.groups)
        nodes = ir.traversal.RecursiveGraphIterator(model.graph)
        if modified and any(n.domain == DOMAIN for n in nodes):
            model.opset_imports.setdefault(DOMAIN, OPSET_VERSION)
        logger.info(
            "ShareWeightsPass: %d groups, %d bytes freed",
            len(analysis.groups),
            analysis.plan.freed_bytes,
        )
        return ir.passes.PassResult(model, modified=modified)
