"""The operator spec (icl_onnx/opspec.py) against what reads it and what the library registers.

The library is checked through ONNX Runtime itself rather than by parsing
``custom_ops/common/op_signatures.h``: the header states input counts only, while the type
combinations come from the registration loops (``register_kernels.h``), and ORT's kernel
lookup is the one judge of what a model may hold. So every type combination the spec allows
must open a CPU session, a type outside a constraint and an input count outside the spec's
must not.
"""

from __future__ import annotations

import itertools
import re
from pathlib import Path

import ml_dtypes
import numpy as np
import onnx
import pytest
from builders import IR_VERSION
from node_runner import run as run_node
from onnx import helper as h

import icl_onnx
from icl_onnx import opspec, reference, schemas
from icl_onnx.ops import DOMAIN, GATHER, GATHER_BLOCK_QUANTIZED, MATMUL, OPSET_VERSION
from icl_onnx.opspec import ELEMENT_TYPES, SPECS, OpSpec

DOCS = Path(__file__).parents[1] / "docs" / "operators.md"

#: Attributes a session needs to accept a node (the required ones must be well formed).
VALID_ATTRS = {GATHER_BLOCK_QUANTIZED: {"K": 32, "bits": 4, "block_size": 32}}
#: A type outside every constraint of the spec, per constraint's first type.
OUTSIDE = {"float": "double", "int32": "int16", "int64": "int32", "uint8": "int8"}
ALL_TYPES = {**ELEMENT_TYPES, "double": 11, "int16": 5, "int8": 3}
NUMPY_TYPES = {
    "float": np.float32,
    "float16": np.float16,
    "bfloat16": ml_dtypes.bfloat16,
    "int32": np.int32,
    "int64": np.int64,
    "uint8": np.uint8,
}


def test_the_operator_table_in_the_docs_is_the_one_the_spec_generates():
    text = DOCS.read_text()
    begin, end = "<!-- operator table: begin -->\n", "<!-- operator table: end -->"
    committed = text.split(begin)[1].split(end)[0]
    assert committed == opspec.markdown_table(), "run: python docs/operator_table.py"


def test_every_param_names_a_constraint_of_its_op_and_optional_inputs_come_last():
    for op in SPECS:
        names = {t.name for t in op.types}
        assert {p.type for p in (*op.inputs, *op.outputs)} == names, op.name
        flags = [p.optional for p in op.inputs]
        assert flags == sorted(flags), f"{op.name}: a required input after an optional one"


def test_the_registered_schemas_are_the_spec():
    schemas.register()
    for op in SPECS:
        schema = onnx.defs.get_schema(op.name, OPSET_VERSION, DOMAIN)
        assert [i.name for i in schema.inputs] == [p.name for p in op.inputs]
        assert [i.name for i in schema.outputs] == [p.name for p in op.outputs]
        assert set(schema.attributes) == {a.name for a in op.attributes}
        assert schema.min_input == op.required_inputs and schema.max_input == len(op.inputs)


def test_the_spec_reference_is_the_public_reference():
    assert opspec.spec(MATMUL).reference is reference.icl_matmul
    assert opspec.spec(GATHER).reference is reference.icl_gather
    assert opspec.spec(GATHER_BLOCK_QUANTIZED).reference is reference.icl_gather_block_quantized


def _model(op: OpSpec, types: dict[str, str], n_inputs: int | None = None) -> bytes:
    """A one-node model of ``op``, every input a graph input of its constraint's type."""
    n_inputs = len(op.inputs) if n_inputs is None else n_inputs
    params = list(op.inputs)
    extra = max(0, n_inputs - len(params))
    names = [p.name for p in params[:n_inputs]] + [f"extra{i}" for i in range(extra)]
    kinds = [p.type for p in params[:n_inputs]] + [params[-1].type] * extra
    attrs = dict(VALID_ATTRS.get(op.name, {}))
    out_type = types[op.outputs[0].type]
    if op.name == GATHER and out_type != types["TW"]:
        attrs["output_dtype"] = ALL_TYPES[out_type]
    node = h.make_node(op.name, names, [op.outputs[0].name], domain=op.domain, **attrs)
    graph = h.make_graph(
        [node],
        "spec",
        [
            h.make_tensor_value_info(n, ALL_TYPES[types[k]], None)
            for n, k in zip(names, kinds, strict=True)
        ],
        [h.make_tensor_value_info(op.outputs[0].name, ALL_TYPES[out_type], None)],
    )
    opsets = [h.make_opsetid("", 18), h.make_opsetid(op.domain, op.version)]
    return h.make_model(graph, opset_imports=opsets, ir_version=IR_VERSION).SerializeToString()


def _combinations(op: OpSpec) -> list[dict[str, str]]:
    names = [t.name for t in op.types]
    return [
        dict(zip(names, c, strict=True)) for c in itertools.product(*(t.types for t in op.types))
    ]


