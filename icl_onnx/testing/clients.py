"""Tiny Hugging Face models and the real clients that serve them: ONNX Runtime GenAI, Optimum.

Shared by the client tests (and other test modules): each builder caches its folder per
pytest session (``cached_folder``), so a model is built once however many tests use it.

- :func:`hf_model`: a random-weight model saved with ``save_pretrained`` plus a word-level
  tokenizer made with the ``tokenizers`` package (nothing downloaded); with ``lora``, a
  fine-tune of it (a peft LoRA on every linear layer, merged).
- :func:`genai_build`: onnxruntime-genai's model builder run on such a folder.
- :func:`optimum_python`, :func:`optimum_export`: a separate venv (``.venv-optimum``) with
  optimum-onnx, which pins an older transformers than this project uses, and an export made
  with its ``optimum-cli``.
"""

from __future__ import annotations

import atexit
import functools
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

#: The arguments of the small Llama-style decoders (Llama, Qwen2).
_SMALL_DECODER = dict(
    hidden_size=64,
    intermediate_size=128,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    vocab_size=1000,
    max_position_embeddings=256,
    tie_word_embeddings=True,
)

#: Small configs, by name: (transformers config class, its arguments).
MODELS: dict[str, tuple[str, dict]] = {
    "llama": ("LlamaConfig", _SMALL_DECODER),
    "qwen2": ("Qwen2Config", _SMALL_DECODER),
    "gpt2": (
        "GPT2Config",
        dict(n_embd=64, n_layer=2, n_head=4, vocab_size=1000, n_positions=256),
    ),
    "t5": (
        "T5Config",
        dict(
            d_model=64, d_ff=128, num_layers=2, num_heads=4, d_kv=16, vocab_size=1000,
            decoder_start_token_id=0, tie_word_embeddings=True,
        ),
    ),
}  # fmt: skip

#: Greedy decoding: prompt ids and the number of new tokens.
PROMPT = [5, 17, 42, 99, 7, 300, 12, 64]
NEW_TOKENS = 16


@functools.cache
def cache() -> Path:
    """Where built models are cached for the session: a fresh folder per process.

    Made on first use (importing this module makes nothing) and removed at exit.
    """
    folder = Path(tempfile.mkdtemp(prefix="icl-clients-"))
    atexit.register(shutil.rmtree, folder, True)
    return folder


@functools.cache
def cached_folder(key: str, build: Callable[[Path], None]) -> Path:
    """Builds ``cache()/key`` once per session with ``build(folder)``; returns the folder."""
    folder = cache() / key
    if not folder.is_dir():
        staging = cache() / f".{key}.tmp"
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        build(staging)
        staging.rename(folder)
    return folder


