"""The operator spec: per ICL operator its inputs, types, attributes, shape rule and reference.

One statement of each operator (docs/operators.md says what they compute). The ONNX schemas
(``icl_onnx.schemas``), the operator table of docs/operators.md (``markdown_table``, checked by
``tests/test_opspec.py``) and the test against the compiled library's registrations read it;
the view attributes come from ``icl_onnx.views``, the numpy references from
``icl_onnx.reference``. To add an optional input: append a ``Param(..., optional=True)`` to
``inputs``, a parameter in that place to the reference function, and the input to the C++
signature
(``custom_ops/common/op_signatures.h``) and the kernels.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from icl_onnx import reference
from icl_onnx.ops import DOMAIN, GATHER, GATHER_BLOCK_QUANTIZED, MATMUL, OPSET_VERSION
from icl_onnx.views import (
    DELTA_TRANSPOSE,
    OUTPUT_DTYPE,
    VIEW_ATTRIBUTES,
    Attribute,
    Dim,
    ViewAttrs,
)

__all__ = [
    "SPECS",
    "ELEMENT_TYPES",
    "OpSpec",
    "Param",
    "TensorInfo",
    "TypeConstraint",
    "markdown_table",
    "spec",
]

#: ONNX element types by name (``onnx.TensorProto`` values), the ones the operators take.
ELEMENT_TYPES: dict[str, int] = {
    "float": 1,
    "uint8": 2,
    "int32": 6,
    "int64": 7,
    "float16": 10,
    "bfloat16": 16,
}
_FLOATS = ("float", "float16", "bfloat16")
_INDICES = ("int32", "int64")


@dataclasses.dataclass(frozen=True)
class Param:
    """One input or output: its name, type constraint and meaning."""

    name: str
    type: str  # the name of a TypeConstraint of the op
    doc: str
    optional: bool = False


@dataclasses.dataclass(frozen=True)
class TypeConstraint:
    """A type variable: the element types it may take (names of ``ELEMENT_TYPES``)."""

    name: str
    types: tuple[str, ...]
    doc: str


@dataclasses.dataclass(frozen=True)
class TensorInfo:
    """What shape inference knows of an input: element type and dims (None: rank unknown)."""

    elem_type: int
    dims: list[Dim] | None


#: Shape rule: (the inputs' infos, None for an absent input; the node's attributes) ->
#: (Y's element type, Y's dims or None when unknown).
Infer = Callable[[Sequence[TensorInfo | None], Mapping[str, Any]], tuple[int, list[Dim] | None]]


@dataclasses.dataclass(frozen=True)
class OpSpec:
    """One ICL operator.

    Attributes:
        name: the op type (domain ``DOMAIN``, version ``OPSET_VERSION``).
        doc: one line: what it computes.
        inputs: its inputs in order; optional ones last or skippable by an empty name.
        outputs: its outputs.
        types: its type constraints (every ``Param.type`` names one).
        attributes: its attributes; ``required`` ones have no default.
        infer: the shape rule.
        reference: the numpy reference (``icl_onnx.reference``), called with the inputs in
            order (None for an absent optional one) and the attributes as keywords.
    """

    name: str
    doc: str
    inputs: tuple[Param, ...]
    outputs: tuple[Param, ...]
    types: tuple[TypeConstraint, ...]
    attributes: tuple[Attribute, ...]
    infer: Infer
    reference: Callable[..., Any]
    domain: str = DOMAIN
    version: int = OPSET_VERSION

    def constraint(self, name: str) -> TypeConstraint:
        """The type constraint called ``name``."""
        return next(t for t in self.types if t.name == name)

    @property
    def required_inputs(self) -> int:
        """How many inputs a node must give (the first optional one ends them)."""
        return next((i for i, p in enumerate(self.inputs) if p.optional), len(self.inputs))


def _view_dims(w: TensorInfo | None, attrs: Mapping[str, Any]) -> tuple[Dim, Dim] | None:
    """view(W)'s (rows, cols), or None when W's rank or the view is unknown or malformed."""
    if w is None or w.dims is None or len(w.dims) != 2:
        return None
    names = {a.name for a in VIEW_ATTRIBUTES}
    try:
        view = ViewAttrs.from_attrs({k: v for k, v in attrs.items() if k in names})
    except ValueError:
        return None  # malformed attributes: the kernels refuse the node at session creation
    return view.shape(w.dims)


def _infer_matmul(inputs, attrs):
    a, w = inputs[0], inputs[1]
    view = _view_dims(w, attrs)
    dims = None if a is None or a.dims is None or view is None else [*a.dims[:-1], view[1]]
    return (a.elem_type if a else 0), dims


def _infer_gather(inputs, attrs):
    w, indices = inputs[0], inputs[1]
    view = _view_dims(w, attrs)
    known = indices is not None and indices.dims is not None and view is not None
    dims = [*indices.dims, view[1]] if known else None  # type: ignore[union-attr,index]
    return attrs.get(OUTPUT_DTYPE.name, 0) or (w.elem_type if w else 0), dims


def _infer_gather_block_quantized(inputs, attrs):
    indices, scales = inputs[1], inputs[2]
    k = attrs.get("K")
    dims = None if indices is None or indices.dims is None or k is None else [*indices.dims, k]
    return (scales.elem_type if scales else 0), dims


def _factors() -> tuple[Param, Param]:
    return (
        Param("U", "TW", "Left factor of the low-rank term added to view(W).", optional=True),
        Param("V", "TW", "Right factor of the low-rank term.", optional=True),
    )


SPECS: tuple[OpSpec, ...] = (
    OpSpec(
        MATMUL,
        "Y = A @ (view(W) + U @ V) + bias, view(W) read through attributes.",
        inputs=(
            Param("A", "T", "Activations [..., K]."),
            Param("W", "TW", "Stored weight, 2-D."),
            Param("bias", "T", "Bias [N].", optional=True),
            *_factors(),
            Param(
                "variant_ids",
                "Tvar",
                "Per batch row, which stacked pair of factors it reads [B]; U, V then 3-D.",
                optional=True,
            ),
        ),
        outputs=(Param("Y", "T", "Result [..., N]."),),
        types=(
            TypeConstraint("T", _FLOATS, "Compute type: A, bias and Y."),
            TypeConstraint("TW", _FLOATS, "Storage type of W and of the factors."),
            TypeConstraint("Tvar", ("int64",), "Variant index type."),
        ),
        attributes=(*VIEW_ATTRIBUTES, DELTA_TRANSPOSE),
        infer=_infer_matmul,
        reference=reference.REFERENCES[MATMUL],
    ),
    OpSpec(
        GATHER,
        "Y = (view(W) + U @ V)[indices] along axis 0, view(W) read through attributes.",
        inputs=(
            Param("W", "TW", "Stored table, 2-D."),
            Param("indices", "Tind", "Row indices."),
            *_factors(),
        ),
        outputs=(Param("Y", "T", "Rows [indices.shape..., H]."),),
        types=(
            TypeConstraint("T", _FLOATS, "Output type (output_dtype; 0 means W's)."),
            TypeConstraint("TW", _FLOATS, "Storage type of W and of the factors."),
            TypeConstraint("Tind", _INDICES, "Index type."),
        ),
        attributes=(*VIEW_ATTRIBUTES, DELTA_TRANSPOSE, OUTPUT_DTYPE),
        infer=_infer_gather,
        reference=reference.REFERENCES[GATHER],
    ),
    OpSpec(
        GATHER_BLOCK_QUANTIZED,
        "Y = rows `indices` of a table stored in MatMulNBits' layout, dequantized.",
        inputs=(
            Param("B", "T1", "Quantized table [N, n_blocks, blob]."),
            Param("indices", "Tind", "Row indices."),
            Param("scales", "T", "One scale per block, N * n_blocks values."),
            Param("zero_points", "T1", "Packed zero points.", optional=True),
        ),
        outputs=(Param("Y", "T", "Rows [indices.shape..., K]."),),
        types=(
            TypeConstraint("T1", ("uint8",), "Packed storage."),
            TypeConstraint("T", _FLOATS, "Type of the scales and of Y."),
            TypeConstraint("Tind", _INDICES, "Index type."),
        ),
        attributes=(
            Attribute("K", 0, "Elements per row of Y.", required=True),
            Attribute("bits", 0, "Bits per element: 4 or 8.", required=True),
            Attribute("block_size", 0, "Elements per block (power of 2, >= 16).", required=True),
        ),
        infer=_infer_gather_block_quantized,
        reference=reference.REFERENCES[GATHER_BLOCK_QUANTIZED],
    ),
)


def spec(name: str) -> OpSpec:
    """The spec of the operator ``name``.

    Raises:
        KeyError: no ICL operator has that name.
    """
    for op in SPECS:
        if op.name == name:
            return op
    raise KeyError(name)


def markdown_table() -> str:
    """The operator table of docs/operators.md: inputs, outputs, types and attributes."""
    rows = [
        "| operator | inputs (`[ ]`: optional) | outputs | types | attributes (default) |",
        "|---|---|---|---|---|",
    ]
    for op in SPECS:
        inputs = ", ".join(f"`[{p.name}]`" if p.optional else f"`{p.name}`" for p in op.inputs)
        outputs = ", ".join(f"`{p.name}`" for p in op.outputs)
        types = "; ".join(
            f"`{t.name}`: {', '.join(t.types)} ({', '.join(_users(op, t.name))})" for t in op.types
        )
        attrs = ", ".join(
            f"`{a.name}` (required)" if a.required else f"`{a.name}` ({a.default})"
            for a in op.attributes
        )
        rows.append(f"| `{op.name}` | {inputs} | {outputs} | {types} | {attrs} |")
    return "\n".join(rows) + "\n"


def _users(op: OpSpec, type_name: str) -> list[str]:
    return [p.name for p in (*op.inputs, *op.outputs) if p.type == type_name]
