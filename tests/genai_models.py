"""Tiny tied-embedding Hugging Face models and ONNX Runtime GenAI's model builder, for the tests
and benchmarks that run real GenAI folders (random weights, a word-level tokenizer made locally)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

#: Architectures by name: (transformers config class, its extra keyword arguments).
ARCHITECTURES = {
    "llama": ("LlamaConfig", {}),
    "qwen2": ("Qwen2Config", {}),
}


def tied_hf_folder(
    folder: Path,
    arch: str = "llama",
    *,
    hidden: int = 64,
    vocab: int = 512,
    layers: int = 1,
    heads: int = 2,
    intermediate: int | None = None,
    layer_scale: float = 10.0,
    seed: int = 0,
) -> Path:
    """Writes a random-weight causal LM with tied embeddings and a tokenizer to ``folder``.

    The decoder layers' weights are multiplied by ``layer_scale``: with the default random
    initialisation a tied model's residual stream is its input embedding, so greedy decoding
    repeats the last prompt token forever, and a test of identical tokens would prove little.
    """
    import torch
    import transformers

    config_cls, extra = ARCHITECTURES[arch]
    config = getattr(transformers, config_cls)(
        vocab_size=vocab,
        hidden_size=hidden,
        intermediate_size=intermediate or 2 * hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=heads,
        max_position_embeddings=256,
        tie_word_embeddings=True,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=0,
        **extra,
    )
    torch.manual_seed(seed)
    model = transformers.AutoModelForCausalLM.from_config(config).eval()
    with torch.no_grad():
        for name, param in model.named_parameters():
            if ".layers." in name and "norm" not in name:
                param.mul_(layer_scale)
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    _word_tokenizer(vocab).save_pretrained(folder)
    return folder


def _word_tokenizer(vocab: int):
    """A word-level tokenizer over ``vocab`` made-up words (ids 0-2: pad, bos, eos)."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    words = {"<pad>": 0, "<s>": 1, "</s>": 2, "<unk>": 3}
    words.update({f"w{i}": i for i in range(4, vocab)})
    tok = Tokenizer(models.WordLevel(vocab=words, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<s>",
        eos_token="</s>",
        unk_token="<unk>",
        pad_token="<pad>",
    )


def genai_build(
    hf_dir: Path,
    out_dir: Path,
    precision: str = "int4",
    cache_dir: Path | None = None,
    **extra_options: object,
) -> Path:
    """Runs ``onnxruntime_genai.models.builder`` for the CPU and returns ``out_dir``.

    ``extra_options`` become ``--extra_options key=value`` (for example
    ``shared_embeddings=False``, ``algo_config="rtn_last"``).
    """
    cmd = [
        sys.executable,
        "-m",
        "onnxruntime_genai.models.builder",
        "-i",
        str(hf_dir),
        "-o",
        str(out_dir),
        "-p",
        precision,
        "-e",
        "cpu",
        "-c",
        str(cache_dir or out_dir.parent / f"{out_dir.name}.cache"),
    ]
    if extra_options:
        cmd += ["--extra_options", *(f"{k}={_option(v)}" for k, v in extra_options.items())]
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false"}
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if done.returncode != 0 or not (out_dir / "genai_config.json").is_file():
        raise RuntimeError(f"the GenAI builder failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return out_dir


def _option(value: object) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


GREEDY_SCRIPT = """
import json, sys
import numpy as np
import onnxruntime_genai as og
folder, prompt, steps = sys.argv[1], json.loads(sys.argv[2]), int(sys.argv[3])
model = og.Model(folder)
params = og.GeneratorParams(model)
length = len(prompt) + steps
params.set_search_options(do_sample=False, max_length=length, min_length=length)
generator = og.Generator(model, params)
generator.append_tokens(np.array([prompt], dtype=np.int32))
while not generator.is_done():
    generator.generate_next_token()
print(json.dumps([int(t) for t in generator.get_sequence(0)]))
"""


def greedy_tokens(folder: Path, prompt: list[int], steps: int = 16) -> list[int]:
    """Greedy generation through ``og.Generator`` in a fresh subprocess with a clean environment."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": os.environ.get("HOME", "/")}
    done = subprocess.run(
        [sys.executable, "-c", GREEDY_SCRIPT, str(folder), json.dumps(prompt), str(steps)],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"generation in {folder} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])
