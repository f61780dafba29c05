"""Same-session A/B of a kernel choice: one IclMatMul session, the choice switched run by run.

Two sessions of the same code differ by up to ~10% in one cell, because each holds its own
copy of W somewhere else in memory (``bench_matmul --aa`` shows it), so a before/after of two
builds in separate sessions cannot settle a change of that size. Here every variant runs on
the same session, hence the same W: build a scratch copy of the op library in which the choice
under test reads an environment variable on every call (``std::getenv`` in the rule, e.g.
``ICLX_NARROW`` for ``KSplitRule::narrow_max_rows``), and name the settings to compare::

    python -m benchmarks.ab_switch --library /tmp/scratch/libicl_ops.so --k 3072 --n 768 \\
        --m 8 --view plain default ICLX_NARROW=64

Each round runs the variants in a fresh random order, and every variant directly after a run of
ORT's prepacked MatMul on its own W^T, so that every variant finds the caches as ORT leaves
them. (A first version ran ORT and the variants in one random order from a fixed seed: then
one variant followed another more often than the reverse and found W warm, and two identical
settings read 0.79-0.85 of each other at K=3072, N=768, M=6; with equal predecessors,
0.96-1.04.) The ratio per variant and round is its time over the ORT run just before it;
the report gives the median and the 10th-90th percentiles, and each variant's median time
over the first variant's, round by round. Sessions are re-created on ``--placements`` copies
of the weights, the rounds cycling through them. A variant ``library=PATH`` runs another build
instead, on sessions of its own (so on its own copy of W, as two builds in bench_matmul): the
same schedule then compares builds in separate sessions. With ``--evict-mb``, a buffer of that
size is read before every ORT run (not timed), so that ORT and the variant read W from memory,
as in a model whose weights do not fit the last-level cache; without it, ORT's W and ICL's W
(9.4 MB each at K=768, N=3072) both stay in a 32 MB L3. With ``--before icl``, one run of
another IclMatMul session (the same view, on a W of its own, ``--library``'s build with its
own choices, untimed) comes between the ORT run and the variant, as a MatMul meets it after
another shared weight's MatMul. What precedes a run can move a choice's gain by 10-20% (a K
split over a 9.4 MB W, K=768, N=3072, M=1: 0.84 of the other choice after one predecessor and
1.15 after the other, in runs minutes apart): keep a change only where it holds under both.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from benchmarks.bench_matmul import icl_model, ort_model, session

ORT = -1  # the schedule's index of the ORT run that precedes every variant


def schedule(rounds: int, variants: int, rng: np.random.Generator) -> Iterator[tuple[int, int]]:
    """(round, run) pairs, run ORT or a variant index: each round's variants in a random order,
    each right after an ORT run."""
    for r in range(rounds):
        for v in rng.permutation(variants):
            yield r, ORT
            yield r, int(v)


def parse_variant(text: str) -> dict[str, str]:
    """``default`` (no variables) or ``NAME=VALUE[,NAME=VALUE...]`` as a dict (``library``: a
    build of its own, see the module docstring)."""
    if text == "default":
        return {}
    pairs = [item.split("=", 1) for item in text.split(",")]
    if any(len(pair) != 2 or not pair[0] for pair in pairs):
        raise argparse.ArgumentTypeError(f"{text!r}: expected 'default' or NAME=VALUE[,...]")
    return dict(pairs)


@dataclass(frozen=True)
class VariantSummary:
    """One variant's times: median seconds, ICL/ORT per round, and time / the first variant's."""

    name: str
    median_s: float
    over_ort: tuple[float, float, float]  # median, 10th, 90th percentile
    over_first: tuple[float, float, float]


def summarize(names: Sequence[str], icl: np.ndarray, ort: np.ndarray) -> list[VariantSummary]:
    """``icl[r, v]``: variant v's time in round r; ``ort[r, v]``: the ORT run just before it."""

    def spread(x: np.ndarray) -> tuple[float, float, float]:
        return float(np.median(x)), float(np.percentile(x, 10)), float(np.percentile(x, 90))

    return [
        VariantSummary(
            name,
            float(np.median(icl[:, v])),
            spread(icl[:, v] / ort[:, v]),
            spread(icl[:, v] / icl[:, 0]),
        )
        for v, name in enumerate(names)
    ]


def _set_variant(keys: set[str], settings: dict[str, str]) -> None:
    for key in keys:
        os.environ.pop(key, None)
    os.environ.update(settings)


