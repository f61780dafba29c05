"""Many fine-tunes in one batch: one batched-variants session against one variant at a time.

K = 1, 2, 4, 8, 16 rank-16 fine-tunes of one Llama-style base (random weights,
``icl_onnx.models.llama_config``: hidden 768, vocab 32000, 2 layers, 12 heads, MLP 1536, untied
LM head; each variant a peft LoRA on every linear layer with nonzero B, merged by
``merge_and_unload``; every model exported with a KV cache by
``icl_onnx.torch_export.export_decoder_with_past``). A batch of K conversations, row k through
variant k, each a prompt of 128 tokens then 32 greedy decode steps
(``icl_onnx.serve.generate.decode_steps``), run four ways:

* batched: ``icl-onnx optimize BASE V1..VK --batched-variants`` (one model, ``variant_ids``
  1..K), one batch of K rows;
* one at a time: ``optimize BASE V1..V16 --out-dir`` and a ``SessionGroup`` of the K variants'
  files; each row a batch of one through its own session;
* ORT adapters: peft's unmerged model exported with past, its LoRA factors turned into graph
  inputs (defaults: B = 0, the base), each variant's factors written with
  ``onnxruntime.AdapterFormat`` and loaded with ``onnxruntime.LoraAdapter``; each row a batch of
  one with its adapter active (``RunOptions.add_active_adapter``);
* base: the exported base with the same batch of K rows (the ceiling: no variant at all).

Timing: for each K one worker process holds the four and runs them alternately, in a shuffled
order each round, after one untimed round (which also checks parity); per round, decode
tokens/s = K x 32 / seconds of the 32 decode steps (all rows), prefill = seconds of the prompt
step (all rows). Ratios are taken per round and reported as median (p10-p90).
Memory: each way in a fresh process (``--worker memory``): RssAnon, RssFile and PSS added by
opening it and running the batch once. Parity: each row's logits (prompt and every decode step,
until its tokens first differ) against a session of its own variant's export run alone, as
max|difference| / max|reference|.

Writes ``benchmarks/results/variant_batches.md``, ``.json`` and ``.png`` (``--out``).
Exports are cached under ``--work`` (default: a folder in the temp dir, per size).

Usage:
    python -m benchmarks.bench_variant_batches            # the sizes above
    python -m benchmarks.bench_variant_batches --dry-run  # tiny sizes, a few seconds a K
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks import harness

MODULE = "benchmarks.bench_variant_batches"
LINEAR = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
#: The four ways, in the order of the tables.
MODES = ("batched", "one_at_a_time", "ort_adapters", "base")
LABELS = {
    "batched": "batched (one session, variant_ids)",
    "one_at_a_time": "one at a time (SessionGroup)",
    "ort_adapters": "ORT adapters (LoraAdapter)",
    "base": "base alone, same batch",
}
GOAL_ERROR = 1e-5
GOAL_MEMORY = 1.1
GOAL_VS_BASE = 0.85
GOAL_VS_ONE = 4.0


# ---- building the models (main process, cached in --work) -----------------------------------


def _module(args: argparse.Namespace, seed: int | None) -> Any:
    """The base (``seed`` None) or peft's unmerged LoRA model of it (``seed``)."""
    import torch
    import transformers

    from icl_onnx.models import finish, llama_config

    config = llama_config(
        args.hidden, args.vocab, args.layers, args.heads, tied=False, use_cache=True
    )
    torch.manual_seed(0)
    lm = finish(transformers.LlamaForCausalLM(config))
    if seed is None:
        return lm
    import peft

    torch.manual_seed(seed)
    lora = peft.LoraConfig(
        r=args.rank, lora_alpha=2 * args.rank, target_modules=LINEAR, init_lora_weights=False
    )
    return peft.get_peft_model(lm, lora).eval()


