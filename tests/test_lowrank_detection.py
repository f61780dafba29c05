"""Detection of low-rank deltas between two tensors (numpy only)."""

from __future__ import annotations

import numpy as np
import pytest

from icl_onnx.analysis import lowrank
from icl_onnx.analysis.lowrank import (
    LowRankDelta,
    NotLowRank,
    TensorSlot,
    find_low_rank_delta,
    max_worthwhile_rank,
    pair_tensors,
)

RNG = np.random.default_rng(1234)


def merged(base: np.ndarray, rank: int, scale: float = 0.5, seed: int = 0) -> np.ndarray:
    """``base + scale·B·A`` rounded to float32, as LoRA's merge_and_unload writes it."""
    rng = np.random.default_rng(seed)
    b = rng.standard_normal((base.shape[0], rank)).astype(np.float32) * 0.05
    a = rng.standard_normal((rank, base.shape[1])).astype(np.float32) * 0.05
    return (base + scale * (b @ a)).astype(np.float32)


def weight(m: int, n: int, seed: int = 0) -> np.ndarray:
    return (np.random.default_rng(seed).standard_normal((m, n)) * 0.02).astype(np.float32)


@pytest.mark.parametrize("rank", [1, 4, 8, 16])
def test_planted_rank_is_found_and_rebuilds_every_element(rank):
    base = weight(128, 192)  # worthwhile up to rank 19
    variant = merged(base, rank)
    found = find_low_rank_delta(base, variant)
    assert isinstance(found, LowRankDelta), found
    assert found.rank == rank
    assert found.u.shape == (128, rank) and found.v.shape == (rank, 192)
    assert found.u.dtype == np.float32 and found.v.dtype == np.float32
    rebuilt = base.astype(np.float64) + found.u.astype(np.float64) @ found.v.astype(np.float64)
    error = np.abs(rebuilt - variant).max()
    assert error == pytest.approx(found.max_error)
    assert error <= found.tolerance == lowrank.DEFAULT_ULPS * np.spacing(np.abs(variant).max())
    assert found.error_ulps <= lowrank.DEFAULT_ULPS


def test_transposed_storage_is_read_through_the_transpose():
    base = weight(64, 200)  # stored [out, in]; the variant is stored [in, out]
    variant = merged(base, 6).T.copy()
    assert isinstance(find_low_rank_delta(base, variant), NotLowRank)  # shapes differ
    found = find_low_rank_delta(base, variant, transpose=True)
    assert isinstance(found, LowRankDelta) and found.transpose and found.rank == 6
    rebuilt = base.T.astype(np.float64) + found.u.astype(np.float64) @ found.v
    assert np.abs(rebuilt - variant).max() <= found.tolerance


def test_square_transposed_pair_is_not_mistaken_for_the_plain_one():
    base = weight(128, 128)
    variant = merged(base, 4).T.copy()
    assert isinstance(find_low_rank_delta(base, variant), NotLowRank)
    found = find_low_rank_delta(base, variant, transpose=True)
    assert isinstance(found, LowRankDelta) and found.rank == 4


def test_dense_difference_is_not_low_rank():
    base = weight(128, 128)
    variant = (base + weight(128, 128, seed=5) * 0.01).astype(np.float32)
    found = find_low_rank_delta(base, variant)
    assert isinstance(found, NotLowRank)
    assert "dense" in found.reason and found.rank > max_worthwhile_rank(128, 128)


def test_unrelated_weights_of_the_same_shape_are_not_low_rank():
    found = find_low_rank_delta(weight(100, 300, seed=1), weight(100, 300, seed=2))
    assert isinstance(found, NotLowRank) and "dense" in found.reason


def test_low_rank_plus_noise_above_rounding_is_rejected():
    base = weight(96, 96)
    variant = merged(base, 4)
    noisy = (variant + np.float32(1e-6) * RNG.standard_normal(variant.shape)).astype(np.float32)
    found = find_low_rank_delta(base, noisy)
    assert isinstance(found, NotLowRank)


