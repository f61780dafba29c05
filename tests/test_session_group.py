"""SessionGroup: sessions over models optimized together read one copy of shared tensors."""

from __future__ import annotations

import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import onnx
import pytest
from builders import decoder, encoder
from builders import encoder_decoder_feeds as feeds
from onnx import TensorProto
from onnx import helper as h

import icl_onnx
from icl_onnx.pipeline import optimize_files

pytestmark = pytest.mark.usefixtures("icl_library")


@pytest.fixture
def optimized(tmp_path):
    src = [tmp_path / "encoder.onnx", tmp_path / "decoder.onnx"]
    for path, proto in zip(src, (encoder(), decoder()), strict=True):
        onnx.save(proto, path)
    out = tmp_path / "out"
    out.mkdir()
    optimize_files(src, out, min_elements=16)
    return [out / p.name for p in src]


def run(session, f):
    names = {i.name for i in session.get_inputs()}
    return session.run(None, {k: v for k, v in f.items() if k in names})


def test_sessions_read_the_one_shared_copy(optimized):
    group = icl_onnx.SessionGroup(optimized)
    assert len(group.sessions) == 2
    assert group.shared_bytes == sum(a.nbytes for a in group.shared.values()) > 0
    f = feeds()
    before = [run(s, f) for s in group.sessions]
    for array in group.shared.values():
        array *= 2  # in place: a session holding its own copy would not see this
    after = [run(s, f) for s in group.sessions]
    for old, new in zip(before, after, strict=True):
        assert not np.allclose(old[0], new[0])


def test_threads_running_the_sessions_get_the_sequential_outputs(optimized):
    group = icl_onnx.SessionGroup(optimized * 2)
    assert len(group.sessions) == 4
    inputs = [feeds(seed) for seed in range(len(group.sessions))]
    want = [run(s, f) for s, f in zip(group.sessions, inputs, strict=True)]
    for _ in range(3):
        with ThreadPoolExecutor(4) as pool:
            got = list(pool.map(run, group.sessions, inputs))
        for a, b in zip(want, got, strict=True):
            for x, y in zip(a, b, strict=True):
                np.testing.assert_array_equal(x, y)


def test_group_matches_standalone_sessions(optimized):
    group = icl_onnx.SessionGroup(optimized)
    f = feeds()
    for path, session in zip(optimized, group.sessions, strict=True):
        alone = icl_onnx.create_session(path)
        for a, b in zip(run(alone, f), run(session, f), strict=True):
            np.testing.assert_array_equal(a, b)


# The start of the scripts below, each run in a fresh interpreter.
_RSS_KB = """
import sys
import numpy as np
import onnxruntime
import icl_onnx

def rss_kb():
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))
"""

_RSS_AFTER_RUNS = (
    _RSS_KB
    + """
x = np.ones((1, int(sys.argv[2])), np.float32)
before = rss_kb()
group = icl_onnx.SessionGroup(sys.argv[3:], share_buffers=sys.argv[1] == "shared")
for session in group.sessions:
    session.run(None, {"x": x})  # the output is dropped before the next session runs
print(rss_kb() - before)
"""
)


def test_sessions_that_run_one_at_a_time_share_one_working_memory(tmp_path):
    n = 1 << 22  # 16 MiB per float32 activation; the weights are one scalar
    nodes = [
        h.make_node("Mul", ["x", "c"], ["a"]),
        h.make_node("Add", ["a", "c"], ["b"]),
        h.make_node("Sigmoid", ["b"], ["y"]),
    ]
    graph = h.make_graph(
        nodes,
        "activations",
        [h.make_tensor_value_info("x", TensorProto.FLOAT, [1, n])],
        [h.make_tensor_value_info("y", TensorProto.FLOAT, [1, n])],
        [h.make_tensor("c", TensorProto.FLOAT, [], [2.0])],
    )
    path = tmp_path / "activations.onnx"
    onnx.save(h.make_model(graph, opset_imports=[h.make_opsetid("", 17)]), path)
    added_mib = {}
    for mode in ("shared", "own"):
        out = subprocess.run(
            [sys.executable, "-c", _RSS_AFTER_RUNS, mode, str(n)] + [str(path)] * 6,
            capture_output=True,
            text=True,
            check=True,
        )
        added_mib[mode] = int(out.stdout.split()[-1]) / 1024
    # Six sessions, each with its own arena, keep six working sets (>= 2 activations each);
    # one arena for all keeps about one.
    assert added_mib["own"] > 6 * 2 * 16 * 0.9, added_mib
    assert added_mib["shared"] < added_mib["own"] / 2, added_mib


def optimized_gather_pair(tmp_path, table: np.ndarray, onnx_type: int) -> list:
    """Two models that Gather two rows of one table, optimized together (one data file)."""
    src = []
    for name in ("a", "b"):
        graph = h.make_graph(
            [h.make_node("Gather", ["table", "ids"], ["rows"])],
            name,
            [h.make_tensor_value_info("ids", TensorProto.INT64, [2])],
            [h.make_tensor_value_info("rows", onnx_type, [2, table.shape[1]])],
            [onnx.numpy_helper.from_array(table, "table")],
        )
        src.append(tmp_path / f"{name}.onnx")
        onnx.save(h.make_model(graph, opset_imports=[h.make_opsetid("", 17)]), src[-1])
    out = tmp_path / "out"
    out.mkdir()
    optimize_files(src, out)
    return [out / p.name for p in src]


_RSS_AFTER_OPEN = (
    _RSS_KB
    + """
SessionGroup = icl_onnx.SessionGroup  # imports onnx before the measurement
before = rss_kb()
group = SessionGroup(sys.argv[1:])
opened = rss_kb()
for session in group.sessions:
    session.run(None, {"ids": np.array([3, 5], np.int64)})
print(opened - before, rss_kb() - before, group.shared_bytes)
"""
)


def test_shared_tensors_are_mapped_and_paged_in_as_read(tmp_path):
    """A table two models share is mapped, not read: opening the group leaves it on disk, and
    gathering two rows pages in little of it."""
    table = np.random.default_rng(0).standard_normal((8192, 1024)).astype(np.float32)  # 32 MiB
    paths = optimized_gather_pair(tmp_path, table, TensorProto.FLOAT)
    result = subprocess.run(
        [sys.executable, "-c", _RSS_AFTER_OPEN] + [str(p) for p in paths],
        capture_output=True,
        text=True,
        check=True,
    )
    opened_kb, after_run_kb, shared = (int(x) for x in result.stdout.split())
    assert shared == table.nbytes
    # Read into memory, the table alone would add 32 MiB; ORT's sessions add about 11 MiB.
    assert opened_kb < 16 * 1024, opened_kb
    assert after_run_kb < 16 * 1024, after_run_kb


@pytest.mark.parametrize(
    "dtype,onnx_type", [(np.int16, TensorProto.INT16), (np.uint32, TensorProto.UINT32)]
)
def test_tables_of_types_numpy_holds_as_raw_bytes_are_shared(tmp_path, dtype, onnx_type):
    """Element types outside the common float/int set are mapped as their bytes, not refused."""
    table = np.arange(64 * 1024, dtype=dtype).reshape(1024, 64)
    group = icl_onnx.SessionGroup(optimized_gather_pair(tmp_path, table, onnx_type))
    assert group.shared_bytes == table.nbytes
    ids = np.array([3, 1000], np.int64)
    for session in group.sessions:
        np.testing.assert_array_equal(session.run(None, {"ids": ids})[0], table[ids])
