"""Progress: the tasks library code reports, and the CLI's display (stderr, terminals only)."""

from __future__ import annotations

import io
import subprocess
import sys

import numpy as np
import onnx
import onnx_ir as ir
import pytest
from builders import BIAS as B
from builders import W, tied_model

from icl_onnx import progress
from icl_onnx.cli import _progress as cli_progress
from icl_onnx.cli.main import build_parser, main
from icl_onnx.errors import IclUserError
from icl_onnx.model_io import load_model, save_model
from icl_onnx.pipeline import optimize_file, optimize_files, scan_files


def tied_proto():
    return tied_model(bias=True)


@pytest.fixture
def tied(tmp_path):
    path = tmp_path / "tied.onnx"
    onnx.save(tied_proto(), path)
    return path


class Recorder:
    """A reporter that keeps every task: description, total, unit, amounts, finished."""

    def __init__(self):
        self.tasks = []

    def start(self, description, total, unit):
        self.tasks.append(
            {"description": description, "total": total, "unit": unit, "amounts": [], "done": 0}
        )
        return len(self.tasks) - 1

    def advance(self, handle, amount):
        self.tasks[handle]["amounts"].append(amount)

    def finish(self, handle):
        self.tasks[handle]["done"] += 1

    def named(self, description):
        (task,) = [t for t in self.tasks if t["description"] == description]
        return task


class FakeTerminal(io.StringIO):
    """A stderr that says it is a terminal and keeps what is written to it."""

    def isatty(self):
        return True


@pytest.mark.parametrize("external_data", [True, False], ids=["external", "inline"])
def test_save_model_advances_writing_by_exactly_its_total(tmp_path, external_data):
    model = ir.from_proto(tied_proto())
    recorder = Recorder()
    with progress.reporting(recorder):
        save_model(model, tmp_path / "out.onnx", external_data=external_data)
    task = recorder.named("writing out.onnx")
    expected = 2 * W.nbytes if external_data else 2 * W.nbytes + B.nbytes
    assert task["total"] == expected and task["unit"] == "B"
    assert sum(task["amounts"]) == task["total"] and task["done"] == 1
    assert len(task["amounts"]) == (2 if external_data else 1)  # one per tensor written out
    if external_data:
        assert (tmp_path / "out.onnx.data").stat().st_size == task["total"]


def test_writing_task_finishes_when_the_write_fails(tmp_path, monkeypatch):
    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(onnx, "save", disk_full)  # ir.save writes the data file, then fails
    recorder = Recorder()
    with progress.reporting(recorder), pytest.raises(IclUserError, match="No space left"):
        save_model(ir.from_proto(tied_proto()), tmp_path / "out.onnx", external_data=True)
    task = recorder.named("writing out.onnx")
    assert sum(task["amounts"]) == task["total"] == 2 * W.nbytes
    assert task["done"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_loading_task_finishes_when_the_file_is_not_onnx(tmp_path):
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"\x00\xffnot onnx")
    recorder = Recorder()
    with progress.reporting(recorder), pytest.raises(IclUserError, match="not a readable"):
        load_model(junk)
    task = recorder.named("loading junk.onnx")
    assert task["total"] == junk.stat().st_size and task["amounts"] == [] and task["done"] == 1


def test_optimize_file_reports_loading_and_writing(tied, tmp_path):
    recorder = Recorder()
    with progress.reporting(recorder):
        result = optimize_file(tied, tmp_path / "out.onnx")
    assert result.modified
    loading = recorder.named("loading tied.onnx")
    assert sum(loading["amounts"]) == loading["total"] == tied.stat().st_size
    writing = recorder.named("writing out.onnx")
    assert writing["total"] == W.nbytes + B.nbytes  # the transposed copy is gone
    assert sum(writing["amounts"]) == writing["total"]
    assert all(t["done"] == 1 for t in recorder.tasks)


def test_optimize_files_counts_models_and_writes_the_shared_data_file(tmp_path):
    a, b = tmp_path / "a.onnx", tmp_path / "b.onnx"
    onnx.save(tied_proto(), a)
    onnx.save(tied_proto(), b)
    out = tmp_path / "out"
    out.mkdir()
    recorder = Recorder()
    with progress.reporting(recorder):
        result = optimize_files([a, b], out)
    for description in ("analysing models", "sharing across models"):
        task = recorder.named(description)
        assert (task["total"], task["unit"], task["amounts"]) == (2, "models", [1, 1])
    writing = recorder.named("writing shared_weights.data")
    # The writer walks every model's external tensors (a's and b's W: the bias stays inline);
    # the file holds each unique tensor once.
    assert writing["total"] == sum(external_bytes(f) for f in result.files) == 2 * W.nbytes
    assert sum(writing["amounts"]) == writing["total"]
    assert result.unique_bytes == W.nbytes  # b's weights are a's, stored once
    assert W.nbytes <= (out / "shared_weights.data").stat().st_size < W.nbytes + 4096
    assert all(t["done"] == 1 for t in recorder.tasks)