def test_rank_too_high_to_pay_off_is_rejected():
    base = weight(64, 64)  # worthwhile up to 64·64 / (4·128) = 8
    assert max_worthwhile_rank(64, 64) == 8
    assert isinstance(find_low_rank_delta(base, merged(base, 8)), LowRankDelta)
    rejected = find_low_rank_delta(base, merged(base, 12))
    assert isinstance(rejected, NotLowRank) and rejected.rank is not None
    assert rejected.rank > 8


def test_equal_tensors_and_other_dtypes_are_not_deltas():
    base = weight(64, 96)
    assert "exact copy" in find_low_rank_delta(base, base.copy()).reason
    half = base.astype(np.float16)
    assert "float32" in find_low_rank_delta(half, half).reason
    assert "2-D" in find_low_rank_delta(base.reshape(-1), base.reshape(-1)).reason


def test_large_rank_grows_the_sketch_beyond_its_first_width():
    base = weight(400, 600)
    found = find_low_rank_delta(base, merged(base, 40, scale=0.2))
    assert isinstance(found, LowRankDelta) and found.rank == 40


def test_blocks_are_bounded_and_memory_maps_are_read(tmp_path, monkeypatch):
    monkeypatch.setattr(lowrank, "_BLOCK_BYTES", 8 * 300 * 7)  # 7 rows per block
    base = weight(150, 300)
    variant = merged(base, 5)
    paths = []
    for name, array in (("base", base), ("variant", variant)):
        path = tmp_path / f"{name}.npy"
        np.save(path, array)
        paths.append(path)
    mapped = [np.load(p, mmap_mode="r") for p in paths]
    assert list(lowrank._row_blocks(150, 300))[1] == slice(7, 14)
    found = find_low_rank_delta(*mapped)
    assert isinstance(found, LowRankDelta) and found.rank == 5
    assert found.max_error <= found.tolerance


def test_result_is_reproducible():
    base = weight(80, 120)
    variant = merged(base, 3)
    first, second = find_low_rank_delta(base, variant), find_low_rank_delta(base, variant)
    assert np.array_equal(first.u, second.u) and np.array_equal(first.v, second.v)


def test_error_large_in_one_element_only_is_caught():
    base = weight(96, 128)
    variant = merged(base, 4)
    variant[17, 33] += np.float32(1e-3)  # a rank-1 spike: the rank grows to 5 and still fits
    found = find_low_rank_delta(base, variant)
    assert isinstance(found, LowRankDelta) and found.rank == 5
    assert found.max_error <= found.tolerance
    rows, cols = RNG.integers(0, 96, 200), RNG.integers(0, 128, 200)
    variant[rows, cols] += np.float32(1e-3)  # scattered changes: dense
    assert isinstance(find_low_rank_delta(base, variant), NotLowRank)


def slot(name, shape, position):
    return TensorSlot(name, shape, position)


def test_pairs_by_name_first_then_by_shape_and_position():
    base = [
        slot("embed", (1000, 64), 0),
        slot("q", (64, 64), 1),
        slot("k", (64, 64), 2),
        slot("up", (64, 128), 3),
        slot("bias", (64,), 4),
    ]
    variant = [
        slot("embed", (1000, 64), 0),
        slot("onnx::MatMul_7", (64, 64), 1),
        slot("onnx::MatMul_9", (64, 64), 2),
        slot("onnx::MatMul_11", (128, 64), 3),
        slot("bias", (64,), 4),
        slot("extra", (5, 5), 5),
    ]
    assert sorted(pair_tensors(base, variant)) == [
        ("embed", "embed", False),
        ("k", "onnx::MatMul_9", False),
        ("q", "onnx::MatMul_7", False),
        ("up", "onnx::MatMul_11", True),
    ]


def test_a_name_whose_shape_does_not_fit_falls_back_to_position():
    base = [slot("w", (64, 32), 0), slot("x", (16, 16), 1)]
    variant = [slot("w", (16, 16), 0)]
    assert pair_tensors(base, variant) == [("x", "w", False)]
