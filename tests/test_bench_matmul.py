"""bench_matmul's verdicts and tables from synthetic cells (no sessions, no timing)."""

import argparse
import datetime
import json
from dataclasses import asdict

import numpy as np
import pytest

from benchmarks import bench_matmul, noise
from benchmarks.bench_matmul import Cell

WHEN = datetime.datetime(2026, 12, 4, tzinfo=datetime.UTC)


def make(m: int, ratio: float, view: str = "transposed", **noise_fields) -> Cell:
    """A float32 cell at avx512, 1 thread, K x N 768 x 768."""
    cell = Cell(
        "avx512", 1, 768, 768, m, view, "float32", ort_ms=1.0, icl_ms=ratio,
        ratio=ratio, p10=ratio - 0.05, p90=ratio + 0.05, runs=30, min_ratio=ratio,
    )  # fmt: skip
    for name, value in noise_fields.items():
        setattr(cell, name, value)
    cell.verdict = bench_matmul.cell_verdict(cell)
    return cell


def judged(m: int, ratio: float, low: float, aa: tuple[float, float] | None, **kw) -> Cell:
    """A cell with a 90% interval [low, ratio + 0.02], and an A/A interval when `aa`."""
    fields = dict(ratio_low=low, ratio_high=ratio + 0.02, placements=3,
                  placement_ratios=[low, ratio, ratio + 0.02])  # fmt: skip
    if aa is not None:
        fields |= dict(aa_ratio=sum(aa) / 2, aa_p10=aa[0] - 0.1, aa_p90=aa[1] + 0.1,
                       aa_min_ratio=1.0, aa_low=aa[0], aa_high=aa[1],
                       placement_aa_ratios=[aa[0], aa[1], 1.0])  # fmt: skip
    return make(m, ratio, **fields, **kw)


def grid_args(**kw) -> argparse.Namespace:
    return argparse.Namespace(isa=["avx512"], threads=[1], half="float16",
                              baseline_library=None, unprepacked=False, **kw)  # fmt: skip


@pytest.mark.parametrize(
    ("ratio", "low", "aa", "expected"),
    [
        (1.00, 0.97, None, noise.MEETS),
        (0.98, 0.90, (0.90, 1.10), noise.MEETS),
        (1.03, 0.99, None, noise.WITHIN_NOISE),  # its interval reaches 1.00
        (1.03, 1.01, None, noise.ABOVE),  # no A/A: the interval alone decides
        (1.04, 1.02, (0.94, 1.01), noise.WITHIN_NOISE),  # identical kernels read 6% apart
        (1.04, 1.02, (1.00, 1.05), noise.WITHIN_NOISE),
        (1.04, 1.02, (0.99, 1.01), noise.ABOVE),  # the A/A stays within 1%
        (1.10, 1.02, (0.94, 1.01), noise.ABOVE),
    ],
)
def test_verdict_rule(ratio, low, aa, expected):
    aa_low, aa_high = aa if aa else (None, None)
    assert noise.verdict(ratio, low, 1.0, aa_low, aa_high) == expected


def test_verdict_of_a_16_bit_cell_is_against_its_own_goal():
    cell = judged(1, 0.60, 0.58, (0.99, 1.01))
    cell.w_dtype = "float16"
    assert bench_matmul.cell_verdict(cell) == noise.ABOVE  # 0.60 > 0.56 * 1.01
    cell.ratio, cell.ratio_low = 0.55, 0.50
    assert bench_matmul.cell_verdict(cell) == noise.MEETS


def test_median_interval_widens_when_placements_disagree():
    rng = np.random.default_rng(1)
    base = [1.0 + 0.02 * rng.standard_normal(15) for _ in range(3)]
    agree = noise.median_interval(base)
    disagree = noise.median_interval(
        [g + shift for g, shift in zip(base, (-0.06, 0, 0.06), strict=True)]
    )
    assert agree[0] < float(np.median(np.concatenate(base))) < agree[1]
    assert disagree[1] - disagree[0] > 2 * (agree[1] - agree[0])
    assert noise.median_interval(base) == agree  # seeded: a replot reads the same
    one = noise.median_interval(base[:1])  # one placement: the plain bootstrap over rounds
    assert one[0] < float(np.median(base[0])) < one[1]


def test_median_interval_takes_placements_of_unequal_rounds():
    low, high = noise.median_interval([[1.0] * 5, [1.2] * 9])
    assert low == pytest.approx(1.0) and high == pytest.approx(1.2)
    with pytest.raises(ValueError):
        noise.median_interval([[1.0], []])


def test_make_cell_pools_placements_and_reads_the_aa_column():
    columns = {"ort": 0, "aa": 1, ("transposed", "float32", None): 2}
    # Seconds [round, (ORT, ORT2, ICL)]: ICL 5% above ORT in one placement, 1% below in the
    # other; ORT2 reads like ORT.
    placed = [
        np.array([[1.0, 1.0, 1.05]] * 10),
        np.array([[2.0, 2.0, 1.98]] * 10),
    ]
    args = argparse.Namespace(aa=True, placements=2, baseline_library=None)
    cell = bench_matmul.make_cell(
        args, ("avx512", 1, 768, 768, 4), ("transposed", "float32"), placed, columns
    )
    assert cell.runs == 20 and cell.placements == 2
    assert cell.placement_ratios == pytest.approx([1.05, 0.99])
    assert cell.aa_ratio == cell.aa_low == cell.aa_high == pytest.approx(1.0)
    assert cell.placement_aa_ratios == pytest.approx([1.0, 1.0])
    assert cell.ratio_low == pytest.approx(0.99) and cell.ratio_high == pytest.approx(1.05)
    assert cell.verdict == noise.WITHIN_NOISE  # one placement met the goal


