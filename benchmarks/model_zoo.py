"""The benchmarks' models: the demo's BERT and Llama (``icl_onnx.models``), BART and ViT.

``export_llama_with_past`` writes a tied Llama decoder with KV-cache inputs and outputs under
Optimum's names (``past_key_values.{i}.key``, ``present.{i}.key``, ...), exported with the
TorchScript exporter from transformers directly (Optimum itself needs a venv of its own).

Random weights from config classes only (never from a hub); ``torch`` and ``transformers`` are
imported lazily.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from icl_onnx.models import (
    BuiltModel,
    bert_mlm,
    finish,
    llama_config,
    llama_tied_lm,
    token_inputs,
)

__all__ = [
    "ARCHITECTURES",
    "bart_seq2seq",
    "build_model",
    "export_llama_with_past",
    "vit_classifier",
]


def bart_seq2seq(
    hidden: int = 768,
    vocab: int = 30000,
    layers: int = 2,
    heads: int = 12,
    batch: int = 2,
    seq: int = 16,
    seed: int = 0,
) -> BuiltModel:
    """BART ``ForConditionalGeneration``: encoder, decoder and LM head share one embedding.

    Args:
        hidden: model size (a multiple of ``heads``).
        vocab: vocabulary size.
        layers: encoder layers and decoder layers (each).
        heads: attention heads.
        batch: batch size of the example inputs.
        seq: encoder sequence length; the decoder sequence is ``seq // 2 + 1``.
        seed: torch seed for the random weights.
    """
    import torch
    import transformers

    config = transformers.BartConfig(
        vocab_size=vocab,
        d_model=hidden,
        encoder_layers=layers,
        decoder_layers=layers,
        encoder_attention_heads=heads,
        decoder_attention_heads=heads,
        encoder_ffn_dim=4 * hidden,
        decoder_ffn_dim=4 * hidden,
        max_position_embeddings=max(1024, seq),
        use_cache=False,
        attn_implementation="eager",
    )
    torch.manual_seed(seed)
    module = finish(transformers.BartForConditionalGeneration(config))
    inputs = token_inputs(vocab, batch, seq)
    inputs.update(token_inputs(vocab, batch, seq // 2 + 1, prefix="decoder_", mask=False))
    return BuiltModel(module, inputs)


def vit_classifier(
    hidden: int = 768,
    vocab: int = 30000,
    layers: int = 2,
    heads: int = 12,
    batch: int = 2,
    seq: int = 16,
    seed: int = 0,
) -> BuiltModel:
    """ViT ``ForImageClassification``: the control, with no tied weights.

    Args:
        hidden: hidden size (a multiple of ``heads``).
        vocab: ignored (no vocabulary); kept so every builder takes the same arguments.
        layers: encoder layers.
        heads: attention heads.
        batch: batch size of the example inputs.
        seq: ignored; the image is 224x224 (patch 16) at hidden >= 256, else 32x32 (patch 8).
        seed: torch seed for the random weights and the example image.
    """
    import torch
    import transformers

    del vocab, seq
    image, patch = (224, 16) if hidden >= 256 else (32, 8)
    config = transformers.ViTConfig(
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        intermediate_size=4 * hidden,
        image_size=image,
        patch_size=patch,
        num_labels=1000 if hidden >= 256 else 10,
        attn_implementation="eager",
    )
    torch.manual_seed(seed)
    module = finish(transformers.ViTForImageClassification(config))
    generator = torch.Generator().manual_seed(seed + 1)
    pixels = torch.randn(batch, 3, image, image, generator=generator)
    return BuiltModel(module, {"pixel_values": pixels})


def export_llama_with_past(
    path: str | os.PathLike,
    hidden: int = 768,
    vocab: int = 32000,
    layers: int = 2,
    heads: int = 12,
    seed: int = 0,
) -> None:
    """Exports a tied Llama causal LM with a KV cache, as Optimum's with-past decoder reads it.

    Inputs ``input_ids``, ``attention_mask`` (past + new), ``position_ids`` and
    ``past_key_values.{i}.key|value`` ``[batch, heads, past, head_dim]``; outputs ``logits``
    and ``present.{i}.key|value``. The past may be empty (a prefill).

    Args:
        path: the ONNX file to write (weights inline).
        hidden: hidden size (a multiple of ``heads``).
        vocab: vocabulary size.
        layers: decoder layers.
        heads: attention heads (and key/value heads).
        seed: torch seed for the random weights.
    """
    import torch
    import transformers

    from icl_onnx.torch_export import export_decoder_with_past

    config = llama_config(hidden, vocab, layers, heads, use_cache=True)
    torch.manual_seed(seed)
    export_decoder_with_past(finish(transformers.LlamaForCausalLM(config)), path)


#: Builders by short name, in the order benchmarks list them.
ARCHITECTURES: dict[str, Callable[..., BuiltModel]] = {
    "bert": bert_mlm,
    "llama": llama_tied_lm,
    "bart": bart_seq2seq,
    "vit": vit_classifier,
}


def build_model(name: str, **sizes: Any) -> BuiltModel:
    """Builds one of :data:`ARCHITECTURES` by name (``bert``, ``llama``, ``bart`` or ``vit``)."""
    return ARCHITECTURES[name](**sizes)
