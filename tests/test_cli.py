"""The scan and optimize commands: output, files written, exit codes and messages."""

from __future__ import annotations

import json
import subprocess
import sys

import onnx
import onnx_ir as ir
import pytest
from builders import W, tied_model
from onnx import TensorProto

from icl_onnx.cli.main import main


@pytest.fixture
def tied(tmp_path):
    path = tmp_path / "tied.onnx"
    onnx.save(tied_model(), path)
    return path


def test_scan_prints_the_transposed_copy(tied, capsys):
    assert main(["scan", str(tied)]) == 0
    out = capsys.readouterr().out
    assert "embT" in out and "transpose" in out and "MatMul→IclMatMul" in out


def test_scan_json_reports_groups_and_bytes(tied, capsys):
    assert main(["scan", str(tied), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    (group,) = data["groups"]
    assert group["canonical"] == "emb"
    assert group["members"][0]["kind"] == "transpose"
    (consumer,) = group["members"][0]["consumers"]
    # Consumer.rule_name is written under "rule"; the rule object itself is not serialised.
    assert (consumer["rule"], consumer["becomes"]) == ("matmul", "IclMatMul")
    assert "rule_name" not in consumer
    assert data["freed_bytes"] == W.nbytes


def test_optimize_writes_a_model_with_one_copy(tied, tmp_path, capsys):
    out = tmp_path / "out.onnx"
    assert main(["optimize", str(tied), "-o", str(out)]) == 0
    model = onnx.load(out)
    assert [i.name for i in model.graph.initializer] == ["emb"]
    assert [n.op_type for n in model.graph.node] == ["Gather", "IclMatMul"]
    assert "wrote" in capsys.readouterr().out
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.onnx", "tied.onnx"]  # no leftovers


def test_optimize_in_place_replaces_the_input_safely(tied):
    before = tied.read_bytes()
    assert main(["optimize", str(tied), "-o", str(tied)]) == 0
    after = onnx.load(tied)
    assert len(after.graph.initializer) == 1 and tied.read_bytes() != before
    assert main(["optimize", str(tied), "-o", str(tied)]) == 0  # nothing left: same model
    assert len(onnx.load(tied).graph.initializer) == 1


def test_optimize_keeps_external_data_external(tmp_path):
    src = tmp_path / "ext.onnx"
    ir.save(ir.from_proto(tied_model()), src, external_data="ext.onnx.data")
    out = tmp_path / "o.onnx"
    assert main(["optimize", str(src), "-o", str(out)]) == 0
    assert (tmp_path / "o.onnx.data").stat().st_size == W.nbytes
    assert out.stat().st_size < 4096
    model = onnx.load(out, load_external_data=False)
    assert model.graph.initializer[0].data_location == TensorProto.EXTERNAL


@pytest.mark.parametrize(
    ("make_input", "message"),
    [
        (lambda d: d / "missing.onnx", "no such file"),
        (
            lambda d: (d / "junk.onnx").write_bytes(b"\x00\xffnot onnx") and d / "junk.onnx",
            "not a readable ONNX model",
        ),
        (lambda d: d, "is not a model folder"),
    ],
    ids=["missing", "not-onnx", "folder"],
)
def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys, make_input, message):
    src = make_input(tmp_path)
    assert main(["optimize", str(src), "-o", str(tmp_path / "o.onnx")]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err
    assert not (tmp_path / "o.onnx").exists()


def test_missing_external_data_is_reported(tmp_path, capsys):
    src = tmp_path / "ext.onnx"
    ir.save(ir.from_proto(tied_model()), src, external_data="ext.onnx.data")
    (tmp_path / "ext.onnx.data").write_bytes(b"short")
    assert main(["scan", str(src)]) == 2
    assert "shorter than the model says" in capsys.readouterr().err


def test_unwritable_output_folder_is_exit_2_and_input_untouched(tied, tmp_path, capsys):
    before = tied.read_bytes()
    assert main(["optimize", str(tied), "-o", str(tmp_path / "nope" / "o.onnx")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert tied.read_bytes() == before


def test_failed_save_leaves_no_partial_file(tied, tmp_path, monkeypatch, capsys):
    def broken_save(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(ir, "save", broken_save)
    out = tmp_path / "o.onnx"
    assert main(["optimize", str(tied), "-o", str(out)]) == 2
    assert "No space left" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tied.onnx"]


def test_console_script_reports_errors_without_traceback(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "icl_onnx.cli.main", "scan", str(tmp_path / "nothing.onnx")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("icl-onnx scan:") and "Traceback" not in proc.stderr


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["optimize", "m.onnx", "-o", "o.onnx", "--min-elements", "abc"], "invalid int value"),
        (["scan"], "the following arguments are required: model"),
        (["export", "folder"], "the following arguments are required: -o/--output"),
        (["demo", "--arch", "gpt"], "invalid choice: 'gpt'"),
        (["check", "a.onnx", "--seed", "x"], "invalid int value"),
        (["frobnicate"], "invalid choice: 'frobnicate'"),
        ([], "the following arguments are required: COMMAND"),
    ],
)
def test_every_usage_error_is_one_line_on_stderr_and_exit_2(argv, message, capsys):
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.count("\n") == 1 and message in captured.err
    command = f"icl-onnx {argv[0]}" if argv and argv[0] != "frobnicate" else "icl-onnx"
    assert captured.err.startswith(f"{command}: ")
    assert captured.err.endswith(f"(see {command} --help)\n")


def test_a_library_argument_error_is_reported_under_the_commands_option(tied, capsys):
    # check_models raises about its argument `load_inputs_from`; the CLI names --load-inputs.
    assert main(["check", str(tied), str(tied), "--load-inputs", "gone.npz"]) == 2
    assert capsys.readouterr().err == "icl-onnx check: --load-inputs gone.npz: no such file\n"
