"""The CPU kernels of IclMatMul and IclGather against the numpy reference (icl_onnx.reference)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import ml_dtypes
import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

import icl_onnx
from icl_onnx import reference
from icl_onnx.testing.view_cases import view_cases

pytestmark = pytest.mark.usefixtures("icl_library")

FLOAT, FLOAT16, BFLOAT16 = TensorProto.FLOAT, TensorProto.FLOAT16, TensorProto.BFLOAT16
DTYPES = {FLOAT: np.float32, FLOAT16: np.float16, BFLOAT16: ml_dtypes.bfloat16}
# Kernels and reference both accumulate in float32 and round once; what differs is the
# summation order, so a result may land one unit in the last place of Y's type apart.
TOLERANCE = {FLOAT: (1e-5, 1e-4), FLOAT16: (2e-3, 2e-3), BFLOAT16: (1.6e-2, 1.6e-2)}
OPSETS = [helper.make_opsetid("", 18), helper.make_opsetid("ai.icl", 1)]

K, N = 37, 45  # neither a multiple of any SIMD width nor of a register tile

VIEWS = view_cases(K, N)


def random(shape: tuple[int, ...], onnx_type: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape).astype(DTYPES[onnx_type])


def session(nodes, inputs, outputs, initializers=()):
    graph = helper.make_graph(nodes, "test", inputs, outputs, initializer=list(initializers))
    model = helper.make_model(graph, opset_imports=OPSETS)
    return icl_onnx.create_session(model.SerializeToString())


def to_ortvalue(array: np.ndarray) -> ort.OrtValue:
    # ORT's Python binding has no numpy type for bfloat16: pass its bits with the ONNX type.
    onnx_type = helper.np_dtype_to_tensor_dtype(array.dtype)
    bits = array.view(np.uint16) if onnx_type == BFLOAT16 else array
    return ort.OrtValue.ortvalue_from_numpy_with_onnx_type(
        np.ascontiguousarray(bits), onnx_element_type=onnx_type
    )


def run(sess, feeds: dict[str, np.ndarray], like: dict[str, np.ndarray]) -> list[np.ndarray]:
    """Runs `sess` and returns its outputs, shaped and typed as the arrays in `like`.

    The outputs are bound to preallocated buffers, which also brings bfloat16 results back.
    """
    binding = sess.io_binding()
    for name, array in feeds.items():
        binding.bind_ortvalue_input(name, to_ortvalue(array))
    results = {name: np.full(ref.shape, np.nan, dtype=ref.dtype) for name, ref in like.items()}
    for name, array in results.items():
        binding.bind_ortvalue_output(name, to_ortvalue(array))
    sess.run_with_iobinding(binding)
    return list(results.values())


def tensor(name: str, onnx_type: int) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, onnx_type, None)


def matmul_session(a_type: int, w_type: int, attrs: dict, bias: bool):
    names = ["A", "W", "bias"] if bias else ["A", "W"]
    types = [a_type, w_type, a_type][: len(names)]
    node = helper.make_node("IclMatMul", names, ["Y"], domain="ai.icl", **attrs)
    inputs = [tensor(n, t) for n, t in zip(names, types, strict=True)]
    return session([node], inputs, [tensor("Y", a_type)])


def run_matmul(a, w, attrs, bias=None):
    """Runs one IclMatMul node; returns Y, or raises what ORT raised."""
    a_type = helper.np_dtype_to_tensor_dtype(a.dtype)
    w_type = helper.np_dtype_to_tensor_dtype(w.dtype)
    feeds = {"A": a, "W": w} | ({} if bias is None else {"bias": bias})
    sess = matmul_session(a_type, w_type, attrs, bias is not None)
    try:
        like = reference.icl_matmul(a, w, bias, **attrs)
    except ValueError:  # bad shapes: the reference refuses, so let ORT say why
        return sess.run(None, feeds)[0]
    return run(sess, feeds, {"Y": like})[0]


def assert_close(actual: np.ndarray, expected: np.ndarray, onnx_type: int) -> None:
    assert actual.dtype == expected.dtype
    assert actual.shape == expected.shape
    rtol, atol = TOLERANCE[onnx_type]
    scale = max(1.0, float(np.abs(expected.astype(np.float32)).max(initial=0.0)))
    np.testing.assert_allclose(
        actual.astype(np.float32), expected.astype(np.float32), rtol=rtol, atol=atol * scale
    )


TYPE_PAIRS = [(a, w) for a in DTYPES for w in DTYPES]
A_SHAPES = {1: (K,), 2: (5, K), 3: (2, 3, K)}


@pytest.mark.parametrize("a_type,w_type", TYPE_PAIRS, ids=lambda t: TensorProto.DataType.Name(t))
@pytest.mark.parametrize("view", VIEWS)
@pytest.mark.parametrize("with_bias", [False, True], ids=["no_bias", "bias"])
@pytest.mark.parametrize("rank", A_SHAPES)
def test_matmul_matches_reference(a_type, w_type, view, with_bias, rank):
    attrs, w_shape = VIEWS[view]
    a = random(A_SHAPES[rank], a_type, seed=1)
    w = random(w_shape, w_type, seed=2)
    bias = random((N,), a_type, seed=3) if with_bias else None
    expected = reference.icl_matmul(a, w, bias, **attrs)
    assert_close(run_matmul(a, w, attrs, bias), expected, a_type)


@pytest.mark.parametrize("w_type", DTYPES, ids=lambda t: TensorProto.DataType.Name(t))
@pytest.mark.parametrize("rows", [1, 3, 13, 20, 30, 33, 70])
@pytest.mark.parametrize("view", ["plain", "transpose", "slice_transpose_scale"])
@pytest.mark.parametrize("k", [70, 300, 1100])
def test_matmul_spanning_many_tasks_matches_reference(w_type, rows, view, k):
    # Large enough for several thread-pool chunks on every path (row dot, GEMM, GEMV). The
    # plain GEMM copies W in slices of 256 rows beyond two tiles of rows of A (16-bit W from any
    # K, float32 W from K=1024): K=300 and 1100 span several slices, the last partial. With
    # AVX2 the transposed GEMM packs 30 rows of A in tiles of 16 (16 + 14), not 24 + 6.
    n = 1100
    attrs = {
        "plain": {},
        "transpose": {"transpose": 1},
        "slice_transpose_scale": {
            "slice_axis": 0,
            "slice_start": 9,
            "slice_size": n,
            "transpose": 1,
            "scale": 0.5,
        },
    }[view]
    w_shape = {"plain": (k, n), "transpose": (n, k), "slice_transpose_scale": (n + 20, k)}[view]
    a = random((rows, k), FLOAT, seed=4)
    w = random(w_shape, w_type, seed=5)
    bias = random((n,), FLOAT, seed=6)
    assert_close(run_matmul(a, w, attrs, bias), reference.icl_matmul(a, w, bias, **attrs), FLOAT)


def test_transposed_gemm_packing_a_in_its_tasks_matches_reference_on_every_run():
    # The transposed GEMM packs A's tiles inside its own tasks (each claims the tiles no thread
    # has taken, then waits for the rest): 200 rows are 4 tiles with AVX-512, 9 with AVX2,
    # for 4 tasks of W rows on the session's threads (two here), and again on each run, so
    # that both threads pack at once on some of them.
    a = random((200, 300), FLOAT, seed=15)
    w = random((400, 300), FLOAT, seed=16)
    sess = matmul_session(FLOAT, FLOAT, {"transpose": 1}, False)
    expected = reference.icl_matmul(a, w, None, transpose=1)
    for _ in range(20):
        assert_close(sess.run(None, {"A": a, "W": w})[0], expected, FLOAT)


@pytest.mark.parametrize("w_type", DTYPES, ids=lambda t: TensorProto.DataType.Name(t))
@pytest.mark.parametrize("rows", range(1, 13))
@pytest.mark.parametrize("k", [77, 96])
def test_transposed_matmul_with_every_row_dot_tile_matches_reference(w_type, rows, k):
    # Every row count that RowDot takes (one tile of 1-4 rows with AVX-512, 1-4 with AVX2,
    # then whole tiles and a shorter last one), A packed once for two tasks of W rows (N=301:
    # 192 + 109, not a whole number of 2-, 4-, 6- or 8-row W tiles), K=77 a vector tail and
    # K=96 none (whole vectors of 8 and 16: the tile's sums go straight to Y), and rows of W
    # K + 3 elements apart from element 3 on (a column slice: W's rows start 6 or 12 bytes off
    # a vector boundary).
    attrs = {"slice_axis": 1, "slice_start": 3, "slice_size": k, "transpose": 1, "scale": 0.5}
    a = random((rows, k), FLOAT, seed=rows)
    w = random((301, k + 3), w_type, seed=11)
    assert_close(run_matmul(a, w, attrs), reference.icl_matmul(a, w, **attrs), FLOAT)


@pytest.mark.parametrize("w_type", DTYPES, ids=lambda t: TensorProto.DataType.Name(t))
@pytest.mark.parametrize("k,n", [(1023, 301), (1025, 301), (600, 1748)])
def test_transposed_matmul_of_four_rows_on_both_sides_of_the_cached_tile_matches_reference(
    w_type, k, n
):
    # With AVX2 four rows of A run as one 4 x 2 tile up to K=1024 and 4 MiB of W
    # (row_dot_avx2.cc, kCachedTileMaxK, kCachedTileMaxWBytes), else as two 2 x 6 tiles: K=1023
    # (a vector tail) and K=1025 on either side; N=1748 at K=600 is 4.2 MB of float32 W (two
    # tiles) and 2.1 MB of 16-bit W (one); N odd for single rows of W after the last tile. W is
    # a slice of rows from row 5 on, with a bias and a scale.
    attrs = {"slice_axis": 0, "slice_start": 5, "slice_size": n, "transpose": 1, "scale": 0.5}
    a = random((4, k), FLOAT, seed=k)
    w = random((n + 7, k), w_type, seed=n)
    bias = random((n,), FLOAT, seed=19)
    assert_close(run_matmul(a, w, attrs, bias), reference.icl_matmul(a, w, bias, **attrs), FLOAT)


@pytest.mark.parametrize("a_type,w_type", TYPE_PAIRS, ids=lambda t: TensorProto.DataType.Name(t))
@pytest.mark.parametrize("rows", [1, 2, 3])
def test_plain_matmul_split_along_k_matches_reference(a_type, w_type, rows):
    # One or two rows of A and a narrow W: four tasks of K=301 rows of W (80 + 80 + 80 + 61,
    # the last not a whole step of the axpy form) summed into Y, then bias and Y's own type;
    # rows of W 700 elements apart from row 5 on (a row slice). Three rows: split along N. (One
    # row and a 16-bit W this small: one task, see test_one_row_of_a_by_16_bit_w_...)
    attrs = {"slice_axis": 0, "slice_start": 5, "slice_size": 301, "scale": 0.5}
    a = random((rows, 301), a_type, seed=12)
    w = random((310, 700), w_type, seed=13)
    bias = random((700,), a_type, seed=14)
    expected = reference.icl_matmul(a, w, bias, **attrs)
    assert_close(run_matmul(a, w, attrs, bias), expected, a_type)


@pytest.mark.parametrize("a_type", [FLOAT, FLOAT16], ids=lambda t: TensorProto.DataType.Name(t))
@pytest.mark.parametrize("rows", [1, 2, 3, 4, 5, 8, 17, 64, 65])
def test_plain_matmul_split_along_k_with_narrow_float32_w_of_any_size(a_type, rows):
    # With AVX2 and AVX-512 up to 64 rows of A and a float32 W whose rows are at most 3 KB
    # apart (N=700, rows not 32-byte aligned) split along K whatever W's size (5.9 MB here, above
    # kAxpySplitMaxBytes): four slices of 528, 528, 528 and 517 rows (the last not a whole step
    # of the axpy form), W a row slice from row 5, with a bias and a scale. One to four rows in
    # axpy form, five to 64 in panels (W has 1024 rows or more: kPanelSplitFromK, with whole
    # tiles and a remainder of rows); 65 rows: split along N. A and Y in float32 or float16.
    attrs = {"slice_axis": 0, "slice_start": 5, "slice_size": 2101, "scale": 0.5}
    a = random((rows, 2101), a_type, seed=35)
    w = random((2110, 700), FLOAT, seed=36)
    bias = random((700,), a_type, seed=37)
    expected = reference.icl_matmul(a, w, bias, **attrs)
    assert_close(run_matmul(a, w, attrs, bias), expected, a_type)


@pytest.mark.parametrize("a_type", [FLOAT, FLOAT16], ids=lambda t: TensorProto.DataType.Name(t))
@pytest.mark.parametrize("w_type", [FLOAT16, BFLOAT16], ids=lambda t: TensorProto.DataType.Name(t))
@pytest.mark.parametrize("view", ["plain", "transposed"])
@pytest.mark.parametrize("k", [301, 3001])
def test_one_row_of_a_by_16_bit_w_matches_reference(a_type, w_type, view, k):
    # One row of A and a 16-bit W: of 0.4 MB (K=301) one task on the calling thread; of 4.2 MB
    # (K=3001) split among tasks, along K for the plain view (four slices, the last shorter).
    # N=701 leaves a vector tail; W is a slice of a larger tensor (offset rows), with bias and
    # scale.
    n = 701
    if view == "plain":
        attrs = {"slice_axis": 0, "slice_start": 5, "slice_size": k, "scale": 0.5}
        w_shape = (k + 9, n)
    else:
        attrs = {"slice_axis": 0, "slice_start": 3, "slice_size": n, "transpose": 1, "scale": 0.5}
        w_shape = (n + 7, k)
    a = random((1, k), a_type, seed=21)
    w = random(w_shape, w_type, seed=22)
    bias = random((n,), a_type, seed=23)
    expected = reference.icl_matmul(a, w, bias, **attrs)
    assert_close(run_matmul(a, w, attrs, bias), expected, a_type)


@pytest.mark.parametrize("w_type", DTYPES, ids=lambda t: TensorProto.DataType.Name(t))
@pytest.mark.parametrize("rows", [3, 4])
def test_plain_matmul_of_few_rows_with_a_large_w_matches_reference(w_type, rows):
    # Three or four rows of A against a W of 4 MB or more (float32 8.4 MB, 16-bit 4.2 MB): with
    # AVX-512 the plain GEMM streams W's rows past Y's in axpy form (Simd::kAxpyFromBytes), with
    # AVX2 it walks panels. K=2101 is not a whole number of the axpy form's steps, N=1001 ends
    # in a partial vector, and the view starts at row 3 of W (a row slice).
    attrs = {"slice_axis": 0, "slice_start": 3, "slice_size": 2101, "scale": 0.5}
    a = random((rows, 2101), FLOAT, seed=15)
    w = random((2104, 1001), w_type, seed=16)
    bias = random((1001,), FLOAT, seed=17)
    assert_close(run_matmul(a, w, attrs, bias), reference.icl_matmul(a, w, bias, **attrs), FLOAT)


@pytest.mark.parametrize("w_type", DTYPES, ids=lambda t: TensorProto.DataType.Name(t))
@pytest.mark.parametrize("rows", [3, 4])
@pytest.mark.parametrize("k", [1021, 1025])
def test_plain_matmul_of_few_rows_with_w_rows_pages_apart_matches_reference(w_type, rows, k):
    # With AVX2 three or four rows of A against a W of at most 1024 rows 4 KB to 16 KB apart
    # (N=2101: float32 8.4 KB, 16-bit 4.2 KB) stream W's rows past Y's in axpy form whatever
    # W's size (kAxpyUpToK; K=1021 not a whole number of its steps of four rows of W), and walk
    # panels (in blocks of K) from 1025 rows. N=2101 ends in a partial vector, and the view
    # starts at row 3 of W (a row slice), with a bias and a scale.
    attrs = {"slice_axis": 0, "slice_start": 3, "slice_size": k, "scale": 0.5}
    a = random((rows, k), FLOAT, seed=k + rows)
    w = random((k + 4, 2101), w_type, seed=33)
    bias = random((2101,), FLOAT, seed=34)
    assert_close(run_matmul(a, w, attrs, bias), reference.icl_matmul(a, w, bias, **attrs), FLOAT)


@pytest.mark.parametrize("rows", [20, 32, 33, 70])
def test_plain_matmul_with_narrow_float32_w_matches_reference(rows):
    # float32 W with K=1100 rows 2.8 KB apart (N=700) is narrow: the plain GEMM reads it in
    # place up to four tiles of rows of A (20, 32) and packs it beyond (33, 70); N=700 leaves
    # a partial panel.
    a = random((rows, 1100), FLOAT, seed=9)
    w = random((1100, 700), FLOAT, seed=10)
    attrs = {"scale": 0.5}
    assert_close(run_matmul(a, w, attrs), reference.icl_matmul(a, w, **attrs), FLOAT)


@pytest.mark.parametrize("rows", [17, 19, 40])
def test_plain_matmul_with_the_copy_spread_over_row_tiles_matches_reference(rows):
    # With AVX2, from 17 rows of A (three row tiles, beyond the blocked walk) the row tiles of
    # each unit of a panel (a slice of up to 4096 rows of W) copy the next unit between them
    # (SpreadPanels): K=4200 is slices of 4096 and 104 rows, so the unit prefetched ahead is
    # sometimes shorter than the one copied; 17, 19 and 40 rows are tiles of 6+6+5, 6+6+4+3 and
    # six of 6 then 4. W's view is columns 5 to 815 of 900 (rows 3.6 KB apart, neither narrow
    # nor wide, each row off a vector boundary): four tasks of 13 panels of 16 columns, the
    # last 11 such panels, one of 8 and a tail of 3. With a bias and a scale.
    attrs = {"slice_axis": 1, "slice_start": 5, "slice_size": 811, "scale": 0.5}
    a = random((rows, 4200), FLOAT, seed=rows)
    w = random((4200, 900), FLOAT, seed=41)
    bias = random((811,), FLOAT, seed=42)
    assert_close(run_matmul(a, w, attrs, bias), reference.icl_matmul(a, w, bias, **attrs), FLOAT)


@pytest.mark.parametrize("rows", [7, 8, 9, 24, 25, 70])
@pytest.mark.parametrize("n", [700, 1100])
def test_plain_matmul_with_float32_w_of_few_rows_matches_reference(rows, n):
    # float32 W with K=300 rows. With AVX2 the plain GEMM packs each panel from its first row
    # tile when A has more rows than a tile, and, packed or read in place, merges a last tile
    # of 1-3 rows with the one before (7, 8, 9 rows: 4 + 3, 4 + 4, 5 + 4); a narrow W (N=700,
    # rows 2.8 KB apart) is read in place up to four tiles (7-24 rows) and packed beyond (25,
    # 70).
    a = random((rows, 300), FLOAT, seed=11)
    w = random((300, n), FLOAT, seed=12)
    assert_close(run_matmul(a, w, {}), reference.icl_matmul(a, w), FLOAT)


@pytest.mark.parametrize("rows", [7, 16, 20])
@pytest.mark.parametrize("n", [1024, 3072])
def test_plain_matmul_with_rows_a_page_apart_matches_reference(rows, n):
    # float32 W of K=300 rows (short: read in place by AVX-512) whose rows are a multiple of
    # 4 KB apart (N=1024 and 3072): every ISA copies each panel by its first row tile beyond
    # one tile (panel_gemm_impl.h, CopyAfterTiles): 7 rows (6 + 1; AVX2 4 + 3), 16 (AVX-512 two
    # tiles of 8), 20. The view is columns 5 to 1004 / 3004 of the row: W's rows keep their
    # stride, the panels start off a vector boundary and end in a tail. With a bias and a scale.
    size = n - 20
    attrs = {"slice_axis": 1, "slice_start": 5, "slice_size": size, "scale": 0.5}
    a = random((rows, 300), FLOAT, seed=rows)
    w = random((300, n), FLOAT, seed=43)
    bias = random((size,), FLOAT, seed=44)
    assert_close(run_matmul(a, w, attrs, bias), reference.icl_matmul(a, w, bias, **attrs), FLOAT)


@pytest.mark.parametrize("w_type", DTYPES, ids=lambda t: TensorProto.DataType.Name(t))
@pytest.mark.parametrize("rows", [3, 6, 7, 13, 64, 131, 257])
@pytest.mark.parametrize("k", [129, 256, 385])
@pytest.mark.parametrize("n", [1003, 4099])
def test_plain_matmul_in_blocks_of_k_matches_reference(w_type, rows, k, n):
    # The plain GEMM walks the panels in blocks of K (BlockedPanels): AVX2 in blocks of 32 rows
    # of W up to 16 rows of A (up to 32 where W's rows are 16 KB or more apart: float32
    # N=4099), AVX-512 in blocks of 128 up to 256 rows of A (64 for such wide rows, from 17
    # rows of A). K=129 ends in a block of one row (4 x 32 + 1,
    # 128 + 1, 2 x 64 + 1), 256 in whole blocks, 385 in a block of one row again; with AVX2 3
    # and 6 rows are one tile read in place, 7 (4 + 3) and 13 have their first tile copy each
    # block of a panel, 64 and more walk all of K (AVX-512: in blocks up to 256, 131 ending in
    # a tile of 5 rows; 257 over all of K). N=1003 and 4099 leave a one-vector panel and three
    # columns past the vectors, and with the row slice of W (from row 5) and the scale every
    # block must add to the partial sums of the one before and only the last scale them.
    attrs = {"slice_axis": 0, "slice_start": 5, "slice_size": k, "scale": 0.5}
    a = random((rows, k), FLOAT, seed=30)
    w = random((k + 9, n), w_type, seed=31)
    bias = random((n,), FLOAT, seed=32)
    assert_close(run_matmul(a, w, attrs, bias), reference.icl_matmul(a, w, bias, **attrs), FLOAT)


@pytest.mark.parametrize("w_type", DTYPES, ids=lambda t: TensorProto.DataType.Name(t))
@pytest.mark.parametrize("rows", [5, 8, 9, 16, 17, 32, 33])
def test_plain_matmul_of_wide_w_in_blocks_of_k_matches_reference(w_type, rows):
    # W's rows 16 KB or more apart (N=4099 float32, 8197 16-bit; K=385) are walked in blocks of
    # K (BlockedPanels): with AVX-512 of 32 rows of W from 5 up to 16 rows of A
    # (kWideFewBlockRows: twelve blocks and a row; tiles of 8 x 3 and of 6 x 4), of 64 beyond;
    # with AVX2 of 32 up to 32 rows of A (kWideBlockMaxRows; each block of a panel copied by
    # the first row tile for the others), 33 rows beyond that walk; N leaves a one-vector
    # panel and columns past the vectors, with the row slice of W, a bias and the scale.
    k = 385
    n = 4099 if w_type == FLOAT else 8197
    attrs = {"slice_axis": 0, "slice_start": 5, "slice_size": k, "scale": 0.5}
    a = random((rows, k), FLOAT, seed=40)
    w = random((k + 9, n), w_type, seed=41)
    bias = random((n,), FLOAT, seed=42)
    assert_close(run_matmul(a, w, attrs, bias), reference.icl_matmul(a, w, bias, **attrs), FLOAT)


@pytest.mark.parametrize("rows", [129, 200])
def test_plain_matmul_of_a_large_a_in_blocks_of_k_matches_reference(rows):
    # With AVX2, beyond 16 rows of A where A spans 1 MB or more (K=2049: 1.06 MB at 129 rows),
    # the panels of a float32 W are walked in blocks of 256 rows of W (kBigABlockRows: eight
    # blocks and a row, each block of a panel copied by the first row tile for the others);
    # N leaves columns past the vectors, with the row slice of W, a bias and the scale.
    k = 2049
    attrs = {"slice_axis": 0, "slice_start": 3, "slice_size": k, "scale": 0.5}
    a = random((rows, k), FLOAT, seed=46)
    w = random((k + 5, 100), FLOAT, seed=47)
    bias = random((100,), FLOAT, seed=48)
    assert_close(run_matmul(a, w, attrs, bias), reference.icl_matmul(a, w, bias, **attrs), FLOAT)


@pytest.mark.parametrize("rows", [1, 2, 3, 4, 5, 8])
@pytest.mark.parametrize("w_type", DTYPES, ids=lambda t: TensorProto.DataType.Name(t))
def test_plain_matmul_with_w_of_16_mb_in_axpy_form_matches_reference(rows, w_type):
    # A W of at least 16 MB (K=67 float32 or K=134 16-bit rows of N=62603) is read in axpy form
    # for one to four rows of A (panel_gemm.h, kAxpyFromBytes; one and two rows with W folded
    # into the FMAs, prefetch.h, StreamsFromMemory; K not a whole number of its
    # steps of four or eight rows of W, N not of vectors), in panels from five rows; with AVX2
    # three and four rows walk panels too, as W's rows are 16 KB or more apart
    # (kAxpyBelowRowBytes).
    k = 67 if w_type == FLOAT else 134
    a = random((rows, k), FLOAT, seed=rows)
    w = random((k, 62603), w_type, seed=15)
    attrs = {"scale": 0.5}
    assert_close(run_matmul(a, w, attrs), reference.icl_matmul(a, w, **attrs), FLOAT)


@pytest.mark.parametrize("rows", [1, 2, 3, 4, 5])
@pytest.mark.parametrize("column_slice", [False, True])
def test_plain_matmul_with_wide_float32_w_of_16_mb_split_along_k_matches_reference(
    rows, column_slice
):
    # With AVX2 and AVX-512 one or two rows of A against a whole float32 W of at least 16 MB
    # whose rows are wider than a task along N (K=385, N=11001: 16.9 MB, rows 44 KB apart, not
    # 32-byte aligned) split K into four slices of whole rows (104 + 104 + 104 + 73, the last
    # not a whole step of the axpy form), each prefetching its rows a page ahead, summed into Y
    # (AxpyStreamsK, matmul.cc); three to five rows, and W cut to its first 11000 columns (a
    # column slice), split N. With the bias and the scale.
    k, n = 385, 11001
    attrs = {"scale": 0.5}
    if column_slice:
        attrs.update(slice_axis=1, slice_start=0, slice_size=n - 1)
    a = random((rows, k), FLOAT, seed=50 + rows)
    w = random((k, n), FLOAT, seed=51)
    bias = random((n - 1 if column_slice else n,), FLOAT, seed=52)
    assert_close(run_matmul(a, w, attrs, bias), reference.icl_matmul(a, w, bias, **attrs), FLOAT)


@pytest.mark.parametrize("rows", [1, 2, 4, 13, 16])
@pytest.mark.parametrize("w_type", DTYPES, ids=lambda t: TensorProto.DataType.Name(t))
def test_transposed_matmul_with_w_of_16_mb_streamed_matches_reference(rows, w_type):
    # A W of at least 16 MB (K=67 float32 or K=134 16-bit rows, N=62603) streams from memory:
    # RowDot's one tile of two rows of A then takes W into its FMAs (row_dot_impl.h, Fold;
    # prefetch.h, StreamsFromMemory), two tiles of two rows (AVX2, four rows) do not; with
    # AVX-512, 13 and 16 rows of A run RowDot against a float32 W (wide_gemm.cc,
    # WideGemmFromRows), WideGemm against a 16-bit one and with AVX2; K ends in a partial
    # vector, N in single rows of W after the last whole tile, with a bias.
    k = 67 if w_type == FLOAT else 134
    a = random((rows, k), FLOAT, seed=rows)
    w = random((62603, k), w_type, seed=16)
    bias = random((62603,), FLOAT, seed=17)
    attrs = {"transpose": 1, "scale": 0.5}
    assert_close(run_matmul(a, w, attrs, bias), reference.icl_matmul(a, w, bias, **attrs), FLOAT)


@pytest.mark.parametrize("w_type", DTYPES, ids=lambda t: TensorProto.DataType.Name(t))
@pytest.mark.parametrize("k,n", [(1001, 1100), (1001, 4400), (1025, 1100)])
def test_transposed_matmul_of_one_row_reading_w_in_order_matches_reference(w_type, k, n):
    # One row of A reads W's rows one after another (row_dot_impl.h, SweepInOrder) where W
    # streams from memory, and with AVX2 from 4 MB at K <= 1024 (row_dot_avx2.cc,
    # OneRowInOrder): float32 K=1001 at N=1100 is 4.4 MB, N=4400 17.6 MB (16-bit W 2.2 and 8.8
    # MB, the 1 x 8 tile), K=1025 the tile again. K=1001 is whole steps of four vectors, then
    # whole vectors, then single elements; W is a column slice (rows K + 3 apart from element
    # 3 on, 6 or 12 bytes off a vector boundary), with a bias and a scale.
    attrs = {"slice_axis": 1, "slice_start": 3, "slice_size": k, "transpose": 1, "scale": 0.5}
    a = random((1, k), FLOAT, seed=k)
    w = random((n, k + 3), w_type, seed=n)
    bias = random((n,), FLOAT, seed=29)
    assert_close(run_matmul(a, w, attrs, bias), reference.icl_matmul(a, w, bias, **attrs), FLOAT)


@pytest.mark.parametrize("rows", [16, 20, 70])
@pytest.mark.parametrize("k", [512, 1024, 2048])
def test_transposed_matmul_with_rows_of_w_pages_apart_matches_reference(rows, k):
    # float32 W rows 2, 4 or 8 KB apart alias in L1, so the GEMM copies each block of them
    # into a padded buffer first (wide_gemm_impl.h, RowsAlias), or with AVX-512 and 17..32
    # rows of A walks K in two runs side by side (RunSplit; K=2048: runs shortened by a line,
    # a remainder after them), and with AVX-512 and 16 rows (one vector) in chunks of K
    # (TryChunks, kChunkAliasedNarrow); N=102 leaves a partial block.
    a = random((rows, k), FLOAT, seed=7)
    w = random((102, k), FLOAT, seed=8)
    attrs = {"transpose": 1, "scale": 0.5}
    assert_close(run_matmul(a, w, attrs), reference.icl_matmul(a, w, **attrs), FLOAT)


@pytest.mark.parametrize("w_type", DTYPES, ids=lambda t: TensorProto.DataType.Name(t))
@pytest.mark.parametrize("rows", [13, 20, 70])
def test_transposed_matmul_with_rows_of_y_pages_apart_matches_reference(w_type, rows):
    # Rows of Y 4 KB apart (N=1024) all fall into one set of L1: with AVX-512 the GEMM stages
    # 8 blocks of columns of Y in a buffer and copies them out (wide_gemm_impl.h, YRowsAlias):
    # tasks of 256 columns are not a whole number of stages (kWRows 16, 14, 6: 13 rows, 20
    # rows, 70 rows in a tile of 64 and one of 6), so each ends in a partial stage and a block
    # of fewer rows of W; K=99 ends in a partial vector.
    a = random((rows, 99), FLOAT, seed=18)
    w = random((1024, 99), w_type, seed=19)
    bias = random((1024,), FLOAT, seed=20)
    attrs = {"transpose": 1, "scale": 0.5}
    assert_close(run_matmul(a, w, attrs, bias), reference.icl_matmul(a, w, bias, **attrs), FLOAT)


@pytest.mark.parametrize("a_type", [FLOAT, FLOAT16], ids=lambda t: TensorProto.DataType.Name(t))
@pytest.mark.parametrize("rows", [64, 67, 128])
@pytest.mark.parametrize("k", [37, 70])
@pytest.mark.parametrize("n", [N, 1024])
def test_transposed_gemm_staging_y_matches_reference(a_type, rows, k, n):
    # From 64 rows of A, where Y's rows are a multiple of 4 KB apart (N=1024 float32), the AVX2
    # transposed GEMM stages Y's columns (16 for its 4-row micro-tiles, 24 for the 6-row ones
    # that tiles of 16 rows of A take: M=128) and copies each group into Y once complete
    # (wide_gemm_impl.h, StageY): with 6-row micro-tiles tasks of 256 columns end in a partial
    # group (16 of 24 columns) and a partial block (4 rows); N=45 is written in place, with a
    # partial block of W's rows. Its K loop takes four steps at a time: K=37 and 70 leave 1
    # and 2. Its tile store transposes blocks of 8 rows of A x 4 of W in registers:
    # 67 rows end in a tile of 19 (a partial block), 6-row micro-tiles in 4 + 2. A float16 A
    # gives a float16 Y, which the kernel writes into a scratch buffer first.
    a = random((rows, k), a_type, seed=13)
    w = random((n, k), FLOAT, seed=14)
    bias = random((n,), a_type, seed=15)
    attrs = {"transpose": 1, "scale": 0.5}
    expected = reference.icl_matmul(a, w, bias, **attrs)
    assert_close(run_matmul(a, w, attrs, bias), expected, a_type)


@pytest.mark.parametrize("w_type", DTYPES, ids=lambda t: TensorProto.DataType.Name(t))
@pytest.mark.parametrize("rows", [32, 128, 145])
@pytest.mark.parametrize("k", [1024, 3072, 5120])
def test_transposed_gemm_last_tile_of_one_vector_matches_reference(w_type, rows, k):
    # float32 W rows a multiple of 4 KB apart: with AVX2, 6 rows of W alias in L1, so where A
    # in tiles of 16 rows would run in groups (over 512 KB packed) and the last tile of 24
    # would be one vector (1-8 rows), A keeps its tiles of 24 rows (wide_gemm.cc,
    # PackedATileRows) and the last tile walks K in two runs side by side (wide_gemm_impl.h,
    # WRowBlock, MicroSplit): 32 rows at K=5120 (983 KB packed: groups of one tile, the last
    # group that tile alone, TryGroups). From 65 rows a float32 W walks K in chunks instead
    # (TryChunks): 145 rows end in a tile of 1, 128 at K=3072 and 5120 in one of 8, against
    # 12 rows of W at a time. 32 rows at K=1024 and 3072, 128 at K=1024 (512 KB in tiles of
    # 16), and a 16-bit W keep tiles of 16. N=101: a partial block.
    a = random((rows, k), FLOAT, seed=24)
    w = random((101, k), w_type, seed=25)
    bias = random((101,), FLOAT, seed=26)
    attrs = {"transpose": 1, "scale": 0.5}
    assert_close(run_matmul(a, w, attrs, bias), reference.icl_matmul(a, w, bias, **attrs), FLOAT)


@pytest.mark.parametrize("rows", [145, 152])
def test_transposed_gemm_last_tile_of_one_vector_on_a_slice_matches_reference(rows):
    # As above on a slice of K=1001 (odd: the two runs of the last tile and a remainder step)
    # from rows 2048 floats apart, from an offset of 3: tiles of 24, the last of 1 or 8 rows.
    a = random((rows, 1001), FLOAT, seed=27)
    w = random((77, 2048), FLOAT, seed=28)
    attrs = {"transpose": 1, "slice_axis": 1, "slice_start": 3, "slice_size": 1001}
    assert_close(run_matmul(a, w, attrs), reference.icl_matmul(a, w, **attrs), FLOAT)


@pytest.mark.parametrize("rows", [40, 48])
def test_transposed_gemm_in_groups_of_a_tiles_matches_reference(rows):
    # Packed A larger than 512 KB (K=2900: 2 tiles of 24 rows, 557 KB) runs with AVX2 in groups
    # of A's tiles against blocks of 48 rows of W (wide_gemm_impl.h, TryGroups): groups of one
    # tile, the last of 16 valid rows (40) or 24 (48); N=101 ends in a partial block of 5 rows
    # (a 4-row micro-tile and a single row); K=2900 ends the pack's blocks of 8 columns in a
    # partial one of 4. (From 65 rows a float32 W walks K in chunks with AVX2, from 33 with
    # AVX-512: TryChunks.)
    k = 2900
    a = random((rows, k), FLOAT, seed=21)
    w = random((101, k), FLOAT, seed=22)
    bias = random((101,), FLOAT, seed=23)
    attrs = {"transpose": 1, "scale": 0.5}
    assert_close(run_matmul(a, w, attrs, bias), reference.icl_matmul(a, w, bias, **attrs), FLOAT)


@pytest.mark.parametrize("rows", [13, 16])
@pytest.mark.parametrize("k", [4200, 4500])
def test_transposed_gemm_in_groups_of_64_row_tiles_matches_reference(rows, k):
    # AVX-512 packs A in tiles of 64 rows and, above 1 MB packed (one tile from K=4097; from
    # 33 rows, or rows of W that alias in L1, a float32 W walks K in chunks instead:
    # TryChunks), runs it against blocks of 48 rows of W (TryGroups): one vector wide here (13
    # and 16 rows, beyond RowDot's 12), N=101 ends in a block of 5 rows. (AVX2: one tile of 24
    # rows, under 512 KB: run whole; the same references.)
    a = random((rows, k), FLOAT, seed=45)
    w = random((101, k), FLOAT, seed=46)
    bias = random((101,), FLOAT, seed=47)
    attrs = {"transpose": 1, "scale": 0.5}
    assert_close(run_matmul(a, w, attrs, bias), reference.icl_matmul(a, w, bias, **attrs), FLOAT)


@pytest.mark.parametrize("rows", [40, 65, 100, 200])
@pytest.mark.parametrize("k", [700, 1001])
@pytest.mark.parametrize("sliced", [False, True], ids=["whole", "slice"])
def test_transposed_gemm_in_chunks_of_k_matches_reference(rows, k, sliced):
    # From 33 rows of A with AVX-512 and from 65 with AVX2, and a float32 W, the transposed
    # GEMM walks K in chunks sized from the L1 cache (wide_gemm_impl.h, TryChunks: 128 steps
    # with AVX-512, 336 with AVX2 on a 48 KB L1, 96 and 224 on a 32 KB one), keeps each tile's
    # sums between chunks and stores Y in blocks transposed in registers (StoreChunkTile).
    # K=700 and 1001 end in a partial chunk; 40 rows are one tile of three vectors with
    # AVX-512, 65 rows end in a tile of 1 valid row of one vector, 100 in one of 36 (three
    # vectors with AVX-512), 200 in one of 8; N=101 makes tasks of 64 and 37 rows of W, which
    # end in micro-tiles of fewer rows and a partial block of Y's columns. The slice reads K
    # elements of rows 1030 floats apart, from an offset of 3.
    w = random((101, 1030 if sliced else k), FLOAT, seed=48)
    attrs = {"transpose": 1, "scale": 0.5}
    if sliced:
        attrs |= {"slice_axis": 1, "slice_start": 3, "slice_size": k}
    a = random((rows, k), FLOAT, seed=49)
    bias = random((101,), FLOAT, seed=50)
    assert_close(run_matmul(a, w, attrs, bias), reference.icl_matmul(a, w, bias, **attrs), FLOAT)


def test_matmul_with_empty_inner_dimension_gives_the_bias():
    a = np.zeros((4, 0), np.float32)
    w = np.zeros((0, 6), np.float32)
    bias = np.arange(6, dtype=np.float32)
    np.testing.assert_array_equal(run_matmul(a, w, {}, bias), np.tile(bias, (4, 1)))


def test_matmul_rejects_a_that_does_not_match_the_view():
    with pytest.raises(Exception, match="does not match view"):
        run_matmul(random((2, K + 1), FLOAT, 0), random((N, K), FLOAT, 0), {"transpose": 1})


def test_matmul_rejects_a_slice_outside_w():
    attrs = {"slice_axis": 0, "slice_start": 5, "slice_size": K}
    with pytest.raises(Exception, match="out of range"):
        run_matmul(random((2, K), FLOAT, 0), random((K, N), FLOAT, 0), attrs)


def gather_session(w_type: int, index_type: int, y_type: int, attrs: dict):
    node = helper.make_node("IclGather", ["W", "I"], ["Y"], domain="ai.icl", **attrs)
    return session([node], [tensor("W", w_type), tensor("I", index_type)], [tensor("Y", y_type)])


GATHER_VIEWS = {
    "plain": {},
    "transpose": {"transpose": 1},
    "row_slice_scale": {"slice_axis": 0, "slice_start": 4, "slice_size": 20, "scale": 3.0},
    "column_slice_transpose": {"slice_axis": 1, "slice_start": 1, "slice_size": 12, "transpose": 1},
}


@pytest.mark.parametrize("w_type", DTYPES, ids=lambda t: TensorProto.DataType.Name(t))
@pytest.mark.parametrize("output_dtype", [0, *DTYPES], ids=lambda t: f"out{t}")
@pytest.mark.parametrize(
    "index_type", [TensorProto.INT32, TensorProto.INT64], ids=["int32", "int64"]
)
@pytest.mark.parametrize("view", GATHER_VIEWS)
def test_gather_matches_reference(w_type, output_dtype, index_type, view):
    attrs = {**GATHER_VIEWS[view], "output_dtype": output_dtype}
    w = random((30, 16), w_type, seed=7)
    rows = reference.view(w, **GATHER_VIEWS[view]).shape[0]
    indices = np.array(
        [[0, rows - 1, -1], [-rows, 2, 5]], dtype=helper.tensor_dtype_to_np_dtype(index_type)
    )
    y_type = output_dtype or w_type
    expected = reference.icl_gather(w, indices, **attrs)
    sess = gather_session(w_type, index_type, y_type, attrs)
    assert_close(run(sess, {"W": w, "I": indices}, {"Y": expected})[0], expected, y_type)


def test_large_gather_copies_every_row():
    w = random((500, 300), FLOAT, seed=8)
    indices = np.random.default_rng(9).integers(-500, 500, size=(7, 111))
    actual = gather_session(FLOAT, TensorProto.INT64, FLOAT, {}).run(None, {"W": w, "I": indices})
    np.testing.assert_array_equal(actual[0], reference.icl_gather(w, indices))


@pytest.mark.parametrize("bad_index", [30, -31])
def test_gather_index_out_of_range_raises(bad_index):
    s = gather_session(FLOAT, TensorProto.INT64, FLOAT, {})
    with pytest.raises(Exception, match="outside"):
        s.run(None, {"W": random((30, 4), FLOAT, 0), "I": np.array([0, bad_index])})


def test_gather_whose_declared_type_contradicts_output_dtype_is_refused():
    with pytest.raises(Exception, match="declares Y as float32 but output_dtype makes it float16"):
        gather_session(FLOAT, TensorProto.INT64, FLOAT, {"output_dtype": FLOAT16})
    with pytest.raises(Exception, match="declares Y as element type 11 but output_dtype makes it"):
        gather_session(FLOAT, TensorProto.INT64, TensorProto.DOUBLE, {})


def test_one_weight_feeds_several_views_in_one_session():
    # The shape of a rewritten tied-embedding model: W[V, H] read as itself, transposed,
    # sliced, scaled, and as a float16 table, all from one initializer.
    v, h = 50, 24
    w = random((v, h), FLOAT, seed=10)
    nodes = [
        helper.make_node("IclMatMul", ["X", "W"], ["logits"], domain="ai.icl", transpose=1),
        helper.make_node(
            "IclMatMul",
            ["X", "W"],
            ["head"],
            domain="ai.icl",
            transpose=1,
            slice_axis=0,
            slice_start=10,
            slice_size=20,
            scale=0.5,
        ),
        helper.make_node(
            "IclMatMul",
            ["Z", "W"],
            ["proj"],
            domain="ai.icl",
            slice_axis=1,
            slice_start=4,
            slice_size=8,
        ),
        helper.make_node("IclGather", ["W", "ids"], ["emb"], domain="ai.icl", output_dtype=FLOAT16),
    ]
    s = session(
        nodes,
        [tensor("X", FLOAT), tensor("Z", FLOAT), tensor("ids", TensorProto.INT64)],
        [
            tensor("logits", FLOAT),
            tensor("head", FLOAT),
            tensor("proj", FLOAT),
            tensor("emb", FLOAT16),
        ],
        initializers=[onnx.numpy_helper.from_array(w, "W")],
    )
    x, z = random((3, h), FLOAT, 11), random((2, 3, v), FLOAT, 12)
    ids = np.array([1, -2, 7])
    logits, head, proj, emb = s.run(None, {"X": x, "Z": z, "ids": ids})
    assert_close(logits, reference.icl_matmul(x, w, transpose=1), FLOAT)
    assert_close(
        head,
        reference.icl_matmul(
            x, w, transpose=1, slice_axis=0, slice_start=10, slice_size=20, scale=0.5
        ),
        FLOAT,
    )
    assert_close(proj, reference.icl_matmul(z, w, slice_axis=1, slice_start=4, slice_size=8), FLOAT)
    assert_close(emb, reference.icl_gather(w, ids, output_dtype=FLOAT16), FLOAT16)


def icl_matmul_on_initializer(w: np.ndarray, overridable: bool, attrs: dict):
    """A session of one IclMatMul whose W is an initializer (also a graph input if overridable)."""
    node = helper.make_node("IclMatMul", ["A", "W"], ["Y"], domain="ai.icl", **attrs)
    inputs = [tensor("A", FLOAT)] + ([tensor("W", FLOAT)] if overridable else [])
    return session([node], inputs, [tensor("Y", FLOAT)], [onnx.numpy_helper.from_array(w, "W")])


@pytest.mark.parametrize("attrs", [{"transpose": 1}, {"slice_axis": 1, "slice_start": 3}])
def test_matmul_on_a_constant_w_checks_every_call(attrs):
    # The front end describes a constant W once, at kernel creation; each call's A is still
    # checked against it, and a call after a refused one runs.
    w = random((40, 37), FLOAT, seed=20)
    s = icl_matmul_on_initializer(w, overridable=False, attrs=attrs)
    k = 37 if attrs.get("transpose") else 40
    for rows in (1, 5, 20):
        a = random((rows, k), FLOAT, seed=rows)
        assert_close(s.run(None, {"A": a})[0], reference.icl_matmul(a, w, **attrs), FLOAT)
    with pytest.raises(Exception, match="does not match view"):
        s.run(None, {"A": random((2, k + 1), FLOAT, seed=0)})
    a = random((3, k), FLOAT, seed=3)
    assert_close(s.run(None, {"A": a})[0], reference.icl_matmul(a, w, **attrs), FLOAT)


def test_matmul_on_an_overridable_initializer_reads_the_fed_w():
    # An initializer that is also a graph input is not constant: a fed W of another shape is
    # described and checked on its own call.
    w = random((40, 37), FLOAT, seed=21)
    s = icl_matmul_on_initializer(w, overridable=True, attrs={"transpose": 1})
    a = random((4, 37), FLOAT, seed=22)
    assert_close(s.run(None, {"A": a})[0], reference.icl_matmul(a, w, transpose=1), FLOAT)
    fed = random((9, 37), FLOAT, seed=23)
    got = s.run(None, {"A": a, "W": fed})[0]
    assert_close(got, reference.icl_matmul(a, fed, transpose=1), FLOAT)
    with pytest.raises(Exception, match="does not match view"):
        s.run(None, {"A": a, "W": random((9, 36), FLOAT, seed=24)})
    assert_close(s.run(None, {"A": a})[0], reference.icl_matmul(a, w, transpose=1), FLOAT)


_FALLBACK_CHECK = textwrap.dedent(
    """
    import itertools
    import ml_dtypes, numpy as np, onnxruntime as ort
    from onnx import TensorProto, helper
    import icl_onnx
    from icl_onnx import reference
    worst = 0.0
    cases = itertools.product((np.float32, np.float16, ml_dtypes.bfloat16), (1, 2, 3, 5, 40),
                              (0, 1), (45, 150))
    for w_dtype, rows, transpose, n in cases:
        node = helper.make_node("IclMatMul", ["A", "W"], ["Y"], domain="ai.icl",
                                transpose=transpose)
        w_type = helper.np_dtype_to_tensor_dtype(np.dtype(w_dtype))
        graph = helper.make_graph(
            [node], "g",
            [helper.make_tensor_value_info("A", TensorProto.FLOAT, None),
             helper.make_tensor_value_info("W", w_type, None)],
            [helper.make_tensor_value_info("Y", TensorProto.FLOAT, None)])
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18),
                                                        helper.make_opsetid("ai.icl", 1)])
        s = icl_onnx.create_session(model.SerializeToString())
        rng = np.random.default_rng(rows)
        a = rng.standard_normal((rows, 37)).astype(np.float32)
        w = rng.standard_normal((n, 37) if transpose else (37, n)).astype(w_dtype)
        w_value = ort.OrtValue.ortvalue_from_numpy_with_onnx_type(
            w.view(np.uint16) if w.dtype.itemsize == 2 else w, onnx_element_type=w_type)
        feeds = {"A": ort.OrtValue.ortvalue_from_numpy(a), "W": w_value}
        y = s.run_with_ort_values(None, feeds)[0].numpy()
        expected = reference.icl_matmul(a, w, transpose=transpose)
        worst = max(worst, float(np.abs(y - expected).max()))
    print(worst)
    """
)


@pytest.mark.parametrize("isa", ["scalar", "avx2"])
def test_narrower_instruction_set_fallbacks_match_reference(isa):
    env = {**os.environ, "ICL_CPU_ISA": isa}
    out = subprocess.run(
        [sys.executable, "-c", _FALLBACK_CHECK], env=env, check=True, capture_output=True, text=True
    )
    assert float(out.stdout.strip().splitlines()[-1]) < 1e-4
