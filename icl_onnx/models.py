"""The demo's random-weight Hugging Face models, built from config classes only (never a hub).

BERT masked-LM and a Llama-style causal LM with tied embeddings (``icl-onnx demo --arch``); the
benchmarks add more architectures on top (``benchmarks/model_zoo.py``).

Each builder returns a :class:`BuiltModel`, ``(module, inputs)``: a ``torch.nn.Module`` in eval
mode and a dict of example inputs keyed by the ``forward`` argument names. The defaults
(hidden 768, vocab 30000, 2 layers) are the size the problem is measured at; tests pass tiny
sizes. Weights come from a fixed seed, so two builds with the same arguments are identical.

``torch`` and ``transformers`` are imported lazily (the ``export`` extra).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

__all__ = [
    "ARCHITECTURES",
    "BuiltModel",
    "build_model",
    "bert_mlm",
    "llama_tied_lm",
    "finish",
    "token_inputs",
]


class BuiltModel(NamedTuple):
    """A module in eval mode and its example inputs (unpacks as ``module, inputs``)."""

    module: Any
    inputs: dict[str, Any]


def token_inputs(
    vocab: int, batch: int, seq: int, prefix: str = "", mask: bool = True
) -> dict[str, Any]:
    """Returns seeded ``{prefix}input_ids`` (and an all-ones ``{prefix}attention_mask``)."""
    import torch

    generator = torch.Generator().manual_seed(1234 + len(prefix))
    out = {f"{prefix}input_ids": torch.randint(0, vocab, (batch, seq), generator=generator)}
    if mask:
        out[f"{prefix}attention_mask"] = torch.ones(batch, seq, dtype=torch.long)
    return out


def finish(module: Any) -> Any:
    """Puts ``module`` in eval mode with its parameters frozen; returns it."""
    module.eval()
    for p in module.parameters():
        p.requires_grad_(False)
    return module


def bert_mlm(
    hidden: int = 768,
    vocab: int = 30000,
    layers: int = 2,
    heads: int = 12,
    batch: int = 2,
    seq: int = 16,
    seed: int = 0,
) -> BuiltModel:
    """BERT ``ForMaskedLM``: the MLM decoder weight is tied to the word embeddings.

    Args:
        hidden: hidden size (a multiple of ``heads``).
        vocab: vocabulary size.
        layers: encoder layers.
        heads: attention heads.
        batch: batch size of the example inputs.
        seq: sequence length of the example inputs.
        seed: torch seed for the random weights.
    """
    import torch
    import transformers

    config = transformers.BertConfig(
        vocab_size=vocab,
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        intermediate_size=4 * hidden,
        max_position_embeddings=max(512, seq),
        attn_implementation="eager",
    )
    torch.manual_seed(seed)
    module = finish(transformers.BertForMaskedLM(config))
    return BuiltModel(module, token_inputs(vocab, batch, seq))


def llama_config(
    hidden: int,
    vocab: int,
    layers: int,
    heads: int,
    *,
    max_positions: int = 2048,
    tied: bool = True,
    use_cache: bool = False,
    intermediate: int | None = None,
) -> Any:
    """The ``transformers.LlamaConfig`` every Llama-style model here is built from.

    MLP width ``2 * hidden`` unless ``intermediate`` is given, as many key/value heads as heads,
    eager attention.

    Args:
        hidden: hidden size (a multiple of ``heads``).
        vocab: vocabulary size.
        layers: decoder layers.
        heads: attention heads (and key/value heads).
        max_positions: ``max_position_embeddings``.
        tied: ``tie_word_embeddings``.
        use_cache: ``use_cache`` (a KV cache in the forward pass).
        intermediate: the MLP width (``2 * hidden`` when None).
    """
    import transformers

    return transformers.LlamaConfig(
        vocab_size=vocab,
        hidden_size=hidden,
        intermediate_size=2 * hidden if intermediate is None else intermediate,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=heads,
        max_position_embeddings=max_positions,
        tie_word_embeddings=tied,
        use_cache=use_cache,
        attn_implementation="eager",
    )


def llama_tied_lm(
    hidden: int = 768,
    vocab: int = 30000,
    layers: int = 2,
    heads: int = 12,
    batch: int = 2,
    seq: int = 16,
    seed: int = 0,
) -> BuiltModel:
    """Llama-style causal LM with ``tie_word_embeddings=True`` and no KV cache.

    Args:
        hidden: hidden size (a multiple of ``heads``).
        vocab: vocabulary size.
        layers: decoder layers.
        heads: attention heads (and key/value heads).
        batch: batch size of the example inputs.
        seq: sequence length of the example inputs.
        seed: torch seed for the random weights.
    """
    import torch
    import transformers

    config = llama_config(hidden, vocab, layers, heads, max_positions=max(2048, seq))
    torch.manual_seed(seed)
    module = finish(transformers.LlamaForCausalLM(config))
    return BuiltModel(module, token_inputs(vocab, batch, seq))


#: Builders by short name (``icl-onnx demo --arch``).
ARCHITECTURES: dict[str, Callable[..., BuiltModel]] = {
    "bert": bert_mlm,
    "llama": llama_tied_lm,
}


def build_model(name: str, **sizes: Any) -> BuiltModel:
    """Builds one of :data:`ARCHITECTURES` by name.

    Args:
        name: ``bert`` or ``llama``.
        **sizes: ``hidden``, ``vocab``, ``layers``, ``heads``, ``batch``, ``seq``, ``seed``.

    Raises:
        KeyError: unknown name.
    """
    try:
        builder = ARCHITECTURES[name]
    except KeyError:
        choices = sorted(ARCHITECTURES)
        raise KeyError(f"unknown architecture {name!r}; choose from {choices}") from None
    return builder(**sizes)
