"""Low-rank deltas between two tensors: ``variant == view(base) + U @ V`` within float rounding.

A fine-tune merged into its base (LoRA's ``merge_and_unload``) stores ``W_k = W_base + s·B·A``
with a rank far below the matrix size; no exact, transposed, sliced, scaled or cast relation
catches it. This module tests one pair of tensors:

1. **Cheap rejection.** The numerical rank of a random sub-block of ``D = W_k - view(W_base)``
   bounds the rank of ``D`` from below: a dense difference (a full fine-tune, an unrelated model)
   is rejected after reading a few hundred rows.
2. **Randomized range finder** (Halko, Martinsson and Tropp, 2011): ``Y = D·Ω`` with a Gaussian
   ``Ω`` of ``r + p`` columns (oversampling ``p``), one power iteration, ``B = Qᵀ·D`` and the SVD
   of the small ``B``. The sketch grows (doubling) until the spectrum falls below the rounding
   noise or the rank stops being worth storing. ``D`` is never formed whole: every product walks
   both tensors in row blocks of about 16 MiB, in float64.
3. **Rank from the spectrum.** The rounding of ``W_k`` to float32 adds noise of at most half an
   ulp per element, whose spectral norm is below ``ulp(max|W_k|)·(√m + √n)/2``; singular values
   above ``ulp(max|W_k|)·(√m + √n)`` are kept.
4. **Acceptance.** The factors are accepted only when storing them is clearly worth it,
   ``(m + n)·r ≤ m·n/4``, and the reconstruction ``view(W_base) + U·V`` (factors rounded to
   float32, as stored) matches ``W_k`` on every element within ``ulps · ulp(max|W_k|)``
   (``DEFAULT_ULPS`` = 4 units in the last place of the largest magnitude of ``W_k``), verified
   block by block. The measured maximum error is part of the result.

``view(base)`` is ``base`` or, with ``transpose``, ``base.T`` (TorchScript exports store linear
weights transposed; the dynamo exporter stores them as the module holds them). Only float32
tensors are tested. Pure functions on arrays: nothing is printed or changed.

The linear algebra runs on one BLAS thread (``threadpoolctl``): the factorizations are small
(a few hundred columns) and OpenBLAS's threads wait on each other when the cores are shared.
Twelve ``eigvalsh`` of 544 x 544 Gram matrices took 17 to 61 s with numpy's default two
threads and 1.5 to 2.1 s with one, alternated on this project's 2-core machine at load
averages of 18 to 27; the rejection of a dense difference is one such factorization.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Iterator, Sequence

import numpy as np
from threadpoolctl import ThreadpoolController

__all__ = [
    "DEFAULT_ULPS",
    "LowRankDelta",
    "NotLowRank",
    "TensorSlot",
    "find_low_rank_delta",
    "max_worthwhile_rank",
    "pair_tensors",
]

#: Reconstruction tolerance, in units in the last place of ``max|W_k|`` (float32).
DEFAULT_ULPS = 4.0
#: Extra columns of the sketch beyond the rank it tests for.
OVERSAMPLING = 8
_BLOCK_BYTES = 16 << 20
_FIRST_SKETCH = 16
_PROBE_EXTRA = 32


@dataclasses.dataclass(frozen=True)
class LowRankDelta:
    """``variant == view(base) + u @ v`` within ``tolerance`` on every element.

    Attributes:
        transpose: ``view(base)`` is ``base.T``.
        u: the left factor, ``[m, rank]`` float32 (``m`` rows of the variant).
        v: the right factor, ``[rank, n]`` float32.
        max_error: the largest ``|view(base) + u·v - variant|`` measured over all elements.
        tolerance: the bound ``max_error`` was checked against.
        scale: ``max|variant|``, the magnitude the tolerance is relative to.
    """

    transpose: bool
    u: np.ndarray
    v: np.ndarray
    max_error: float
    tolerance: float
    scale: float

    @property
    def rank(self) -> int:
        """The number of columns of ``u`` (rows of ``v``)."""
        return int(self.u.shape[1])

    @property
    def factor_bytes(self) -> int:
        """Bytes the two factors take when stored."""
        return int(self.u.nbytes + self.v.nbytes)

    @property
    def error_ulps(self) -> float:
        """``max_error`` in units in the last place of ``max|variant|`` (float32)."""
        return self.max_error / _ulp(self.scale)


@dataclasses.dataclass(frozen=True)
class NotLowRank:
    """Why a pair is not a low-rank delta (the variant is then stored whole)."""

    reason: str
    rank: int | None = None  # the numerical rank seen, when one was estimated


def max_worthwhile_rank(m: int, n: int) -> int:
    """The largest rank ``r`` with ``(m + n)·r ≤ m·n/4``: factors at most a quarter of ``W``."""
    return (m * n) // (4 * (m + n))


def _ulp(x: float) -> float:
    return float(np.spacing(np.float32(max(abs(x), np.finfo(np.float32).tiny))))


def _row_blocks(m: int, n: int) -> Iterator[slice]:
    step = max(1, _BLOCK_BYTES // max(1, 8 * n))
    for start in range(0, m, step):
        yield slice(start, min(m, start + step))


class _Difference:
    """``D = variant - view(base)`` in float64, read one block of rows at a time."""

    def __init__(self, base: np.ndarray, variant: np.ndarray, transpose: bool) -> None:
        self.base, self.variant, self.transpose = base, variant, transpose
        self.m, self.n = variant.shape

    def base_rows(self, rows: slice | np.ndarray) -> np.ndarray:
        part = self.base[:, rows].T if self.transpose else self.base[rows]
        return np.asarray(part, dtype=np.float64)

    def rows(self, rows: slice | np.ndarray) -> np.ndarray:
        return np.asarray(self.variant[rows], dtype=np.float64) - self.base_rows(rows)

    def block(self, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """``D[rows][:, cols]``, reading only the needed rows of both tensors."""
        variant = np.asarray(self.variant[rows][:, cols], dtype=np.float64)
        base = self.base[cols][:, rows].T if self.transpose else self.base[rows][:, cols]
        return variant - np.asarray(base, dtype=np.float64)

    def blocks(self) -> Iterator[tuple[slice, np.ndarray]]:
        for rows in _row_blocks(self.m, self.n):
            yield rows, self.rows(rows)

    def times(self, right: np.ndarray) -> np.ndarray:
        """``D @ right`` (``right`` is ``[n, l]``)."""
        out = np.empty((self.m, right.shape[1]))
        for rows, block in self.blocks():
            out[rows] = block @ right
        return out

    def transposed_times(self, left: np.ndarray) -> np.ndarray:
        """``Dᵀ @ left`` (``left`` is ``[m, l]``)."""
        out = np.zeros((self.n, left.shape[1]))
        for rows, block in self.blocks():
            out += block.T @ left[rows]
        return out

    def max_abs_variant(self) -> float:
        return max(
            (float(np.abs(self.variant[r]).max()) for r in _row_blocks(self.m, self.n)),
            default=0.0,
        )


def _numerical_rank(singular: np.ndarray, threshold: float) -> int:
    return int(np.count_nonzero(singular > threshold))


def _singular_values(block: np.ndarray) -> np.ndarray:
    """The singular values of a small square-ish block, largest first, from its Gram matrix.

    ``eigvalsh(XᵀX)`` in float64 resolves singular values down to about ``1e-8·σ_max``, far
    below the rounding noise the rank is counted against; LAPACK's SVD of the same block was
    10x to 100x slower on shared cores (its threads wait on each other).
    """
    gram = block.T @ block if block.shape[0] >= block.shape[1] else block @ block.T
    return np.sqrt(np.clip(np.linalg.eigvalsh(gram), 0.0, None))[::-1]


def _small_svd(b: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The thin SVD of a wide ``b`` (``l × n``, ``l`` small) through the QR of ``bᵀ``.

    ``bᵀ = Q·R`` and ``Rᵀ = U·S·Wᵀ`` give ``b = U·S·(Q·W)ᵀ``: only an ``l × l`` SVD.
    """
    q, r = np.linalg.qr(b.T)
    u, singular, wt = np.linalg.svd(r.T)
    return u, singular, (q @ wt.T).T