def measure(args: argparse.Namespace) -> list[VariantSummary]:
    """Times the variants as the module docstring says; checks each against ORT first."""
    rng = np.random.default_rng(0)
    w = rng.standard_normal((args.n, args.k), dtype=np.float32)
    w_t = np.ascontiguousarray(w.T)
    stored = w if args.view == "transposed" else w_t
    ort_sessions = [session(ort_model(w_t, False), args.threads) for _ in range(args.placements)]

    def icl_sessions(library: Path) -> list:
        model = icl_model(stored, args.view == "transposed")
        return [session(model, args.threads, library) for _ in range(args.placements)]

    shared = icl_sessions(args.library)  # every variant without a library of its own
    before = icl_sessions(args.library) if args.before == "icl" else None
    sessions = [
        icl_sessions(Path(settings["library"])) if "library" in settings else shared
        for settings in args.variants
    ]
    a = rng.standard_normal((args.m, args.k), dtype=np.float32)
    feeds = {"A": a}
    keys = {key for settings in args.variants for key in settings} - {"library"}
    env = [{k: v for k, v in settings.items() if k != "library"} for settings in args.variants]
    expected = ort_sessions[0].run(None, feeds)[0]
    for v, text in enumerate(args.variant_names):
        _set_variant(keys, env[v])
        got = sessions[v][0].run(None, feeds)[0]
        if not np.allclose(got, expected, rtol=1e-3, atol=1e-3 * np.sqrt(args.k)):
            raise SystemExit(f"ab_switch: variant {text} differs from ORT's MatMul")
    junk = np.ones(args.evict_mb * (1 << 20) // 8) if args.evict_mb else None
    clock = time.thread_time if args.threads == 1 else time.perf_counter
    icl = np.zeros((args.rounds, len(args.variants)))
    ort = np.zeros_like(icl)
    last_ort = 0.0
    for r, run in schedule(args.rounds, len(args.variants), np.random.default_rng(args.seed)):
        p = r % args.placements
        if run == ORT:
            if junk is not None:
                junk.sum()
            start = clock()
            ort_sessions[p].run(None, feeds)
            last_ort = clock() - start
            continue
        if before is not None:
            _set_variant(keys, {})  # the predecessor runs the build's own choices
            before[p].run(None, feeds)
        _set_variant(keys, env[run])
        start = clock()
        sessions[run][p].run(None, feeds)
        icl[r, run] = clock() - start
        ort[r, run] = last_ort
    return summarize(args.variant_names, icl, ort)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--library", type=Path, required=True, help="the scratch libicl_ops.so")
    parser.add_argument("--k", type=int, required=True)
    parser.add_argument("--n", type=int, required=True)
    parser.add_argument("--m", type=int, required=True)
    parser.add_argument("--view", choices=("transposed", "plain"), required=True)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=100)
    parser.add_argument("--placements", type=int, default=3)
    parser.add_argument("--seed", type=int, default=None, help="of the orders (default: random)")
    parser.add_argument(
        "--evict-mb", type=int, default=0, help="read this many MB before every ORT run"
    )
    parser.add_argument(
        "--before",
        choices=("ort", "icl"),
        default="ort",
        help="icl: another IclMatMul session runs between the ORT run and each variant",
    )
    parser.add_argument("variants", nargs="+", metavar="VARIANT", help="default or NAME=VALUE,...")
    args = parser.parse_args(argv)
    if not args.library.is_file():
        parser.error(f"--library {args.library}: no such file")
    if min(args.k, args.n, args.m, args.threads, args.rounds, args.placements) < 1:
        parser.error("--k, --n, --m, --threads, --rounds and --placements must be positive")
    if args.evict_mb < 0:
        parser.error("--evict-mb must not be negative")
    try:
        args.variants, args.variant_names = [parse_variant(v) for v in args.variants], args.variants
    except argparse.ArgumentTypeError as error:
        parser.error(str(error))
    for settings in args.variants:
        if "library" in settings and not Path(settings["library"]).is_file():
            parser.error(f"library={settings['library']}: no such file")
    if args.seed is None:
        args.seed = int.from_bytes(os.urandom(4), "little")
    summaries = measure(args)
    print(
        f"K={args.k} N={args.n} M={args.m} {args.view}, {args.threads} thread(s), "
        f"{args.rounds} rounds, {args.placements} placements, evict {args.evict_mb} MB, "
        f"before {args.before}, seed {args.seed}, load {os.getloadavg()[0]:.2f}"
    )
    first = args.variant_names[0]
    for s in summaries:
        print(
            f"  {s.name:28s} {s.median_s * 1e3:8.3f} ms  ICL/ORT {s.over_ort[0]:.3f} "
            f"({s.over_ort[1]:.2f}-{s.over_ort[2]:.2f})  /{first} {s.over_first[0]:.3f} "
            f"({s.over_first[1]:.2f}-{s.over_first[2]:.2f})"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