def export_models(args: argparse.Namespace, work: Path) -> None:
    """base.onnx, v{k}.onnx (merged), lora{k}.npz (peft factors), lora_raw.onnx (unmerged v1)."""
    from icl_onnx.torch_export import export_decoder_with_past

    if not (work / "base.onnx").is_file():
        _log("export base")
        export_decoder_with_past(_module(args, None), work / "base.onnx")
    for k in range(1, max(args.ks) + 1):
        if (work / f"v{k}.onnx").is_file():
            continue
        _log(f"export variant {k}")
        model = _module(args, 100 + k)
        factors = {n: p.detach().numpy() for n, p in model.named_parameters() if "lora_" in n}
        np.savez(work / f"lora{k}.npz", **factors)
        if k == 1:
            export_decoder_with_past(model.base_model.model, work / "lora_raw.onnx")
        export_decoder_with_past(model.merge_and_unload().eval(), work / f".v{k}.onnx")
        (work / f".v{k}.onnx").rename(work / f"v{k}.onnx")


def _match_factors(model: Any, factors: dict[str, np.ndarray]) -> dict[str, tuple[str, bool]]:
    """Initializer name -> (peft parameter, transposed) for every LoRA factor of the export."""
    from onnx import numpy_helper

    found: dict[str, tuple[str, bool]] = {}
    for init in model.graph.initializer:
        value = numpy_helper.to_array(init)
        for name, factor in factors.items():
            for transposed, candidate in ((False, factor), (True, factor.T)):
                if value.shape == candidate.shape and np.array_equal(value, candidate):
                    found[init.name] = (name, transposed)
    missing = set(factors) - {name for name, _ in found.values()}
    if missing:
        raise RuntimeError(f"LoRA factors not found as initializers of the export: {missing}")
    return found


def build_adapters(args: argparse.Namespace, work: Path) -> None:
    """lora_base.onnx (factors as inputs, B = 0 by default) and adapter{k}.onnx_adapter."""
    import onnx
    import onnxruntime as ort
    from onnx import helper, numpy_helper

    if (work / f"adapter{max(args.ks)}.onnx_adapter").is_file():
        return
    _log("ORT adapters: factors as inputs, adapter files")
    model = onnx.load(str(work / "lora_raw.onnx"))
    found = _match_factors(model, dict(np.load(work / "lora1.npz")))
    for init in model.graph.initializer:
        if init.name in found:
            model.graph.input.append(
                helper.make_tensor_value_info(init.name, init.data_type, list(init.dims))
            )
            if "lora_B" in found[init.name][0]:  # no adapter active: the base
                zeros = np.zeros(tuple(init.dims), np.float32)
                init.CopyFrom(numpy_helper.from_array(zeros, init.name))
    onnx.save(model, str(work / "lora_base.onnx"))
    for k in range(1, max(args.ks) + 1):
        factors = dict(np.load(work / f"lora{k}.npz"))
        arrays = {
            init: np.ascontiguousarray(factors[name].T if transposed else factors[name])
            for init, (name, transposed) in found.items()
        }
        adapter = ort.AdapterFormat()
        adapter.set_adapter_version(1)
        adapter.set_model_version(1)
        adapter.set_parameters({n: ort.OrtValue.ortvalue_from_numpy(a) for n, a in arrays.items()})
        adapter.export_adapter(str(work / f"adapter{k}.onnx_adapter"))


def build_group(args: argparse.Namespace, work: Path) -> None:
    """``optimize base v1..v{max K} --out-dir group``: the files SessionGroup opens."""
    from icl_onnx.pipeline import optimize_files

    group = work / "group"
    if (group / f"v{max(args.ks)}.onnx").is_file():
        return
    _log("optimize --out-dir (SessionGroup)")
    paths = [work / "base.onnx", *(work / f"v{k}.onnx" for k in range(1, max(args.ks) + 1))]
    group.mkdir(exist_ok=True)
    optimize_files(paths, group)


def build_batched(args: argparse.Namespace, work: Path) -> dict[int, dict[str, Any]]:
    """``optimize base v1..vK --batched-variants -o batched/k{K}.onnx`` for each K.

    Returns ``{K: {"path", "factor_bytes", "output_bytes"}}``; empty where the API is missing.
    """
    try:
        from icl_onnx.pipeline import optimize_batched_variants
    except ImportError:
        _log("no icl_onnx.pipeline.optimize_batched_variants: the batched column is missing")
        return {}
    out: dict[int, dict[str, Any]] = {}
    for k in args.ks:
        path = work / "batched" / f"k{k}.onnx"
        info = path.with_suffix(".json")
        if not info.is_file():
            _log(f"optimize --batched-variants, K={k}")
            path.parent.mkdir(exist_ok=True)
            paths = [work / "base.onnx", *(work / f"v{i}.onnx" for i in range(1, k + 1))]
            result = optimize_batched_variants(paths, path)
            info.write_text(
                json.dumps(
                    {"factor_bytes": result.factor_bytes, "output_bytes": result.output_bytes}
                )
            )
        out[k] = {"path": str(path), **json.loads(info.read_text())}
    return out


