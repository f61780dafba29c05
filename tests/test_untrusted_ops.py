"""A crafted model never crashes the process nor makes a kernel read outside a tensor.

Every value a model supplies (attributes, shapes, indices) goes through one input front end per
operator (custom_ops/common/*_input.h), shared by the CPU and CUDA kernels. Each hostile model
here runs in a child process, so a crash (SIGSEGV, a sanitizer's abort) fails its test instead
of killing pytest. CPU: the op library in plain onnxruntime. CUDA: the test-only harness library,
whose ops create the CUDA kernel and run its front end (with the CUDA backend's capabilities) on
the CPU provider, stopping before any launch (custom_ops/cuda/harness/create_probe.cc); no GPU
is needed.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from dataclasses import dataclass, field

import numpy as np
import pytest
from builders import IR_VERSION
from onnx import TensorProto, helper

import icl_onnx
from icl_onnx.testing import cuda_harness

BIG = 2**63 - 1
OPSETS = [helper.make_opsetid("", 18), helper.make_opsetid("ai.icl", 1)]
FLOAT, UINT8, INT64 = TensorProto.FLOAT, TensorProto.UINT8, TensorProto.INT64
PROBE_ANSWER = "only creates kernels"  # the probe's answer once every check has passed

_CHILD = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    import onnxruntime as ort
    model, feeds, library = sys.argv[1:4]
    options = ort.SessionOptions()
    options.register_custom_ops_library(library)
    stage = "create"
    try:
        session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
        stage = "run"
        outputs = session.run(None, dict(np.load(feeds)))
        print(json.dumps({"stage": "done", "error": "", "shapes": [o.shape for o in outputs]}))
    except Exception as e:
        print(json.dumps({"stage": stage, "error": str(e), "shapes": []}))
    """
)


@dataclass
class Case:
    """One node, its inputs, and what every backend must answer."""

    op: str
    attrs: dict
    feeds: dict[str, np.ndarray]
    error: str  # the message after "<op>: " / "<op> (CUDA): "; "" when the call must succeed
    stage: str = "run"  # where the error comes: "create" (session creation) or "run"
    y_type: int = FLOAT
    cuda_error: str | None = None  # when CUDA answers otherwise (None: the same as the CPU)
    inputs: list[str] = field(default_factory=list)  # node inputs; default: the feeds' names

    def model(self) -> bytes:
        names = self.inputs or list(self.feeds)
        graph_inputs = [
            helper.make_tensor_value_info(
                name, helper.np_dtype_to_tensor_dtype(self.feeds[name].dtype), None
            )
            for name in names
            if name
        ]
        node = helper.make_node(self.op, names, ["Y"], domain="ai.icl", **self.attrs)
        output = helper.make_tensor_value_info("Y", self.y_type, None)
        graph = helper.make_graph([node], "untrusted", graph_inputs, [output])
        return helper.make_model(
            graph, opset_imports=OPSETS, ir_version=IR_VERSION
        ).SerializeToString()


def run_in_child(case: Case, library: str, tmp_path) -> dict:
    """Creates a session over the case's model with `library` and runs it, in a child process."""
    model, feeds = tmp_path / "model.onnx", tmp_path / "feeds.npz"
    model.write_bytes(case.model())
    np.savez(feeds, **case.feeds)
    child = subprocess.run(
        [sys.executable, "-c", _CHILD, str(model), str(feeds), library],
        capture_output=True,
        text=True,
        timeout=300,
    )
    # A sanitizer's report starts with "runtime error" (UBSan) or "ERROR:" (ASan): show it.
    start = min((i for i in (child.stderr.find("runtime error"), child.stderr.find("ERROR:"))
                 if i >= 0), default=max(0, len(child.stderr) - 3000))  # fmt: skip
    assert child.returncode == 0, (
        f"the child process died (exit {child.returncode}) on {case.op} {case.attrs}:\n"
        f"{child.stderr[start : start + 3000]}"
    )
    return json.loads(child.stdout.strip().splitlines()[-1])


def f32(*shape: int) -> np.ndarray:
    return np.arange(int(np.prod(shape)), dtype=np.float32).reshape(shape)


def i64(*values: int) -> np.ndarray:
    return np.array(values, dtype=np.int64)


def slice_error(start: int, size: int | str, axis: int, w_shape: tuple[int, int]) -> str:
    return (
        f"the slice [{start}, +{size}) is out of range for axis {axis} of W "
        f"[{w_shape[0]}, {w_shape[1]}]"
    )


