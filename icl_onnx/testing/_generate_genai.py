"""Greedy decoding through GenAI, in a child process of :func:`~.clients.genai_generate`.

``python -m icl_onnx.testing._generate_genai FOLDER PROMPT_JSON NEW``. Imports only
onnxruntime_genai (and the standard-library ``/proc`` reader); prints JSON: tokens, seconds for
the first new token and for the rest, peak RSS (VmHWM, bytes: unlike ru_maxrss it starts afresh
at exec instead of keeping the RSS of the process that forked it) and whether onnx_ir was
imported.
"""

from __future__ import annotations

import json
import sys
import time


def greedy(model, prompt: list[int], new: int, with_logits: bool = False) -> dict:
    """Greedy decoding of ``new`` tokens after ``prompt`` by a GenAI ``og.Model``.

    Returns the sequence (prompt included), the seconds to the first new token and for the
    rest, and with ``with_logits`` the logits of the prompt's last position.
    """
    import onnxruntime_genai as og

    params = og.GeneratorParams(model)
    params.set_search_options(do_sample=False, max_length=len(prompt) + new)
    generator = og.Generator(model, params)
    extra = {}
    start = time.perf_counter()
    generator.append_tokens(prompt)
    if with_logits:
        import numpy as np

        logits = np.asarray(generator.get_output("logits"), dtype=np.float32)
        extra["logits"] = logits.reshape(-1, logits.shape[-1])[-1].tolist()
    generator.generate_next_token()
    first = time.perf_counter()
    while not generator.is_done():
        generator.generate_next_token()
    end = time.perf_counter()
    return {
        "tokens": [int(t) for t in generator.get_sequence(0)],
        "first_token_s": first - start,
        "decode_s": end - first,
        **extra,
    }


def main(folder: str, prompt: list[int], new: int) -> dict:
    """Generates ``new`` tokens greedily after ``prompt`` with the model in ``folder``."""
    import onnxruntime_genai as og

    from icl_onnx._proc import peak_rss

    result = greedy(og.Model(folder), prompt, new)
    return {**result, "peak_rss": peak_rss(), "onnx_ir": "onnx_ir" in sys.modules}


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1], json.loads(sys.argv[2]), int(sys.argv[3]))))