def prompts(args: argparse.Namespace, k: int) -> list[list[int]]:
    """Row r's prompt (variant r + 1): seeded per row, the same for every K."""
    return [
        np.random.default_rng(1000 + r).integers(3, args.vocab, args.prompt).tolist()
        for r in range(1, k + 1)
    ]


def references(args: argparse.Namespace, work: Path) -> None:
    """Each variant's own export alone: its logits of every step and its tokens (npz)."""
    import icl_onnx
    from icl_onnx.serve.generate import decode_steps

    for k in range(1, max(args.ks) + 1):
        path = _ref_path(args, work, k)
        if path.is_file():
            continue
        _log(f"reference logits, variant {k}")
        session = icl_onnx.create_session(work / f"v{k}.onnx")
        prompt = prompts(args, k)[-1]
        steps = [s[0] for s in decode_steps(session, [prompt], 1 + args.decode)]
        np.savez(
            path,
            prefill=steps[0],
            decode=np.concatenate(steps[1:]),
            tokens=np.array([s[-1].argmax() for s in steps]),
        )


def _ref_path(args: argparse.Namespace, work: Path, k: int) -> Path:
    return work / "refs" / f"ref{k}-p{args.prompt}-d{args.decode}.npz"


# ---- the ways of running a batch (in worker processes) --------------------------------------


_profiles = itertools.count()


def _options(profile: str | None = None) -> Any:
    """Session options of every way; ``profile``: ORT profiling on, files named from it."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if profile is not None:  # one file per session (ORT names them to the second)
        options.enable_profiling = True
        options.profile_file_prefix = f"{profile}-{next(_profiles)}"
    return options


class Parity:
    """Each row's max |logits - reference| / max |reference| over the steps its tokens agree."""

    def __init__(self, refs: list[dict[str, np.ndarray]]) -> None:
        self.refs = refs
        self.errors = [0.0] * len(refs)
        self.agree = [0] * len(refs)  # steps whose token equals the reference's
        self.diverged = [False] * len(refs)

    def __call__(self, row: int, step: int, logits: np.ndarray) -> None:
        """``logits``: row ``row``'s ``[tokens, vocab]`` of step ``step`` (0: the prompt)."""
        if self.diverged[row]:
            return
        ref = self.refs[row]
        expected = ref["prefill"] if step == 0 else ref["decode"][step - 1 : step]
        scale = float(np.abs(expected).max())
        error = float(np.abs(logits.astype(np.float64) - expected).max()) / scale
        self.errors[row] = max(self.errors[row], error)
        if int(logits[-1].argmax()) == int(ref["tokens"][step]):
            self.agree[row] += 1
        else:
            self.diverged[row] = True


def _run_rows(
    session: Any,
    rows: list[int],
    batch_prompts: list[list[int]],
    decode: int,
    parity: Parity | None,
    **kwargs: Any,
) -> tuple[float, float]:
    """One batch through ``session``: (prefill seconds, decode seconds)."""
    from icl_onnx.serve.generate import decode_steps

    steps: Iterator[np.ndarray] = decode_steps(session, batch_prompts, 1 + decode, **kwargs)
    times = []
    for step in range(1 + decode):
        start = time.perf_counter()
        logits = next(steps)
        times.append(time.perf_counter() - start)
        if parity is not None:
            for i, row in enumerate(rows):
                parity(row, step, logits[i])
    return times[0], sum(times[1:])


