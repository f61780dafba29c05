"""``icl-onnx serve MODEL --replicas N``: Ray Serve replicas sharing one copy per machine."""

from __future__ import annotations

import argparse
import math
import re
import signal
import threading
from typing import Any

from icl_onnx.errors import IclUserError
from icl_onnx.serve.model import can_generate, check_model_path

#: The Ray Serve application's default name (``--name``).
APP_NAME = "icl-onnx"


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None


def _positive(text: str) -> int:
    value = _int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def _non_negative(text: str) -> int:
    value = _int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, not {value}")
    return value


def _port(text: str) -> int:
    value = _int(text)
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"a port is 1 to 65535, not {value}")
    return value


def _cpus(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"must be a finite number, 0 or more, not {text}")
    return value


def _route_prefix(text: str) -> str:
    """A Ray Serve route prefix: ``/`` or ``/a/b`` (no trailing ``/``, no ``{`` or ``}``)."""
    if not text.startswith("/"):
        raise argparse.ArgumentTypeError(f"must start with '/', not {text!r}")
    if text != "/" and text.endswith("/"):
        raise argparse.ArgumentTypeError(f"must not end with '/' (unless it is '/'): {text!r}")
    if any(c in text for c in "{}") or any(c.isspace() or not c.isprintable() for c in text):
        raise argparse.ArgumentTypeError(
            f"must not hold braces, spaces or control characters: {text!r}"
        )
    return text


def _routes(prefix: str, generate: bool) -> str:
    """The routes an application at ``prefix`` serves, as a client writes them."""
    base = prefix.rstrip("/")
    routes = [f"GET {base}/health", f"POST {base}/infer"]
    return ", ".join(routes + ([f"POST {base}/generate"] if generate else []))


def _failure(serve: Any, name: str, error: Exception) -> str:
    """The last line of what Ray Serve says about the failed deployment, else of ``error``."""
    try:
        app = serve.status().applications.get(name)
        messages = [d.message for d in app.deployments.values() if d.message] if app else []
    except Exception:  # noqa: BLE001 - the status is a best effort
        messages = []
    return _last_line(messages or [str(error)], error)


def _applications(serve: Any) -> set[str] | None:
    """The names of the applications Ray Serve knows (None when it cannot say)."""
    try:
        return set(serve.status().applications)
    except Exception:  # noqa: BLE001 - the status is a best effort
        return None


#: The qualified exception type Ray puts before a remote error's message.
_RAISED = re.compile(r"^(?:\w+\.)+\w+(?:Error|Exception): ")


def _last_line(messages: list[str], error: Exception) -> str:
    """The last non-empty line of ``messages``, without a qualified exception type before it."""
    lines = [ln for m in messages for ln in m.strip().splitlines() if ln.strip()]
    return _RAISED.sub("", lines[-1].strip()) if lines else type(error).__name__


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Registers the ``serve`` subcommand."""
    parser = subparsers.add_parser(
        "serve",
        help="serve a model over HTTP with Ray Serve, replicas sharing one copy per machine",
        description="Deploy N Ray Serve replicas of a model (an .onnx file, an optimize "
        "--out-dir folder of variants, or a GenAI / Optimum folder), each opening it with "
        "share_across_processes=True, and serve GET /health, POST /infer and (model folders) "
        "POST /generate as JSON until interrupted. Needs the serve extra: "
        "pip install 'icl-onnx[serve]'. See docs/serve.md.",
    )
    parser.add_argument("model", help="ONNX model file, variants folder or model folder")
    parser.add_argument("--replicas", type=_positive, default=1, help="replica processes")
    parser.add_argument("--port", type=_port, default=8000, help="HTTP port (default 8000)")
    parser.add_argument("--host", default="127.0.0.1", help="HTTP host (default 127.0.0.1)")
    parser.add_argument(
        "--address",
        help="join this Ray cluster (host:port of its head) instead of starting one here; "
        "MODEL must be at the same path on every node",
    )
    parser.add_argument(
        "--threads",
        type=_non_negative,
        default=0,
        help="ONNX Runtime threads per replica (0: its default)",
    )
    parser.add_argument(
        "--cpus-per-replica",
        type=_cpus,
        default=0.0,
        help="Ray logical CPUs each replica reserves (default 0)",
    )
    parser.add_argument(
        "--name",
        default=APP_NAME,
        help=f"the Ray Serve application's name (default {APP_NAME}); serve refuses a name "
        "already deployed on the cluster",
    )
    parser.add_argument(
        "--route-prefix",
        type=_route_prefix,
        default="/",
        help="the HTTP path the application's routes hang below (default /: /health, "
        "/infer); one cluster serves several applications under different prefixes, "
        "e.g. --route-prefix /a serves /a/health and /a/infer",
    )
    parser.add_argument(
        "--max-batch-size",
        type=_positive,
        default=8,
        help="most concurrent /infer requests stacked into one run (default 8)",
    )
    return parser


def run(args: argparse.Namespace) -> int:
    """Deploys the application and serves until interrupted; exit 0."""
    check_model_path(args.model)
    try:
        import ray
        from ray import serve
    except ImportError:
        raise IclUserError("serve needs Ray Serve: pip install 'icl-onnx[serve]'") from None
    from icl_onnx.serve import app

    application = app(
        args.model,
        replicas=args.replicas,
        threads=args.threads,
        cpus_per_replica=args.cpus_per_replica,
        max_batch_size=args.max_batch_size,
    )
    try:
        if args.address:
            ray.init(address=args.address, logging_level="warning")
        else:
            ray.init(include_dashboard=False, logging_level="warning")
    except (ConnectionError, RuntimeError, ValueError) as e:
        lines = str(e).strip().splitlines() or [type(e).__name__]
        where = f"join the Ray cluster at {args.address}" if args.address else "start Ray"
        hint = " (a cluster with token authentication needs RAY_AUTH_MODE=token here)"
        raise IclUserError(f"cannot {where}: {lines[0]}" + (hint if args.address else "")) from None
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())  # after ray.init, which sets its own
    deployed = False  # whether an application named args.name is ours to remove
    try:
        try:
            serve.start(http_options={"host": args.host, "port": args.port})
            taken = args.name in serve.status().applications
        except Exception as e:  # noqa: BLE001 - Ray's errors carry no common type
            raise IclUserError(f"cannot start Ray Serve: {_last_line([str(e)], e)}") from None
        if taken:
            raise IclUserError(
                f"an application named {args.name!r} already runs on this Ray cluster; "
                "give another --name"
            )
        deployed = True
        try:
            serve.run(application, name=args.name, route_prefix=args.route_prefix)
        except Exception as e:  # noqa: BLE001 - Ray's deployment errors carry no common type
            known = _applications(serve)
            if known is not None and args.name not in known:
                # refused before any replica started, e.g. "Prefix /a is being used by
                # application "a". Failed to deploy application "b"."
                raise IclUserError(
                    f"Ray Serve refused the application: {_last_line([str(e)], e)}"
                ) from None
            message = _failure(serve, args.name, e)
            raise IclUserError(f"the replicas did not start: {message}") from None
        print(
            f"serving {args.model} with {args.replicas} replica(s) on "
            f"http://{args.host}:{args.port}: "
            f"{_routes(args.route_prefix, can_generate(args.model))}",
            flush=True,
        )
        while not stop.wait(0.5):
            pass
        return 0
    finally:
        if not args.address:
            serve.shutdown()
        elif deployed:
            serve.delete(args.name)
        ray.shutdown()
