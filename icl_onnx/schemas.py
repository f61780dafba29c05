"""ONNX schemas of the ICL operators, so ``onnx.checker`` and shape inference accept them."""

from __future__ import annotations

import onnx
from onnx.defs import OpSchema

from icl_onnx.ops import DOMAIN, GATHER, GATHER_BLOCK_QUANTIZED, MATMUL, OPSET_VERSION
from icl_onnx.views import (
    DELTA_TRANSPOSE,
    OUTPUT_DTYPE,
    VIEW_ATTRIBUTES,
    VIEW_DEFAULTS,
    Attribute,
    ViewAttrs,
)

__all__ = ["register"]

_FLOATS = ["tensor(float)", "tensor(float16)", "tensor(bfloat16)"]
_ATTR = OpSchema.AttrType


def _attribute(a: Attribute) -> OpSchema.Attribute:
    return OpSchema.Attribute(a.name, onnx.helper.make_attribute(a.name, a.default), a.doc)


def _view_attributes() -> list[OpSchema.Attribute]:
    return [_attribute(a) for a in (*VIEW_ATTRIBUTES, DELTA_TRANSPOSE)]


def _factor_inputs() -> list[OpSchema.FormalParameter]:
    optional = OpSchema.FormalParameterOption.Optional
    return [
        OpSchema.FormalParameter(
            "U", "TW", "Left factor of the low-rank term added to view(W).", param_option=optional
        ),
        OpSchema.FormalParameter(
            "V", "TW", "Right factor of the low-rank term.", param_option=optional
        ),
    ]


def _schemas() -> list[OpSchema]:
    matmul = OpSchema(
        MATMUL,
        DOMAIN,
        OPSET_VERSION,
        doc="Y = A @ (view(W) + U @ V) + bias, view(W) read through attributes "
        "(docs/operators.md).",
        inputs=[
            OpSchema.FormalParameter("A", "T", "Activations [..., K]."),
            OpSchema.FormalParameter("W", "TW", "Stored weight, 2-D."),
            OpSchema.FormalParameter(
                "bias", "T", "Bias [N].", param_option=OpSchema.FormalParameterOption.Optional
            ),
            *_factor_inputs(),
        ],
        outputs=[OpSchema.FormalParameter("Y", "T", "Result [..., N].")],
        type_constraints=[("T", _FLOATS, "Compute type."), ("TW", _FLOATS, "Storage type of W.")],
        attributes=_view_attributes(),
    )
    gather = OpSchema(
        GATHER,
        DOMAIN,
        OPSET_VERSION,
        doc="Y = (view(W) + U @ V)[indices] along axis 0, view(W) read through attributes.",
        inputs=[
            OpSchema.FormalParameter("W", "TW", "Stored table, 2-D."),
            OpSchema.FormalParameter("indices", "Tind", "Row indices."),
            *_factor_inputs(),
        ],
        outputs=[OpSchema.FormalParameter("Y", "T", "Rows [indices.shape..., H].")],
        type_constraints=[
            ("T", _FLOATS, "Output type."),
            ("TW", _FLOATS, "Storage type of W."),
            ("Tind", ["tensor(int32)", "tensor(int64)"], "Index type."),
        ],
        attributes=[
            *_view_attributes(),
            _attribute(OUTPUT_DTYPE),
        ],
    )
    matmul.set_type_and_shape_inference_function(_infer_matmul)
    gather.set_type_and_shape_inference_function(_infer_gather)
    block_gather = _gather_block_quantized_schema()
    block_gather.set_type_and_shape_inference_function(_infer_gather_block_quantized)
    return [matmul, gather, block_gather]


