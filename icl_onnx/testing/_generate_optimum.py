"""Greedy decoding through Optimum, in a child process of :func:`~.clients.optimum_generate`.

``python -m icl_onnx.testing._generate_optimum FOLDER PROMPT_JSON NEW icl|plain``, run in
``.venv-optimum`` (which finds this checkout through a ``.pth`` file). ``ORTModelForCausalLM``
with ``icl_onnx.session_options()`` (``icl``) or none (``plain``); prints JSON as
``_generate_genai`` does (``decode_s`` covers the whole ``generate`` after the first token).
"""

from __future__ import annotations

import json
import sys
import time


def main(folder: str, prompt: list[int], new: int, options: str) -> dict:
    """Generates ``new`` tokens greedily after ``prompt`` with the model in ``folder``."""
    import torch
    from optimum.onnxruntime import ORTModelForCausalLM

    import icl_onnx
    from icl_onnx._proc import peak_rss

    session_options = icl_onnx.session_options() if options == "icl" else None
    model = ORTModelForCausalLM.from_pretrained(
        folder, session_options=session_options, provider="CPUExecutionProvider"
    )
    ids = torch.tensor([prompt])
    kwargs = dict(attention_mask=torch.ones_like(ids), do_sample=False, pad_token_id=0)
    start = time.perf_counter()
    model.generate(ids, max_new_tokens=1, min_new_tokens=1, **kwargs)
    first = time.perf_counter()
    out = model.generate(ids, max_new_tokens=new, min_new_tokens=new, **kwargs)
    end = time.perf_counter()
    return {
        "tokens": out[0].tolist(),
        "first_token_s": first - start,
        "decode_s": (end - first) - (first - start),
        "peak_rss": peak_rss(),
        "onnx_ir": "onnx_ir" in sys.modules,
    }


if __name__ == "__main__":
    folder, prompt, new, options = sys.argv[1:5]
    print(json.dumps(main(folder, json.loads(prompt), int(new), options)))
