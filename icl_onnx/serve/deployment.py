"""The Ray Serve deployment behind ``icl-onnx serve``: replicas that share one copy per machine.

Each replica is a Ray actor process holding a :class:`icl_onnx.serve.model.ServedModel`, whose
sessions map the model's external data without a private copy (``share_across_processes``),
so the replicas on one machine read one copy of the weights from the page cache. Concurrent
``/infer`` requests that reach one replica are collected by ``@serve.batch`` and stacked into
one ONNX Runtime run where the model has a dynamic batch dimension and the other dimensions
match (:meth:`ServedModel.run`); ONNX Runtime runs in a worker thread so the replica keeps
accepting requests meanwhile.

Ray is imported here only, inside :func:`build_app`, so ``icl_onnx`` imports without it.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Callable
from typing import Any

from icl_onnx.serve.model import RequestError, ServedModel

__all__ = ["DEPLOYMENT", "HEALTH_TTL_S", "Recent", "build_app"]

#: The HTTP routes and their methods.
_ROUTES = {"/health": "GET", "/infer": "POST", "/generate": "POST"}

#: Seconds ``GET /health`` reuses the replica count it asked Ray Serve's controller for.
HEALTH_TTL_S = 1.0

#: The deployment's name (and, with the application's name, the replicas' actor names).
DEPLOYMENT = "icl-onnx"


def _local_path(request: Any) -> str:
    """The request's path below the application's route prefix (``/infer``)."""
    path, root = request.scope.get("path", "/"), request.scope.get("root_path", "")
    if root and path.startswith(root):
        path = path[len(root) :]
    return "/" + path.strip("/")


def build_app(
    model: str | os.PathLike,
    *,
    replicas: int = 1,
    threads: int = 0,
    cpus_per_replica: float = 0.0,
    max_batch_size: int = 8,
    batch_wait_timeout_s: float = 0.005,
) -> Any:
    """Returns the Ray Serve application (see :func:`icl_onnx.serve.app`)."""
    from ray import serve
    from starlette.responses import JSONResponse

    @serve.deployment(
        name=DEPLOYMENT,
        num_replicas=replicas,
        ray_actor_options={"num_cpus": cpus_per_replica},
        max_ongoing_requests=max(16, 2 * max_batch_size),
        health_check_period_s=2,
    )
    class IclOnnxReplica:
        """One replica: the model's sessions and the HTTP routes."""

        def __init__(self, path: str, threads: int) -> None:
            self.model = ServedModel(path, threads=threads)
            self.target = replicas
            self.running = Recent(_running_replicas, HEALTH_TTL_S)

        async def __call__(self, request: Any) -> Any:
            method, path = request.method, _local_path(request)
            try:
                if path not in _ROUTES:
                    raise RequestError(f"no route {path}; use {', '.join(_ROUTES)}", 404)
                if method != _ROUTES[path]:
                    raise RequestError(f"{path} takes {_ROUTES[path]}, not {method}", 405)
                loop = asyncio.get_running_loop()
                if path == "/health":
                    return self._health(await loop.run_in_executor(None, self.running.get))
                body = _json(await request.body())
                if path == "/generate":
                    result = await loop.run_in_executor(None, self.model.generate, body)
                    return JSONResponse(result)
                result = await self._infer(self.model.parse(body))
                if isinstance(result, RequestError):
                    raise result
                return JSONResponse({"outputs": result})
            except RequestError as e:
                return JSONResponse({"error": str(e)}, status_code=e.status)

        @serve.batch(max_batch_size=max_batch_size, batch_wait_timeout_s=batch_wait_timeout_s)
        async def _infer(self, requests: list[Any]) -> list[Any]:
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(None, self.model.run, requests)

        def _health(self, running: int) -> Any:
            """200 when every replica of the deployment is running, else 503."""
            body = {
                "replicas": running,
                "target": self.target,
                "variants": list(self.model.variants),
                "generate": self.model.can_generate,
            }
            return JSONResponse(body, status_code=200 if running >= self.target else 503)

    return IclOnnxReplica.bind(os.path.abspath(model), threads)


class Recent:
    """A value fetched at most once per ``ttl_s`` seconds (the last fetch's value meanwhile)."""

    def __init__(
        self, fetch: Callable[[], Any], ttl_s: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._fetch, self._ttl_s, self._clock = fetch, ttl_s, clock
        self._value: Any = None
        self._at: float | None = None

    def get(self) -> Any:
        """The last value fetched, or a new one when it is ``ttl_s`` old or there is none."""
        now = self._clock()
        if self._at is None or now - self._at >= self._ttl_s:
            self._value, self._at = self._fetch(), now
        return self._value


def _json(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError) as e:
        raise RequestError(f"malformed JSON: {e}") from None


def _running_replicas() -> int:
    """How many replicas of this replica's deployment Ray Serve reports running."""
    from ray import serve

    context = serve.get_replica_context()
    app = serve.status().applications.get(context.app_name)
    deployment = app.deployments.get(context.deployment) if app else None
    if deployment is None:
        return 0
    return int(deployment.replica_states.get("RUNNING", 0))