def _gather_block_quantized_schema() -> OpSchema:
    optional = OpSchema.FormalParameterOption.Optional
    return OpSchema(
        GATHER_BLOCK_QUANTIZED,
        DOMAIN,
        OPSET_VERSION,
        doc="Y = rows `indices` of a table stored in MatMulNBits' layout, dequantized.",
        inputs=[
            OpSchema.FormalParameter("B", "T1", "Quantized table [N, n_blocks, blob], uint8."),
            OpSchema.FormalParameter("indices", "Tind", "Row indices."),
            OpSchema.FormalParameter("scales", "T", "One scale per block, N * n_blocks values."),
            OpSchema.FormalParameter(
                "zero_points", "T1", "Packed zero points, uint8.", param_option=optional
            ),
        ],
        outputs=[OpSchema.FormalParameter("Y", "T", "Rows [indices.shape..., K].")],
        type_constraints=[
            ("T1", ["tensor(uint8)"], "Packed storage."),
            ("T", _FLOATS, "Type of the scales and of Y."),
            ("Tind", ["tensor(int32)", "tensor(int64)"], "Index type."),
        ],
        attributes=[
            OpSchema.Attribute("K", _ATTR.INT, "Elements per row of Y.", required=True),
            OpSchema.Attribute("bits", _ATTR.INT, "Bits per element: 4 or 8.", required=True),
            OpSchema.Attribute(
                "block_size", _ATTR.INT, "Elements per block (power of 2, >= 16).", required=True
            ),
        ],
    )


def _attrs(ctx: onnx.shape_inference.InferenceContext, names) -> dict:
    """The node's attributes among ``names`` that it sets."""
    out = {}
    for name in names:
        proto = ctx.get_attribute(name)
        if proto is not None:
            out[name] = onnx.helper.get_attribute_value(proto)
    return out


def _view_dims(ctx, w_type: onnx.TypeProto) -> tuple[object, object] | None:
    """Returns the view's (rows, cols) dims, or None when W's rank or the view is unknown."""
    if not w_type.tensor_type.HasField("shape") or len(w_type.tensor_type.shape.dim) != 2:
        return None
    dims = [
        d.dim_value if d.HasField("dim_value") else (d.dim_param or None)
        for d in w_type.tensor_type.shape.dim
    ]
    try:
        view = ViewAttrs.from_attrs(_attrs(ctx, VIEW_DEFAULTS))
    except ValueError:
        return None  # malformed attributes: the kernels refuse the node at session creation
    return view.shape(dims)


def _set_output(ctx, elem_type: int, dims: list | None) -> None:
    out = onnx.TypeProto()
    out.tensor_type.elem_type = elem_type
    if dims is not None:
        shape = out.tensor_type.shape
        for d in dims:
            dim = shape.dim.add()
            if isinstance(d, int):
                dim.dim_value = d
            elif d:
                dim.dim_param = d
    ctx.set_output_type(0, out)


def _input_dims(t: onnx.TypeProto) -> list | None:
    if not t.tensor_type.HasField("shape"):
        return None
    return [
        d.dim_value if d.HasField("dim_value") else (d.dim_param or None)
        for d in t.tensor_type.shape.dim
    ]


def _infer_matmul(ctx) -> None:
    a_type, w_type = ctx.get_input_type(0), ctx.get_input_type(1)
    a_dims, view = _input_dims(a_type), _view_dims(ctx, w_type)
    dims = None if a_dims is None or view is None else [*a_dims[:-1], view[1]]
    _set_output(ctx, a_type.tensor_type.elem_type, dims)


def _infer_gather(ctx) -> None:
    w_type, idx_type = ctx.get_input_type(0), ctx.get_input_type(1)
    idx_dims, view = _input_dims(idx_type), _view_dims(ctx, w_type)
    dims = None if idx_dims is None or view is None else [*idx_dims, view[1]]
    output_dtype = _attrs(ctx, [OUTPUT_DTYPE.name]).get(OUTPUT_DTYPE.name, 0)
    elem = output_dtype or w_type.tensor_type.elem_type
    _set_output(ctx, elem, dims)


def _infer_gather_block_quantized(ctx) -> None:
    idx_dims = _input_dims(ctx.get_input_type(1))
    k = _attrs(ctx, ["K"]).get("K")
    dims = None if idx_dims is None or k is None else [*idx_dims, k]
    _set_output(ctx, ctx.get_input_type(2).tensor_type.elem_type, dims)


def register() -> None:
    """Registers the ICL schemas with onnx (idempotent)."""
    for schema in _schemas():
        if not onnx.defs.has(schema.name, schema.domain):
            onnx.defs.register_schema(schema)
