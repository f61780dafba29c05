"""Views in one model, an encoder and a decoder optimized together, and SessionGroup memory.

Run from the repository root with the op library built (ICL_ONNX_LIBRARY set):
    .venv/bin/python -m benchmarks.views_crossmodel --hidden 256 --out benchmarks/results
Writes ``views_crossmodel.md`` (and ``.json``) under ``--out``. Each memory configuration runs in
its own subprocess (``benchmarks._views_worker``) and reports its peak RSS (VmHWM).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto
from onnx import helper as h
from onnx import numpy_helper as nh

import icl_onnx
from benchmarks import harness
from icl_onnx.pipeline import optimize_file, optimize_files

F32, F16 = TensorProto.FLOAT, TensorProto.FLOAT16


def views_model(v: int = 2048, hdim: int = 256) -> onnx.ModelProto:
    """W once, and one copy of each view kind, read by MatMul, Gemm and Gather."""
    rng = np.random.default_rng(0)
    w = rng.standard_normal((v, hdim)).astype(np.float32)
    c = np.float32(0.125 * 3)
    inits = {
        "W": w,
        "exact": w.copy(),
        "transposed": w.T.copy(),
        "scaled": c * w,
        "rows": w[256:512].copy(),
        "cols": w[:, 64:128].copy(),
        "half": w.astype(np.float16),
        "tableT": w.T.copy(),
    }
    inp = h.make_tensor_value_info
    nodes = [
        h.make_node("Gather", ["W", "ids"], ["e0"]),
        h.make_node("MatMul", ["xv", "exact"], ["y_exact"]),
        h.make_node("MatMul", ["xh", "transposed"], ["y_transposed"]),
        h.make_node("Gemm", ["xv", "scaled"], ["y_scaled"]),
        h.make_node("Gemm", ["xh", "rows"], ["y_rows"], transB=1),
        h.make_node("MatMul", ["xv", "cols"], ["y_cols"]),
        h.make_node("MatMul", ["xv16", "half"], ["y_half"]),
        h.make_node("Gather", ["tableT", "ids_h"], ["y_tableT"]),
    ]
    inputs = [
        inp("ids", TensorProto.INT64, ["b"]),
        inp("ids_h", TensorProto.INT64, ["b"]),
        inp("xv", F32, ["b", v]),
        inp("xh", F32, ["b", hdim]),
        inp("xv16", F16, ["b", v]),
    ]
    outputs = [inp(n.output[0], F16 if n.output[0] == "y_half" else F32, None) for n in nodes]
    for o in outputs:
        o.type.tensor_type.shape.dim.add().dim_param = "b"
        o.type.tensor_type.shape.dim.add().dim_param = "n"
    graph = h.make_graph(
        nodes, "views", inputs, outputs, [nh.from_array(a, n) for n, a in inits.items()]
    )
    return h.make_model(graph, opset_imports=[h.make_opsetid("", 18)])


def _ort_graph(path: Path, icl: bool, tmp: Path) -> tuple[int, int]:
    """Initializer count and bytes of ORT's optimized graph of ``path``."""
    opts = icl_onnx.session_options() if icl else ort.SessionOptions()
    opts.optimized_model_filepath = str(tmp / f"ort_{path.stem}.onnx")
    ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
    model = onnx.load(opts.optimized_model_filepath)
    return len(model.graph.initializer), sum(nh.to_array(t).nbytes for t in model.graph.initializer)


def _file_inits(path: Path) -> tuple[list[str], int]:
    model = onnx.load(path)
    return sorted(t.name for t in model.graph.initializer), sum(
        nh.to_array(t).nbytes for t in model.graph.initializer
    )


def measure_views(tmp: Path) -> dict:
    src, dst = tmp / "views.onnx", tmp / "views_opt.onnx"
    onnx.save(views_model(), src)
    result = optimize_file(src, dst)
    rng = np.random.default_rng(1)
    feeds = {
        "ids": rng.integers(0, 2048, 8),
        "ids_h": rng.integers(0, 256, 8),
        "xv": rng.standard_normal((8, 2048)).astype(np.float32),
        "xh": rng.standard_normal((8, 256)).astype(np.float32),
        "xv16": rng.standard_normal((8, 2048)).astype(np.float16),
    }
    plain = ort.InferenceSession(str(src), providers=["CPUExecutionProvider"])
    icl = icl_onnx.create_session(dst)
    names = [o.name for o in plain.get_outputs()]
    diffs = {}
    for name, a, b in zip(names, plain.run(None, feeds), icl.run(None, feeds), strict=True):
        a32, b32 = a.astype(np.float32), b.astype(np.float32)
        diffs[name] = float(np.max(np.abs(a32 - b32)) / max(1e-30, float(np.max(np.abs(a32)))))
    return {
        "kinds": {m.name: m.view.kind for g in result.plan.groups for m in g.members},
        "file_original": _file_inits(src),
        "file_optimized": _file_inits(dst),
        "ort_original": _ort_graph(src, False, tmp),
        "ort_optimized": _ort_graph(dst, True, tmp),
        "max_rel_diff": diffs,
    }


