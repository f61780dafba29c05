"""Greedy generation through ONNX Runtime GenAI, original against optimized.

A lossy rewrite (``optimize --share-quantized``) changes the logits a little; what a user sees is
whether the generated text changes, and from which token. When both models sit in GenAI folders
(``genai_config.json`` beside them), ``og.Generator`` decodes greedily from the same prompt in
each folder, each in a fresh subprocess with a clean environment (the optimized folder names its
op library in ``genai_config.json``), and the first step where the tokens differ is reported.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from icl_onnx.folders import GENAI_CONFIG

__all__ = ["GreedyComparison", "compare_greedy", "genai_folder"]


_SCRIPT = """
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


@dataclasses.dataclass
class GreedyComparison:
    """Greedy tokens of both models after the same prompt.

    Attributes:
        prompt: the prompt's token ids.
        original: the tokens the original model generated (prompt excluded).
        optimized: the tokens the optimized model generated.
    """

    prompt: list[int]
    original: list[int]
    optimized: list[int]

    @property
    def first_difference(self) -> int | None:
        """The first generated step (0-based) where the tokens differ, or None."""
        for step, (a, b) in enumerate(zip(self.original, self.optimized, strict=True)):
            if a != b:
                return step
        return None


def genai_folder(model: str | os.PathLike) -> Path | None:
    """The GenAI folder a model file belongs to (``genai_config.json`` beside it), or None."""
    folder = Path(model).parent
    return folder if (folder / GENAI_CONFIG).is_file() else None


def _prompt(folder: Path, length: int) -> list[int]:
    config = json.loads((folder / GENAI_CONFIG).read_text())
    vocab = int(config.get("model", {}).get("vocab_size", 1000))
    rng = np.random.default_rng(0)
    return [int(t) for t in rng.integers(min(3, vocab - 1), vocab, size=length)]


def _generate(folder: Path, prompt: list[int], steps: int) -> list[int]:
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": os.environ.get("HOME", "/")}
    done = subprocess.run(
        [sys.executable, "-c", _SCRIPT, str(folder), json.dumps(prompt), str(steps)],
        capture_output=True,
        text=True,
        env=env,
        cwd=folder,
        check=False,
    )
    if done.returncode != 0:
        lines = done.stderr.strip().splitlines() or ["(no message)"]
        raise RuntimeError(f"greedy generation in {folder} failed: {lines[-1]}")
    return json.loads(done.stdout.strip().splitlines()[-1])[len(prompt) :]


def compare_greedy(
    original: str | os.PathLike, optimized: str | os.PathLike, steps: int, prompt_length: int = 8
) -> GreedyComparison:
    """Greedy-decodes ``steps`` tokens in both models' GenAI folders from one seeded prompt.

    Raises:
        ValueError: a model is not in a GenAI folder.
        RuntimeError: generation failed in one of them (the message says where and why).
    """
    folders = [genai_folder(original), genai_folder(optimized)]
    if None in folders:
        raise ValueError("greedy generation needs both models in GenAI folders (genai_config.json)")
    first, second = folders  # type: ignore[misc]
    prompt = _prompt(first, prompt_length)
    return GreedyComparison(
        prompt, _generate(first, prompt, steps), _generate(second, prompt, steps)
    )