def open_mode(mode: str, request: dict[str, Any]) -> Callable[[Parity | None], tuple]:
    """Opens one way of running the K rows; returns ``run(parity) -> (prefill_s, decode_s)``."""
    import onnxruntime as ort

    import icl_onnx

    k, decode, work = request["k"], request["decode"], Path(request["work"])
    profile = request.get("profile")  # a path prefix: ORT profiles every session (profile_decode)
    rows = list(range(k))
    batch = request["prompts"]
    if mode in ("batched", "base"):
        path = request["batched"] if mode == "batched" else work / "base.onnx"
        session = icl_onnx.create_session(path, options=_options(profile))
        extra = {"variant_ids": [r + 1 for r in rows]} if mode == "batched" else {}

        def run_batch(parity: Parity | None) -> tuple[float, float]:
            return _run_rows(session, rows, batch, decode, parity, **extra)

        run_batch.keep = session  # type: ignore[attr-defined]
        return run_batch
    if mode == "one_at_a_time":
        from icl_onnx.session_group import SessionGroup

        group = SessionGroup(
            [work / "group" / f"v{r + 1}.onnx" for r in rows], options=lambda: _options(profile)
        )
        runs = [(group.sessions[r], {}) for r in rows]
    else:
        session = icl_onnx.create_session(work / "lora_base.onnx", options=_options(profile))
        runs = []
        for r in rows:
            adapter = ort.LoraAdapter()
            adapter.Load(str(work / f"adapter{r + 1}.onnx_adapter"))
            run_options = ort.RunOptions()
            run_options.add_active_adapter(adapter)
            runs.append((session, {"run_options": run_options, "_adapter": adapter}))
        group = session

    def run_each(parity: Parity | None) -> tuple[float, float]:
        prefill = decode_s = 0.0
        for r, (sess, extra) in zip(rows, runs, strict=True):
            kwargs = {key: v for key, v in extra.items() if not key.startswith("_")}
            p, d = _run_rows(sess, [r], [batch[r]], decode, parity, **kwargs)
            prefill, decode_s = prefill + p, decode_s + d
        return prefill, decode_s

    run_each.keep = (group, runs)  # type: ignore[attr-defined]
    return run_each


def time_worker(request: dict[str, Any]) -> dict[str, Any]:
    """The modes of one K alternately in this process; one untimed round checks parity."""
    refs = [dict(np.load(p)) for p in request["refs"]]
    runners = {mode: open_mode(mode, request) for mode in request["modes"]}
    out: dict[str, Any] = {m: {"prefill_s": [], "decode_s": []} for m in runners}
    for mode, run in runners.items():
        if mode == "base":
            run(None)
            continue
        parity = Parity(refs)
        run(parity)
        out[mode].update(errors=parity.errors, agree=parity.agree)
    rng = np.random.default_rng(request["k"])
    for _ in range(request["rounds"]):
        for mode in rng.permutation(list(runners)):
            prefill, decode = runners[mode](None)
            out[mode]["prefill_s"].append(prefill)
            out[mode]["decode_s"].append(decode)
    return out


def memory_worker(request: dict[str, Any]) -> dict[str, Any]:
    """Memory one way adds to a fresh process: opened, then the batch run once.

    The runtime's libraries are imported before the first reading: only the way is counted.
    """
    import onnxruntime  # noqa: F401

    import icl_onnx.serve.generate  # noqa: F401
    import icl_onnx.session_group  # noqa: F401

    before, pss_before = harness.memory_status(), harness.proportional_set_size()
    run = open_mode(request["mode"], request)
    run(None)
    after, pss_after = harness.memory_status(), harness.proportional_set_size()
    out = {key: after[key] - before[key] for key in ("RssAnon", "RssFile")}
    out["Pss"] = pss_after["Pss"] - pss_before["Pss"]
    out["peak"] = after["VmHWM"]
    del run
    return out


def _spawn_worker(kind: str, request: dict[str, Any], folder: Path) -> dict[str, Any]:
    path = folder / f"request-{kind}.json"
    path.write_text(json.dumps(request))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        harness.child_command(MODULE, "--worker", kind, path),
        capture_output=True,
        text=True,
        env=env,
        cwd=harness.ROOT,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"{kind} worker failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


# ---- measuring and reporting ---------------------------------------------------------------


def _stats(values: list[float]) -> dict[str, float]:
    p10, median, p90 = np.percentile(values, [10, 50, 90])
    return {"median": float(median), "p10": float(p10), "p90": float(p90), "n": len(values)}


