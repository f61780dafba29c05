"""Tiny Llama fine-tunes merged with peft (``merge_and_unload``), exported to ONNX.

A base model and variants of it: LoRA adapters with nonzero ``B`` (``init_lora_weights=False``)
of ranks 4, 8 and 16 on q/v only, on every linear layer, and on the embedding too; one of rank
8 on q/v whose MLP down projection is also changed densely; a full fine-tune (every weight
changed densely); and an unrelated model of the same shapes. Each is
exported by one of the two exporters. The sizes keep a rank-16 adapter on a square projection
worth storing as factors: ``(128 + 128)·16 ≤ 128·128/4``.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np

from icl_onnx.models import llama_config

HIDDEN, VOCAB, LAYERS, HEADS = 128, 1000, 1, 4
BATCH, SEQ = 2, 8
ALL_LINEAR = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


@dataclasses.dataclass(frozen=True)
class Variant:
    """A variant of the base model: how it was made."""

    name: str
    rank: int = 0  # 0: not a LoRA merge
    targets: tuple[str, ...] = ()
    full: bool = False  # every weight changed densely
    dense: tuple[str, ...] = ()  # parameters (by name suffix) also changed densely
    seed: int = 1


#: The variants the tests export (the base is ``Variant("base")``).
VARIANTS = {
    "base": Variant("base"),
    "qv_r4": Variant("qv_r4", 4, ("q_proj", "v_proj"), seed=11),
    "all_r8": Variant("all_r8", 8, tuple(ALL_LINEAR), seed=12),
    "embed_r16": Variant("embed_r16", 16, ("q_proj", "v_proj", "embed_tokens"), seed=13),
    "full": Variant("full", full=True, seed=14),
    "qv_r8_dense_mlp": Variant(
        "qv_r8_dense_mlp", 8, ("q_proj", "v_proj"), dense=("mlp.down_proj.weight",), seed=16
    ),
    "unrelated": Variant("unrelated", seed=15),
}


def build(variant: Variant) -> Any:
    """The torch module of ``variant`` (merged when a LoRA), in eval mode."""
    import torch
    import transformers

    config = llama_config(HIDDEN, VOCAB, LAYERS, HEADS, max_positions=256, tied=False)
    torch.manual_seed(variant.seed if variant.name == "unrelated" else 0)
    module = transformers.LlamaForCausalLM(config).eval()
    if variant.full or variant.dense:
        generator = torch.Generator().manual_seed(variant.seed)
        with torch.no_grad():
            for name, parameter in module.named_parameters():
                if variant.full or name.endswith(variant.dense):
                    noise = torch.randn(parameter.shape, generator=generator)
                    parameter.add_(0.01 * noise * parameter.abs().mean())
    if variant.rank:
        import peft

        torch.manual_seed(variant.seed)
        lora = peft.LoraConfig(
            r=variant.rank,
            lora_alpha=2 * variant.rank,
            target_modules=list(variant.targets),
            init_lora_weights=False,  # B != 0: the merged weights differ from the base
        )
        module = peft.get_peft_model(module, lora).merge_and_unload().eval()
    return module


def inputs() -> dict[str, Any]:
    """Example inputs: token ids and an all-ones mask."""
    import torch

    ids = torch.randint(0, VOCAB, (BATCH, SEQ), generator=torch.Generator().manual_seed(7))
    return {"input_ids": ids, "attention_mask": torch.ones(BATCH, SEQ, dtype=torch.long)}


def export(variant: Variant, path: Path, dynamo: bool) -> Path:
    """Exports ``variant`` to ``path`` (one file) with the chosen exporter."""
    from icl_onnx.torch_export import export_onnx

    export_onnx(build(variant), path, inputs(), dynamo=dynamo)
    return path


def feeds() -> dict[str, np.ndarray]:
    """The example inputs as numpy arrays for ONNX Runtime."""
    return {name: value.numpy() for name, value in inputs().items()}


def export_with_past(variant: Variant, path: Path) -> Path:
    """Exports ``variant`` as a decoder with a KV cache under Optimum's names (TorchScript).

    See :func:`icl_onnx.torch_export.export_decoder_with_past`.
    """
    from icl_onnx.torch_export import export_decoder_with_past

    export_decoder_with_past(build(variant), path)
    return path