def test_grid_table_marks_cells_by_verdict():
    cells = [
        judged(1, 1.06, 1.03, (0.99, 1.01)),  # above
        judged(2, 1.03, 0.99, (0.99, 1.01)),  # within noise
        judged(4, 0.97, 0.95, (0.99, 1.01)),  # meets
    ]
    row = bench_matmul.grid_table(cells, "avx512", 1, [1, 2, 4])[4]
    assert row.startswith("| transposed | 768 x 768 |")
    assert [part.strip() for part in row.split("|")[3:6]] == [
        "1.06 (1.01-1.11) min 1.06 **>**",
        "1.03 (0.98-1.08) min 1.03 ~",
        "0.97 (0.92-1.02) min 0.97",
    ]


def test_markdown_counts_verdicts_and_gives_the_aa_spread():
    cells = [
        judged(1, 1.06, 1.03, (0.98, 1.02)),
        judged(2, 1.03, 0.99, (0.99, 1.01)),
        judged(4, 0.97, 0.95, (0.97, 1.01)),
        judged(1, 0.99, 0.95, (0.98, 1.02), view="plain"),
    ]
    lines = bench_matmul.markdown(cells, grid_args(), (1.0, 1.0), "--aa", WHEN)
    assert "## Verdicts: above 1.00, or within noise? (float32 W)" in lines
    # A/A: medians of aa_ratio, aa_p10, aa_p90 1.00 (0.88-1.11); d 0.02, 0.01, 0.03;
    # placement spread (high - low per placement) 0.05, 0.06, 0.04.
    assert (
        "| avx512 | 1 | transposed | 1 / 3 | 1 / 3 | 1 / 3 | 1.00 (0.88-1.11) | 0.020 (0.030) "
        "| 0.050 (0.060) |" in lines
    )
    assert "| avx512 | 1 | plain | 1 / 1 | 0 / 1 | 0 / 1 |" in "\n".join(lines)
    assert any(line.startswith("- Verdict per cell") and "A/A" in line for line in lines)
    noise_rows = [line for line in lines if line.startswith("| avx512 | 1 | transposed | 768")]
    expected = (
        "| 1.06 [1.03-1.08] | 1.03/1.06/1.08 | 1.00 [0.98-1.02] (0.88-1.12) | 0.98/1.02/1.00 |"
    )
    assert noise_rows[0].endswith(expected + " above |")


def test_a_record_without_intervals_gets_no_verdicts():
    # A cell as the JSON of an older grid holds it: none of the noise fields.
    old = {k: v for k, v in asdict(make(1, 1.03)).items() if v is not None}
    for name in ("ratio_low", "aa_ratio", "placements", "verdict"):
        old.pop(name, None)
    cell = Cell(**old)
    assert bench_matmul.cell_verdict(cell) is None
    row = bench_matmul.grid_table([cell], "avx512", 1, [1])[4]
    assert row.endswith("1.03 (0.98-1.08) min 1.03 **>** |")  # above 1.00, as before
    text = "\n".join(bench_matmul.markdown([cell], grid_args(), (1.0, 1.0), "", WHEN))
    assert "Verdict" not in text and "A/A" not in text and "Noise per cell" not in text


def test_placements_are_passes_over_the_grid(monkeypatch, tmp_path):
    order = []

    def fake_placement(args, threads, k, n):
        order.append((k, n, threads))
        seconds = np.array([[1.0, 1.0, 1.0 + 0.01 * len(order), 1.0, 1.0]] * 4)
        columns = {"ort": 0, "aa": 1}
        columns |= {(view, "float32", None): 2 + i for i, view in enumerate(bench_matmul.VIEWS)}
        return {4: (seconds, columns)}

    monkeypatch.setattr(bench_matmul, "measure_placement", fake_placement)
    monkeypatch.delenv(bench_matmul.CAPPED_ENV, raising=False)
    out = tmp_path / "cells.json"
    args = argparse.Namespace(worker="avx512", worker_output=out, kn=[(768, 768), (768, 3072)],
                              threads=[1], m=[4], half="float16", placements=2, aa=True,
                              baseline_library=None)  # fmt: skip
    assert bench_matmul.worker(args) == 0
    assert order == [(768, 768, 1), (768, 3072, 1)] * 2  # one placement of every shape per pass
    cells = [Cell(**c) for c in json.loads(out.read_text())]
    first = next(c for c in cells if (c.n, c.view) == (768, "transposed"))
    assert first.placement_ratios == pytest.approx([1.01, 1.03])  # calls 1 and 3
    assert first.runs == 8 and first.aa_ratio == pytest.approx(1.0)


def test_interleave_runs_every_runner_once_a_round_in_changing_order():
    # Each round is a permutation of the runners, and a runner's predecessor changes from round
    # to round (a rotated fixed order gave each runner the same predecessor in most rounds).
    calls: list[int] = []
    runners = [lambda i=i: calls.append(i) for i in range(4)]
    times = bench_matmul.interleave(runners, budget_s=0.0, min_runs=40, max_runs=40)
    assert times.shape == (40, 4)
    rounds = [calls[8 + 4 * i : 12 + 4 * i] for i in range(40)]  # after two warm-up rounds
    assert all(sorted(r) == [0, 1, 2, 3] for r in rounds)
    predecessors = {r[r.index(1) - 1] for r in rounds if r.index(1) > 0}
    assert len(predecessors) >= 2
