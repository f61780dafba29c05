"""External data by default above 16 MiB, page-aligned, and what ONNX Runtime makes of it."""

from __future__ import annotations

import json
import subprocess
import sys
import warnings

import numpy as np
import onnx
import onnx_ir as ir
import pytest
from onnx import TensorProto
from onnx import helper as h
from onnx import numpy_helper as nh

from icl_onnx import create_session
from icl_onnx._inline_weights import inline_weight_bytes
from icl_onnx.cli.main import main
from icl_onnx.model_io import EXTERNAL_DATA_AUTO_BYTES, PAGE_BYTES, save_model
from icl_onnx.pipeline import optimize_file

RNG = np.random.default_rng(0)


def matmul_proto(rows: int, cols: int) -> tuple[onnx.ModelProto, dict[str, np.ndarray]]:
    """``MatMul(x, W) + sum(b)``; ``b`` (1028 bytes) is written first, so W's offset is padded."""
    weights = {
        "b": RNG.standard_normal(257).astype(np.float32),
        "W": RNG.standard_normal((rows, cols)).astype(np.float32),
    }
    graph = h.make_graph(
        [
            h.make_node("MatMul", ["x", "W"], ["y"]),
            h.make_node("ReduceSum", ["b", "axes"], ["s"]),
            h.make_node("Add", ["y", "s"], ["out"]),
        ],
        "matmul",
        [h.make_tensor_value_info("x", TensorProto.FLOAT, ["n", rows])],
        [h.make_tensor_value_info("out", TensorProto.FLOAT, ["n", cols])],
        [
            nh.from_array(weights["b"], "b"),
            nh.from_array(weights["W"], "W"),
            nh.from_array(np.array([0], np.int64), "axes"),
        ],
    )
    return h.make_model(graph, opset_imports=[h.make_opsetid("", 18)]), weights


def external_entries(path) -> dict[str, dict[str, str]]:
    model = onnx.load(str(path), load_external_data=False)
    return {
        t.name: {e.key: e.value for e in t.external_data}
        for t in model.graph.initializer
        if t.data_location == TensorProto.EXTERNAL
    }


def test_model_over_the_threshold_is_saved_with_page_aligned_external_data(tmp_path):
    rows = 1024
    cols = EXTERNAL_DATA_AUTO_BYTES // (4 * rows) + 16  # just over 16 MiB
    proto, weights = matmul_proto(rows, cols)
    out = tmp_path / "m.onnx"
    files = save_model(ir.from_proto(proto), out)
    assert files == [out, tmp_path / "m.onnx.data"]
    entries = external_entries(out)
    assert set(entries) == {"b", "W"}  # both over the 1 KiB inline limit
    assert entries["W"]["location"] == "m.onnx.data"
    assert int(entries["W"]["offset"]) % PAGE_BYTES == 0
    assert int(entries["W"]["offset"]) > 0  # b comes first: W's offset was padded
    assert out.stat().st_size < 64 * 1024
    x = RNG.standard_normal((3, rows)).astype(np.float32)
    (got,) = create_session(out).run(None, {"x": x})
    np.testing.assert_allclose(got, x @ weights["W"] + weights["b"].sum(), rtol=1e-4, atol=1e-3)


def test_model_under_the_threshold_stays_one_file(tmp_path):
    proto, _ = matmul_proto(64, 64)
    out = tmp_path / "small.onnx"
    assert save_model(ir.from_proto(proto), out) == [out]
    assert external_entries(out) == {}


