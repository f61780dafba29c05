"""Fixtures shared by the tests and the benchmarks (development only; not in the wheel).

- :mod:`~icl_onnx.testing.clients`: tiny Hugging Face models and the real clients that serve
  them (ONNX Runtime GenAI, Optimum).
- :mod:`~icl_onnx.testing.cpp_example`: builds the C++ host ``examples/cpp/run_model.cc``.
- :mod:`~icl_onnx.testing.cuda_harness`: the ctypes driver of the CUDA kernel harness library.
- :mod:`~icl_onnx.testing.protobuf_wire`: writes protobuf fields by hand, for hostile model files.
- :mod:`~icl_onnx.testing.view_cases`: the views the kernel tests and ``gpu_check`` run.

They live in the package so that ``tests/`` and ``benchmarks/`` import them by name, with no
``sys.path`` edits, in an editable install (``make venv``); ``pyproject.toml`` leaves this folder
out of the wheel (``wheel.exclude``). Nothing in ``icl_onnx`` imports them.
"""
