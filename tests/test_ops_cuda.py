"""The CUDA kernels of IclMatMul and IclGather.

Three groups:
- the build, checked on any machine: the op library carries the CUDA kernels, exports only
  RegisterCustomOps, needs no CUDA library to load, and still runs its CPU kernels in a
  CPU-only onnxruntime with the CUDA kernels registered; the harness reports sm_80 and sm_90;
- the kernels through the ctypes harness on torch CUDA tensors (skipped without a GPU);
- the kernels inside an ORT CUDA session (skipped without onnxruntime-gpu and a GPU).
"""

from __future__ import annotations

import shutil
import subprocess

import numpy as np
import onnxruntime as ort
import pytest
from builders import CUDA_FP32, IR_VERSION
from onnx import TensorProto, helper

import icl_onnx
from icl_onnx import reference
from icl_onnx.testing import cuda_harness
from icl_onnx.testing.view_cases import view_cases

LIBRARY = icl_onnx.library_path()  # the CPU op library must exist: no skip

NO_HARNESS_REASON = ""
try:
    HARNESS = cuda_harness.load()
except cuda_harness.HarnessNotFoundError as exc:
    HARNESS = None
    NO_HARNESS_REASON = f"no CUDA harness (built without nvcc, or the package not rebuilt): {exc}"
needs_cuda_build = pytest.mark.skipif(HARNESS is None, reason=NO_HARNESS_REASON)

try:
    import torch

    HAS_GPU = torch.cuda.is_available()
except ImportError:
    torch = None
    HAS_GPU = False
needs_gpu = pytest.mark.skipif(
    HARNESS is None or not HAS_GPU, reason="needs a CUDA GPU, torch with CUDA and the harness"
)
HAS_ORT_CUDA = "CUDAExecutionProvider" in ort.get_available_providers()
needs_ort_cuda = pytest.mark.skipif(
    not (HAS_ORT_CUDA and HAS_GPU), reason="needs onnxruntime-gpu (CUDAExecutionProvider) and a GPU"
)

FLOAT, FLOAT16, BFLOAT16 = TensorProto.FLOAT, TensorProto.FLOAT16, TensorProto.BFLOAT16
OPSETS = [helper.make_opsetid("", 18), helper.make_opsetid("ai.icl", 1)]
K, N = 37, 45  # not a multiple of any tile or vector width

VIEWS = view_cases(K, N)


def tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} (binutils) is not installed")
    return path


# --- the build: runs on any machine ---------------------------------------------------------


def test_op_library_exports_only_register_custom_ops():
    out = subprocess.run(
        [tool("nm"), "-D", "--defined-only", LIBRARY], capture_output=True, text=True, check=True
    ).stdout
    symbols = {line.split()[-1] for line in out.splitlines() if line.strip()}
    assert symbols == {"RegisterCustomOps"}


def test_op_library_loads_without_any_cuda_library():
    out = subprocess.run(
        [tool("readelf"), "-d", LIBRARY], capture_output=True, text=True, check=True
    ).stdout
    needed = [line for line in out.splitlines() if "(NEEDED)" in line]
    assert needed, "readelf listed no dependencies at all"
    assert not [line for line in needed if "cuda" in line or "cublas" in line], needed


@needs_cuda_build
def test_op_library_embeds_cuda_kernels():
    out = subprocess.run(
        [tool("readelf"), "-S", "-W", LIBRARY], capture_output=True, text=True, check=True
    ).stdout
    assert ".nv_fatbin" in out, "the op library was built without its CUDA kernels"


@needs_cuda_build
def test_harness_reports_kernels_for_sm80_and_sm90():
    assert {800, 900} <= set(HARNESS.arch_list())
    assert HARNESS.cuda_version() >= 12000


@needs_cuda_build
def test_harness_reports_a_bad_view_as_an_error():
    with pytest.raises(cuda_harness.HarnessError, match="out of range"):
        HARNESS.view_shape((10, 20), slice_axis=0, slice_start=8, slice_size=5)
    assert HARNESS.view_shape((10, 20), transpose=1, slice_axis=1, slice_start=2) == (18, 10)


