"""peft fine-tunes of a tiny Llama, merged and exported: optimized together with their base.

LoRA adapters of ranks 4, 8 and 16 (q/v only, every linear layer, q/v plus the embedding),
merged with ``merge_and_unload`` and exported with each exporter, are found as the base plus
low-rank factors; each variant's outputs stay within 1e-5 relative of its own export; a full
fine-tune stays whole; an unrelated model of the same shapes relates to nothing.
"""

from __future__ import annotations

import lora_models as lm
import numpy as np
import onnxruntime as ort
import peft  # noqa: F401  # the test extra installs peft, torch, transformers: no skip
import pytest
import torch  # noqa: F401
import transformers  # noqa: F401

from icl_onnx.pipeline import optimize_files, scan_files
from icl_onnx.session_group import SessionGroup

LORAS = ["qv_r4", "all_r8", "embed_r16"]
#: (number of low-rank tensors, rank) of each LoRA variant: q/v per layer, every linear layer
#: (7 per layer), q/v and the embedding table.
EXPECTED = {
    "qv_r4": (2 * lm.LAYERS, 4),
    "all_r8": (7 * lm.LAYERS, 8),
    "embed_r16": (2 * lm.LAYERS + 1, 16),
}
EXPORTERS = ["torchscript", pytest.param("dynamo", marks=pytest.mark.slow)]


@pytest.fixture(scope="module")
def exports(tmp_path_factory):
    """Exports on first use, once per (variant, exporter) for the whole module."""
    folder = tmp_path_factory.mktemp("lora")
    cache = {}

    def get(name: str, exporter: str):
        key = (name, exporter)
        if key not in cache:
            path = folder / f"{name}_{exporter}.onnx"
            cache[key] = lm.export(lm.VARIANTS[name], path, dynamo=exporter == "dynamo")
        return cache[key]

    return get


def outputs(path, feeds) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, feeds)[0]


@pytest.mark.parametrize("exporter", EXPORTERS)
def test_lora_variants_are_the_base_plus_factors_and_keep_their_outputs(
    exports, exporter, tmp_path
):
    paths = [exports("base", exporter), *(exports(name, exporter) for name in LORAS)]
    result = optimize_files(paths, tmp_path)

    for name in LORAS:
        label = paths[1 + LORAS.index(name)].name
        found = [m for _, m in result.plan.low_rank if m.model == label]
        count, rank = EXPECTED[name]
        assert len(found) == count, (name, [m.name for m in found])
        assert {m.view.rank for m in found} == {rank}
        assert all(m.error_ulps <= 4.0 for m in found)

    # The data file: the base's tensors once, plus each variant's factors.
    base_bytes = result.plan.plans[0].initializer_bytes
    factors = sum(m.factor_bytes for _, m in result.plan.low_rank)
    assert result.unique_bytes <= 1.1 * (base_bytes + factors)

    feeds = lm.feeds()
    group = SessionGroup([tmp_path / p.name for p in paths])
    assert group.shared_bytes > 0.9 * base_bytes
    wanted = []
    for path, session in zip(paths, group.sessions, strict=True):
        want = outputs(path, feeds)
        got = session.run(None, feeds)[0]
        assert np.abs(got - want).max() <= 1e-5 * np.abs(want).max(), path.name
        if wanted:
            assert np.abs(want - wanted[0]).max() > 1e-3  # the adapter changed the outputs
        wanted.append(want)


def test_full_fine_tune_stays_whole(exports, tmp_path):
    paths = [exports("base", "torchscript"), exports("full", "torchscript")]
    result = optimize_files(paths, tmp_path)
    assert result.plan.low_rank == []
    full_plan = result.plan.plans[1]
    assert not any(g.members or g.origin for g in full_plan.groups)
    assert result.unique_bytes >= 0.95 * (
        result.plan.plans[0].initializer_bytes + full_plan.initializer_bytes
    )
    feeds = lm.feeds()
    got = ort.InferenceSession(str(tmp_path / paths[1].name)).run(None, feeds)[0]
    np.testing.assert_array_equal(got, outputs(paths[1], feeds))


def test_unrelated_model_of_the_same_shapes_relates_to_nothing(exports):
    plan = scan_files([exports("base", "torchscript"), exports("unrelated", "torchscript")])
    assert plan.low_rank == [] and plan.groups == []


def test_a_lora_with_one_dense_update_shares_all_but_that_tensor(exports, tmp_path):
    """The issue's mixed case: q/v are found low-rank, the densely changed MLP weight is stored
    whole, and the files cost the base, the factors and that one tensor."""
    paths = [exports("base", "torchscript"), exports("qv_r8_dense_mlp", "torchscript")]
    result = optimize_files(paths, tmp_path)
    found = [m for _, m in result.plan.low_rank]
    assert len(found) == 2 * lm.LAYERS and {m.view.rank for m in found} == {8}  # q and v only
    ideal = (
        result.plan.plans[0].initializer_bytes
        + sum(m.factor_bytes for m in found)
        + lm.LAYERS * 2 * lm.HIDDEN * lm.HIDDEN * 4  # the dense down projection, [2H, H] float32
    )
    assert ideal * 0.99 <= result.unique_bytes <= 1.1 * ideal
    feeds = lm.feeds()
    group = SessionGroup([tmp_path / p.name for p in paths])
    for path, session in zip(paths, group.sessions, strict=True):
        want = outputs(path, feeds)
        got = session.run(None, feeds)[0]
        assert np.abs(got - want).max() <= 1e-5 * np.abs(want).max(), path.name
