"""benchmarks.ab_switch: the schedule gives every variant the same predecessor, ORT."""

from __future__ import annotations

import argparse

import numpy as np
import pytest

from benchmarks import ab_switch


def test_every_variant_runs_once_per_round_right_after_ort():
    runs = list(ab_switch.schedule(60, 3, np.random.default_rng(7)))
    assert len(runs) == 60 * 3 * 2
    for r in range(60):
        order = [run for rr, run in runs if rr == r]
        assert order[0::2] == [ab_switch.ORT] * 3
        assert sorted(order[1::2]) == [0, 1, 2]
    # the orders vary between rounds (a fixed order would give each variant a fixed position)
    firsts = {[run for rr, run in runs if rr == r][1] for r in range(60)}
    assert firsts == {0, 1, 2}


def test_variant_settings_are_parsed_or_refused():
    assert ab_switch.parse_variant("default") == {}
    assert ab_switch.parse_variant("ICLX_A=4,ICLX_B=0") == {"ICLX_A": "4", "ICLX_B": "0"}
    assert ab_switch.parse_variant("library=/x/libicl_ops.so") == {"library": "/x/libicl_ops.so"}
    for bad in ("ICLX_A", "=4", "ICLX_A=4,"):
        with pytest.raises(argparse.ArgumentTypeError, match="expected 'default' or NAME=VALUE"):
            ab_switch.parse_variant(bad)


def test_summary_pairs_each_run_with_the_ort_run_before_it():
    icl = np.array([[2.0, 1.0], [4.0, 3.0], [6.0, 3.0]])
    ort = np.array([[4.0, 2.0], [4.0, 3.0], [6.0, 6.0]])
    first, second = ab_switch.summarize(["default", "X=1"], icl, ort)
    assert first.median_s == 4.0 and first.over_ort[0] == 1.0 and first.over_first[0] == 1.0
    assert second.median_s == 3.0
    assert second.over_ort[0] == pytest.approx(0.5)  # 0.5, 1.0, 0.5
    assert second.over_first[0] == pytest.approx(0.5)  # 0.5, 0.75, 0.5


@pytest.mark.parametrize(
    "library_exists,extra,message",
    [
        (False, ["default"], "none.so: no such file"),
        (True, ["default", "library=OTHER"], "other.so: no such file"),
        (True, ["--evict-mb", "-1", "default"], "--evict-mb must not be negative"),
        (True, ["--before", "gather", "default"], "invalid choice: 'gather'"),
    ],
    ids=["missing_library", "missing_variant_library", "negative_eviction", "unknown_before"],
)
def test_bad_arguments_are_usage_errors(library_exists, extra, message, tmp_path, capsys):
    library = tmp_path / ("libicl_ops.so" if library_exists else "none.so")
    if library_exists:
        library.write_bytes(b"")
    extra = [arg.replace("OTHER", str(tmp_path / "other.so")) for arg in extra]
    with pytest.raises(SystemExit) as exit_info:
        ab_switch.main(
            ["--library", str(library), "--k", "8", "--n", "8", "--m", "1", "--view", "plain"]
            + extra
        )
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err