def external_bytes(path) -> int:
    """Bytes of the initializers an ONNX file keeps in external data, read from the file."""
    if path.suffix != ".onnx":
        return 0
    model = onnx.load(path, load_external_data=False)
    return sum(
        int(np.prod(t.dims, dtype=np.int64))
        * onnx.helper.tensor_dtype_to_np_dtype(t.data_type).itemsize
        for t in model.graph.initializer
        if t.data_location == onnx.TensorProto.EXTERNAL
    )


def test_scan_files_counts_models(tmp_path):
    a, b = tmp_path / "a.onnx", tmp_path / "b.onnx"
    onnx.save(tied_proto(), a)
    onnx.save(tied_proto(), b)
    recorder = Recorder()
    with progress.reporting(recorder):
        scan_files([a, b])
    task = recorder.named("analysing models")
    assert task["amounts"] == [1, 1] and task["total"] == 2 and task["done"] == 1


def test_without_a_reporter_nothing_is_reported_or_printed(tied, tmp_path, capsys):
    recorder = Recorder()
    with progress.reporting(recorder), progress.reporting(None):
        optimize_file(tied, tmp_path / "out.onnx")
    assert recorder.tasks == []
    optimize_file(tied, tmp_path / "again.onnx")
    assert capsys.readouterr() == ("", "")


def test_quiet_and_non_terminal_stderr_print_the_same_as_before(tied, tmp_path, capsys):
    outputs = []
    for quiet in ([], ["--quiet"], ["-q"]):
        assert main(["optimize", str(tied), "-o", str(tmp_path / "o.onnx"), *quiet]) == 0
        outputs.append(capsys.readouterr())
    assert outputs[0].err == outputs[1].err == outputs[2].err == ""
    assert outputs[0].out == outputs[1].out == outputs[2].out and "wrote" in outputs[0].out


def test_progress_on_a_terminal_goes_to_stderr_only(tied, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("TERM", "xterm")
    shown = {}
    for flags in ([], ["--quiet"]):
        stderr = FakeTerminal()
        with monkeypatch.context() as m:
            m.setattr(sys, "stderr", stderr)
            assert main(["scan", str(tied), "--json", *flags]) == 0
        shown[bool(flags)] = (capsys.readouterr().out, stderr.getvalue())
    assert "loading tied.onnx" in shown[False][1]
    assert shown[True][1] == ""
    assert shown[False][0] == shown[True][0] and shown[False][0].startswith("{")


def test_console_script_with_piped_stderr_draws_nothing(tied):
    proc = subprocess.run(
        [sys.executable, "-m", "icl_onnx.cli.main", "scan", str(tied)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0 and proc.stderr == ""
    assert "embT" in proc.stdout and "loading" not in proc.stdout


@pytest.mark.parametrize(
    "argv",
    [
        ["scan", "m.onnx"],
        ["optimize", "m.onnx", "-o", "o.onnx"],
        ["check", "a.onnx", "b.onnx"],
        ["export", "folder", "-o", "o.onnx"],
    ],
    ids=lambda argv: argv[0],
)
def test_every_long_command_takes_quiet(argv):
    parser = build_parser()
    assert parser.parse_args([*argv, "-q"]).quiet and parser.parse_args([*argv, "--quiet"]).quiet
    assert not parser.parse_args(argv).quiet


class NotATerminal(io.StringIO):
    def isatty(self):
        return False


def test_make_reporter_is_none_when_quiet_or_stderr_is_not_a_terminal(monkeypatch):
    monkeypatch.setattr(sys, "stderr", NotATerminal())
    assert cli_progress.make_reporter(quiet=False) is None
    monkeypatch.setattr(sys, "stderr", FakeTerminal())
    assert cli_progress.make_reporter(quiet=True) is None
    assert sys.stderr.getvalue() == ""


def test_make_reporter_draws_tasks_on_a_terminal_stderr(monkeypatch):
    monkeypatch.setenv("TERM", "xterm")
    stderr = FakeTerminal()
    monkeypatch.setattr(sys, "stderr", stderr)
    reporter = cli_progress.make_reporter(quiet=False)
    assert isinstance(reporter, cli_progress.RichReporter)
    with progress.reporting(reporter):
        with progress.task("writing big.onnx", 3_000_000) as advance:
            advance(1_000_000)
            with progress.task("analysing models", 3, unit="models") as count:
                count(1)
        with progress.task("writing again.onnx", 10) as advance:  # the display restarts
            advance(10)
    drawn = stderr.getvalue()
    assert "writing big.onnx" in drawn and "/ 3.0 MB" in drawn
    assert "analysing models" in drawn and "/ 3 models" in drawn
    assert "writing again.onnx" in drawn and "/ 10 B" in drawn
