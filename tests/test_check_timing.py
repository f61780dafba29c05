"""Tests of ``check``'s alternated timing: the verdict on per-pair ratios, the order of the runs,
the report and the row ``check`` prints. No assertion depends on how fast anything ran."""

from __future__ import annotations

import json
import subprocess
import sys

import builders
import numpy as np
import onnx
import pytest

from icl_onnx.check import check_models
from icl_onnx.check.measure import Worker, time_alternately
from icl_onnx.check.model_info import read_model_info
from icl_onnx.check.timing import (
    FASTER,
    MAX_SPREAD,
    NO_DIFFERENCE,
    SLOWER,
    TOO_FEW,
    TOO_NOISY,
    summarize_timing,
    timing_verdict,
)
from icl_onnx.cli import main as cli_main
from icl_onnx.errors import IclUserError

VERDICTS = {FASTER, SLOWER, NO_DIFFERENCE, TOO_NOISY, TOO_FEW}


@pytest.mark.parametrize(
    ("ratios", "verdict"),
    [
        ([0.80, 0.82, 0.79, 0.81, 0.85, 0.78, 0.80, 0.83, 0.81, 0.80], FASTER),
        ([1.30, 1.28, 1.35, 1.31, 1.29, 1.33, 1.30, 1.32, 1.27, 1.30], SLOWER),
        # The median says 2% slower, but a fifth of the pairs say faster: within noise.
        ([1.02, 0.97, 1.05, 0.95, 1.02, 1.03, 0.96, 1.08, 1.02, 1.01], NO_DIFFERENCE),
        # Every pair slower, but the pairs disagree by a factor of two among themselves.
        ([1.10, 2.00, 1.15, 1.90, 1.20, 2.10, 1.05, 1.80, 1.60, 1.30], TOO_NOISY),
        # The interval 0.4-2.5 contains 1.0, but it is far too wide to say "no difference".
        ([0.40, 2.50, 0.40, 2.50, 1.00, 0.40, 2.50, 0.40, 2.50, 1.00], TOO_NOISY),
        ([0.50, 0.51, 0.49, 0.50], TOO_FEW),
        ([], TOO_FEW),
    ],
)
def test_verdict_calls_a_difference_only_when_the_pairs_agree_on_it(ratios, verdict):
    assert timing_verdict(ratios) == verdict


def test_spread_threshold_decides_between_a_difference_and_noise():
    ratios = [1.2, 1.2, 1.2, 1.2, 1.2, 1.6, 1.6, 1.6, 1.6, 1.6]  # p10 1.2, p90 1.6: width 0.4
    assert timing_verdict(ratios, max_spread=0.5) == SLOWER
    assert timing_verdict(ratios, max_spread=0.3) == TOO_NOISY
    assert timing_verdict([1.0] * 10) == NO_DIFFERENCE  # the interval's edge counts as inside
    straddling = [0.8, 0.8, 0.8, 0.8, 0.8, 1.2, 1.2, 1.2, 1.2, 1.2]  # p10 0.8, p90 1.2, width 0.4
    assert timing_verdict(straddling, max_spread=0.5) == NO_DIFFERENCE
    assert timing_verdict(straddling, max_spread=0.3) == TOO_NOISY  # the spread is tested first
    assert timing_verdict([0.5] * 3, min_pairs=3) == FASTER


def test_summary_pairs_the_runs_and_reports_ratio_percentiles():
    original = [0.010, 0.020, 0.010, 0.040, 0.010, 0.010]
    optimized = [0.005, 0.010, 0.006, 0.020, 0.004, 0.005]
    report = summarize_timing(original, optimized)
    assert report.ratios == pytest.approx([0.5, 0.5, 0.6, 0.5, 0.4, 0.5])
    assert report.pairs == 6 and report.median_ratio == pytest.approx(0.5)
    assert report.p10_ratio == pytest.approx(0.45) and report.p90_ratio == pytest.approx(0.55)
    assert report.original_median == pytest.approx(0.010)
    assert report.optimized_median == pytest.approx(0.0055)
    assert report.verdict == FASTER and report.max_spread == MAX_SPREAD
    with pytest.raises(ValueError, match="one run of each model per pair"):
        summarize_timing([0.1, 0.1], [0.1])


