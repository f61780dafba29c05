"""Tests of ``icl-onnx check``: inputs, comparison, memory, providers and the CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import builders
import numpy as np
import onnx
import pytest
from builders import IR_VERSION, H, V, W
from onnx import TensorProto, helper, numpy_helper

from icl_onnx.check import check_models, memory_regressions
from icl_onnx.check.compare import Tolerance, compare_outputs
from icl_onnx.check.inputs import load_inputs, make_inputs, save_inputs
from icl_onnx.check.model_info import read_model_info
from icl_onnx.check.report import ModelMeasurement
from icl_onnx.cli import main as cli_main
from icl_onnx.errors import IclArgumentError, IclUserError

ROOT = Path(__file__).resolve().parents[1]
OPSETS = [helper.make_opsetid("", 18), helper.make_opsetid("ai.icl", 1)]


def _model(nodes, inputs, outputs, initializers) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "g", inputs, outputs, initializers)
    return helper.make_model(graph, opset_imports=OPSETS, ir_version=IR_VERSION)


def _ids(dtype=TensorProto.INT64, name="ids"):
    return helper.make_tensor_value_info(name, dtype, ["batch", "seq"])


def _outs(*names):
    shapes = {"logits": ["batch", "seq", V], "hidden": ["batch", "seq", H]}
    return [helper.make_tensor_value_info(n, TensorProto.FLOAT, shapes[n]) for n in names]


def tied_model(scale: float = 1.0) -> onnx.ModelProto:
    """Outputs ``y`` (the logits, through ``emb^T * scale``) and ``e`` (the embedding)."""
    return builders.tied_model(scale=scale, hidden_output=True)


def icl_model(scale: float = 1.0) -> onnx.ModelProto:
    """The optimized form of ``tied_model``: one ``emb`` read by IclGather and IclMatMul."""
    model = tied_model()
    gather, matmul = model.graph.node
    gather.CopyFrom(helper.make_node("IclGather", ["emb", "ids"], ["e"], domain="ai.icl"))
    matmul.CopyFrom(
        helper.make_node(
            "IclMatMul", ["e", "emb"], ["y"], domain="ai.icl", transpose=1, scale=scale
        )
    )
    del model.graph.initializer[1]  # embT
    model.opset_import.append(helper.make_opsetid("ai.icl", 1))
    return model


def _save(model: onnx.ModelProto, path: Path) -> str:
    onnx.save(model, path)
    return str(path)


@pytest.fixture
def tied(tmp_path) -> str:
    return _save(tied_model(), tmp_path / "tied.onnx")


@pytest.fixture
def scaled(tmp_path) -> str:
    return _save(tied_model(scale=1.01), tmp_path / "scaled.onnx")


@pytest.fixture
def cli():
    return cli_main.main


# --- inputs -------------------------------------------------------------------------------------


def test_inputs_feeding_a_gather_through_cast_get_valid_token_ids(tmp_path):
    model = _model(
        [
            helper.make_node("Unsqueeze", ["ids", "axes"], ["u"]),
            helper.make_node("Cast", ["u"], ["ids64"], to=TensorProto.INT64),
            helper.make_node("Gather", ["W", "ids64"], ["g"]),
            helper.make_node("Squeeze", ["g", "axes"], ["hidden"]),
        ],
        [_ids(TensorProto.INT32)],
        _outs("hidden"),
        [numpy_helper.from_array(W, "W"), numpy_helper.from_array(np.array([0], np.int64), "axes")],
    )
    info = read_model_info(_save(model, tmp_path / "m.onnx"))
    assert info.token_inputs == {"ids": V}
    (feed,) = make_inputs(info, input_shapes={"ids": [4, 256]})
    assert feed["ids"].dtype == np.int32 and feed["ids"].shape == (4, 256)
    assert feed["ids"].min() >= 0 and feed["ids"].max() == V - 1  # all ids valid, top one reached


def test_icl_gather_table_rows_follow_the_view(tmp_path):
    model = _model(
        [
            helper.make_node(
                "IclGather",
                ["W", "ids"],
                ["hidden"],
                domain="ai.icl",
                transpose=1,
                slice_axis=1,
                slice_start=2,
                slice_size=5,
            )
        ],
        [_ids()],
        _outs("hidden"),
        [numpy_helper.from_array(W, "W")],
    )
    info = read_model_info(_save(model, tmp_path / "m.onnx"))
    assert info.token_inputs == {"ids": 5}  # rows of transpose(W[:, 2:7])


def test_symbolic_dims_shared_between_inputs_take_one_value(tmp_path):
    model = _model(
        [
            helper.make_node("Gather", ["W", "ids"], ["hidden"]),
            helper.make_node("Identity", ["mask"], ["mask_out"]),
        ],
        [_ids(), _ids(TensorProto.INT64, "mask")],
        [*_outs("hidden"), helper.make_tensor_value_info("mask_out", TensorProto.INT64, None)],
        [numpy_helper.from_array(W, "W")],
    )
    info = read_model_info(_save(model, tmp_path / "m.onnx"))
    (feed,) = make_inputs(info, input_shapes={"ids": [3, 7]})
    assert feed["mask"].shape == (3, 7)
    assert set(np.unique(feed["mask"])) <= {0, 1}  # default integer range [0, 1]


def test_val_range_applies_by_name_and_as_default(tmp_path):
    model = _model(
        [helper.make_node("Add", ["x", "y"], ["hidden"])],
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, [2, 1000]) for n in ("x", "y")],
        [helper.make_tensor_value_info("hidden", TensorProto.FLOAT, [2, 1000])],
        [],
    )
    info = read_model_info(_save(model, tmp_path / "m.onnx"))
    (feed,) = make_inputs(info, val_ranges={"x": (5.0, 6.0), None: (-3.0, -2.0)})
    assert 5.0 <= feed["x"].min() and feed["x"].max() < 6.0
    assert -3.0 <= feed["y"].min() and feed["y"].max() < -2.0
    with pytest.raises(IclUserError, match="not an input"):
        make_inputs(info, val_ranges={"z": (0.0, 1.0)})


def test_iterations_give_distinct_seeded_sets_and_save_load_round_trips(tied, tmp_path):
    info = read_model_info(tied)
    sets = make_inputs(info, input_shapes={"ids": [2, 64]}, iterations=3, seed=7)
    assert len(sets) == 3 and not np.array_equal(sets[0]["ids"], sets[1]["ids"])
    again = make_inputs(info, input_shapes={"ids": [2, 64]}, iterations=3, seed=7)
    assert all(np.array_equal(a["ids"], b["ids"]) for a, b in zip(sets, again, strict=True))
    save_inputs(tmp_path / "in.npz", sets)
    loaded = load_inputs(tmp_path / "in.npz", info)
    assert all(np.array_equal(a["ids"], b["ids"]) for a, b in zip(sets, loaded, strict=True))
    np.savez(tmp_path / "wrong.npz", ids=np.zeros((1, 2), np.float32))
    with pytest.raises(IclUserError, match="float32, the model wants int64"):
        load_inputs(tmp_path / "wrong.npz", info)


# --- comparison ---------------------------------------------------------------------------------


def _compare(ref, got, **options):
    defaults = dict(atol=Tolerance(), rtol=Tolerance(), error_stat=Tolerance("elementwise"))
    defaults.update(options)
    return compare_outputs(["y"], [{"y": ref}], [{"y": got}], **defaults)[0]


def test_one_outlier_fails_elementwise_but_passes_the_mean_and_median():
    ref = np.ones(1000, np.float32)
    got = ref.copy()
    got[0] = 2.0
    assert not _compare(ref, got).passed
    assert _compare(ref, got, error_stat=Tolerance("mean"), atol=Tolerance(2e-3)).passed
    assert _compare(ref, got, error_stat=Tolerance("median")).passed
    assert not _compare(ref, got, error_stat=Tolerance("quantile"), quantile=1.0).passed
    assert _compare(ref, got, error_stat=Tolerance("quantile"), quantile=0.99).passed


def test_smallest_passing_tolerances_pass_and_anything_smaller_fails():
    rng = np.random.default_rng(1)
    ref = rng.standard_normal(500).astype(np.float32)
    got = ref + rng.normal(0, 1e-3, 500).astype(np.float32)
    r = _compare(ref, got)
    assert not r.passed and r.passing_atol > 0
    assert _compare(ref, got, atol=Tolerance(r.passing_atol)).passed
    assert not _compare(ref, got, atol=Tolerance(r.passing_atol * 0.99)).passed
    assert _compare(ref, got, rtol=Tolerance(r.passing_rtol)).passed
    assert not _compare(ref, got, rtol=Tolerance(r.passing_rtol * 0.99)).passed


def test_nan_fails_unless_allowed_and_then_must_sit_at_the_same_places():
    ref = np.array([1.0, np.nan, np.inf], np.float32)
    r = _compare(ref, ref.copy())
    assert not r.passed and r.nonfinite_original == 2 and "NaN/Inf" in r.reason
    assert _compare(ref, ref.copy(), allow_nonfinite=True).passed
    moved = np.array([np.nan, 1.0, np.inf], np.float32)
    assert "different places" in _compare(ref, moved, allow_nonfinite=True).reason


# --- end to end (each model in its own worker) --------------------------------------------------


def test_identical_models_pass_with_measurements_of_each(tied, tmp_path):
    copy = _save(tied_model(), tmp_path / "copy.onnx")
    report = check_models(tied, copy, input_shapes={"ids": [2, 16]}, iterations=2)
    assert report.passed and report.parity.outputs[0].max_abs == 0.0
    m = report.memory.original
    assert m.file_bytes == os.path.getsize(tied)
    assert m.ort_initializer_bytes == 2 * W.nbytes and m.ort_initializer_count == 2
    assert 0 < m.rss_baseline <= m.rss_after_create <= m.rss_after_run
    assert len(m.run_seconds) == 2 and m.create_seconds > 0 and m.gpu_delta is None
    assert m.node_providers == {"CPUExecutionProvider": 2}


def test_weight_scaled_by_1_01_exits_1_naming_only_the_affected_output(cli, tied, scaled, capsys):
    assert cli(["check", tied, scaled, "--input-shape", "ids:2x16"]) == 1
    out = capsys.readouterr().out
    assert "FAIL: outputs outside tolerance: y" in out
    assert "\n  e: " not in out  # the Gather output is untouched and passes


def test_per_output_rtol_decides_the_scaled_model(cli, tied, scaled, capsys):
    assert cli(["check", tied, scaled, "--rtol", "y:0.0101", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    logits = next(o for o in report["parity"]["outputs"] if o["name"] == "y")
    assert logits["rtol"] == 0.0101 and 0.0099 < logits["passing_rtol"] < 0.0101
    assert cli(["check", tied, scaled, "--rtol", "y:0.009", "--atol", "1e-6"]) == 1


def test_json_report_parses_with_inputs_outputs_and_memory(cli, tied, scaled, tmp_path, capsys):
    saved = tmp_path / "inputs.npz"
    rc = cli(
        [
            "check",
            tied,
            scaled,
            "--json",
            "--iterations",
            "3",
            "--input-shape",
            "ids:1x8",
            "--save-inputs",
            str(saved),
        ]
    )
    report = json.loads(capsys.readouterr().out)
    assert rc == 1 and report["passed"] is False
    assert report["parity"]["failed_outputs"] == ["y"]
    assert report["parity"]["iterations"] == 3
    assert report["parity"]["inputs"]["ids"] == {
        "dtype": "int64",
        "shape": [1, 8],
        "range": [0, V - 1],
        "source": "token ids",
    }
    assert len(report["memory"]["optimized"]["run_seconds"]) == 3
    with np.load(saved) as data:
        assert sorted(data.files) == ["0/ids", "1/ids", "2/ids"]
        first = data["0/ids"]
    rc = cli(["check", tied, scaled, "--json", "--load-inputs", str(saved)])
    again = json.loads(capsys.readouterr().out)
    assert again["parity"]["inputs"]["ids"]["source"] == "loaded"
    assert again["parity"]["iterations"] == 3 and first.shape == (1, 8)
    assert again["parity"]["outputs"][0]["max_abs"] == report["parity"]["outputs"][0]["max_abs"]


def test_nan_outputs_fail_the_cli_unless_allowed(cli, tmp_path, capsys):
    model = _model(
        [helper.make_node("Log", ["x"], ["y"])],
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [64])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [64])],
        [],
    )
    a, b = _save(model, tmp_path / "a.onnx"), _save(model, tmp_path / "b.onnx")
    assert cli(["check", a, b]) == 1  # default range [-1, 1): log of negatives is NaN
    assert "NaN/Inf" in capsys.readouterr().out
    assert cli(["check", a, b, "--allow-nonfinite"]) == 0
    assert cli(["check", a, b, "--val-range", "x:[0.5,2]"]) == 0


def _grown_model() -> onnx.ModelProto:
    """``tied_model`` plus a 512 kB table whose (zero) contribution ORT cannot fold away."""
    model = tied_model()
    graph = model.graph
    zeros = np.zeros((V, 2000), np.float32)
    graph.initializer.append(numpy_helper.from_array(zeros, "Z"))
    graph.initializer.append(numpy_helper.from_array(np.array([-1], np.int64), "last"))
    graph.node[1].output[0] = "y_raw"
    graph.node.extend(
        [
            helper.make_node("Gather", ["Z", "ids"], ["z"]),
            helper.make_node("ReduceSum", ["z", "last"], ["zsum"], keepdims=1),
            helper.make_node("Add", ["y_raw", "zsum"], ["y"]),
        ]
    )
    return model


def test_ort_graph_initializer_growth_is_a_memory_regression(cli, tied, tmp_path, capsys):
    grown = _save(_grown_model(), tmp_path / "grown.onnx")
    assert cli(["check", tied, grown]) == 1
    out = capsys.readouterr().out
    assert "initializer bytes of ORT's graph" in out and "outputs outside" not in out
    assert cli(["check", tied, grown, "--max-memory-growth", "inf"]) == 0


def test_memory_regression_rule_allows_growth_and_slack():
    def measured(rss_delta: int, init: int) -> ModelMeasurement:
        return ModelMeasurement(
            "m",
            0,
            init,
            1,
            100,
            100 + rss_delta,
            100 + rss_delta,
            None,
            None,
            None,
            0.1,
            [0.1],
            ["CPUExecutionProvider"],
            [],
            {},
        )

    base = measured(1000, 1000)
    assert memory_regressions(base, measured(1050, 1050), 0.05, 0) == []
    (rss,) = memory_regressions(base, measured(1100, 1000), 0.05, 0)
    assert rss.startswith("peak RSS")
    assert memory_regressions(base, measured(1100, 1000), 0.05, 100) == []
    (init,) = memory_regressions(base, measured(1000, 1051), 0.05, 10_000)
    assert init.startswith("initializer bytes")


def test_external_data_counts_in_file_bytes(tied, tmp_path):
    path = tmp_path / "ext.onnx"
    onnx.save(tied_model(), path, save_as_external_data=True, location="ext.data", size_threshold=0)
    info = read_model_info(path)
    assert info.file_bytes == path.stat().st_size + (tmp_path / "ext.data").stat().st_size
    report = check_models(tied, path)
    assert report.passed and report.memory.optimized.ort_initializer_bytes == 2 * W.nbytes


# --- models with ICL operators ------------------------------------------------------------------


@pytest.mark.usefixtures("icl_library")
def test_icl_model_matches_and_its_icl_nodes_ran_on_cpu(tied, tmp_path):
    optimized = _save(icl_model(), tmp_path / "icl.onnx")
    report = check_models(tied, optimized, input_shapes={"ids": [2, 16]})
    assert report.passed, report.parity.outputs
    placements = report.memory.optimized.placements
    assert sorted(p.op_type for p in placements) == ["IclGather", "IclMatMul"]
    assert all(p.provider == "CPUExecutionProvider" for p in placements)
    assert report.memory.optimized.ort_initializer_bytes == W.nbytes  # one copy, not two


@pytest.mark.usefixtures("icl_library")
def test_icl_model_with_scale_1_01_fails_on_the_logits(cli, tied, tmp_path, capsys):
    optimized = _save(icl_model(scale=1.01), tmp_path / "icl.onnx")
    assert cli(["check", tied, optimized, "--json"]) == 1
    assert json.loads(capsys.readouterr().out)["parity"]["failed_outputs"] == ["y"]


# --- bad input: exit 2, one line, no traceback --------------------------------------------------


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--input-shape", "ids:1xa"], "--input-shape 'ids:1xa': write NAME:DIMxDIM"),
        (["--input-shape", "nope:1x2"], "nope, not an input of the model"),
        (["--val-range", "ids:0..5"], "write NAME:lo,hi"),
        (["--atol", "y:abc"], "--atol 'y:abc'"),
        (["--rtol", "nope:0.1"], "nope, not an output of the model"),
        (["--error-stat", "p99"], "unknown statistic 'p99'"),
        (["--iterations", "0"], "--iterations must be at least 1"),
        (["--providers", "tpu"], "--providers 'tpu' is not available"),
        (["--load-inputs", "missing.npz"], "missing.npz: no such file"),
        (["--save-inputs", "/nonexistent/in.npz"], "--save-inputs /nonexistent/in.npz: cannot"),
    ],
)
def test_bad_options_exit_2_with_one_line(cli, tied, scaled, capsys, extra, message):
    assert cli(["check", tied, scaled, *extra]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err


@pytest.mark.parametrize(
    ("options", "argument", "message"),
    [
        ({"iterations": 0}, "iterations", "iterations must be at least 1, got 0"),
        ({"quantile": 2.0}, "quantile", "quantile must be in [0, 1], got 2.0"),
        ({"atol": {"nope": 0.1}}, "atol", "atol names nope, not an output of the model"),
        ({"load_inputs_from": "gone.npz"}, "load_inputs_from", "load_inputs_from gone.npz: no"),
    ],
)
def test_library_errors_name_the_argument_not_a_cli_flag(tied, options, argument, message):
    with pytest.raises(IclArgumentError) as e:
        check_models(tied, tied, **options)
    assert e.value.argument == argument and str(e.value).startswith(message)
    assert "--" not in str(e.value)


def test_bad_model_files_exit_2_with_one_line(cli, tied, tmp_path, capsys):
    text = tmp_path / "notes.onnx"
    text.write_text("this is not a model\n" * 10)
    other = _save(
        _model(
            [helper.make_node("Gather", ["W", "tok"], ["hidden"])],
            [_ids(name="tok")],
            _outs("hidden"),
            [numpy_helper.from_array(W, "W")],
        ),
        tmp_path / "other.onnx",
    )
    cases = [
        (str(tmp_path / "gone.onnx"), "no such file"),
        (str(text), "not a readable ONNX model"),
        (other, "the models' inputs differ"),
    ]
    for optimized, message in cases:
        assert cli(["check", tied, optimized]) == 2
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1 and "Traceback" not in err


def test_cuda_sessions_compare_at_full_float32_on_the_chosen_device():
    # ORT's default TF32 would round MatMul inputs to 10 bits in both models (docs/check.md);
    # the arena grows by what is asked, so the GPU memory read is the model's.
    from icl_onnx.check._worker import _provider_options

    request = {"providers": ["CUDAExecutionProvider", "CPUExecutionProvider"], "device_id": 1}
    assert _provider_options(request) == [
        {"device_id": "1", "arena_extend_strategy": "kSameAsRequested", "use_tf32": "0"},
        {},
    ]


def test_cuda_provider_without_cuda_ep_is_a_clear_exit_2(cli, tied, scaled, capsys):
    import onnxruntime as ort

    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this onnxruntime has the CUDA EP; the GPU test covers --providers cuda")
    assert cli(["check", tied, scaled, "--providers", "cuda"]) == 2
    err = capsys.readouterr().err
    assert "CUDAExecutionProvider" in err and "onnxruntime-gpu" in err and err.count("\n") == 1


def _cuda_missing() -> str | None:
    import onnxruntime as ort

    if "CUDAExecutionProvider" not in ort.get_available_providers():
        return "no CUDA EP in this onnxruntime (install onnxruntime-gpu on a GPU machine)"
    return None


@pytest.mark.gpu
@pytest.mark.skipif(_cuda_missing() is not None, reason=str(_cuda_missing()))
def test_cuda_check_reports_gpu_memory_and_icl_nodes_on_cuda(tied, tmp_path):
    optimized = _save(icl_model(), tmp_path / "icl.onnx")
    report = check_models(tied, optimized, providers=["cuda", "cpu"])
    assert report.parity.passed
    assert report.memory.original.gpu_delta is not None
    assert all(p.provider == "CUDAExecutionProvider" for p in report.memory.optimized.placements)
    assert report.memory.passed, report.memory.regressions


def test_real_subprocess_cli_exits_2_on_missing_file_and_0_on_identical_models(tied):
    command = [sys.executable, "-m", "icl_onnx.cli.main", "check"]
    bad = subprocess.run([*command, tied, "gone.onnx"], capture_output=True, text=True, cwd=ROOT)
    assert bad.returncode == 2
    assert bad.stderr.strip().splitlines() == [
        "icl-onnx check: gone.onnx: no such file; pass the path of an .onnx model"
    ]
    good = subprocess.run([*command, tied, tied], capture_output=True, text=True, cwd=ROOT)
    assert good.returncode == 0 and "PASS" in good.stdout, good.stderr


def test_generate_outside_genai_folders_is_refused_before_the_models_are_measured(
    cli, tied, tmp_path, capsys
):
    missing = str(tmp_path / "missing.onnx")  # measuring it would fail: the flag is read first
    assert cli(["check", tied, missing, "--generate", "4"]) == 2
    err = capsys.readouterr().err
    assert "--generate: greedy generation needs both models in GenAI folders" in err