def _sketch(diff: _Difference, width: int, rng: np.random.Generator) -> tuple[np.ndarray, ...]:
    """The randomized SVD of ``diff`` with ``width`` columns and one power iteration."""
    omega = rng.standard_normal((diff.n, width))
    q, _ = np.linalg.qr(diff.times(omega))
    q, _ = np.linalg.qr(diff.transposed_times(q))
    q, _ = np.linalg.qr(diff.times(q))
    b = diff.transposed_times(q).T  # Qᵀ·D, [width, n]
    ub, singular, vt = _small_svd(b)
    return q @ ub, singular, vt


def _max_error(diff: _Difference, u: np.ndarray, v: np.ndarray, tolerance: float) -> float:
    """``max |view(base) + u·v - variant|``, stopping early once it exceeds ``tolerance``."""
    worst = 0.0
    u64, v64 = u.astype(np.float64), v.astype(np.float64)
    for rows in _row_blocks(diff.m, diff.n):
        rebuilt = diff.base_rows(rows) + u64[rows] @ v64
        worst = max(worst, float(np.abs(rebuilt - diff.variant[rows]).max()))
        if worst > tolerance:
            break
    return worst


def find_low_rank_delta(
    base: np.ndarray,
    variant: np.ndarray,
    transpose: bool = False,
    ulps: float = DEFAULT_ULPS,
    seed: int = 0,
) -> LowRankDelta | NotLowRank:
    """Tests whether ``variant - view(base)`` is low-rank and worth storing as factors.

    Args:
        base: the base tensor, 2-D float32 (a memory map is read block by block).
        variant: the variant tensor, 2-D float32, shaped like ``view(base)``.
        transpose: compare against ``base.T``.
        ulps: the reconstruction tolerance in units in the last place of ``max|variant|``.
        seed: seeds the random sketch (the result is reproducible).

    Returns:
        The factors with the measured error, or why the pair does not qualify.
    """
    with _blas_threads().limit(limits=1, user_api="blas"):
        return _find_low_rank_delta(base, variant, transpose, ulps, seed)


