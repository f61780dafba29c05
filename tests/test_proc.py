"""``icl_onnx._proc``: the /proc memory readings check's worker and the benchmarks share."""

from __future__ import annotations

import subprocess
import sys
import time

import numpy as np

from icl_onnx import _proc


def test_readings_are_bytes_and_grow_with_a_touched_buffer():
    before = _proc.memory_status()
    assert set(before) == {"VmHWM", "RssAnon", "RssFile"}
    assert all(v % 1024 == 0 and v > 0 for v in before.values())  # kB lines, times 1024
    buffer = np.ones(64 << 20, np.uint8)  # 64 MiB, every page written
    after = _proc.memory_status()
    assert after["RssAnon"] - before["RssAnon"] >= 60 << 20
    assert _proc.peak_rss() >= after["RssAnon"] + after["RssFile"] - (1 << 20)
    del buffer


def test_another_process_is_read_by_its_pid():
    child = subprocess.Popen(
        [sys.executable, "-c", "import sys; b = bytearray(48 << 20); sys.stdin.read()"],
        stdin=subprocess.PIPE,
    )
    try:
        # the child's bytearray is resident once it blocks on stdin; wait for its peak to show
        for _ in range(200):
            if _proc.peak_rss(child.pid) >= 48 << 20:
                break
            time.sleep(0.05)
        assert _proc.peak_rss(child.pid) >= 48 << 20
        pss = _proc.proportional_set_size(child.pid)
        assert set(pss) == {"Pss", "Pss_Anon", "Pss_File"}
        assert pss["Pss_Anon"] >= 40 << 20
    finally:
        child.communicate(b"")