# The five models of issue #20: each used to read outside W (the first three) or crash.
ISSUE_ROWS = {
    "matmul-row-slice-at-2^63": Case(
        "IclMatMul",
        {"slice_axis": 0, "slice_start": BIG, "slice_size": 1},
        {"A": f32(1, 1), "W": f32(4, 8)},
        slice_error(BIG, 1, 0, (4, 8)),
    ),
    "matmul-column-slice-at-2^63": Case(
        "IclMatMul",
        {"slice_axis": 1, "slice_start": BIG, "slice_size": 1},
        {"A": f32(1, 4), "W": f32(4, 8)},
        slice_error(BIG, 1, 1, (4, 8)),
    ),
    "gather-row-slice-at-2^63": Case(
        "IclGather",
        {"slice_axis": 0, "slice_start": BIG, "slice_size": 1},
        {"W": f32(4, 8), "I": i64(0)},
        slice_error(BIG, 1, 0, (4, 8)),
    ),
    "gather-start-and-size-2^63": Case(
        "IclGather",
        {"slice_start": BIG, "slice_size": BIG},
        {"W": f32(4, 5), "I": i64(2**31, 5)},
        slice_error(BIG, BIG, 0, (4, 5)),
    ),
    "gather-start-2^31-size-2^63": Case(
        "IclGather",
        {"slice_start": 2**31 - 1, "slice_size": BIG},
        {"W": f32(1, 2), "I": i64(2)},
        slice_error(2**31 - 1, BIG, 0, (1, 2)),
    ),
}


def _low_rank(m: int, rank: int) -> dict[str, np.ndarray]:
    # A [m, 0] @ view(W [0, 1]) + (A @ U [0, rank]) @ V [rank, 1]: every input tiny or empty.
    return {
        "A": np.zeros((m, 0), np.float32),
        "W": np.zeros((0, 1), np.float32),
        "U": np.zeros((0, rank), np.float32),
        "V": np.zeros((rank, 1), np.float32),
    }


