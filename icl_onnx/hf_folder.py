"""Loading a local Hugging Face model folder (offline) and making example inputs for it.

The folder holds ``config.json`` and weights, as written by ``save_pretrained``. Nothing is
downloaded: loading runs with ``local_files_only=True``. The task (which ``AutoModelFor...``
class to load) comes from the config's ``architectures`` unless given.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from icl_onnx.errors import IclArgumentError, IclUserError

__all__ = ["TASKS", "infer_task", "load_folder", "example_inputs"]

#: Task name -> transformers Auto class name.
TASKS: dict[str, str] = {
    "masked-lm": "AutoModelForMaskedLM",
    "causal-lm": "AutoModelForCausalLM",
    "seq2seq-lm": "AutoModelForSeq2SeqLM",
    "sequence-classification": "AutoModelForSequenceClassification",
    "token-classification": "AutoModelForTokenClassification",
    "image-classification": "AutoModelForImageClassification",
    "feature-extraction": "AutoModel",
}

#: Architecture class-name suffix -> task, tried in order.
_SUFFIXES: list[tuple[str, str]] = [
    ("ForMaskedLM", "masked-lm"),
    ("ForCausalLM", "causal-lm"),
    ("LMHeadModel", "causal-lm"),
    ("ForConditionalGeneration", "seq2seq-lm"),
    ("ForSequenceClassification", "sequence-classification"),
    ("ForTokenClassification", "token-classification"),
    ("ForImageClassification", "image-classification"),
    ("Model", "feature-extraction"),
]


def infer_task(config: Any) -> str:
    """Returns the task of a config's first architecture (``BertForMaskedLM`` -> ``masked-lm``).

    Raises:
        IclArgumentError: (about ``task``) the config names no architecture, or one no task
            covers: the task must be given.
    """
    architectures = getattr(config, "architectures", None) or []
    if not architectures:
        raise IclArgumentError(
            "task", f"is needed: config.json names no architecture (tasks: {', '.join(TASKS)})"
        )
    arch = architectures[0]
    for suffix, task in _SUFFIXES:
        if arch.endswith(suffix):
            if task == "seq2seq-lm" and not getattr(config, "is_encoder_decoder", False):
                continue
            return task
    raise IclArgumentError(
        "task", f"is needed: cannot tell the task of {arch} (tasks: {', '.join(TASKS)})"
    )


def _check_folder(folder: Path) -> None:
    if not folder.exists():
        raise IclUserError(f"{folder}: no such folder")
    if not folder.is_dir():
        raise IclUserError(f"{folder} is not a folder; pass a folder written by save_pretrained")
    if not (folder / "config.json").is_file():
        raise IclUserError(f"{folder} has no config.json; pass a folder written by save_pretrained")


def load_folder(folder: str | os.PathLike, task: str | None = None) -> tuple[Any, str]:
    """Loads a model from a local folder, offline, in eval mode with the KV cache off.

    Args:
        folder: a folder with ``config.json`` and weights.
        task: one of :data:`TASKS`; inferred from the config if None.

    Returns:
        ``(model, task)``.

    Raises:
        IclUserError: the folder, its config or its weights cannot be read.
    """
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import transformers

    folder = Path(folder)
    _check_folder(folder)
    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    try:
        config = transformers.AutoConfig.from_pretrained(folder, local_files_only=True)
    except Exception as e:  # transformers raises OSError, ValueError, KeyError, ...
        raise IclUserError(f"{folder}/config.json: {_first_line(e)}") from e
    task = task or infer_task(config)
    if task not in TASKS:
        raise IclArgumentError("task", f"{task!r} is unknown; choose from {', '.join(TASKS)}")
    auto = getattr(transformers, TASKS[task])
    try:
        model = auto.from_pretrained(folder, config=config, local_files_only=True)
    except Exception as e:
        raise IclUserError(f"cannot load {folder} as {task}: {_first_line(e)}") from e
    if hasattr(model.config, "use_cache"):
        model.config.use_cache = False
    return model.eval(), task


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0][:300] if text else ''}"


def example_inputs(model: Any, task: str, batch: int = 2, seq: int = 16) -> dict[str, Any]:
    """Returns seeded example inputs for a loaded model.

    Token tasks get ``input_ids`` and ``attention_mask`` (``[batch, seq]``), ``seq2seq-lm`` adds
    ``decoder_input_ids`` (``[batch, seq // 2 + 1]``); ``image-classification`` gets
    ``pixel_values`` (``[batch, channels, size, size]`` from the config).
    """
    import torch

    config = model.config
    generator = torch.Generator().manual_seed(0)
    if task == "image-classification":
        channels = getattr(config, "num_channels", 3)
        size = getattr(config, "image_size", 224)
        size = size if isinstance(size, int) else size[0]
        return {"pixel_values": torch.randn(batch, channels, size, size, generator=generator)}
    vocab = getattr(config, "vocab_size", None)
    if not vocab:
        raise IclUserError(f"{type(model).__name__}: the config has no vocab_size for token inputs")
    inputs = {
        "input_ids": torch.randint(0, vocab, (batch, seq), generator=generator),
        "attention_mask": torch.ones(batch, seq, dtype=torch.long),
    }
    if task == "seq2seq-lm":
        inputs["decoder_input_ids"] = torch.randint(
            0, vocab, (batch, seq // 2 + 1), generator=generator
        )
    return inputs