def measure_k(
    args: argparse.Namespace, work: Path, k: int, batched: dict[int, dict[str, Any]]
) -> dict[str, Any]:
    modes = [m for m in MODES if m in args.modes and (m != "batched" or k in batched)]
    request = {
        "k": k,
        "decode": args.decode,
        "work": str(work),
        "prompts": prompts(args, k),
        "batched": batched.get(k, {}).get("path"),
        "refs": [str(_ref_path(args, work, r)) for r in range(1, k + 1)],
        "modes": modes,
        "rounds": args.rounds if k < 16 else args.rounds_large,
    }
    _log(f"K={k}: timing {', '.join(modes)}, {request['rounds']} rounds")
    timed = _spawn_worker("time", request, work)
    entry: dict[str, Any] = {"modes": modes, "rounds": request["rounds"], "time": timed}
    tokens = k * args.decode
    for mode in modes:
        t = timed[mode]
        t["decode_tps"] = _stats([tokens / s for s in t["decode_s"]])
        t["prefill"] = _stats(t["prefill_s"])
    if "batched" in modes:
        a = timed["batched"]["decode_s"]
        entry["ratios"] = {
            other: _stats([o / s for o, s in zip(timed[other]["decode_s"], a, strict=True)])
            for other in modes
            if other != "batched"
        }
    if k in args.memory_ks:
        entry["memory"] = {}
        for mode in modes:
            _log(f"K={k}: memory, {mode}")
            entry["memory"][mode] = _spawn_worker("memory", {**request, "mode": mode}, work)
    if k in batched:
        entry["factor_bytes"] = batched[k]["factor_bytes"]
    return entry


