"""Session creation time: ORT's MatMul (which prepacks W^T) against IclMatMul, whose W is
collapsed into huge pages (cpu/huge_pages.h) in the background by default, during creation
with ``ICL_ONNX_HUGE_PAGES=sync``, and not at all with ``0``.

Each creation runs in a fresh process (``icl_onnx.create_session`` on the serialized model, W
inline, so ORT holds it in its own memory); the four variants alternate in a new random order
every round. The table gives the median and the 10th-90th percentiles of each, in ms, and for
the default how long after creation the collapse took; below it, every round's sync - 0::

    python -m benchmarks.bench_creation --output benchmarks/results/huge_pages_creation.md
"""

from __future__ import annotations

import argparse
import datetime
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks import harness
from benchmarks.bench_huge_pages import anon_huge_mib
from benchmarks.bench_matmul import icl_model, ort_model

VARIANTS = {"ORT MatMul (prepacked)": ("ort", None),
            "IclMatMul, default (collapsed in the background)": ("icl", None),
            "IclMatMul, ICL_ONNX_HUGE_PAGES=sync": ("icl", "sync"),
            "IclMatMul, ICL_ONNX_HUGE_PAGES=0": ("icl", "0")}  # fmt: skip
BACKGROUND_DONE = "default: from creation's end until W is collapsed"


def create(path: Path, wait: bool) -> tuple[float, float]:
    """Seconds icl_onnx.create_session takes on the model at `path` (this process's first), and
    with `wait` the seconds after it until the process's AnonHugePages hold all but 4 MiB of the
    model's bytes (the background collapse done; 0 when not waited for, NaN after 30 s)."""
    import icl_onnx

    model = path.read_bytes()
    before = anon_huge_mib()
    start = time.perf_counter()
    session = icl_onnx.create_session(model)  # kept: dropping it cancels the collapse
    created = time.perf_counter()
    if not wait:
        return created - start, 0.0
    while anon_huge_mib() - before < len(model) / 2**20 - 4:
        if time.perf_counter() - created > 30:
            return created - start, float("nan")
        time.sleep(0.05)  # reading smaps takes the lock the collapse needs
    del session
    return created - start, time.perf_counter() - created


def measure(args: argparse.Namespace, folder: Path) -> dict[str, list[float]]:
    """ms per variant and round."""
    w = np.random.default_rng(0).standard_normal((args.n, args.k), dtype=np.float32)
    paths = {"icl": folder / "icl.onnx", "ort": folder / "ort.onnx"}
    paths["icl"].write_bytes(icl_model(w, transposed=True))
    paths["ort"].write_bytes(ort_model(np.ascontiguousarray(w.T), as_input=False))
    del w
    times: dict[str, list[float]] = {name: [] for name in [*VARIANTS, BACKGROUND_DONE]}
    order = np.random.default_rng(1)
    for _ in range(args.rounds):
        for name in order.permutation(list(VARIANTS)):
            which, flag = VARIANTS[name]
            env = harness.huge_pages_environment(flag)
            wait = ["--wait"] if which == "icl" and flag is None else []
            command = harness.child_command(
                "benchmarks.bench_creation", "--child", paths[which], *wait
            )
            done = subprocess.run(
                command, env=env, check=True, cwd=harness.ROOT, capture_output=True, text=True
            )
            created, collapsed = map(float, done.stdout.split())
            times[name].append(created * 1e3)
            if wait:
                times[BACKGROUND_DONE].append(collapsed * 1e3)
    return times


def markdown(record: dict) -> list[str]:
    when = datetime.datetime.fromisoformat(record["measured"])
    times = {name: np.array(v) for name, v in record["times_ms"].items()}
    huge, small = (
        times["IclMatMul, ICL_ONNX_HUGE_PAGES=sync"],
        times["IclMatMul, ICL_ONNX_HUGE_PAGES=0"],
    )
    rows = [
        [name, f"{np.median(v):.0f}", f"{np.percentile(v, 10):.0f}-{np.percentile(v, 90):.0f}",
         f"{v.max():.0f}"]
        for name, v in times.items()
    ]  # fmt: skip
    k, n = record["k"], record["n"]
    return [
        "# Session creation with W in huge pages",
        "",
        f"`python -m benchmarks.bench_creation {record['command']}`, {when:%Y-%m-%d %H:%M} UTC.",
        "",
        f"- {harness.describe(record['machine'])}",
        f"- One float32 weight of {n} x {k} ({n * k * 4 / 2**20:.1f} MiB) stored inline: ORT's "
        "MatMul on W^T (ORT prepacks it), IclMatMul on W with the transposed view (W collapsed "
        "into huge pages by the library's thread, during creation with `sync`, or not with `0`). "
        "`icl_onnx.create_session` in a "
        f"fresh process each time, {record['rounds']} rounds, the variants in a new random order "
        "every round.",
        "",
        *harness.table(["session", "median ms", "p10-p90 ms", "max ms"], rows, "lrrr"),
        "",
        "`sync` - `0`, ms, round by round: " + ", ".join(f"{d:.0f}" for d in huge - small) + ".",
    ]


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--k", type=int, default=768)
    parser.add_argument("--n", type=int, default=32000)
    parser.add_argument("--rounds", type=int, default=12)
    parser.add_argument("--output", type=Path, default=harness.RESULTS / "huge_pages_creation.md")
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--wait", action="store_true", help=argparse.SUPPRESS)
    return parser.parse_args()


def main() -> int:
    args = parse_args()
    if args.child:
        print(*create(args.child, args.wait))
        return 0
    when = datetime.datetime.now(datetime.UTC)
    machine = harness.metadata()
    with tempfile.TemporaryDirectory() as tmp:
        times = measure(args, Path(tmp))
    record = {
        "command": shlex.join(sys.argv[1:]),
        "measured": when.isoformat(),
        "machine": machine,
        "k": args.k,
        "n": args.n,
        "rounds": args.rounds,
        "times_ms": times,
    }
    harness.write_record(args.output, record, markdown)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