@functools.cache
def _blas_threads() -> ThreadpoolController:
    """The BLAS libraries loaded (found once: looking them up reads the process's maps)."""
    return ThreadpoolController()


def _find_low_rank_delta(
    base: np.ndarray, variant: np.ndarray, transpose: bool, ulps: float, seed: int
) -> LowRankDelta | NotLowRank:
    """``find_low_rank_delta`` on whatever BLAS threads the caller allows."""
    if base.dtype != np.float32 or variant.dtype != np.float32:
        return NotLowRank("only float32 tensors are tested for low-rank deltas")
    if base.ndim != 2 or variant.ndim != 2:
        return NotLowRank("only 2-D tensors are tested for low-rank deltas")
    if (base.T.shape if transpose else base.shape) != variant.shape:
        return NotLowRank("shapes differ")
    m, n = variant.shape
    limit = max_worthwhile_rank(m, n)
    if limit < 1:
        return NotLowRank("too small for factors to pay off")
    diff = _Difference(base, variant, transpose)
    scale = diff.max_abs_variant()
    if not math.isfinite(scale):
        return NotLowRank("the variant holds non-finite values")
    tolerance = ulps * _ulp(scale)
    noise = _ulp(scale) * (math.sqrt(m) + math.sqrt(n))
    rng = np.random.default_rng(seed)

    # A random sub-block's rank is a lower bound of D's: reject dense differences cheaply.
    side = limit + _PROBE_EXTRA
    rows = np.sort(rng.choice(m, size=min(m, side), replace=False))
    cols = np.sort(rng.choice(n, size=min(n, side), replace=False))
    probe = _singular_values(diff.block(rows, cols))
    if probe.size == 0 or probe[0] == 0.0:
        return NotLowRank("the tensors are equal (an exact copy)", rank=0)
    probe_noise = _ulp(scale) * (math.sqrt(rows.size) + math.sqrt(cols.size))
    seen = _numerical_rank(probe, probe_noise)
    if seen > limit:
        return NotLowRank(f"the difference is dense (rank > {limit})", rank=seen)

    width = min(max(_FIRST_SKETCH, seen) + OVERSAMPLING, m, n)
    while True:
        left, singular, vt = _sketch(diff, width, rng)
        rank = _numerical_rank(singular, noise)
        if rank <= width - OVERSAMPLING or width == min(m, n):
            break
        if width >= limit + OVERSAMPLING:
            return NotLowRank(f"the difference is dense (rank > {limit})", rank=rank)
        width = min(2 * width, limit + OVERSAMPLING, m, n)
    if rank == 0:
        return NotLowRank("the difference is rounding noise only", rank=0)
    if rank > limit:
        return NotLowRank(f"rank {rank} is too high for factors to pay off", rank=rank)
    root = np.sqrt(singular[:rank])
    u = (left[:, :rank] * root).astype(np.float32)
    v = (root[:, None] * vt[:rank]).astype(np.float32)
    error = _max_error(diff, u, v, tolerance)
    if error > tolerance:
        return NotLowRank(
            f"rank-{rank} reconstruction misses by {error / _ulp(scale):.1f} ulps "
            f"(tolerance {ulps:g})",
            rank=rank,
        )
    return LowRankDelta(transpose, u, v, error, tolerance, scale)