def measure(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    from icl_onnx.model_io import initializer_bytes, load_model

    start = time.perf_counter()
    export_models(args, work)
    build_adapters(args, work)
    build_group(args, work)
    batched = build_batched(args, work) if "batched" in args.modes else {}
    references(args, work)
    if args.build_only:
        return {}
    factor_bytes = sum(v.size * 4 for v in np.load(work / "lora1.npz").values())
    built = time.perf_counter() - start
    results: dict[str, Any] = {
        "meta": harness.metadata(("onnxruntime", "numpy", "torch", "peft")),
        "config": {k: v for k, v in vars(args).items() if k not in ("work", "out")},
        "base_weight_bytes": initializer_bytes(load_model(work / "base.onnx")),
        "adapter_bytes_per_variant": factor_bytes,  # peft's A and B of one variant, float32
        "build_s": built,
        "k": {},
    }
    for k in args.ks:
        results["k"][str(k)] = measure_k(args, work, k, batched)
    results["measure_s"] = time.perf_counter() - start - built
    results["load_after"] = [round(x, 2) for x in os.getloadavg()]
    return results


def _cell(s: dict[str, float], digits: int = 2) -> str:
    return f"{s['median']:.{digits}f} ({s['p10']:.{digits}f}–{s['p90']:.{digits}f})"


def _rss(memory: dict[str, int]) -> int:
    return memory["RssAnon"] + memory["RssFile"]


#: The ways that run one row at a time (a batch of one), whatever K is.
ONE_ROW = ("one_at_a_time", "ort_adapters")


def memory_ratio(r: dict[str, Any], k: int, mode: str) -> float | None:
    """(mode's RSS - activations) / (base weights + K adapters), or None if not measured.

    Activations are the base-alone session's RSS for the batch the way runs (K rows, or one
    row for the ways that run one at a time: the base at K = 1) less the base's weights.
    """
    mem = r["k"][str(k)].get("memory", {})
    base = (r["k"].get("1", {}) if mode in ONE_ROW else r["k"][str(k)]).get("memory", {})
    if mode not in mem or "base" not in base:
        return None
    base_w, adapters = r["base_weight_bytes"], k * r["adapter_bytes_per_variant"]
    activations = _rss(base["base"]) - base_w
    return (_rss(mem[mode]) - activations) / (base_w + adapters)


def to_markdown(r: dict[str, Any]) -> list[str]:
    """The results file's lines."""
    c = r["config"]
    ways = "; ".join(f"**{LABELS[m]}**" for m in MODES if m in c["modes"])
    lines = [
        "# Many fine-tunes in one batch (issue 23)",
        "",
        f"`python -m {MODULE}{' --dry-run' if c['dry_run'] else ''} --rounds {c['rounds']} "
        f"--rounds-large {c['rounds_large']}`. "
        + harness.describe(r["meta"])
        + f" Load average at the end {'/'.join(f'{x:.1f}' for x in r['load_after'])}: timings "
        "are noisy, read the ratios (taken per round, both ways under the same load).",
        "",
        f"Llama-style base (random weights, hidden {c['hidden']}, vocab {c['vocab']}, "
        f"{c['layers']} layer(s), {c['heads']} heads, untied LM head; "
        f"{harness.mb(r['base_weight_bytes'])} MB of weights); each variant a peft LoRA of rank "
        f"{c['rank']} on every linear layer (nonzero B), merged; "
        f"{harness.mb(r['adapter_bytes_per_variant'], 2)} MB of factors each. Every model "
        "exported with a KV cache (TorchScript). A batch of K conversations, row k through "
        f"variant k: a prompt of {c['prompt']} tokens, then {c['decode']} greedy decode steps. "
        f"Ways: {ways} (see the module docstring). Each K: one process runs the ways "
        "alternately, in a shuffled order per round, after one untimed round that checks "
        f"parity; {c['rounds']} timed rounds ({c['rounds_large']} at K = 16). Decode tokens/s "
        f"= K x {c['decode']} / seconds of the decode steps of all rows; prefill = seconds of "
        "the prompt step of all rows. Cells: median (p10–p90) over rounds. Build (exports, "
        f"cached between runs) {r['build_s']:.0f} s, measurements {r['measure_s']:.0f} s.",
        "",
        *_summary(r),
        "## Decode throughput (tokens/s)",
        "",
    ]
    rows = [
        [k, *(_cell(e["time"][m]["decode_tps"], 1) if m in e["time"] else "—" for m in MODES)]
        for k, e in r["k"].items()
    ]
    lines += harness.table(["K", *(LABELS[m] for m in MODES)], rows, "r" * (len(MODES) + 1))
    lines += ["", "## Prefill (seconds, all rows)", ""]
    rows = [
        [k, *(_cell(e["time"][m]["prefill"], 3) if m in e["time"] else "—" for m in MODES)]
        for k, e in r["k"].items()
    ]
    lines += harness.table(["K", *(LABELS[m] for m in MODES)], rows, "r" * (len(MODES) + 1))
    lines += [
        "",
        "## Batched against the others (decode throughput ratio, per round)",
        "",
        f"Goals at K = 8: ≥ {GOAL_VS_BASE} x the base alone, ≥ {GOAL_VS_ONE} x one at a time.",
        "",
    ]
    others = ("base", "one_at_a_time", "ort_adapters")
    rows = [
        [
            k,
            *(_cell(e["ratios"][m]) if m in e.get("ratios", {}) else "—" for m in others),
            _ceiling(e),
        ]
        for k, e in r["k"].items()
    ]
    header = [
        "K",
        "batched / base alone",
        "batched / one at a time",
        "batched / ORT adapters",
        "ceiling: base alone / one at a time",
    ]
    lines += harness.table(header, rows, "rrrrr")
    return lines + _memory_lines(r) + _parity_lines(r)


def _summary(r: dict[str, Any], k: str = "8") -> list[str]:
    """The K = 8 figures against the goals, in one paragraph (none if K = 8 lacks a way)."""
    e = r["k"].get(k)
    if not e or "ratios" not in e or len(e["ratios"]) < 3:
        return []
    ratios, t = e["ratios"], e["time"]["batched"]

    def goal(value: float, bar: float, above: bool = True) -> str:
        return "met" if (value >= bar if above else value <= bar) else "not met"

    memory = memory_ratio(r, int(k), "batched")
    ceiling = _ceiling(e)
    text = (
        f"**K = {k}**: the batched model decodes {t['decode_tps']['median']:.0f} tokens/s, "
        f"{_cell(ratios['base'])} x the base alone with the same {k} rows (goal ≥ "
        f"{GOAL_VS_BASE}: {goal(ratios['base']['median'], GOAL_VS_BASE)}), "
        f"{_cell(ratios['one_at_a_time'])} x one variant at a time through SessionGroup (goal "
        f"≥ {GOAL_VS_ONE}: {goal(ratios['one_at_a_time']['median'], GOAL_VS_ONE)}; the base "
        f"alone with {k} rows reaches {ceiling} x in the same rounds) and "
        f"{_cell(ratios['ort_adapters'])} x ORT's LoraAdapter, one run per variant. "
        f"Worst row error {max(t['errors']):.1e} (goal ≤ {GOAL_ERROR:g}: "
        f"{goal(max(t['errors']), GOAL_ERROR, above=False)})."
    )
    if memory is not None:
        text += (
            f" Memory: (RSS − activations) / (base + {k} adapters) = {memory:.3f} (goal ≤ "
            f"{GOAL_MEMORY}: {goal(memory, GOAL_MEMORY, above=False)})."
        )
    return [text, ""]


def _ceiling(e: dict[str, Any]) -> str:
    """Per round, the base alone's decode throughput over one at a time's: batching's ceiling."""
    t = e["time"]
    if "base" not in t or "one_at_a_time" not in t:
        return "—"
    pairs = zip(t["one_at_a_time"]["decode_s"], t["base"]["decode_s"], strict=True)
    return _cell(_stats([one / base for one, base in pairs]))


def _memory_lines(r: dict[str, Any]) -> list[str]:
    lines = [
        "",
        "## Memory",
        "",
        "Added to a fresh process by opening each way and running the batch once: RSS (RssAnon "
        "+ RssFile) / PSS, MB = 10^6 bytes. Goal: batched ≤ "
        f"{GOAL_MEMORY} x (base + all adapters) + activations, read as (RSS − activations) / "
        "(base weights + K adapters' factors) ≤ 1.1, where activations = the base-alone "
        "session's RSS for the same batch − the base's weights (for the two ways that run one "
        "row at a time, the base's at K = 1). The base alone is a default session of the "
        "export (weights inline; ORT prepacks its MatMul weights); in the batched model and "
        "the SessionGroup's files the 14 linear layers are `IclMatMul` nodes (ORT does not "
        "prepack a custom op's inputs) over external data, the embedding and the LM head the "
        "base's own Gather and MatMul.",
        "",
    ]
    rows = []
    for k, e in r["k"].items():
        mem = e.get("memory")
        if not mem:
            continue
        ideal = r["base_weight_bytes"] + int(k) * r["adapter_bytes_per_variant"]
        cells = [
            f"{harness.mb(_rss(mem[m]), 0)} / {harness.mb(mem[m]['Pss'], 0)}" if m in mem else "—"
            for m in MODES
        ]
        ratios = [memory_ratio(r, int(k), m) for m in ("batched", "one_at_a_time", "ort_adapters")]
        ratios = [f"{x:.3f}" if x is not None else "—" for x in ratios]
        rows.append([k, harness.mb(ideal, 0), *cells, *ratios])
    header = [
        "K",
        "base + K adapters MB",
        *(LABELS[m] for m in MODES),
        "batched: ratio",
        "one at a time: ratio",
        "ORT adapters: ratio",
    ]
    return lines + harness.table(header, rows, "r" * len(header))


def _parity_lines(r: dict[str, Any]) -> list[str]:
    steps = 1 + r["config"]["decode"]
    lines = [
        "",
        "## Parity against each variant's own export",
        "",
        "Per row: max |logits − reference| / max |reference| over the prompt step and the "
        f"decode steps (goal ≤ {GOAL_ERROR:g}); the reference is a session of the variant's "
        "own export (merged, not optimized) running that row alone. Steps agreeing: of "
        f"{steps}, those whose greedy token equals the reference's (the comparison stops at "
        "the first that differs).",
        "",
    ]
    rows = []
    for k, e in r["k"].items():
        for mode in ("batched", "one_at_a_time", "ort_adapters"):
            t = e["time"].get(mode)
            if t and "errors" in t:
                within = sum(err <= GOAL_ERROR for err in t["errors"])
                rows.append(
                    [k, LABELS[mode], f"{max(t['errors']):.2e}", f"{within}/{len(t['errors'])}",
                     f"{min(t['agree'])}/{steps}"]
                )  # fmt: skip
    header = ["K", "way", "worst row error", "rows within goal", "steps agreeing (min)"]
    return lines + harness.table(header, rows, "rlrrr")


def plot(r: dict[str, Any], path: Path) -> None:
    plt = harness.pyplot()
    ks = [int(k) for k in r["k"]]
    entries = list(r["k"].values())
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for mode in MODES:
        points = [(k, e["time"][mode]["decode_tps"]) for k, e in zip(ks, entries, strict=True)
                  if mode in e["time"]]  # fmt: skip
        if points:
            x, s = zip(*points, strict=True)
            axes[0].errorbar(
                x,
                [v["median"] for v in s],
                yerr=[[v["median"] - v["p10"] for v in s], [v["p90"] - v["median"] for v in s]],
                marker="o",
                capsize=3,
                label=LABELS[mode],
            )
    axes[0].set(xlabel="variants K (batch rows)", ylabel="decode tokens/s", title="throughput")
    for mode in MODES:
        points = [(k, e["memory"][mode]) for k, e in zip(ks, entries, strict=True)
                  if mode in e.get("memory", {})]  # fmt: skip
        if points:
            x, m = zip(*points, strict=True)
            axes[1].plot(x, [_rss(v) / harness.MB for v in m], "o-", label=LABELS[mode])
    axes[1].plot(
        ks,
        [(r["base_weight_bytes"] + k * r["adapter_bytes_per_variant"]) / harness.MB for k in ks],
        "k--",
        label="base + K adapters (bytes)",
    )
    axes[1].set(xlabel="variants K (batch rows)", ylabel="MB added (RSS)", title="memory")
    for ax in axes:
        ax.set_xscale("log", base=2)
        ax.set_xticks(ks, [str(k) for k in ks])
        ax.legend(fontsize=7)
    fig.tight_layout()
    harness.save_png(fig, path)


def _log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hidden", type=int, default=768)
    parser.add_argument("--vocab", type=int, default=32000)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--heads", type=int, default=12)
    parser.add_argument("--rank", type=int, default=16)
    parser.add_argument("--prompt", type=int, default=128, help="prompt tokens per row")
    parser.add_argument("--decode", type=int, default=32, help="decode steps")
    parser.add_argument("--ks", type=int, nargs="+", default=[1, 2, 4, 8, 16])
    parser.add_argument("--rounds", type=int, default=3, help="timed rounds per K below 16")
    parser.add_argument("--rounds-large", type=int, default=2, help="timed rounds at K = 16")
    parser.add_argument("--memory-ks", type=int, nargs="*", help="Ks to measure memory at")
    parser.add_argument("--modes", nargs="+", default=list(MODES), choices=MODES)
    parser.add_argument(
        "--dry-run", action="store_true", help="tiny sizes (hidden 64, vocab 512, K 1 2)"
    )
    parser.add_argument("--work", type=Path, help="cache of the models (default: temp dir)")
    harness.out_argument(parser)
    parser.add_argument(
        "--report-only", action="store_true", help="rewrite the .md and .png from the .json"
    )
    parser.add_argument(
        "--build-only", action="store_true", help="export and build the models into --work, no run"
    )
    args = parser.parse_args(argv)
    if args.dry_run:
        args.hidden, args.vocab, args.layers, args.heads, args.rank = 64, 512, 1, 4, 4
        args.prompt, args.decode, args.ks, args.rounds, args.rounds_large = 16, 4, [1, 2], 2, 2
    if args.memory_ks is None:
        args.memory_ks = list(args.ks)
    return args


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--worker"]:
        request = json.loads(Path(argv[2]).read_text())
        worker = time_worker if argv[1] == "time" else memory_worker
        print(json.dumps(worker(request)), flush=True)
        return 0
    args = parse_args(argv)
    name = "variant_batches"
    size = f"h{args.hidden}-v{args.vocab}-l{args.layers}-r{args.rank}"
    work = args.work or Path(tempfile.gettempdir()) / "icl-variant-batches" / size
    if args.dry_run and args.out == harness.RESULTS:
        args.out = work / "results"  # a dry run leaves the results folder alone
    if args.report_only:
        results = json.loads((args.out / f"{name}.json").read_text())
    else:
        (work / "refs").mkdir(parents=True, exist_ok=True)
        results = measure(args, work)
        if args.build_only:
            return 0
        harness.write_json(args.out / f"{name}.json", results)
    harness.write_markdown(args.out / f"{name}.md", to_markdown(results))
    plot(results, args.out / f"{name}.png")
    print("\n".join(to_markdown(results)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