class _Recorder:
    """Stands in for a started ``Worker``: records which input set it was asked to run."""

    def __init__(self, name: str, log: list[tuple[str, int]]):
        self.name, self.log = name, log

    def run_once(self, index: int) -> float:
        self.log.append((self.name, index))
        return 1.0 if self.name == "a" else 2.0


def test_pairs_alternate_which_model_runs_first_and_stop_after_min_pairs_past_the_budget():
    log: list[tuple[str, int]] = []
    a, b = _Recorder("a", log), _Recorder("b", log)
    done = []
    times = time_alternately(a, b, pairs=4, seconds=60.0, min_pairs=2, on_pair=done.append)
    assert log == [("a", 0), ("b", 0), ("b", 1), ("a", 1), ("a", 2), ("b", 2), ("b", 3), ("a", 3)]
    assert times == ([1.0] * 4, [2.0] * 4) and done == [1] * 4
    log.clear()
    times = time_alternately(a, b, pairs=20, seconds=0.0, min_pairs=3)  # budget already spent
    assert len(times[0]) == len(times[1]) == 3 and len(log) == 6


@pytest.fixture
def pair(tmp_path) -> tuple[str, str]:
    paths = []
    for name in ("a.onnx", "b.onnx"):
        onnx.save(builders.tied_model(hidden_output=True), tmp_path / name)
        paths.append(str(tmp_path / name))
    return paths[0], paths[1]


def test_check_times_both_models_alternately_after_measuring_memory(pair):
    report = check_models(*pair, iterations=2, timing_runs=6, timing_seconds=600.0)
    timing = report.timing
    assert timing is not None and timing.pairs == 6
    assert len(timing.original_seconds) == len(timing.optimized_seconds) == 6
    assert all(t > 0 for t in timing.original_seconds + timing.optimized_seconds)
    assert timing.p10_ratio <= timing.median_ratio <= timing.p90_ratio
    assert timing.verdict in VERDICTS
    assert len(report.memory.original.run_seconds) == 2  # the parity runs stay apart
    data = report.to_dict()["timing"]
    assert data["pairs"] == 6 and len(data["ratios"]) == 6 and data["verdict"] == timing.verdict
    assert {"median_ratio", "p10_ratio", "p90_ratio", "original_median_seconds"} <= set(data)
    assert report.passed


def test_no_timing_runs_leaves_the_report_without_timing(pair):
    report = check_models(*pair, timing_runs=0)
    assert report.timing is None and report.passed
    assert "timing" in report.to_dict() and report.to_dict()["timing"] is None


def test_cli_prints_the_alternated_row_with_its_spread_and_verdict(pair, capsys):
    assert cli_main.main(["check", *pair, "--timing-runs", "5", "--timing-seconds", "600"]) == 0
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if "median run" in line)
    assert "alternated, 5 pairs" in row and "p10-p90" in row
    assert any(verdict in row for verdict in VERDICTS)
    assert cli_main.main(["check", *pair, "--json", "--timing-runs", "5"]) == 0
    timing = json.loads(capsys.readouterr().out)["timing"]
    assert timing["pairs"] == 5 and timing["verdict"] in VERDICTS
    assert cli_main.main(["check", *pair, "--timing-runs", "0"]) == 0
    assert "median run (one model after the other)" in capsys.readouterr().out


def test_a_worker_answering_something_other_than_a_run_time_fails_in_one_line(pair, tmp_path):
    info = read_model_info(pair[0])
    feeds = [{"ids": np.zeros((1, 4), np.int64)}]  # the stand-in below never reads them
    with Worker(info, feeds, tmp_path / "w", providers=["CPUExecutionProvider"]) as worker:
        # Stands in for the worker process: reads the request, answers nonsense and exits.
        worker._proc = subprocess.Popen(
            [sys.executable, "-c", "import sys; sys.stdin.readline(); print('oops', flush=True)"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        (tmp_path / "w" / "stderr.txt").write_text("")
        with pytest.raises(IclUserError, match=r"answered 'oops' instead of a run time \(exit 0"):
            worker.run_once(0)