def save_tokenizer(folder: Path, vocab_size: int) -> None:
    """A word-level tokenizer over ``w0 .. w{n}`` with ``<s>``/``</s>``/``<unk>`` (ids 0-2)."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    special = ["<unk>", "<s>", "</s>"]
    vocab = {t: i for i, t in enumerate(special)}
    vocab.update({f"w{i}": i for i in range(len(special), vocab_size)})
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, unk_token="<unk>", bos_token="<s>", eos_token="</s>"
    )
    fast.save_pretrained(folder)


def _save_hf(
    name: str, scale: float, sizes: dict, lora: tuple[int, int] | None, folder: Path
) -> None:
    import torch
    import transformers

    config_class, kwargs = MODELS[name]
    config = getattr(transformers, config_class)(
        **{**kwargs, **sizes}, bos_token_id=1, eos_token_id=2, pad_token_id=0
    )
    torch.manual_seed(0)
    auto = "AutoModelForSeq2SeqLM" if config.is_encoder_decoder else "AutoModelForCausalLM"
    model = getattr(transformers, auto).from_config(config)
    with torch.no_grad():  # larger weights than the default init: varied greedy tokens
        for param in model.parameters():
            if param.dim() == 2:
                param.mul_(scale)
    if lora is not None:
        import peft

        rank, seed = lora
        torch.manual_seed(seed)
        adapter = peft.LoraConfig(
            r=rank, lora_alpha=2 * rank, target_modules="all-linear", init_lora_weights=False
        )  # B != 0: the merged weights differ from the base's by a rank-`rank` delta
        model = peft.get_peft_model(model, adapter).merge_and_unload()
    model.save_pretrained(folder)
    save_tokenizer(folder, config.vocab_size)


def _key(name: str, sizes: dict, lora: tuple[int, int] | None = None) -> str:
    parts = [name, *(f"{k}{v}" for k, v in sorted(sizes.items()))]
    return "-".join(parts + ([f"lora{lora[0]}s{lora[1]}"] if lora else []))


def hf_model(
    name: str, scale: float = 8.0, *, lora: tuple[int, int] | None = None, **sizes: int
) -> Path:
    """A tied, random-weight ``name`` model in a ``save_pretrained`` folder.

    Args:
        name: a key of :data:`MODELS`.
        scale: factor on the default initialisation of matrices (varied greedy tokens).
        lora: ``(rank, seed)``: the model fine-tuned by a peft LoRA of that rank on every
            linear layer (random nonzero factors from ``seed``), merged; None: the base.
        sizes: config values that replace the small defaults (``hidden_size=768``, ...).
    """
    return cached_folder(
        f"hf-{_key(name, sizes, lora)}", functools.partial(_save_hf, name, scale, sizes, lora)
    )


def _option(value: object) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def _genai(hf: Path, precision: str, options: dict, folder: Path) -> None:
    args = [
        sys.executable, "-m", "onnxruntime_genai.models.builder",
        "-i", str(hf), "-o", str(folder), "-p", precision, "-e", "cpu",
        "-c", str(folder.parent / f"{folder.name}.cache"),
    ]  # fmt: skip
    if options:
        args += ["--extra_options", *(f"{k}={_option(v)}" for k, v in sorted(options.items()))]
    run(args, timeout=900, env={**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"})


def genai_build(
    name: str,
    shared_embeddings: bool | None = None,
    *,
    precision: str = "fp32",
    options: dict | None = None,
    lora: tuple[int, int] | None = None,
    **sizes: int,
) -> Path:
    """onnxruntime-genai's CPU build of :func:`hf_model` (the builder's default if None).

    Args:
        name: a key of :data:`MODELS`.
        lora: the fine-tune of :func:`hf_model` to build (``(rank, seed)``), or the base.
        shared_embeddings: the builder's ``shared_embeddings`` option (its default if None).
        precision: the builder's ``-p`` (``fp32``, ``int4``, ...).
        options: more ``--extra_options`` (``{"algo_config": "rtn_last"}``: an 8-bit head).
        sizes: config values that replace the small defaults.
    """
    options = dict(options or {})
    if shared_embeddings is not None:
        options["shared_embeddings"] = shared_embeddings
    mode = "-".join(f"{k}{_option(v)}" for k, v in sorted(options.items())) or "default"
    return cached_folder(
        f"genai-{_key(name, sizes, lora)}-{precision}-{mode}",
        functools.partial(_genai, hf_model(name, lora=lora, **sizes), precision, options),
    )


def genai_generate(folder: Path, new_tokens: int = NEW_TOKENS) -> dict:
    """Greedy tokens from ``folder`` through GenAI (``_generate_genai``), in a fresh process.

    The process has a clean environment and imports only onnxruntime_genai; returns its JSON.
    """
    out = run(
        [
            sys.executable,
            "-m",
            "icl_onnx.testing._generate_genai",
            str(folder),
            json.dumps(PROMPT),
            str(new_tokens),
        ],
        timeout=600,
        env=clean_env(),
        cwd=folder.parent,
    )
    return json.loads(out.strip().splitlines()[-1])


def clean_env() -> dict[str, str]:
    """The environment of a fresh user shell: no library paths, no icl-onnx variables."""
    keep = ("PATH", "HOME", "LANG", "TMPDIR", "SYSTEMROOT")
    return {k: v for k, v in os.environ.items() if k in keep}


def run(args: list[str], *, timeout: float, env: dict[str, str] | None = None, cwd=None) -> str:
    """Runs a command; returns stdout; fails with the tail of its output."""
    proc = subprocess.run(args, capture_output=True, text=True, timeout=timeout, env=env, cwd=cwd)
    if proc.returncode != 0:
        tail = (proc.stdout + proc.stderr)[-4000:]
        raise AssertionError(f"{' '.join(map(str, args[:6]))}... exited {proc.returncode}:\n{tail}")
    return proc.stdout


# --- Optimum: its own venv, since optimum-onnx pins transformers<4.58 -------------------------

#: The venv's requirements; the venv is rebuilt when they change.
OPTIMUM_REQUIREMENTS = [
    "optimum-onnx==0.1.0",
    "transformers>=4.50,<4.58",
    "torch==2.13.0",
    "onnxruntime>=1.21",
    "accelerate",
]
OPTIMUM_VENV = ROOT / ".venv-optimum"


def optimum_python() -> Path:
    """The Python of ``.venv-optimum`` (created on first use, reused after), with icl-onnx."""
    stamp = OPTIMUM_VENV / ".requirements"
    wanted = "\n".join(OPTIMUM_REQUIREMENTS) + f"\nicl-onnx from {ROOT}\n"
    python = OPTIMUM_VENV / "bin" / "python"
    if not (stamp.is_file() and stamp.read_text() == wanted and python.is_file()):
        _create_optimum_venv(python, stamp, wanted)
    import icl_onnx

    site = run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
               timeout=60).strip()  # fmt: skip
    lib = Path(site, "icl_onnx", "_lib", Path(icl_onnx.library_path()).name)
    if not lib.is_file() or lib.read_bytes() != Path(icl_onnx.library_path()).read_bytes():
        lib.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(icl_onnx.library_path(), lib)  # this checkout's build of the library
    return python


def _create_optimum_venv(python: Path, stamp: Path, wanted: str) -> None:
    shutil.rmtree(OPTIMUM_VENV, ignore_errors=True)
    run([sys.executable, "-m", "venv", str(OPTIMUM_VENV)], timeout=300)
    pip = [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    run([*pip, *OPTIMUM_REQUIREMENTS], timeout=1800)
    # icl-onnx's runtime part as a serving venv holds it: the sources on the path (.pth)
    # and the op library where library_path() looks in site-packages.
    site = run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
               timeout=60).strip()  # fmt: skip
    Path(site, "icl_onnx_checkout.pth").write_text(str(ROOT) + "\n")
    stamp.write_text(wanted)


def _optimum_export(hf: Path, dedup: bool, folder: Path) -> None:
    python = optimum_python()
    cli = python.parent / "optimum-cli"
    config = json.loads((hf / "config.json").read_text())
    task = "text2text-generation" if config.get("is_encoder_decoder") else "text-generation"
    run(
        [str(cli), "export", "onnx", "-m", str(hf), "--task", f"{task}-with-past",
         *([] if dedup else ["--no-post-process"]), str(folder)],
        timeout=900,
        env={**clean_env(), "HF_HUB_OFFLINE": "1"},
    )  # fmt: skip


def optimum_export(
    name: str, dedup: bool = True, *, lora: tuple[int, int] | None = None, **sizes: int
) -> Path:
    """``optimum-cli export onnx --task text-generation-with-past`` of :func:`hf_model`.

    Encoder-decoder models (T5) are exported with ``--task text2text-generation-with-past``.

    Args:
        name: a key of :data:`MODELS`.
        dedup: keep Optimum's post-processing, which with accelerate installed ties duplicate
            initializers (the tied table stored once, read through a Transpose); False exports
            with ``--no-post-process`` (the tied table stored twice).
        lora: the fine-tune of :func:`hf_model` to export (``(rank, seed)``), or the base.
        sizes: config overrides, as for :func:`hf_model`.
    """
    return cached_folder(
        f"optimum-{_key(name, sizes, lora)}-{'dedup' if dedup else 'plain'}",
        functools.partial(_optimum_export, hf_model(name, lora=lora, **sizes), dedup),
    )


def optimum_generate(folder: Path, options: str, new_tokens: int = NEW_TOKENS) -> dict:
    """Greedy tokens through Optimum (``_generate_optimum``) in ``.venv-optimum``; icl|plain."""
    out = run(
        [str(optimum_python()), "-m", "icl_onnx.testing._generate_optimum", str(folder),
         json.dumps(PROMPT), str(new_tokens), options],
        timeout=600,
        env={**clean_env(), "HF_HUB_OFFLINE": "1"},
    )  # fmt: skip
    return json.loads(out.strip().splitlines()[-1])
