"""Bad input through the CLI: one line naming the problem, exit 2, input untouched, no output.

Each case runs ``scan`` and ``optimize`` on a broken input (or ``optimize`` to a broken output)
and checks stderr is a single ``icl-onnx <command>: ...`` line without a traceback, the input
files keep their bytes, and the output folder holds nothing new (no staging folder left).
Unknown-domain nodes are not bad input: both commands succeed and leave those nodes alone.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import onnx
import onnx_ir as ir
import pytest
from builders import W, tied_model
from onnx import TensorProto
from onnx import helper as h
from onnx import numpy_helper as nh

import icl_onnx
from icl_onnx import model_io
from icl_onnx.cli.main import main
from icl_onnx.errors import IclUserError
from icl_onnx.testing.protobuf_wire import with_nested_if


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` (hidden staging folders included) with its bytes."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def run_fails(capsys, argv: list[str]) -> str:
    """Runs the CLI, asserts exit 2 with one stderr line and no traceback; returns the line."""
    code = main(argv)
    captured = capsys.readouterr()
    assert code == 2, captured
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert "Traceback" not in captured.err
    assert lines[0].startswith(f"icl-onnx {argv[0]}: ")
    return lines[0]


def assert_both_commands_fail(tmp_path: Path, capsys, src: Path, *expected: str) -> list[str]:
    """``scan`` and ``optimize`` on ``src`` fail cleanly; the folder is unchanged."""
    before = snapshot(tmp_path)
    messages = [
        run_fails(capsys, ["scan", str(src)]),
        run_fails(capsys, ["optimize", str(src), "-o", str(tmp_path / "out.onnx")]),
    ]
    for message in messages:
        for text in expected:
            assert text in message, message
    assert snapshot(tmp_path) == before  # input untouched, no output, no staging leftovers
    return messages


def external_model(tmp_path: Path) -> Path:
    src = tmp_path / "ext.onnx"
    ir.save(ir.from_proto(tied_model()), src, external_data="ext.onnx.data")
    return src


def test_truncated_file_is_reported(tmp_path, capsys):
    src = tmp_path / "m.onnx"
    data = tied_model().SerializeToString()
    src.write_bytes(data[: len(data) // 2])
    assert_both_commands_fail(tmp_path, capsys, src, "not a readable ONNX model", "truncated")


@pytest.mark.parametrize(
    "content", [b"hello, this is not a model\n", bytes(range(256)) * 4, b"\0" * 64]
)
def test_a_file_that_is_not_onnx_is_reported(tmp_path, capsys, content):
    src = tmp_path / "m.onnx"
    src.write_bytes(content)
    assert_both_commands_fail(tmp_path, capsys, src, str(src), "not a readable ONNX model")


def test_an_empty_file_is_reported_as_having_no_nodes(tmp_path, capsys):
    src = tmp_path / "m.onnx"
    src.write_bytes(b"")  # protobuf parses it as an empty ModelProto
    assert_both_commands_fail(tmp_path, capsys, src, "has no nodes")


def test_an_empty_graph_is_reported(tmp_path, capsys):
    src = tmp_path / "m.onnx"
    empty = h.make_graph([], "empty", [], [])
    onnx.save(h.make_model(empty, opset_imports=[h.make_opsetid("", 18)]), src)
    assert_both_commands_fail(tmp_path, capsys, src, "has no nodes", "empty graph")


def test_a_missing_input_is_reported(tmp_path, capsys):
    assert_both_commands_fail(tmp_path, capsys, tmp_path / "nope.onnx", "no such file")


def test_missing_external_data_is_reported(tmp_path, capsys):
    src = external_model(tmp_path)
    (tmp_path / "ext.onnx.data").unlink()
    assert_both_commands_fail(tmp_path, capsys, src, "ext.onnx.data is missing", "beside")


def test_short_external_data_is_reported(tmp_path, capsys):
    src = external_model(tmp_path)
    data = tmp_path / "ext.onnx.data"
    data.write_bytes(data.read_bytes()[:-100])
    assert_both_commands_fail(tmp_path, capsys, src, "shorter than the model says", "truncated")


def test_external_data_outside_the_model_folder_is_reported(tmp_path, capsys):
    inner = tmp_path / "inner"
    inner.mkdir()
    proto = onnx.load(external_model(tmp_path), load_external_data=False)
    for tensor in proto.graph.initializer:
        for entry in tensor.external_data:
            if entry.key == "location":
                entry.value = "../ext.onnx.data"
    src = inner / "m.onnx"
    onnx.save(proto, src)
    assert_both_commands_fail(tmp_path, capsys, src, "outside the model's folder")


def test_hard_linked_external_data_is_reported(tmp_path, capsys):
    src = external_model(tmp_path)
    os.link(tmp_path / "ext.onnx.data", tmp_path / "other.data")
    assert_both_commands_fail(tmp_path, capsys, src, "hard links", "plain copy")


def test_output_under_a_file_is_reported(tmp_path, capsys):
    src = tmp_path / "m.onnx"
    onnx.save(tied_model(), src)
    (tmp_path / "plain").write_text("x")
    before = snapshot(tmp_path)
    line = run_fails(capsys, ["optimize", str(src), "-o", str(tmp_path / "plain" / "o.onnx")])
    assert "does not exist" in line
    assert snapshot(tmp_path) == before


def test_output_that_is_a_folder_is_reported(tmp_path, capsys):
    src = tmp_path / "m.onnx"
    onnx.save(tied_model(), src)
    before = snapshot(tmp_path)
    line = run_fails(capsys, ["optimize", str(src), "-o", str(tmp_path)])
    assert "is a folder" in line
    assert snapshot(tmp_path) == before


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores folder permissions")
def test_read_only_output_folder_is_reported(tmp_path, capsys):
    src = tmp_path / "m.onnx"
    onnx.save(tied_model(), src)
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        line = run_fails(capsys, ["optimize", str(src), "-o", str(locked / "o.onnx")])
        assert "not writable" in line
        assert list(locked.iterdir()) == []
    finally:
        locked.chmod(0o755)


@pytest.mark.skipif(not Path("/sys").is_dir(), reason="needs a read-only /sys")
def test_output_on_a_file_system_that_refuses_writes_is_reported(tmp_path, capsys):
    """sysfs refuses new files even for root, unlike a chmod-ed folder."""
    src = tmp_path / "m.onnx"
    onnx.save(tied_model(), src)
    before = snapshot(tmp_path)
    line = run_fails(capsys, ["optimize", str(src), "-o", "/sys/icl-out.onnx"])
    assert "/sys/icl-out.onnx" in line
    assert snapshot(tmp_path) == before
    assert not Path("/sys/icl-out.onnx").exists()


def test_a_failed_write_leaves_the_input_and_no_partial_output(tmp_path, capsys, monkeypatch):
    """The output is the input here: a write that fails half-way must not touch it."""
    src = external_model(tmp_path)
    before = snapshot(tmp_path)
    real_save = ir.save

    def failing_save(model, path, **kwargs):
        real_save(model, path, **kwargs)  # the staging folder now holds complete files
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(model_io.ir, "save", failing_save)
    line = run_fails(capsys, ["optimize", str(src), "-o", str(src)])
    assert "No space left on device" in line and str(src) in line
    assert snapshot(tmp_path) == before


def test_in_place_optimize_with_external_data_works(tmp_path, capsys):
    src = external_model(tmp_path)
    assert main(["optimize", str(src), "-o", str(src)]) == 0
    model = onnx.load(src)
    assert [i.name for i in model.graph.initializer] == ["emb"]
    assert (tmp_path / "ext.onnx.data").stat().st_size == W.nbytes
    np.testing.assert_array_equal(nh.to_array(model.graph.initializer[0]), W)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ext.onnx", "ext.onnx.data"]


def test_weights_past_the_protobuf_limit_without_external_data_are_refused(
    tmp_path, capsys, monkeypatch
):
    monkeypatch.setattr(model_io, "PROTOBUF_LIMIT_BYTES", W.nbytes // 2)
    src = tmp_path / "m.onnx"
    onnx.save(tied_model(), src)
    before = snapshot(tmp_path)
    argv = ["optimize", str(src), "-o", str(tmp_path / "o.onnx"), "--no-external-data"]
    line = run_fails(capsys, argv)
    assert "2 GiB limit" in line and "external data" in line
    assert snapshot(tmp_path) == before


def test_unknown_domain_nodes_keep_reading_the_tensor_they_read(tmp_path, capsys):
    """Not bad input: scan and optimize succeed; a custom op keeps its input tensor.

    The tensor the unknown op reads becomes the canonical one (no ICL op covers that
    consumer), and the Gather reads it through IclGather(transpose=1).
    """
    custom = h.make_node("Mystery", ["embT"], ["z"], domain="com.example")
    proto = tied_model(extra_nodes=[custom], extra_opsets=[h.make_opsetid("com.example", 1)])
    proto.graph.output.append(h.make_tensor_value_info("z", TensorProto.FLOAT, None))
    src = tmp_path / "m.onnx"
    onnx.save(proto, src)
    assert main(["scan", str(src), "--json"]) == 0
    assert "Mystery" in capsys.readouterr().out  # the uncovered consumer and why
    out = tmp_path / "o.onnx"
    assert main(["optimize", str(src), "-o", str(out)]) == 0
    model = onnx.load(out)
    assert [i.name for i in model.graph.initializer] == ["embT"]
    np.testing.assert_array_equal(nh.to_array(model.graph.initializer[0]), W.T)
    mystery = [n for n in model.graph.node if n.domain == "com.example"]
    assert [(n.op_type, list(n.input)) for n in mystery] == [("Mystery", ["embT"])]
    assert {o.domain: o.version for o in model.opset_import}["com.example"] == 1


def test_load_model_raises_the_user_error_for_library_callers(tmp_path):
    src = tmp_path / "m.onnx"
    src.write_bytes(b"not a model")
    with pytest.raises(IclUserError, match="not a readable ONNX model"):
        model_io.load_model(src)


def test_a_library_override_naming_no_file_is_an_error_not_a_fallback(monkeypatch, tmp_path):
    monkeypatch.setenv("ICL_ONNX_LIBRARY", str(tmp_path / "missing.so"))
    icl_onnx.library_path.cache_clear()
    try:
        with pytest.raises(icl_onnx.LibraryNotFoundError, match=r"missing\.so is not a file"):
            icl_onnx.library_path()
    finally:
        monkeypatch.undo()
        icl_onnx.library_path.cache_clear()


# --- hostile model files: every command refuses them in one line and writes nothing ----------


def _tamper_external(tmp_path: Path, **entries: int) -> Path:
    """The external-data model with external_data entries of tensor ``emb`` replaced."""
    src = external_model(tmp_path)
    proto = onnx.load(src, load_external_data=False)
    (emb,) = [t for t in proto.graph.initializer if t.name == "emb"]
    kept = [e for e in emb.external_data if e.key not in entries]
    del emb.external_data[:]
    emb.external_data.extend(kept)
    for key, value in entries.items():
        emb.external_data.add(key=key, value=str(value))
    onnx.save(proto, src)
    return src


def _tamper_inline(tmp_path: Path, dims=None, raw_cut: int | None = None) -> Path:
    proto = tied_model()
    emb = proto.graph.initializer[0]
    if dims is not None:
        emb.dims[:] = dims
    if raw_cut is not None:
        emb.raw_data = emb.raw_data[:raw_cut]
    src = tmp_path / "m.onnx"
    onnx.save(proto, src)
    return src


def _deep_if_model(tmp_path: Path, depth: int) -> Path:
    """The tied model with one more node: an If nesting If subgraphs ``depth`` deep."""
    src = tmp_path / "m.onnx"
    src.write_bytes(with_nested_if(tied_model().SerializeToString(), depth))
    return src


HOSTILE_FILES = {
    "negative dimension": (
        lambda tmp: _tamper_inline(tmp, dims=[-W.shape[0], W.shape[1]]),
        ["tensor emb has a negative or unknown dimension (shape [-64, 32])"],
    ),
    "absurd dimensions": (
        lambda tmp: _tamper_inline(tmp, dims=[1 << 40, 1 << 40]),
        [
            f"tensor emb holds {W.nbytes} bytes but its shape [1099511627776, 1099511627776] of "
            "FLOAT needs 4835703278458516698824704"
        ],
    ),  # fmt: skip
    "raw data shorter than the shape": (
        lambda tmp: _tamper_inline(tmp, raw_cut=100),
        [f"tensor emb holds 100 bytes but its shape [64, 32] of FLOAT needs {W.nbytes}"],
    ),
    "external length past the end of the file": (
        lambda tmp: _tamper_external(tmp, length=1 << 20),
        [
            f"tensor emb has 1048576 bytes of external data but its shape [64, 32] of FLOAT needs "
            f"{W.nbytes}"
        ],
    ),  # fmt: skip
    "external length past 2^64": (
        lambda tmp: _tamper_external(tmp, length=(1 << 64) + 5),
        ["tensor emb has 18446744073709551621 bytes of external data"],
    ),
    "external offset + length past 2^63": (
        lambda tmp: _tamper_external(tmp, offset=(1 << 63) - 8, length=W.nbytes),
        ["shorter than the model says", f"< {(1 << 63) - 8 + W.nbytes} bytes"],
    ),
    "If subgraphs nested 3000 deep": (
        lambda tmp: _deep_if_model(tmp, 3000),
        ["not a readable ONNX model", "MaxDepth"],
    ),
}


@pytest.mark.parametrize("case", HOSTILE_FILES)
def test_hostile_model_files_are_refused_by_every_command(tmp_path, capsys, case):
    build, expected = HOSTILE_FILES[case]
    src = build(tmp_path)
    before = snapshot(tmp_path)
    messages = [
        run_fails(capsys, ["scan", str(src)]),
        run_fails(capsys, ["optimize", str(src), "-o", str(tmp_path / "out.onnx")]),
        run_fails(capsys, ["check", str(src), str(src)]),
        run_fails(capsys, ["serve", str(src)]),  # refused before Ray is imported
    ]
    for message in messages:
        for text in expected:
            assert text in message, message
    assert snapshot(tmp_path) == before  # no output, no partial .data, input untouched


def test_the_tensor_checks_pass_every_well_formed_tensor(tmp_path):
    """Typed fields, float16 in int32_data, 4-bit packing, strings, external data: all load."""
    values = np.arange(6, dtype=np.float32).reshape(2, 3)
    tensors = [
        h.make_tensor("f", TensorProto.FLOAT, [2, 3], values.reshape(-1).tolist()),
        h.make_tensor("h", TensorProto.FLOAT16, [2, 3], values.astype(np.float16).reshape(-1)),
        h.make_tensor("i4", TensorProto.INT4, [5], [1, -2, 3, -4, 5]),
        h.make_tensor("s", TensorProto.STRING, [2], [b"a", b"b"]),
        h.make_tensor("e", TensorProto.FLOAT, [0, 3], []),
        nh.from_array(values, "raw"),
    ]
    nodes = [h.make_node("Identity", [t.name], [f"{t.name}_out"]) for t in tensors]
    graph = h.make_graph(
        nodes,
        "g",
        [],
        [h.make_tensor_value_info(f"{t.name}_out", t.data_type, None) for t in tensors],
        tensors,
    )
    src = tmp_path / "m.onnx"
    ir.save(ir.from_proto(h.make_model(graph)), src, external_data="m.onnx.data",
            size_threshold_bytes=16)  # fmt: skip
    model = model_io.load_model(src)
    assert sorted(model.graph.initializers) == ["e", "f", "h", "i4", "raw", "s"]
    model_io.check_model_file(src)
