"""ONNX schemas of the ICL operators, built from their spec (``icl_onnx.opspec``).

``register()`` makes ``onnx.checker`` and ONNX shape inference accept models with ICL nodes.
Nothing is registered on import: the passes that write ICL nodes call ``register()`` when they
run, and so may any caller that checks or infers a model built by hand.
"""

from __future__ import annotations

import onnx
from onnx.defs import OpSchema

from icl_onnx.opspec import SPECS, OpSpec, Param, TensorInfo
from icl_onnx.views import Attribute

__all__ = ["register"]


def _attribute(a: Attribute) -> OpSchema.Attribute:
    if a.required:
        kind = OpSchema.AttrType.FLOAT if isinstance(a.default, float) else OpSchema.AttrType.INT
        return OpSchema.Attribute(a.name, kind, a.doc, required=True)
    return OpSchema.Attribute(a.name, onnx.helper.make_attribute(a.name, a.default), a.doc)


def _parameter(p: Param) -> OpSchema.FormalParameter:
    option = OpSchema.FormalParameterOption
    return OpSchema.FormalParameter(
        p.name, p.type, p.doc, param_option=option.Optional if p.optional else option.Single
    )


def _tensor_type(name: str) -> str:
    return f"tensor({name})"


def _info(t: onnx.TypeProto | None) -> TensorInfo | None:
    if t is None or not t.HasField("tensor_type"):
        return None
    tensor = t.tensor_type
    dims = None
    if tensor.HasField("shape"):
        dims = [
            d.dim_value if d.HasField("dim_value") else (d.dim_param or None)
            for d in tensor.shape.dim
        ]
    return TensorInfo(tensor.elem_type, dims)


def _inference(op: OpSpec):
    names = [a.name for a in op.attributes]

    def infer(ctx: onnx.shape_inference.InferenceContext) -> None:
        inputs = [
            _info(ctx.get_input_type(i)) if i < ctx.get_num_inputs() else None
            for i in range(len(op.inputs))
        ]
        attrs = {}
        for name in names:
            proto = ctx.get_attribute(name)
            if proto is not None:
                attrs[name] = onnx.helper.get_attribute_value(proto)
        elem_type, dims = op.infer(inputs, attrs)
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

    return infer


def _schema(op: OpSpec) -> OpSchema:
    schema = OpSchema(
        op.name,
        op.domain,
        op.version,
        doc=f"{op.doc} (docs/operators.md)",
        inputs=[_parameter(p) for p in op.inputs],
        outputs=[_parameter(p) for p in op.outputs],
        type_constraints=[(t.name, [_tensor_type(n) for n in t.types], t.doc) for t in op.types],
        attributes=[_attribute(a) for a in op.attributes],
    )
    schema.set_type_and_shape_inference_function(_inference(op))
    return schema


def register() -> None:
    """Registers the ICL schemas with onnx (idempotent)."""
    for op in SPECS:
        if not onnx.defs.has(op.name, op.domain):
            onnx.defs.register_schema(_schema(op))