def _feeds(op: OpSpec, types: dict[str, str]) -> dict[str, np.ndarray]:
    """Tiny valid values of every input of ``op`` in the constraint types ``types``."""
    rng = np.random.default_rng(3)
    shapes = {
        # every input given: U, V stacked per variant (two variants), one id per row of A
        MATMUL: {
            "A": (2, 4),
            "W": (4, 3),
            "bias": (3,),
            "U": (2, 4, 2),
            "V": (2, 2, 3),
            "variant_ids": (2,),
        },
        GATHER: {"W": (5, 3), "indices": (2,), "U": (5, 2), "V": (2, 3)},
        # K 32 in one block of 32 4-bit values (16 bytes) per row; one zero-point byte a row
        GATHER_BLOCK_QUANTIZED: {
            "B": (3, 1, 16),
            "indices": (2,),
            "scales": (3,),
            "zero_points": (3,),
        },
    }[op.name]
    feeds = {}
    for param in op.inputs:
        dtype = NUMPY_TYPES[types[param.type]]
        shape = shapes[param.name]
        if param.name == "indices":
            feeds[param.name] = np.array([shapes[op.inputs[0].name][0] - 1, 0], dtype)
        elif param.name == "variant_ids":
            feeds[param.name] = np.array([1, 0], dtype)
        elif dtype == np.uint8:
            feeds[param.name] = rng.integers(0, 256, shape, dtype=np.uint8)
        else:
            feeds[param.name] = rng.standard_normal(shape).astype(dtype)
    return feeds


@pytest.mark.parametrize("op", SPECS, ids=lambda op: op.name)
def test_the_library_accepts_every_type_combination_the_spec_allows(op, icl_library):
    """Each combination opens a session and runs once (the front end's run-time type checks),
    every input given, matching the reference."""
    for types in _combinations(op):
        feeds = _feeds(op, types)
        attrs = dict(VALID_ATTRS.get(op.name, {}))
        y_type = ALL_TYPES[types[op.outputs[0].type]]
        if op.name == GATHER and types["T"] != types["TW"]:
            attrs["output_dtype"] = y_type
        node = h.make_node(op.name, list(feeds), ["Y"], domain=op.domain, **attrs)
        expected = op.reference(*feeds.values(), **attrs)
        got = run_node(node, feeds, y_type, expected.shape)
        assert got.dtype == expected.dtype, types
        np.testing.assert_allclose(
            got.astype(np.float32), expected.astype(np.float32), rtol=2e-2, atol=2e-2
        )


@pytest.mark.parametrize("op", SPECS, ids=lambda op: op.name)
def test_the_library_refuses_an_input_type_outside_each_constraint(op, icl_library):
    allowed = _combinations(op)[0]
    inputs_use = {p.type for p in op.inputs}
    for constraint in op.types:
        if constraint.name not in inputs_use:
            continue  # a constraint of the output alone is chosen by an attribute
        outside = OUTSIDE[constraint.types[0]]
        with pytest.raises(Exception, match="(?i)implementation|type"):
            icl_onnx.create_session(
                _model(op, {**allowed, constraint.name: outside}),
                providers=["CPUExecutionProvider"],
            )


@pytest.mark.parametrize("op", SPECS, ids=lambda op: op.name)
def test_the_library_takes_the_spec_input_counts_and_no_other(op, icl_library):
    types = _combinations(op)[0]
    for count in range(op.required_inputs, len(op.inputs) + 1):
        icl_onnx.create_session(_model(op, types, count), providers=["CPUExecutionProvider"])
    for count in (op.required_inputs - 1, len(op.inputs) + 1):
        refusal = re.escape(
            f"has input size {count} not in range [min={op.required_inputs}, max={len(op.inputs)}]"
        )
        with pytest.raises(Exception, match=refusal):  # noqa: B017 - ORT's own exception classes
            icl_onnx.create_session(_model(op, types, count), providers=["CPUExecutionProvider"])


def test_shape_inference_follows_the_spec_rule():
    schemas.register()
    for op in SPECS:
        model = onnx.load_from_string(_model(op, _combinations(op)[0]))
        del model.graph.output[:]
        model.graph.output.append(onnx.ValueInfoProto(name="Y"))
        inferred = onnx.shape_inference.infer_shapes(model, strict_mode=True)
        (y,) = [v for v in inferred.graph.output if v.name == "Y"]
        assert y.type.tensor_type.elem_type == ALL_TYPES[_combinations(op)[0]["T"]], op.name
    a = opspec.TensorInfo(10, ["b", 8])
    w = opspec.TensorInfo(1, [16, 8])
    assert opspec.spec(MATMUL).infer([a, w], {"transpose": 1}) == (10, ["b", 16])
    gather = opspec.spec(GATHER)
    assert gather.infer([w, opspec.TensorInfo(7, [3])], {"slice_size": 4}) == (1, [3, 8])