def _block_quant(n: int, k: int, bits: int, block_size: int) -> dict[str, np.ndarray]:
    n_blocks = -(-k // block_size)
    return {
        "B": np.zeros((n, n_blocks, block_size * bits // 8), np.uint8),
        "indices": i64(0),
        "scales": np.ones((n, n_blocks), np.float32),
    }


# Values near the int64 limits at every product or sum the front ends form.
OVERFLOW_CASES = {
    # slice_start + slice_size and the rest of the axis, near 2^63
    "matmul-start-plus-size-wraps": Case(
        "IclMatMul",
        {"slice_axis": 1, "slice_start": 5, "slice_size": BIG},
        {"A": f32(1, 4), "W": f32(4, 8)},
        slice_error(5, BIG, 1, (4, 8)),
    ),
    "matmul-rest-of-axis-from-2^63": Case(
        "IclMatMul",
        {"slice_start": BIG, "slice_size": -1},
        {"A": f32(1, 4), "W": f32(4, 8)},
        slice_error(BIG, "rest", 0, (4, 8)),
    ),
    "gather-transposed-slice-past-columns": Case(
        "IclGather",
        {"slice_axis": 1, "slice_start": 8, "slice_size": 1, "transpose": 1},
        {"W": f32(4, 8), "I": i64(0)},
        slice_error(8, 1, 1, (4, 8)),
    ),
    # rows of A (the product of its leading dimensions) and Y's size, from empty tensors
    "matmul-rows-of-a-times-n-overflow": Case(
        "IclMatMul",
        {},
        {"A": np.zeros((2**30, 2**30, 0), np.float32), "W": np.zeros((0, 2**30), np.float32)},
        "Y [1073741824, 1073741824, 1073741824] would exceed 2^63-1 bytes",
    ),
    "matmul-y-bytes-overflow": Case(
        "IclMatMul",
        {},
        {"A": np.zeros((8, 0), np.float32), "W": np.zeros((0, 2**60), np.float32)},
        "Y [8, 1152921504606846976] would exceed 2^63-1 bytes",
    ),
    "matmul-empty-y-is-fine": Case(
        "IclMatMul",
        {},
        {"A": np.zeros((2**40, 0), np.float32), "W": np.zeros((0, 0), np.float32)},
        "",
    ),
    # the low-rank term's A @ U [m, rank]
    "matmul-factor-scratch-overflow": Case(
        "IclMatMul",
        {},
        _low_rank(2**44, 2**20),
        "A @ U [17592186044416, 1048576] would exceed 2^63-1 bytes",
        inputs=["A", "W", "", "U", "V"],
    ),
    # indices: int64 extremes, and an empty index tensor whose other dimensions are huge
    "gather-index-int64-min": Case(
        "IclGather",
        {},
        {"W": f32(4, 8), "I": i64(1, -(2**63))},
        "index -9223372036854775808 is outside [-4, 4)",
        cuda_error=PROBE_ANSWER,  # CUDA leaves indices on the device: a zero row, no read
    ),
    "gather-index-int64-max": Case(
        "IclGather",
        {},
        {"W": f32(4, 8), "I": i64(BIG)},
        f"index {BIG} is outside [-4, 4)",
        cuda_error=PROBE_ANSWER,
    ),
    "gather-empty-index-shape-is-fine": Case(
        "IclGather",
        {},
        {"W": f32(4, 8), "I": np.zeros((2**20, 2**20, 0), np.int64)},
        "",
    ),
    # the block layout: ceil(K / block_size) * block_size and the row's bytes, at Create
    "block-quant-row-bytes-overflow": Case(
        "IclGatherBlockQuantized",
        {"K": BIG, "bits": 8, "block_size": 2**62},
        _block_quant(0, 16, 8, 16),
        f"K={BIG} and block_size={2**62} make rows of more than 2^63-1 elements",
        stage="create",
    ),
    "block-quant-padded-row-overflow": Case(
        "IclGatherBlockQuantized",
        {"K": BIG, "bits": 4, "block_size": 2**62},
        _block_quant(0, 16, 4, 16),
        f"K={BIG} and block_size={2**62} make rows of more than 2^63-1 elements",
        stage="create",
    ),
    # Y [indices.shape..., K]: one index and a K no real table could have
    "block-quant-y-bytes-overflow": Case(
        "IclGatherBlockQuantized",
        {"K": 2**62, "bits": 4, "block_size": 16},
        {
            "B": np.zeros((0, 2**58, 8), np.uint8),
            "indices": i64(0),
            "scales": np.zeros((0,), np.float32),
        },
        "Y [1, 4611686018427387904] would exceed 2^63-1 bytes",
    ),
    "block-quant-table-shape-mismatch": Case(
        "IclGatherBlockQuantized",
        {"K": 64, "bits": 4, "block_size": 32},
        _block_quant(3, 64, 4, 16),
        "B must have shape [N, 2, 16] for K=64, bits=4, block_size=32, got [3, 4, 8]",
    ),
    "block-quant-index-int64-min": Case(
        "IclGatherBlockQuantized",
        {"K": 32, "bits": 4, "block_size": 32},
        {**_block_quant(3, 32, 4, 32), "indices": i64(-(2**63))},
        "index -9223372036854775808 is outside [-3, 3)",
    ),
}


def _variants(m: int, variants: int, rank: int, ids: tuple[int, ...]) -> dict[str, np.ndarray]:
    # A [m, 4] @ view(W [4, 3]) with factors stacked per variant, U [NV, 4, r], V [NV, r, 3].
    return {
        "A": f32(m, 4),
        "W": f32(4, 3),
        "U": np.zeros((variants, 4, rank), np.float32),
        "V": np.zeros((variants, rank, 3), np.float32),
        "ids": i64(*ids),
    }


# IclMatMul's variant_ids (read on the host by both backends) and the stacked factors.
VARIANT_CASES = {
    "matmul-variant-id-int64-max": Case(
        "IclMatMul",
        {},
        _variants(2, 2, 1, (0, BIG)),
        f"variant id {BIG} (batch row 1) is outside [0, 2)",
        inputs=["A", "W", "", "U", "V", "ids"],
    ),
    "matmul-variant-id-int64-min": Case(
        "IclMatMul",
        {},
        _variants(2, 2, 1, (-(2**63), 1)),
        f"variant id {-(2**63)} (batch row 0) is outside [0, 2)",
        inputs=["A", "W", "", "U", "V", "ids"],
    ),
    "matmul-variant-rows-do-not-split": Case(
        "IclMatMul",
        {},
        _variants(5, 2, 1, (0, 1)),
        "5 rows of A do not split into 2 batch rows (variant_ids [2])",
        inputs=["A", "W", "", "U", "V", "ids"],
    ),
    "matmul-variant-stacks-differ": Case(
        "IclMatMul",
        {},
        {**_variants(2, 3, 1, (0, 1)), "V": np.zeros((2, 1, 3), np.float32)},
        "U stacks 3 variants but V stacks 2",
        inputs=["A", "W", "", "U", "V", "ids"],
    ),
    # an id near 2^58 into a stack of 2^58 variants of no elements: nothing to read, no offset
    "matmul-variant-huge-empty-stack-is-fine": Case(
        "IclMatMul",
        {},
        _variants(2, 2**58, 0, (2**58 - 1, 0)),
        "",
        inputs=["A", "W", "", "U", "V", "ids"],
    ),
    # the term's A @ U [m, rank] with factors stacked per variant
    "matmul-variant-factor-scratch-overflow": Case(
        "IclMatMul",
        {},
        {
            "A": np.zeros((2**44, 0), np.float32),
            "W": np.zeros((0, 1), np.float32),
            "U": np.zeros((1, 0, 2**20), np.float32),
            "V": np.zeros((1, 2**20, 1), np.float32),
            "ids": i64(0),
        },
        "A @ U [17592186044416, 1048576] would exceed 2^63-1 bytes",
        inputs=["A", "W", "", "U", "V", "ids"],
    ),
    "matmul-variant-3d-factors-without-ids": Case(
        "IclMatMul",
        {},
        {k: x for k, x in _variants(2, 2, 1, (0,)).items() if k != "ids"},
        "U [2, 4, 1] and V [2, 1, 3] are stacked per variant (3-D) but the node has no "
        "variant_ids; give variant_ids [B] or 2-D factors",
        inputs=["A", "W", "", "U", "V"],
    ),
}

try:
    HARNESS_PATH, NO_HARNESS = cuda_harness.harness_path(), ""
except cuda_harness.HarnessNotFoundError as exc:
    HARNESS_PATH, NO_HARNESS = "", f"CUDA harness not built (no nvcc at build time): {exc}"
needs_cuda_build = pytest.mark.skipif(not HARNESS_PATH, reason=NO_HARNESS)

ALL_CASES = {**ISSUE_ROWS, **OVERFLOW_CASES, **VARIANT_CASES}


def check_answer(case: Case, answer: dict, label: str, error: str) -> None:
    if not error:
        assert answer["stage"] == "done", answer["error"]
        return
    if error == PROBE_ANSWER:  # the CUDA front end took every input
        assert answer["stage"] == "run" and PROBE_ANSWER in answer["error"], answer
        return
    assert answer["stage"] == case.stage, answer
    assert f"{case.op}{label}: {error}" in answer["error"]


@pytest.mark.parametrize("name", list(ISSUE_ROWS))
def test_issue_rows_are_refused_with_a_clear_message_on_cpu(icl_library, name, tmp_path):
    case = ISSUE_ROWS[name]
    check_answer(case, run_in_child(case, icl_library, tmp_path), "", case.error)


@needs_cuda_build
@pytest.mark.parametrize("name", list(ISSUE_ROWS))
def test_issue_rows_get_the_same_message_from_the_cuda_front_end(name, tmp_path):
    case = ISSUE_ROWS[name]
    check_answer(case, run_in_child(case, HARNESS_PATH, tmp_path), " (CUDA)", case.error)


@pytest.mark.parametrize("name", list(OVERFLOW_CASES))
def test_sizes_near_the_int64_limit_are_refused_or_run_empty_on_cpu(icl_library, name, tmp_path):
    case = OVERFLOW_CASES[name]
    check_answer(case, run_in_child(case, icl_library, tmp_path), "", case.error)


@needs_cuda_build
@pytest.mark.parametrize("name", list(OVERFLOW_CASES))
def test_sizes_near_the_int64_limit_get_the_cpu_answer_from_the_cuda_front_end(name, tmp_path):
    case = OVERFLOW_CASES[name]
    error = case.cuda_error if case.cuda_error is not None else case.error
    # A call the CPU runs passes every CUDA check too: the probe then stops before the launch.
    check_answer(case, run_in_child(case, HARNESS_PATH, tmp_path), " (CUDA)", error or PROBE_ANSWER)


@pytest.mark.parametrize("name", list(VARIANT_CASES))
def test_variant_ids_and_stacked_factors_are_checked_on_cpu(icl_library, name, tmp_path):
    case = VARIANT_CASES[name]
    check_answer(case, run_in_child(case, icl_library, tmp_path), "", case.error)


@needs_cuda_build
@pytest.mark.parametrize("name", list(VARIANT_CASES))
def test_variant_ids_get_the_cpu_answer_from_the_cuda_front_end(name, tmp_path):
    # variant_ids is a host input of the CUDA kernel too: every id is checked before a launch.
    case = VARIANT_CASES[name]
    check_answer(
        case, run_in_child(case, HARNESS_PATH, tmp_path), " (CUDA)", case.error or PROBE_ANSWER
    )


def test_a_cast_view_with_factors_is_a_documented_cuda_limit_with_one_message(tmp_path):
    # The CPU computes it; the CUDA front end refuses it, naming both types.
    a, w = np.ones((2, 4), np.float16), np.ones((4, 3), np.float32)
    u, v = np.ones((4, 2), np.float32), np.ones((2, 3), np.float32)
    case = Case("IclMatMul", {}, {"A": a, "W": w, "U": u, "V": v}, "", y_type=TensorProto.FLOAT16,
                inputs=["A", "W", "", "U", "V"])  # fmt: skip
    cpu = run_in_child(case, icl_onnx.library_path(), tmp_path)
    assert cpu["stage"] == "done", cpu
    if not HARNESS_PATH:
        pytest.skip(NO_HARNESS)
    limit = (
        "low-rank factors with a cast view (A float16, W float32) are not supported on this "
        "backend; give A and W one type"
    )
    check_answer(case, run_in_child(case, HARNESS_PATH, tmp_path), " (CUDA)", limit)