def test_cpu_session_runs_icl_ops_with_cuda_kernels_registered():
    # Same graph as a user's: both ops, a cast view, on the CPU provider of this onnxruntime.
    rng = np.random.default_rng(0)
    w = rng.standard_normal((N, K)).astype(np.float32)
    a = rng.standard_normal((2, 3, K)).astype(np.float32)
    idx = np.array([[0, 5, -1]], dtype=np.int64)
    nodes = [
        helper.make_node("IclMatMul", ["A", "W"], ["Y"], domain="ai.icl", transpose=1),
        helper.make_node(
            "IclGather", ["W", "I"], ["E"], domain="ai.icl", output_dtype=FLOAT16, scale=2.0
        ),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [
            helper.make_tensor_value_info("A", FLOAT, [2, 3, K]),
            helper.make_tensor_value_info("I", TensorProto.INT64, [1, 3]),
        ],
        [
            helper.make_tensor_value_info("Y", FLOAT, [2, 3, N]),
            helper.make_tensor_value_info("E", FLOAT16, [1, 3, K]),
        ],
        initializer=[helper.make_tensor("W", FLOAT, w.shape, w.ravel())],
    )
    model = helper.make_model(graph, opset_imports=OPSETS, ir_version=IR_VERSION)
    sess = icl_onnx.create_session(model.SerializeToString())
    y, e = sess.run(None, {"A": a, "I": idx})
    np.testing.assert_allclose(y, reference.icl_matmul(a, w, transpose=1), rtol=1e-5, atol=1e-4)
    np.testing.assert_array_equal(e, reference.icl_gather(w, idx, output_dtype=FLOAT16, scale=2.0))


# --- the kernels through the harness: needs a GPU -------------------------------------------

DTYPE_NAMES = ["float32", "float16", "bfloat16"]
# Both sides accumulate in float32 and round once; the result may differ by about one unit in
# the last place of the output type (scaled by the magnitude of the sums, ~sqrt(K)).
ATOL = {"float32": 1e-4, "float16": 1e-2, "bfloat16": 8e-2}


def tdtype(name: str):
    return getattr(torch, name)


def expected_matmul(a, w, bias, view):
    v = cuda_harness.materialize_view(w, dtype=torch.float64, **view)
    y = a.double() @ v
    if bias is not None:
        y = y + bias.double()
    return y.to(a.dtype)


@needs_gpu
@pytest.mark.parametrize("view_name", list(VIEWS))
@pytest.mark.parametrize("w_dtype", DTYPE_NAMES)
@pytest.mark.parametrize("a_dtype", DTYPE_NAMES)
@pytest.mark.parametrize("m", [1, 7])
def test_matmul_kernel_matches_reference(a_dtype, w_dtype, view_name, m):
    attrs, w_shape = VIEWS[view_name]
    gen = torch.Generator(device="cuda").manual_seed(1)
    w = torch.randn(w_shape, generator=gen, device="cuda").to(tdtype(w_dtype))
    a = torch.randn((m, K), generator=gen, device="cuda").to(tdtype(a_dtype))
    bias = torch.randn((N,), generator=gen, device="cuda").to(tdtype(a_dtype))
    y = HARNESS.matmul(a, w, bias, **attrs)
    torch.cuda.synchronize()
    assert y.dtype == a.dtype and y.shape == (m, N)
    torch.testing.assert_close(
        y.double(), expected_matmul(a, w, bias, attrs).double(), atol=ATOL[a_dtype], rtol=1e-2
    )


@needs_gpu
def test_matmul_kernel_handles_batched_a_without_bias():
    w = torch.randn((N, K), device="cuda")
    a = torch.randn((2, 3, K), device="cuda")
    y = HARNESS.matmul(a, w, transpose=1)
    torch.testing.assert_close(y, a @ w.t(), atol=1e-4, rtol=1e-4)


@needs_gpu
def test_matmul_kernel_chunks_a_wide_cast_view():
    # A 16-bit W under float32 A is widened chunk by chunk: make N span several chunks.
    k, n = 4096, 5000
    w = torch.randn((n, k), device="cuda").to(torch.bfloat16)
    a = torch.randn((3, k), device="cuda")
    y = HARNESS.matmul(a, w, transpose=1)
    torch.testing.assert_close(y, a @ w.float().t(), atol=2e-3, rtol=1e-4)


@needs_gpu
@pytest.mark.parametrize("view_name", list(VIEWS))
@pytest.mark.parametrize("out_dtype", [0, FLOAT, FLOAT16, BFLOAT16])
@pytest.mark.parametrize("w_dtype", DTYPE_NAMES)
@pytest.mark.parametrize("index_dtype", ["int32", "int64"])
def test_gather_kernel_matches_reference(view_name, out_dtype, w_dtype, index_dtype):
    attrs, w_shape = VIEWS[view_name]
    w = torch.randn(w_shape, device="cuda").to(tdtype(w_dtype))
    idx = torch.tensor([[0, K - 1, -1], [3, -K, 5]], device="cuda", dtype=tdtype(index_dtype))
    y = HARNESS.gather(w, idx, output_dtype=out_dtype, **attrs)
    v = cuda_harness.materialize_view(w, dtype=torch.float64, **attrs)
    want = v[idx.long() % K]
    expected_dtype = (
        w.dtype
        if out_dtype == 0
        else {FLOAT: torch.float32, FLOAT16: torch.float16, BFLOAT16: torch.bfloat16}[out_dtype]
    )
    assert y.dtype == expected_dtype and y.shape == (2, 3, N)
    # One rounding from the exact value: equal to rounding the float64 view once.
    torch.testing.assert_close(y, want.float().to(expected_dtype), atol=0, rtol=0)


