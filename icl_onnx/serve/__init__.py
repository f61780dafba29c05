"""Serving a model with Ray Serve, replicas sharing one copy of the weights per machine.

``icl-onnx serve MODEL --replicas N`` and :func:`app` deploy N replicas (Ray actor processes),
each opening the model with ``share_across_processes=True``: the sessions map the model's
external data and keep no private copy, so the replicas on one machine read one copy from the
page cache. HTTP JSON: ``GET /health``, ``POST /infer`` and, for GenAI and Optimum folders,
``POST /generate`` (see ``docs/serve.md``). Ray is an optional extra (``pip install
icl-onnx[serve]``), imported only when an application is built.
"""

from __future__ import annotations

import os
from typing import Any

from icl_onnx.serve.model import InferRequest, RequestError, ServedModel

__all__ = ["app", "app_builder", "InferRequest", "RequestError", "ServedModel"]


def app(
    model: str | os.PathLike,
    *,
    replicas: int = 1,
    threads: int = 0,
    cpus_per_replica: float = 0.0,
    max_batch_size: int = 8,
    batch_wait_timeout_s: float = 0.005,
) -> Any:
    """Returns a Ray Serve application serving ``model``, to run or compose in a config.

    ``serve.run(icl_onnx.serve.app("model.onnx", replicas=4))`` serves it on Ray Serve's HTTP
    proxy. The path is opened by each replica on its own node, so on a cluster it must name the
    same files on every node (a shared filesystem, or the same copy at the same path).

    Args:
        model: an ``.onnx`` file, a folder of variants written by ``icl-onnx optimize ...
            --out-dir``, or a GenAI or Optimum folder.
        replicas: replica processes.
        threads: ONNX Runtime intra-op threads per session (0: its default, one per core).
        cpus_per_replica: Ray's logical CPUs each replica reserves (0: placed regardless).
        max_batch_size: most ``/infer`` requests one replica stacks into one run.
        batch_wait_timeout_s: how long a replica waits for more requests to stack.

    Raises:
        ModuleNotFoundError: Ray Serve is not installed.
    """
    from icl_onnx.serve.deployment import build_app

    return build_app(
        model,
        replicas=replicas,
        threads=threads,
        cpus_per_replica=cpus_per_replica,
        max_batch_size=max_batch_size,
        batch_wait_timeout_s=batch_wait_timeout_s,
    )


def app_builder(args: dict[str, Any]) -> Any:
    """Ray Serve application builder for config files (``icl_onnx.serve:app_builder``).

    ``args`` holds ``model`` and any keyword of :func:`app` (``replicas``, ``threads``, ...).
    """
    options = dict(args)
    try:
        model = options.pop("model")
    except KeyError:
        raise ValueError("icl_onnx.serve:app_builder needs args.model (a model path)") from None
    return app(model, **options)
