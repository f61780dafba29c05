"""The benchmarks' shared --out argument: a folder, refused up front when it names a file."""

from __future__ import annotations

import argparse

import pytest

from benchmarks import bench_latency, bench_processes, bench_variant_batches, core_exports, harness


def test_results_folder_takes_a_folder_or_a_new_path(tmp_path):
    assert harness.results_folder(str(tmp_path)) == tmp_path
    assert harness.results_folder(str(tmp_path / "new")) == tmp_path / "new"


def test_results_folder_refuses_a_file(tmp_path):
    report = tmp_path / "variant_batches.md"
    report.write_text("# earlier results\n")
    with pytest.raises(argparse.ArgumentTypeError, match="is a file; --out takes the folder"):
        harness.results_folder(str(report))
    assert report.read_text() == "# earlier results\n"


@pytest.mark.parametrize(
    "module", [bench_variant_batches, bench_latency, bench_processes, core_exports]
)
def test_benchmarks_refuse_a_file_for_out_before_measuring(module, tmp_path, capsys):
    report = tmp_path / "results.md"
    report.write_text("")
    with pytest.raises(SystemExit) as exit_info:
        module.main(["--out", str(report)])
    assert exit_info.value.code == 2
    assert "is a file; --out takes the folder" in capsys.readouterr().err
