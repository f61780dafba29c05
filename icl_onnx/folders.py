"""Model folders in, model folders out: ONNX Runtime GenAI and Optimum / Hugging Face exports.

A GenAI folder holds ``genai_config.json`` and the .onnx files it names; an Optimum export
holds ``config.json`` and ``model.onnx`` or the encoder / decoder files. :func:`optimize_folder`
writes a complete copy that runs as is: every model optimized (together, so weights shared
across files are stored once), every other file copied, the ICL op library copied in, and for
GenAI the library named in each ``session_options`` of ``genai_config.json``.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from icl_onnx._runtime import library_path
from icl_onnx.errors import IclUserError

__all__ = [
    "GENAI_CONFIG",
    "HF_CONFIG",
    "LIBRARY_NAME",
    "OPTIMUM_MODELS",
    "FolderResult",
    "ModelFolder",
    "read_folder",
    "optimize_folder",
]

GENAI_CONFIG = "genai_config.json"
HF_CONFIG = "config.json"
#: File name of the op library in an output folder.
LIBRARY_NAME = "libicl_ops.so"
#: Model files of an Optimum export, any of which makes a folder an Optimum folder.
OPTIMUM_MODELS = (
    "model.onnx",
    "encoder_model.onnx",
    "decoder_model.onnx",
    "decoder_with_past_model.onnx",
    "decoder_model_merged.onnx",
)


@dataclasses.dataclass(frozen=True)
class ModelFolder:
    """A model folder as read by :func:`read_folder`.

    Attributes:
        root: the folder.
        kind: ``"genai"`` or ``"optimum"``.
        models: the .onnx files at the folder's top level, by name, sorted.
        data_files: the external-data files those models read, by name (not copied as is).
    """

    root: Path
    kind: str
    models: list[str]
    data_files: frozenset[str]


@dataclasses.dataclass
class FolderResult:
    """What :func:`optimize_folder` wrote.

    Attributes:
        folder: the input folder as read.
        out_dir: the folder written.
        plan: the cross-model plan (:class:`icl_onnx.planning.plan.CrossPlan`).
        tensor_bytes: external tensor bytes of the written models, counted per model.
        unique_bytes: bytes of the one data file (each unique tensor once).
        copied: other files copied, by name.
        library: the op library's path in ``out_dir``.
    """

    folder: ModelFolder
    out_dir: Path
    plan: Any
    tensor_bytes: int
    unique_bytes: int
    copied: list[str]
    library: Path


def _load_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise IclUserError(f"{path}: cannot read it as JSON ({e})") from None
    if not isinstance(data, dict):
        raise IclUserError(f"{path}: not a JSON object")
    return data


def _genai_models(root: Path, config: dict[str, Any]) -> list[str]:
    """Checks that a GenAI config names a decoder whose files exist; returns the files it names."""
    model = config.get("model")
    decoder = model.get("decoder") if isinstance(model, dict) else None
    if not isinstance(decoder, dict) or not (decoder.get("filename") or decoder.get("pipeline")):
        raise IclUserError(
            f"{root / GENAI_CONFIG} names no decoder (model.decoder.filename); "
            "pass a folder written by onnxruntime-genai's model builder"
        )
    named = sorted({f for f in _filenames(model) if f.endswith(".onnx")})
    missing = [f for f in named if not (root / f).is_file()]
    if missing:
        raise IclUserError(f"{root / GENAI_CONFIG} names {', '.join(missing)}, not in {root}")
    return named


def _filenames(node: Any) -> list[str]:
    """Every ``filename`` value in a GenAI config subtree."""
    if isinstance(node, dict):
        out = [node["filename"]] if isinstance(node.get("filename"), str) else []
        for value in node.values():
            out.extend(_filenames(value))
        return out
    if isinstance(node, list):
        return [f for item in node for f in _filenames(item)]
    return []


def _data_files(root: Path, models: list[str]) -> frozenset[str]:
    import onnx

    names: set[str] = set()
    for name in models:
        try:
            proto = onnx.load(str(root / name), load_external_data=False)
        except Exception as e:  # protobuf raises DecodeError and others
            raise IclUserError(f"{root / name}: not an ONNX model ({type(e).__name__})") from None
        for tensor in proto.graph.initializer:
            for entry in tensor.external_data:
                if entry.key == "location":
                    names.add(entry.value)
    return frozenset(names)


def read_folder(path: str | os.PathLike) -> ModelFolder:
    """Reads a GenAI or Optimum model folder.

    Raises:
        IclUserError: the folder is missing, holds no model, or its ``genai_config.json``
            names no decoder or files it lacks.
    """
    root = Path(path)
    if not root.is_dir():
        raise IclUserError(f"{root}: no such folder")
    models = sorted(p.name for p in root.glob("*.onnx") if p.is_file())
    if (root / GENAI_CONFIG).is_file():
        _genai_models(root, _load_json(root / GENAI_CONFIG))
        kind = "genai"
    elif (root / HF_CONFIG).is_file() and any(m in OPTIMUM_MODELS for m in models):
        kind = "optimum"
    else:
        raise IclUserError(
            f"{root} is not a model folder: it needs {GENAI_CONFIG} (onnxruntime-genai) or "
            f"{HF_CONFIG} with {' or '.join(OPTIMUM_MODELS[:2])}... (an Optimum export)"
        )
    if not models:
        raise IclUserError(f"{root} holds no .onnx model")
    return ModelFolder(root, kind, models, _data_files(root, models))


def _check_output(src: Path, dst: Path, force: bool) -> None:
    src_real, dst_real = src.resolve(), dst.resolve()
    if dst_real == src_real or src_real in dst_real.parents:
        raise IclUserError(f"output {dst} is the input folder or inside it; choose another folder")
    if dst.exists() and not dst.is_dir():
        raise IclUserError(f"output {dst} is a file; give a folder")
    if dst.is_dir() and any(dst.iterdir()) and not force:
        raise IclUserError(f"output {dst} is not empty; pass --force to replace it")
    if not dst.parent.is_dir():
        raise IclUserError(f"the folder of {dst} does not exist; create it first")


def _set_library(node: Any, library: str) -> int:
    """Names the op library in every ``session_options`` of a GenAI config; returns how many.

    A component with a model file but no ``session_options`` gets one.
    """
    count = 0
    if isinstance(node, dict):
        if isinstance(node.get("filename"), str) and "session_options" not in node:
            node["session_options"] = {}
        for key, value in node.items():
            if key == "session_options" and isinstance(value, dict):
                value["custom_ops_library"] = library
                count += 1
            else:
                count += _set_library(value, library)
    elif isinstance(node, list):
        count += sum(_set_library(item, library) for item in node)
    return count


def _write_genai_config(src: Path, dst: Path) -> None:
    config = _load_json(src)
    _set_library(config.get("model"), LIBRARY_NAME)
    dst.write_text(json.dumps(config, indent=4) + "\n")


def optimize_folder(
    src: str | os.PathLike,
    dst: str | os.PathLike,
    *,
    force: bool = False,
    min_elements: int | None = None,
    share_quantized: bool = False,
    low_rank: bool = True,
    read_weights_in_place: bool = False,
) -> FolderResult:
    """Optimizes every model of a GenAI or Optimum folder into a new folder, ready to run.

    The models are optimized together (:func:`icl_onnx.optimize_files`): weights that several
    files share are stored once, in one data file. Other files are copied; the op library is
    copied in; for GenAI, ``genai_config.json`` names it in every ``session_options``. The
    folder is written beside ``dst`` and renamed into place, so a failure leaves ``dst`` as it
    was.

    Args:
        src: the model folder.
        dst: the output folder: absent, empty, or (with ``force``) replaced.
        force: replace a non-empty ``dst``.
        min_elements: ignore initializers with fewer elements (the analysis default if None).
        share_quantized: lossy sharing of float tables with quantized heads, as for
            :func:`icl_onnx.optimize_file`.
        low_rank: look for low-rank deltas between the folder's models, as for
            :func:`icl_onnx.optimize_files`.
        read_weights_in_place: move every large float MatMul/Gemm weight to IclMatMul, as
            for :func:`icl_onnx.optimize`.

    Raises:
        IclUserError: bad input folder or output folder (see :func:`read_folder`), or a model
            that cannot be read.
    """
    from icl_onnx.analysis import DEFAULT_MIN_ELEMENTS
    from icl_onnx.pipeline import optimize_files

    folder = read_folder(src)
    out = Path(dst)
    _check_output(folder.root, out, force)
    lib = library_path()
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.absolute().parent))
    try:
        result = optimize_files(
            [folder.root / m for m in folder.models],
            staging,
            min_elements=DEFAULT_MIN_ELEMENTS if min_elements is None else min_elements,
            share_quantized=share_quantized,
            low_rank=low_rank,
            read_weights_in_place=read_weights_in_place,
        )
        copied = _copy_others(folder, staging)
        shutil.copyfile(lib, staging / LIBRARY_NAME)
        if folder.kind == "genai":
            _write_genai_config(folder.root / GENAI_CONFIG, staging / GENAI_CONFIG)
        _replace(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return FolderResult(
        folder=folder,
        out_dir=out,
        plan=result.plan,
        tensor_bytes=result.tensor_bytes,
        unique_bytes=result.unique_bytes,
        copied=copied,
        library=out / LIBRARY_NAME,
    )


def _copy_others(folder: ModelFolder, staging: Path) -> list[str]:
    """Copies every file and subfolder that is not a model, its data, or the op library."""
    skip = set(folder.models) | folder.data_files | {LIBRARY_NAME}
    copied = []
    for entry in sorted(folder.root.iterdir()):
        if entry.name in skip:
            continue
        if entry.is_dir():
            shutil.copytree(entry, staging / entry.name, symlinks=True)
        else:
            shutil.copy2(entry, staging / entry.name)
        copied.append(entry.name)
    return copied


def _replace(staging: Path, out: Path) -> None:
    """Moves the staging folder to ``out``, replacing an existing ``out``."""
    staging.chmod(0o755)  # mkdtemp makes it private to the user
    if not out.exists():
        staging.rename(out)
        return
    old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old.", dir=out.absolute().parent))
    old.rmdir()
    out.rename(old)
    staging.rename(out)
    shutil.rmtree(old, ignore_errors=True)
