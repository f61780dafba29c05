"""Greedy decoding of a batch of conversations, each row through its own fine-tune (issue 23).

:func:`icl_onnx.serve.generate.greedy_batch` decodes a batch of prompts together on one
KV-cache decoder session and feeds a batched-variants model's ``variant_ids`` (one per row) at
every step. A hand-made decoder whose next token depends on the row's variant id checks the
feeding; a tiny Llama exported with a KV cache checks that rows decoded together (left-padded
where the prompts differ in length) generate what each prompt generates alone. Then K LoRA
fine-tunes (peft, merged) of that Llama, exported with a KV cache, become one model
(``optimize_batched_variants``): a batch of conversations, each row with its own fine-tune
(the base, repeats), generates per row the tokens of that variant's own export alone, with the
logits of every step within 1e-5 of it. The same for the decoders the GenAI builder writes
(grouped-query attention, packed QKV) from merged fine-tunes of a ``save_pretrained`` folder.
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from builders import IR_VERSION, ort_cuda_missing
from lora_models import ALL_LINEAR, VARIANTS, Variant, export_with_past
from onnx import TensorProto
from onnx import helper as h

import icl_onnx
from icl_onnx.check.dims import cache_geometry
from icl_onnx.serve.generate import decode_steps, greedy, greedy_batch

V = 16  # vocabulary of the counting decoder
#: The fine-tunes batched with the base: q/v only, every linear layer at two ranks.
LORAS = [
    VARIANTS["qv_r4"],
    VARIANTS["all_r8"],
    Variant("all_r4", 4, tuple(ALL_LINEAR), seed=21),
]


def _counting_decoder() -> onnx.ModelProto:
    """A KV-cache decoder whose next token is ``(last + 1 + variant_id) mod V`` per row.

    The cache holds the token ids seen so far (``present`` = ``past`` + the new ids), so a run
    that drops the cache between steps, or feeds another row's variant, gives other tokens.
    """
    inputs = [
        h.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "sequence"]),
        h.make_tensor_value_info("attention_mask", TensorProto.INT64, ["batch", "total"]),
        h.make_tensor_value_info("variant_ids", TensorProto.INT64, ["batch"]),
        h.make_tensor_value_info(
            "past_key_values.0.key", TensorProto.FLOAT, ["batch", 1, "past", 1]
        ),
    ]
    nodes = [
        h.make_node("Cast", ["input_ids"], ["ids_f"], to=TensorProto.FLOAT),
        h.make_node("Unsqueeze", ["ids_f", "axes13"], ["ids_4d"]),
        h.make_node("Concat", ["past_key_values.0.key", "ids_4d"], ["present.0.key"], axis=2),
        h.make_node("Unsqueeze", ["variant_ids", "axes1"], ["v_col"]),
        h.make_node("Add", ["input_ids", "v_col"], ["shifted"]),
        h.make_node("Add", ["shifted", "one"], ["next_raw"]),
        h.make_node("Mod", ["next_raw", "vocab"], ["next"]),
        h.make_node("OneHot", ["next", "vocab", "off_on"], ["logits"], axis=-1),
    ]
    graph = h.make_graph(
        nodes,
        "counting",
        inputs,
        [
            h.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", "sequence", V]),
            h.make_tensor_value_info("present.0.key", TensorProto.FLOAT, ["batch", 1, "total", 1]),
        ],
        [
            h.make_tensor("axes13", TensorProto.INT64, [2], [1, 3]),
            h.make_tensor("axes1", TensorProto.INT64, [1], [1]),
            h.make_tensor("one", TensorProto.INT64, [], [1]),
            h.make_tensor("vocab", TensorProto.INT64, [], [V]),
            h.make_tensor("off_on", TensorProto.FLOAT, [2], [0.0, 1.0]),
        ],
    )
    return h.make_model(graph, opset_imports=[h.make_opsetid("", 18)], ir_version=IR_VERSION)


def test_each_row_decodes_through_its_own_variant_id_at_every_step():
    session = icl_onnx.create_session(_counting_decoder().SerializeToString())
    prompts, ids = [[3], [5, 6], [1, 2, 9], [15]], [0, 2, 1, 2]
    got = greedy_batch(session, prompts, 5, variant_ids=ids)
    expected = [
        [(p[-1] + (i + 1) * (1 + v)) % V for i in range(5)]
        for p, v in zip(prompts, ids, strict=True)
    ]
    assert got == expected
    # the cache grows by one token a step, rows padded on the left to the longest prompt
    steps = list(decode_steps(session, prompts, 3, variant_ids=ids))
    assert [s.shape for s in steps] == [(4, 3, V), (4, 1, V), (4, 1, V)]


def test_rows_without_variant_ids_decode_through_the_base():
    session = icl_onnx.create_session(_counting_decoder().SerializeToString())
    assert greedy_batch(session, [[3], [7]], 3) == [[4, 5, 6], [8, 9, 10]]
    assert greedy(session, [3], 3) == [4, 5, 6]


def test_variant_ids_that_do_not_fit_are_refused():
    session = icl_onnx.create_session(_counting_decoder().SerializeToString())
    with pytest.raises(ValueError, match="one id per prompt"):
        greedy_batch(session, [[3], [7]], 2, variant_ids=[1])
    with pytest.raises(ValueError, match="at least one token"):
        greedy_batch(session, [[3], []], 2)
    plain = _counting_decoder()
    plain.graph.input.remove(next(i for i in plain.graph.input if i.name == "variant_ids"))
    plain.graph.node.remove(plain.graph.node[3])  # Unsqueeze(variant_ids)
    plain.graph.node[3].input[1] = "one"  # input_ids + 1 + 1: every row counts by two
    session = icl_onnx.create_session(plain.SerializeToString())
    assert greedy_batch(session, [[3]], 2) == [[5, 7]]
    with pytest.raises(ValueError, match="--batched-variants"):
        greedy_batch(session, [[3]], 2, variant_ids=[1])


@pytest.fixture(scope="module")
def llama_with_past(tmp_path_factory):
    """The tiny Llama of ``lora_models`` exported with a KV cache (Optimum's names)."""
    return export_with_past(VARIANTS["base"], tmp_path_factory.mktemp("decoder") / "base.onnx")


def test_a_batch_generates_per_row_what_each_prompt_generates_alone(llama_with_past):
    session = icl_onnx.create_session(llama_with_past)
    rng = np.random.default_rng(3)
    prompts = [rng.integers(3, 1000, n).tolist() for n in (6, 6, 3, 9)]  # padded on the left
    alone = [greedy(session, p, 8) for p in prompts]
    assert greedy_batch(session, prompts, 8) == alone
    assert len({tuple(t) for t in alone}) == len(prompts)  # the rows differ
    names = {a.name for a in session.get_inputs()}
    assert "position_ids" in names and "past_key_values.0.key" in names


def _max_relative(actual: np.ndarray, expected: np.ndarray) -> float:
    """max |actual - expected| / max |expected|."""
    return float(np.abs(actual - expected).max() / np.abs(expected).max())


def _batched(paths, out):
    from icl_onnx.pipeline import optimize_batched_variants

    optimize_batched_variants([str(p) for p in paths], out)
    return out


@pytest.fixture(scope="module")
def lora_decoders(tmp_path_factory, llama_with_past):
    """The base and each of :data:`LORAS` with a KV cache, and their batched model."""
    folder = llama_with_past.parent
    paths = [llama_with_past]
    paths += [export_with_past(v, folder / f"{v.name}.onnx") for v in LORAS]
    return paths, _batched(paths, folder / "batched.onnx")


def _rows_match_their_variants(batched, paths, prompts, ids, steps, geometry=None) -> list:
    """Asserts each row of the batched model decodes as its variant's own model alone.

    The same greedy tokens, and the logits of every step (the row's padding left out) within
    1e-5 of the variant's, relative to their largest magnitude. Returns the tokens per row.
    """
    session = icl_onnx.create_session(batched)
    assert "variant_ids" in {a.name for a in session.get_inputs()}
    got = list(decode_steps(session, prompts, steps, variant_ids=ids, geometry=geometry))
    tokens = [[int(step[row, -1].argmax()) for step in got] for row in range(len(ids))]
    assert tokens == greedy_batch(session, prompts, steps, variant_ids=ids, geometry=geometry)
    for row, (variant, prompt) in enumerate(zip(ids, prompts, strict=True)):
        alone = icl_onnx.create_session(paths[variant])
        expected = list(decode_steps(alone, [prompt], steps, geometry=geometry))
        pad = max(map(len, prompts)) - len(prompt)  # the row's padding, on the left
        assert _max_relative(got[0][row, pad:], expected[0][0]) <= 1e-5, f"row {row}, prompt"
        for step in range(1, steps):
            assert _max_relative(got[step][row], expected[step][0]) <= 1e-5, (row, step)
        assert tokens[row] == [int(s[0, -1].argmax()) for s in expected], f"row {row}"
    return tokens


def test_each_conversation_decodes_with_its_own_fine_tune_as_its_export_alone(
    icl_library, lora_decoders
):
    paths, batched = lora_decoders
    rng = np.random.default_rng(5)
    ids = [1, 2, 3, 0, 2, 1]  # every variant, the base, repeats
    prompts = [rng.integers(3, 1000, n).tolist() for n in (7, 7, 4, 7, 9, 7)]
    tokens = _rows_match_their_variants(batched, paths, prompts, ids, 8)
    base = icl_onnx.create_session(paths[0])
    assert tokens[1] != greedy(base, prompts[1], 8)  # the fine-tune changes the conversation


class _Recorder:
    """A session that records which way each step ran (``run`` or ``run_with_iobinding``)."""

    def __init__(self, session) -> None:
        self.session, self.calls = session, []

    def __getattr__(self, name):
        return getattr(self.session, name)

    def run(self, *args):
        self.calls.append("run")
        return self.session.run(*args)

    def run_with_iobinding(self, *args):
        self.calls.append("bound")
        return self.session.run_with_iobinding(*args)


def _bound_and_numpy(session, prompts, ids, steps, *, default: str) -> dict[str, list]:
    """Each step's logits with the cache bound (IOBinding) and through numpy; which is default."""
    runs = {}
    for way, kwargs in (("bound", {"io_binding": True}), ("numpy", {"io_binding": False})):
        recorder = _Recorder(session)
        runs[way] = list(decode_steps(recorder, prompts, steps, variant_ids=ids, **kwargs))
        assert recorder.calls == ["bound" if way == "bound" else "run"] * steps
    recorder = _Recorder(session)
    next(decode_steps(recorder, prompts, steps, variant_ids=ids))
    assert recorder.calls == ["bound" if default == "bound" else "run"]
    return runs


def test_the_bound_cache_decodes_the_logits_of_the_numpy_cache(icl_library, lora_decoders):
    """IOBinding keeps the cache in ORT: the same logits, bit for bit; numpy is the CPU's way."""
    _, batched = lora_decoders
    rng = np.random.default_rng(8)
    prompts = [rng.integers(3, 1000, n).tolist() for n in (5, 8, 5)]  # one row padded
    ids, steps = [2, 0, 3], 7
    runs = _bound_and_numpy(icl_onnx.create_session(batched), prompts, ids, steps, default="numpy")
    assert [s.shape[:2] for s in runs["bound"]] == [(3, 8), *[(3, 1)] * (steps - 1)]
    for bound, plain in zip(runs["bound"], runs["numpy"], strict=True):
        assert np.array_equal(bound, plain)  # earlier steps' logits not overwritten either
    tokens = [[int(s[row, -1].argmax()) for s in runs["bound"]] for row in range(3)]
    assert len({tuple(t) for t in tokens}) == 3  # the rows differ: a real test of the cache


@pytest.mark.skipif(ort_cuda_missing() is not None, reason=str(ort_cuda_missing()))
def test_a_cuda_session_keeps_the_cache_on_the_device_by_default(icl_library, lora_decoders):
    _, batched = lora_decoders
    session = icl_onnx.create_session(batched, providers=["CUDAExecutionProvider"])
    prompts, ids, steps = [[5, 9, 11, 2], [7, 3, 3, 8]], [1, 3], 5
    runs = _bound_and_numpy(session, prompts, ids, steps, default="bound")
    for bound, plain in zip(runs["bound"], runs["numpy"], strict=True):
        np.testing.assert_allclose(bound, plain, rtol=1e-5, atol=1e-5)


@pytest.fixture(scope="module")
def genai_decoders(tmp_path_factory):
    """GenAI builds of the client Llama and two merged rank-2 fine-tunes of it, batched."""
    pytest.importorskip("onnxruntime_genai", reason="onnxruntime-genai is in the test extra")
    from icl_onnx.testing.clients import genai_build

    folders = [genai_build("llama"), *(genai_build("llama", lora=(2, s)) for s in (11, 12))]
    paths = [f / "model.onnx" for f in folders]
    return paths, _batched(paths, tmp_path_factory.mktemp("genai") / "batched.onnx")


def test_a_genai_decoder_batches_its_fine_tunes_row_by_row(icl_library, genai_decoders):
    """Grouped-query attention reads the mask as lengths: the prompts have one length here."""
    from icl_onnx.testing.clients import PROMPT

    paths, batched = genai_decoders
    geometry = cache_geometry(paths[0])
    prompts = [PROMPT, PROMPT, PROMPT[::-1], PROMPT[1:] + PROMPT[:1]]
    tokens = _rows_match_their_variants(batched, paths, prompts, [2, 0, 1, 2], 6, geometry)
    assert tokens[0] != tokens[1]  # the same prompt: variant 2 is not the base


@pytest.fixture(scope="module")
def optimum_decoders(tmp_path_factory):
    """Optimum's with-past exports of the client Llama and two fine-tunes of it, batched."""
    from icl_onnx.testing.clients import optimum_export

    folders = [optimum_export("llama", dedup=False)]
    folders += [optimum_export("llama", dedup=False, lora=(2, s)) for s in (11, 12)]
    paths = [f / "model.onnx" for f in folders]
    return paths, _batched(paths, tmp_path_factory.mktemp("optimum") / "batched.onnx")


def test_an_optimum_decoder_batches_its_fine_tunes_row_by_row(icl_library, optimum_decoders):
    from icl_onnx.testing.clients import PROMPT

    paths, batched = optimum_decoders
    prompts = [PROMPT, PROMPT, PROMPT[::-1], PROMPT[2:]]
    tokens = _rows_match_their_variants(batched, paths, prompts, [1, 0, 2, 1], 6)
    assert tokens[0] != tokens[1]  # the same prompt: variant 1 is not the base