def test_no_external_data_keeps_a_large_model_in_one_file(tmp_path, capsys):
    rows = 1024
    proto, _ = matmul_proto(rows, EXTERNAL_DATA_AUTO_BYTES // (4 * rows) + 16)
    src = tmp_path / "big.onnx"
    onnx.save(proto, src)
    assert main(["optimize", str(src), "-o", str(tmp_path / "one.onnx"), "--no-external-data"]) == 0
    assert main(["optimize", str(src), "-o", str(tmp_path / "two.onnx")]) == 0
    assert external_entries(tmp_path / "one.onnx") == {}
    assert not (tmp_path / "one.onnx.data").exists()
    assert set(external_entries(tmp_path / "two.onnx")) == {"b", "W"}


def test_inline_weight_bytes_counts_inline_values_only(tmp_path):
    proto, weights = matmul_proto(256, 512)
    inline = tmp_path / "inline.onnx"
    onnx.save(proto, inline)
    expected = sum(w.nbytes for w in weights.values()) + 8  # and the int64 axes
    assert inline_weight_bytes(inline) == expected
    external = tmp_path / "external.onnx"
    save_model(ir.from_proto(proto), external, external_data=True)
    assert inline_weight_bytes(external) == 8  # only the tensors under 1 KiB stay inline


def test_sharing_an_inline_model_warns_that_it_needs_external_data(tmp_path):
    proto, _ = matmul_proto(1024, 512)  # 2 MiB inline
    inline = tmp_path / "inline.onnx"
    onnx.save(proto, inline)
    with pytest.warns(UserWarning, match="external data"):
        create_session(inline, share_across_processes=True)
    with pytest.warns(UserWarning, match="serialized model"):
        create_session(proto.SerializeToString(), share_across_processes=True)
    external = tmp_path / "external.onnx"
    save_model(ir.from_proto(proto), external, external_data=True)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        create_session(external, share_across_processes=True)
        create_session(inline)  # no sharing asked: no warning
    # (the MatMul's W draws the packing warning, tests/test_read_in_place.py)
    assert not [w for w in caught if "external data" in str(w.message)]


_MEASURE = """
import json, sys
import numpy as np
import icl_onnx

def rss():
    with open("/proc/self/status") as f:
        fields = dict(line.split(":", 1) for line in f)
    return {k: int(fields[k].split()[0]) * 1024 for k in ("RssAnon", "RssFile")}

path, shared, name, width = sys.argv[1], sys.argv[2] == "1", sys.argv[3], int(sys.argv[4])
opener = sys.argv[5]
icl_onnx.session_options()  # onnxruntime and the op library are loaded before the baseline
SessionGroup = icl_onnx.SessionGroup
before = rss()
if opener == "SessionGroup":
    session = SessionGroup([path], share_across_processes=shared).sessions[0]
else:
    session = icl_onnx.create_session(path, share_across_processes=shared)
feed = np.arange(4, dtype=np.int64)[None] if name == "ids" else np.ones((4, width), np.float32)
session.run(None, {name: feed})
after = rss()
print(json.dumps({k: after[k] - before[k] for k in after}))
"""


def added_memory(
    path, *, shared: bool, input_name: str, width: int = 0, opener: str = "create_session"
) -> dict[str, int]:
    """RssAnon and RssFile added by opening ``path`` and running it once, in a fresh process."""
    args = [str(path), "1" if shared else "0", input_name, str(width), opener]
    proc = subprocess.run(
        [sys.executable, "-c", _MEASURE, *args], capture_output=True, text=True, check=True
    )
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("opener", ["create_session", "SessionGroup"])
@pytest.mark.parametrize("shared", [False, True], ids=["default", "shared"])
def test_shared_session_keeps_no_private_copy_of_a_prepackable_weight(tmp_path, shared, opener):
    rows, cols = 1024, 8192  # W: 32 MiB
    proto, _ = matmul_proto(rows, cols)
    path = tmp_path / "m.onnx"
    save_model(ir.from_proto(proto), path)
    added = added_memory(path, shared=shared, input_name="x", width=rows, opener=opener)
    weight = rows * cols * 4
    if shared:  # the weight is read in place from the mapped file: no anonymous copy
        assert added["RssAnon"] < weight // 4, added
        assert added["RssFile"] > weight * 9 // 10, added
    else:  # ORT prepacks W into private memory (what the shared mode avoids)
        assert added["RssAnon"] > weight // 2, added


def test_shared_session_of_an_optimized_tied_model_reads_the_table_from_the_file(tmp_path):
    vocab, hidden = 8192, 1024  # the table: 32 MiB, stored once after optimize
    table = RNG.standard_normal((vocab, hidden)).astype(np.float32)
    graph = h.make_graph(
        [h.make_node("Gather", ["emb", "ids"], ["e"]), h.make_node("MatMul", ["e", "embT"], ["y"])],
        "tied",
        [h.make_tensor_value_info("ids", TensorProto.INT64, ["b", "s"])],
        [h.make_tensor_value_info("y", TensorProto.FLOAT, ["b", "s", vocab])],
        [nh.from_array(table, "emb"), nh.from_array(np.ascontiguousarray(table.T), "embT")],
    )
    src, out = tmp_path / "tied.onnx", tmp_path / "tied.icl.onnx"
    onnx.save(h.make_model(graph, opset_imports=[h.make_opsetid("", 18)]), src)
    assert optimize_file(src, out).files == [out, tmp_path / "tied.icl.onnx.data"]
    added = added_memory(out, shared=True, input_name="ids")
    assert added["RssAnon"] < table.nbytes // 4, added
    assert added["RssFile"] > table.nbytes * 9 // 10, added  # the LM head read all of it


def test_check_shared_across_processes_reports_private_file_backed_and_pss(tmp_path, capsys):
    rows, cols = 1024, 8192  # W: 32 MiB
    proto, _ = matmul_proto(rows, cols)
    inline, external = tmp_path / "inline.onnx", tmp_path / "external.onnx"
    onnx.save(proto, inline)
    save_model(ir.from_proto(proto), external)
    args = ["check", str(inline), str(external), "--share-across-processes", "--pss", "--json"]
    assert main([*args, "--input-shape", "x:4x1024"]) == 0
    out, err = capsys.readouterr()
    assert f"note: {inline} holds 33.6 MB" in err and "needs external data" in err
    assert str(external) not in err
    memory = json.loads(out)["memory"]
    weight = rows * cols * 4
    original, optimized = memory["original"], memory["optimized"]
    assert original["shared_across_processes"] and optimized["shared_across_processes"]
    assert original["private_delta"] > weight // 2  # copied out of the protobuf
    assert optimized["private_delta"] < weight // 4  # read in place from the mapped file
    assert optimized["file_backed_delta"] > weight * 9 // 10
    assert optimized["pss_after_run"]["Pss_File"] > weight * 9 // 10
    assert optimized["pss_after_run"]["Pss"] >= optimized["pss_after_run"]["Pss_Anon"]