@needs_gpu
def test_gather_kernel_gives_zero_rows_for_out_of_range_indices():
    w = torch.randn((5, 4), device="cuda")
    y = HARNESS.gather(w, torch.tensor([1, 5, -6], device="cuda"))
    torch.testing.assert_close(y[0], w[1])
    assert torch.count_nonzero(y[1:]) == 0


@needs_gpu
def test_loaded_kernels_are_native_to_the_gpu():
    binary, ptx = HARNESS.loaded_kernel_versions()
    major, minor = torch.cuda.get_device_capability()
    assert binary in (80, 90) and binary <= 10 * major + minor


# --- inside an ORT CUDA session: needs onnxruntime-gpu ------------------------------------


@needs_ort_cuda
@pytest.mark.parametrize("view_name", list(VIEWS))
def test_ort_cuda_session_matches_reference(view_name):
    attrs, w_shape = VIEWS[view_name]
    rng = np.random.default_rng(2)
    w = rng.standard_normal(w_shape).astype(np.float32)
    a = rng.standard_normal((4, K)).astype(np.float32)
    idx = np.array([0, 7, -1], dtype=np.int64)
    nodes = [
        helper.make_node("IclMatMul", ["A", "W"], ["Y"], domain="ai.icl", **attrs),
        helper.make_node("IclGather", ["W", "I"], ["E"], domain="ai.icl", **attrs),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [
            helper.make_tensor_value_info("A", FLOAT, [4, K]),
            helper.make_tensor_value_info("I", TensorProto.INT64, [3]),
        ],
        [
            helper.make_tensor_value_info("Y", FLOAT, [4, N]),
            helper.make_tensor_value_info("E", FLOAT, [3, N]),
        ],
        initializer=[helper.make_tensor("W", FLOAT, w.shape, w.ravel())],
    )
    model = helper.make_model(graph, opset_imports=OPSETS, ir_version=IR_VERSION)
    options = icl_onnx.session_options()
    # Fail instead of quietly running a node on the CPU kernels.
    options.add_session_config_entry("session.disable_cpu_ep_fallback", "1")
    sess = ort.InferenceSession(
        model.SerializeToString(), sess_options=options, providers=[CUDA_FP32]
    )
    y, e = sess.run(None, {"A": a, "I": idx})
    np.testing.assert_allclose(y, reference.icl_matmul(a, w, **attrs), rtol=1e-4, atol=1e-4)
    np.testing.assert_array_equal(e, reference.icl_gather(w, idx, **attrs))


@needs_ort_cuda
@pytest.mark.parametrize("use_tf32", ["0", "1"])
def test_ort_cuda_matmul_follows_the_sessions_use_tf32(use_tf32):
    # IclMatMul on the transposed view beside ORT's MatMul on the materialised copy, in one
    # session: both round float32 inputs to TF32 or neither (use_tf32=1 is ORT's default; where
    # the GPU has no TF32, neither does). TF32 errors here are ~1e-2, float32's ~1e-5.
    k, n = 768, 512
    rng = np.random.default_rng(3)
    w = rng.standard_normal((n, k)).astype(np.float32)
    a = rng.standard_normal((8, k)).astype(np.float32)
    nodes = [
        helper.make_node("IclMatMul", ["A", "W"], ["Y"], domain="ai.icl", transpose=1),
        helper.make_node("MatMul", ["A", "WT"], ["Z"]),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("A", FLOAT, [8, k])],
        [
            helper.make_tensor_value_info("Y", FLOAT, [8, n]),
            helper.make_tensor_value_info("Z", FLOAT, [8, n]),
        ],
        initializer=[
            helper.make_tensor("W", FLOAT, w.shape, w.ravel()),
            helper.make_tensor("WT", FLOAT, (k, n), np.ascontiguousarray(w.T).ravel()),
        ],
    )
    model = helper.make_model(graph, opset_imports=OPSETS, ir_version=IR_VERSION)
    options = icl_onnx.session_options()
    options.add_session_config_entry("session.disable_cpu_ep_fallback", "1")
    sess = ort.InferenceSession(
        model.SerializeToString(),
        sess_options=options,
        providers=[("CUDAExecutionProvider", {"use_tf32": use_tf32})],
    )
    y, z = sess.run(None, {"A": a})
    want = a.astype(np.float64) @ w.astype(np.float64).T
    err_icl, err_ort = np.abs(y - want).max(), np.abs(z - want).max()
    assert (err_icl > 1e-3) == (err_ort > 1e-3), (err_icl, err_ort)
    if use_tf32 == "0":
        assert err_icl < 1e-3, err_icl
