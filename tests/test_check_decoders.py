"""``check`` inputs for decoders: symbolic dims, past + new tokens, KV geometry, masks."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from onnx import TensorProto
from onnx import helper as h
from onnx import numpy_helper as nh

from icl_onnx.check.dims import DEFAULT_PAST, DEFAULT_SEQUENCE, DimResolver, cache_geometry
from icl_onnx.check.inputs import describe_inputs, make_inputs
from icl_onnx.check.model_info import read_model_info
from icl_onnx.cli._check_options import parse_ranges
from icl_onnx.errors import IclUserError

V, HEADS, HEAD = 50, 2, 4


def test_val_range_takes_both_forms():
    assert parse_ranges(["attention_mask:1,1", "ids:[0, 9]", "-2,2.5"]) == {
        "attention_mask": (1.0, 1.0),
        "ids": (0.0, 9.0),
        None: (-2.0, 2.5),
    }
    for bad in ["ids:0..5", "ids:[0,5", "ids:5,0"]:
        with pytest.raises(IclUserError):
            parse_ranges([bad])


def test_dims_resolve_once_and_expressions_from_their_parts():
    symbols = ["batch_size", "sequence_length", "past_sequence_length + sequence_length"]
    resolver = DimResolver({}, symbols)
    assert resolver.value("past_sequence_length + sequence_length") == DEFAULT_PAST + (
        DEFAULT_SEQUENCE
    )
    assert resolver.value("batch_size") == 1
    fixed = DimResolver({"sequence_length": 3, "past_sequence_length": 5}, symbols)
    assert fixed.value("past_sequence_length + sequence_length") == 8
    assert fixed.value("total_sequence_length") == 8  # GenAI's name for the same
    assert fixed.value("encoder_sequence_length / 2") == DEFAULT_SEQUENCE // 2


def _decoder(kv_dims) -> onnx.ModelProto:
    """A decoder-shaped graph: ids index a table; the mask and past KV are added in."""
    past = ["batch_size", *kv_dims]
    inputs = [
        h.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch_size", "sequence_length"]),
        h.make_tensor_value_info(
            "attention_mask",
            TensorProto.INT64,
            ["batch_size", "past_sequence_length + sequence_length"],
        ),
        h.make_tensor_value_info(
            "position_ids", TensorProto.INT64, ["batch_size", "sequence_length"]
        ),
        h.make_tensor_value_info("past_key_values.0.key", TensorProto.FLOAT, past),
    ]
    nodes = [
        h.make_node("Gather", ["emb", "input_ids"], ["e"]),
        h.make_node("ReduceSum", ["past_key_values.0.key"], ["s"], keepdims=0),
        h.make_node("Cast", ["attention_mask"], ["mf"], to=TensorProto.FLOAT),
        h.make_node("ReduceSum", ["mf"], ["ms"], keepdims=0),
        h.make_node("Add", ["s", "ms"], ["t"]),
        h.make_node("Add", ["e", "t"], ["logits"]),
    ]
    emb = np.random.default_rng(0).standard_normal((V, 8)).astype(np.float32)
    graph = h.make_graph(
        nodes,
        "decoder",
        inputs,
        [h.make_tensor_value_info("logits", TensorProto.FLOAT, None)],
        [nh.from_array(emb, "emb")],
    )
    return h.make_model(graph, opset_imports=[h.make_opsetid("", 18)])


def test_decoder_inputs_have_a_past_a_full_mask_and_positions_after_it(tmp_path):
    onnx.save(_decoder([HEADS, "past_sequence_length", HEAD]), str(tmp_path / "m.onnx"))
    (feed,) = make_inputs(read_model_info(tmp_path / "m.onnx"))
    assert feed["input_ids"].shape == (1, DEFAULT_SEQUENCE)
    assert feed["input_ids"].min() >= 0 and feed["input_ids"].max() < V
    assert feed["attention_mask"].shape == (1, DEFAULT_PAST + DEFAULT_SEQUENCE)
    assert (feed["attention_mask"] == 1).all()
    expected = np.arange(DEFAULT_PAST, DEFAULT_PAST + DEFAULT_SEQUENCE)[None]
    np.testing.assert_array_equal(feed["position_ids"], expected)
    assert feed["past_key_values.0.key"].shape == (1, HEADS, DEFAULT_PAST, HEAD)


@pytest.mark.parametrize(
    ("name", "config"),
    [
        ("genai_config.json", {"model": {"decoder": {"num_key_value_heads": 3, "head_size": 5}}}),
        ("config.json", {"num_attention_heads": 6, "num_key_value_heads": 3, "hidden_size": 30}),
        ("config.json", {"n_head": 3, "n_embd": 15}),
    ],
)
def test_symbolic_kv_dims_come_from_the_config_beside_the_model(tmp_path, name, config):
    onnx.save(_decoder(["heads", "past_sequence_length", "head_dim"]), str(tmp_path / "m.onnx"))
    (tmp_path / name).write_text(json.dumps(config))
    geometry = cache_geometry(tmp_path / "m.onnx")
    assert (geometry.heads, geometry.head_size) == (3, 5)
    (feed,) = make_inputs(read_model_info(tmp_path / "m.onnx"))
    assert feed["past_key_values.0.key"].shape == (1, 3, DEFAULT_PAST, 5)


def test_user_shapes_and_ranges_win(tmp_path):
    onnx.save(_decoder([HEADS, "past_sequence_length", HEAD]), str(tmp_path / "m.onnx"))
    info = read_model_info(tmp_path / "m.onnx")
    (feed,) = make_inputs(
        info,
        input_shapes={"past_key_values.0.key": [2, HEADS, 0, HEAD], "input_ids": [2, 1]},
        val_ranges={"attention_mask": (0, 1)},
    )
    assert feed["attention_mask"].shape == (2, 1)  # 0 past + 1 new
    np.testing.assert_array_equal(feed["position_ids"], np.maximum(
        np.cumsum(feed["attention_mask"], -1) - 1, 0
    ))  # fmt: skip


def test_the_report_names_each_input_as_it_was_made(tmp_path):
    """A float mask is made of ones and reported so; bool positions are random and reported so."""
    model = _decoder([HEADS, "past_sequence_length", HEAD])
    for value in model.graph.input:
        if value.name == "attention_mask":
            value.type.tensor_type.elem_type = TensorProto.FLOAT
        if value.name == "position_ids":
            value.type.tensor_type.elem_type = TensorProto.BOOL
    model.graph.node[2].CopyFrom(h.make_node("Identity", ["attention_mask"], ["mf"]))
    onnx.save(model, str(tmp_path / "m.onnx"))
    info = read_model_info(tmp_path / "m.onnx")
    sets = make_inputs(info)
    assert (sets[0]["attention_mask"] == 1).all()
    report = describe_inputs(info, sets, None, loaded=False)
    assert report["attention_mask"]["source"] == "all ones"
    assert report["attention_mask"]["range"] == [1.0, 1.0]
    assert report["position_ids"]["source"] == "random"
    assert report["input_ids"]["source"] == "token ids"