def export_encoder_decoder(folder: Path, hidden: int) -> list[Path]:
    """Exports BART's encoder and its decoder + LM head as two files (TorchScript exporter)."""
    import torch

    from benchmarks.model_zoo import build_model
    from icl_onnx.torch_export import export_onnx

    module, inputs = build_model("bart", hidden=hidden, heads=max(1, hidden // 64))

    class Encoder(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.encoder = m.get_encoder()

        def forward(self, input_ids, attention_mask):
            return self.encoder(input_ids=input_ids, attention_mask=attention_mask)[0]

    class Decoder(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.decoder, self.lm_head = m.get_decoder(), m.lm_head
            self.register_buffer("bias", m.final_logits_bias)

        def forward(self, decoder_input_ids, encoder_hidden_states, attention_mask):
            out = self.decoder(
                input_ids=decoder_input_ids,
                encoder_hidden_states=encoder_hidden_states,
                encoder_attention_mask=attention_mask,
            )[0]
            return self.lm_head(out) + self.bias

    enc, dec = Encoder(module).eval(), Decoder(module).eval()
    with torch.no_grad():
        states = enc(inputs["input_ids"], inputs["attention_mask"])
    enc_inputs = {k: inputs[k] for k in ("input_ids", "attention_mask")}
    dec_inputs = {
        "decoder_input_ids": inputs["decoder_input_ids"],
        "encoder_hidden_states": states,
        "attention_mask": inputs["attention_mask"],
    }
    axes = {
        "input_ids": {0: "b", 1: "s"},
        "attention_mask": {0: "b", 1: "s"},
        "decoder_input_ids": {0: "b", 1: "t"},
        "encoder_hidden_states": {0: "b", 1: "s"},
    }
    paths = [folder / "encoder.onnx", folder / "decoder.onnx"]
    for path, mod, ins in zip(paths, (enc, dec), (enc_inputs, dec_inputs), strict=True):
        export_onnx(
            mod, path, ins, dynamo=False, dynamic_axes={k: axes[k] for k in ins}, external_data=True
        )
    feeds = {k: v.numpy() for k, v in {**enc_inputs, **dec_inputs}.items()}
    np.savez(folder / "feeds.npz", **feeds)
    return paths


def _disk_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.iterdir() if p.is_file() and p.suffix != ".npz")


def measure_encoder_decoder(tmp: Path, hidden: int) -> dict:
    src = tmp / "src"
    src.mkdir()
    paths = export_encoder_decoder(src, hidden)
    out = tmp / "opt"
    out.mkdir()
    result = optimize_files(paths, out)
    feeds = dict(np.load(src / "feeds.npz"))
    parity = {}
    for path in paths:
        plain = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        icl = icl_onnx.create_session(out / path.name)
        names = {i.name for i in plain.get_inputs()}
        f = {k: v for k, v in feeds.items() if k in names}
        (a,), (b,) = plain.run(None, f), icl.run(None, f)
        parity[path.name] = float(np.max(np.abs(a - b)))
    return {
        "disk_original": sum(p.stat().st_size for p in src.iterdir() if p.suffix != ".npz"),
        "disk_optimized": _disk_bytes(out),
        "tensor_bytes": result.tensor_bytes,
        "unique_bytes": result.unique_bytes,
        "cross_groups": [
            (g.model, g.canonical, [(m.model, m.name, m.view.kind) for m in g.members])
            for g in result.plan.groups
        ],
        "max_abs_diff": parity,
        "paths": [str(out / p.name) for p in paths],
        "feeds": str(src / "feeds.npz"),
    }


def measure_rss(paths: list[str], feeds: str) -> dict:
    """Peak RSS in bytes of each configuration, each in its own worker process."""
    rows = {}
    for mode, n in (("separate", 1), ("separate", 2), ("group", 2), ("separate", 4), ("group", 4)):
        proc = subprocess.run(
            harness.child_command("benchmarks._views_worker", mode, n, feeds, *paths),
            capture_output=True, text=True, check=True, cwd=harness.ROOT,
        )  # fmt: skip
        rows[f"{mode} x{n}"] = json.loads(proc.stdout.strip().splitlines()[-1])["vmhwm_bytes"]
    return rows


def measure_threads(paths: list[str], feeds_path: str) -> bool:
    feeds = dict(np.load(feeds_path))
    group = icl_onnx.SessionGroup((paths * 2)[:4])

    def run(s):
        names = {i.name for i in s.get_inputs()}
        return s.run(None, {k: v for k, v in feeds.items() if k in names})

    want = [run(s) for s in group.sessions]
    with ThreadPoolExecutor(4) as pool:
        for _ in range(5):
            got = list(pool.map(run, group.sessions))
            for a, b in zip(want, got, strict=True):
                if not all(np.array_equal(x, y) for x, y in zip(a, b, strict=True)):
                    return False
    return True


def to_markdown(r: dict, hidden: int) -> list[str]:
    v, ed, rss = r["views"], r["encoder_decoder"], r["rss"]
    lines = [
        f"# Views and cross-model sharing (CPU, onnxruntime {ort.__version__})",
        "",
        harness.describe(r["machine"]),
        "",
        "## One model holding one copy of each view (W 2048x256 float32)",
        f"Found: {v['kinds']}",
        "",
        "| | initializers | bytes |",
        "|---|---|---|",
        f"| file, original | {len(v['file_original'][0])} | {v['file_original'][1]} |",
        f"| file, optimized | {len(v['file_optimized'][0])} ({', '.join(v['file_optimized'][0])}) "
        f"| {v['file_optimized'][1]} |",
        f"| ORT optimized graph, original | {v['ort_original'][0]} | {v['ort_original'][1]} |",
        f"| ORT optimized graph, optimized + op library | {v['ort_optimized'][0]} "
        f"| {v['ort_optimized'][1]} |",
        "",
        "Parity, ORT with the op library vs ORT on the original (max |diff| / max |y|): "
        + ", ".join(f"{k} {d:.1e}" for k, d in v["max_rel_diff"].items()),
        "",
        f"## BART encoder + decoder (hidden {hidden}, vocab 30000, 2+2 layers, TorchScript export)",
        f"- bytes on disk: original {harness.mb(ed['disk_original'])} MB (two files with external "
        f"data), optimized {harness.mb(ed['disk_optimized'])} MB",
        f"- tensors the optimized models reference: {harness.mb(ed['tensor_bytes'])} MB; unique "
        f"bytes in the one data file: {harness.mb(ed['unique_bytes'])} MB",
        f"- groups across files: {ed['cross_groups']}",
        "- parity (max |diff|, ORT original vs ORT optimized): "
        + ", ".join(f"{k} {d:.1e}" for k, d in ed["max_abs_diff"].items()),
        "",
        "## Peak RSS (VmHWM, MB = 10^6 bytes), each configuration in its own subprocess",
        "| configuration | VmHWM MB |",
        "|---|---|",
        *(f"| {k} | {harness.mb(n)} |" for k, n in rss.items()),
        "",
        "`separate xN`: N `icl_onnx.create_session` sessions over the optimized files "
        "(encoder, decoder, encoder, decoder); `group xN`: one `icl_onnx.SessionGroup` of N.",
        f"4 threads running a group of 4 concurrently, 5 rounds: outputs identical to sequential "
        f"runs: {r['threads_identical']}",
    ]
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--hidden", type=int, default=256)
    harness.out_argument(parser)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        (tmp / "v").mkdir()
        r = {"machine": harness.metadata(), "views": measure_views(tmp / "v")}
        r["encoder_decoder"] = measure_encoder_decoder(tmp, args.hidden)
        paths, feeds = r["encoder_decoder"]["paths"], r["encoder_decoder"]["feeds"]
        r["rss"] = measure_rss(paths, feeds)
        r["threads_identical"] = measure_threads(paths, feeds)
    harness.write_json(args.out / "views_crossmodel.json", r)
    harness.write_markdown(args.out / "views_crossmodel.md", to_markdown(r, args.hidden))
    print("\n".join(to_markdown(r, args.hidden)))


if __name__ == "__main__":
    main()
