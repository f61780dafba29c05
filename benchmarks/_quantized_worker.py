"""Worker of ``bench_quantized``: one measurement of one folder or model, in a fresh process.

``python -m benchmarks._quantized_worker graph FOLDER``: the initializer bytes of the graph ORT
builds from the GenAI folder's decoder (``optimized_model_filepath``).

``python -m benchmarks._quantized_worker generate FOLDER PROMPT_JSON STEPS``: ``og.Model``, then
greedy generation of STEPS tokens after the prompt; the tokens, the decode seconds (tokens after
the first), and ``VmHWM`` and ``RssAnon`` after generation (``RssAnon`` also before the model).

``python -m benchmarks._quantized_worker prepack MODEL K 0|1``: the ``RssAnon`` that creating a
session of the one-``MatMulNBits`` model adds with ORT's prepacking on (1) or off (0), and the
median latency of one M=1 product (2 threads).

Prints one JSON line. Imports only what the mode needs (and the stdlib ``/proc`` reader), so the
memory readings are the model's.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time

import numpy as np

from icl_onnx._proc import memory_status


def graph(folder: str) -> dict:
    """Initializer bytes of ORT's optimized graph of the folder's decoder."""
    import onnxruntime as ort

    with open(os.path.join(folder, "genai_config.json")) as f:
        decoder = json.load(f)["model"]["decoder"]
    so = ort.SessionOptions()
    lib = decoder.get("session_options", {}).get("custom_ops_library")
    if lib:
        so.register_custom_ops_library(os.path.join(folder, lib))
    out = tempfile.mkdtemp()
    so.optimized_model_filepath = os.path.join(out, "g.onnx")
    prefix = "session.optimized_model_external_initializers_"
    so.add_session_config_entry(prefix + "file_name", "g.data")
    so.add_session_config_entry(prefix + "min_size_in_bytes", "0")
    ort.InferenceSession(
        os.path.join(folder, decoder["filename"]), so, providers=["CPUExecutionProvider"]
    )
    data = os.path.join(out, "g.data")
    return {"ort_graph_bytes": os.path.getsize(data) if os.path.exists(data) else 0}


def generate(folder: str, prompt: list[int], steps: int) -> dict:
    """Greedy generation through GenAI: tokens, decode seconds and memory."""
    import onnxruntime_genai as og

    base = memory_status()["RssAnon"]
    model = og.Model(folder)
    params = og.GeneratorParams(model)
    n = len(prompt) + steps
    params.set_search_options(do_sample=False, max_length=n, min_length=n)
    generator = og.Generator(model, params)
    generator.append_tokens(np.array([prompt], dtype=np.int32))
    generator.generate_next_token()
    start = time.perf_counter()
    while not generator.is_done():
        generator.generate_next_token()
    decode = time.perf_counter() - start
    tokens = [int(t) for t in generator.get_sequence(0)]
    after = memory_status()
    return {
        "tokens": tokens,
        "decode_s": decode,
        "decoded": steps - 1,
        "vmhwm": after["VmHWM"],
        "rss_anon": after["RssAnon"],
        "rss_anon_base": base,
    }


def prepack(path: str, k: int, on: bool) -> dict:
    """RssAnon a MatMulNBits session adds, and its median M=1 latency, prepacking on or off."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = 2
    if not on:
        so.add_session_config_entry("session.disable_prepacking", "1")
    before = memory_status()["RssAnon"]
    sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    after = memory_status()["RssAnon"]
    a = np.random.default_rng(1).standard_normal((1, k)).astype(np.float32)
    times = []
    for _ in range(10 if on else 3):
        t = time.perf_counter()
        sess.run(None, {"A": a})
        times.append(time.perf_counter() - t)
    return {"session_rss_anon": after - before, "m1_ms": 1000 * sorted(times)[len(times) // 2]}


def main(argv: list[str]) -> dict:
    """Runs the mode ``argv[0]`` on the rest of the arguments."""
    mode, args = argv[0], argv[1:]
    if mode == "graph":
        return graph(args[0])
    if mode == "generate":
        return generate(args[0], json.loads(args[1]), int(args[2]))
    if mode == "prepack":
        return prepack(args[0], int(args[1]), bool(int(args[2])))
    raise SystemExit(f"unknown mode {mode!r}: graph, generate or prepack")


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1:])))