@dataclasses.dataclass(frozen=True)
class TensorSlot:
    """A tensor as pairing sees it: its name, shape and graph position (first use, in order)."""

    name: str
    shape: tuple[int, ...]
    position: int


def pair_tensors(
    base: Sequence[TensorSlot], variant: Sequence[TensorSlot]
) -> list[tuple[str, str, bool]]:
    """Pairs 2-D tensors of a base and a variant model: by name first, then by shape and position.

    A pair may have equal shapes or reversed ones (the variant then reads the base transposed,
    e.g. one model exported by TorchScript and the other by dynamo). Tensors left over after
    name matching are grouped by their shape (up to order) and paired in order of position.

    Returns:
        ``(base name, variant name, transpose)`` triples.
    """

    def fits(a: TensorSlot, b: TensorSlot) -> bool | None:
        if a.shape == b.shape:
            return False
        return True if a.shape == b.shape[::-1] else None

    base2 = [t for t in base if len(t.shape) == 2]
    by_name = {t.name: t for t in base2}
    pairs: list[tuple[str, str, bool]] = []
    used: set[str] = set()
    rest: list[TensorSlot] = []
    for slot in (t for t in variant if len(t.shape) == 2):
        partner = by_name.get(slot.name)
        transpose = fits(partner, slot) if partner is not None else None
        if partner is not None and transpose is not None:
            pairs.append((partner.name, slot.name, transpose))
            used.add(partner.name)
        else:
            rest.append(slot)
    groups: dict[tuple[int, ...], list[TensorSlot]] = {}
    for slot in base2:
        if slot.name not in used:
            groups.setdefault(tuple(sorted(slot.shape)), []).append(slot)
    wanted: dict[tuple[int, ...], list[TensorSlot]] = {}
    for slot in rest:
        wanted.setdefault(tuple(sorted(slot.shape)), []).append(slot)
    for key, slots in wanted.items():
        partners = sorted(groups.get(key, []), key=lambda t: t.position)
        ordered = sorted(slots, key=lambda t: t.position)
        for partner, slot in zip(partners, ordered, strict=False):  # the shorter list decides
            transpose = fits(partner, slot)
            if transpose is not None:
                pairs.append((partner.name, slot.name, transpose))
    return pairs
