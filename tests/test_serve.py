"""``icl-onnx serve``: replicas on Ray Serve answer like a direct session, and survive.

The replica's model logic (:class:`ServedModel`: request checks, stacking, greedy decoding) is
tested without Ray. One Ray cluster, started as a deployer starts one (``ray start --head``
in its own process group: 2 logical CPUs, no dashboard, on free ports, Serve's HTTP on
127.0.0.1), serves two applications for the rest of the module: a tied model optimized with
external data (2 replicas) and a folder of two variants optimized together (1 replica). The
test process and every ``icl-onnx serve --address`` join it; it is stopped at the end by its
process group's id (never ``ray stop``, which stops every Ray cluster on the machine).
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import onnx
import pytest
from builders import V, decoder, encoder, encoder_decoder_feeds, tied_model

import icl_onnx
from icl_onnx.cli.main import main as cli_main
from icl_onnx.pipeline import optimize_file, optimize_files
from icl_onnx.serve import RequestError, ServedModel
from icl_onnx.serve.model import can_generate

pytestmark = pytest.mark.usefixtures("icl_library")

IDS = [[3, 9, 60, 1], [0, 63, 5, 7]]


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """The optimized tied model (external data) and a folder of two variants."""
    root = tmp_path_factory.mktemp("serve")
    onnx.save(tied_model(), root / "tied.onnx")
    optimize_file(root / "tied.onnx", root / "tied.opt.onnx", external_data=True, min_elements=16)
    src = [root / "encoder.onnx", root / "decoder.onnx"]
    for path, proto in zip(src, (encoder(), decoder()), strict=True):
        onnx.save(proto, path)
    (root / "variants").mkdir()
    optimize_files(src, root / "variants", min_elements=16)
    return {"tied": root / "tied.opt.onnx", "variants": root / "variants"}


def direct(path, feeds):
    session = icl_onnx.create_session(path)
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(None, feeds), strict=True))


# --- the replica's model, without Ray ---------------------------------------------------------


def test_concurrent_requests_are_stacked_into_one_run_with_equal_outputs(models):
    model = ServedModel(models["tied"])
    session = model.variants["tied.opt"].session
    runs = []
    real_run = session.run
    session.run = lambda *a, **k: runs.append(1) or real_run(*a, **k)
    requests = [model.parse({"inputs": {"ids": [row]}}) for row in IDS] + [
        model.parse({"inputs": {"ids": [[4, 5]]}})  # another length: its own run
    ]
    results = model.run(requests)
    assert len(runs) == 2
    expected = direct(models["tied"], {"ids": np.array(IDS)})["y"]
    np.testing.assert_allclose(np.array(results[0]["y"] + results[1]["y"]), expected, rtol=1e-6)
    np.testing.assert_allclose(
        results[2]["y"], direct(models["tied"], {"ids": np.array([[4, 5]])})["y"], rtol=1e-6
    )


def test_a_bad_request_in_a_stack_fails_alone(models):
    model = ServedModel(models["tied"])
    good, bad = (
        model.parse({"inputs": {"ids": [[1, 2]]}}),
        model.parse({"inputs": {"ids": [[1, V]]}}),
    )
    results = model.run([good, bad, good])
    assert isinstance(results[1], RequestError) and "out of data bounds" in str(results[1])
    assert results[0] == results[2] and np.array(results[0]["y"]).shape == (1, 2, V)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ([1, 2], "JSON object"),
        ({"inputs": {"idz": [[1]]}}, "unknown input(s) idz; missing input(s) ids"),
        ({"inputs": {"ids": [1, 2]}}, "has shape [2]; the model takes [b, s]"),
        ({"inputs": {"ids": [[1.5, 2]]}}, "takes tensor(int64); got float64"),
        ({"inputs": {"ids": [[1, 2], [3]]}}, "not a rectangular nested list"),
        ({"inputs": {"ids": [["a"]]}}, "nested list of numbers"),
        ({"inputs": {"ids": [[1]]}, "variant": "other"}, "unknown variant 'other'"),
    ],
)
def test_bad_requests_are_one_line_request_errors(models, body, message):
    model = ServedModel(models["tied"])
    with pytest.raises(RequestError) as caught:
        model.parse(body)
    assert message in str(caught.value) and "\n" not in str(caught.value)
    assert caught.value.status == (404 if "variant" in message else 400)


def test_a_variants_folder_needs_a_variant_name(models):
    model = ServedModel(models["variants"])
    assert (model.kind, sorted(model.variants)) == ("variants", ["decoder", "encoder"])
    with pytest.raises(RequestError, match="name a variant: one of decoder, encoder"):
        model.parse({"inputs": {}})


def test_generate_matches_onnxruntime_genai_on_an_optimized_folder(tmp_path):
    pytest.importorskip("onnxruntime_genai", reason="onnxruntime-genai is in the test extra")
    from icl_onnx.testing.clients import NEW_TOKENS, PROMPT, genai_build, genai_generate

    src = genai_build("llama")
    out = tmp_path / "out"
    assert cli_main(["optimize", str(src), "-o", str(out), "-q"]) == 0
    model = ServedModel(out)
    assert model.kind == "genai" and model.can_generate
    got = model.generate({"input_ids": PROMPT, "max_new_tokens": NEW_TOKENS})["tokens"]
    assert PROMPT + got == genai_generate(src)["tokens"]
    with pytest.raises(RequestError, match="max_new_tokens"):
        model.generate({"input_ids": PROMPT, "max_new_tokens": 0})


def test_generate_reruns_the_sequence_on_an_optimum_decoder_without_a_cache(tmp_path):
    """An Optimum folder (config.json + model.onnx) whose decoder has no KV cache."""
    from onnx import TensorProto
    from onnx import helper as h
    from onnx import numpy_helper as nh

    rng = np.random.default_rng(3)
    table = rng.standard_normal((V, 8)).astype(np.float32)
    mix = rng.standard_normal((8, 8)).astype(np.float32)
    nodes = [
        h.make_node("Gather", ["table", "input_ids"], ["e"]),
        h.make_node("CumSum", ["e", "axis"], ["c"]),  # each position sees the prefix
        h.make_node("MatMul", ["c", "mix"], ["m"]),
        h.make_node("Transpose", ["table"], ["tableT"], perm=[1, 0]),
        h.make_node("MatMul", ["m", "tableT"], ["logits"]),
    ]
    inits = [nh.from_array(table, "table"), nh.from_array(mix, "mix")]
    inits.append(nh.from_array(np.array(1, np.int64), "axis"))
    graph = h.make_graph(
        nodes,
        "lm",
        [h.make_tensor_value_info("input_ids", TensorProto.INT64, ["b", "s"])],
        [h.make_tensor_value_info("logits", TensorProto.FLOAT, ["b", "s", V])],
        inits,
    )
    onnx.save(h.make_model(graph, opset_imports=[h.make_opsetid("", 18)]), tmp_path / "model.onnx")
    (tmp_path / "config.json").write_text("{}")
    model = ServedModel(tmp_path)
    assert (model.kind, model.can_generate) == ("optimum", True)
    assert can_generate(tmp_path) and not can_generate(tmp_path / "model.onnx")
    got = model.generate({"input_ids": [4, 9], "max_new_tokens": 5})["tokens"]
    sequence = [4, 9]
    for _ in range(5):  # the reference: numpy on the whole sequence each step
        last = table[sequence].sum(axis=0) @ mix @ table.T
        sequence.append(int(np.argmax(last)))
    assert got == sequence[2:]
    with pytest.raises(RequestError, match=r"from 1 to 256 \(this decoder has no KV cache") as e:
        model.generate({"input_ids": [4, 9], "max_new_tokens": 257})
    assert e.value.status == 400


def test_the_cli_names_a_missing_model_in_one_line(tmp_path, capsys):
    assert cli_main(["serve", str(tmp_path / "none.onnx"), "--replicas", "2"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"icl-onnx serve: {tmp_path / 'none.onnx'}: no such file or folder"


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("--port", "0", "a port is 1 to 65535, not 0"),
        ("--port", "65536", "a port is 1 to 65535, not 65536"),
        ("--port", "http", "not an integer: 'http'"),
        ("--threads", "-1", "must be 0 or more, not -1"),
        ("--cpus-per-replica", "-0.5", "must be a finite number, 0 or more, not -0.5"),
        ("--cpus-per-replica", "nan", "must be a finite number, 0 or more, not nan"),
        ("--replicas", "0", "must be at least 1, not 0"),
    ],
)
def test_the_cli_refuses_bad_numbers_in_one_line(models, capsys, option, value, message):
    with pytest.raises(SystemExit) as e:
        cli_main(["serve", str(models["tied"]), option, value])
    err = capsys.readouterr().err
    assert e.value.code == 2 and len(err.strip().splitlines()) == 1
    assert f"argument {option}: {message}" in err


def test_the_replica_count_for_health_is_asked_at_most_once_a_second():
    from icl_onnx.serve.deployment import Recent

    now, asked = [0.0], []
    recent = Recent(lambda: asked.append(now[0]) or len(asked), 1.0, clock=lambda: now[0])
    got = []
    for t in (0.0, 0.4, 0.99, 1.0, 1.5, 2.2):
        now[0] = t
        got.append(recent.get())
    assert asked == [0.0, 1.0, 2.2] and got == [1, 1, 1, 2, 2, 3]


# --- replicas on a local Ray cluster --------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Client:
    def __init__(self, port: int) -> None:
        self.base = f"http://127.0.0.1:{port}"

    def call(self, path: str, body=None, raw: bytes | None = None) -> tuple[int, dict]:
        data = raw if raw is not None else None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.base + path, data=data)
        try:
            with urllib.request.urlopen(request, timeout=60) as reply:
                return reply.status, json.loads(reply.read())
        except urllib.error.HTTPError as e:
            text = e.read()
            try:
                return e.code, json.loads(text)
            except ValueError:  # Ray Serve's own answers (no route) are plain text
                return e.code, {"text": text.decode(errors="replace")}

    def settles(self, path: str, status: int, timeout_s: float = 30.0) -> bool:
        """Whether ``GET path`` answers ``status`` within ``timeout_s`` (routes move lazily)."""
        deadline = time.monotonic() + timeout_s
        while self.call(path)[0] != status:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.5)
        return True


#: How the test's Ray processes authenticate: Ray 2.60's default, token, unless set here.
AUTH_MODE = os.environ.get("RAY_AUTH_MODE", "token")

#: The environment of every Ray process the tests start (the head, ``icl-onnx serve``): a
#: process that joins a cluster by its address needs the mode set (see docs/serve.md).
RAY_ENV = {**os.environ, "RAY_AUTH_MODE": AUTH_MODE}


@pytest.fixture(scope="module", autouse=True)
def ray_auth_mode():
    """RAY_AUTH_MODE for the tests of this module, set before any of them imports Ray (which
    reads it once, at import), so that this process joins the cluster in its mode (a process
    that joins by address needs it set: docs/serve.md); the environment as it was afterwards.
    Yields whether a Ray imported earlier in the run, without the mode, missed it."""
    missed = "ray" in sys.modules and "RAY_AUTH_MODE" not in os.environ
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("RAY_AUTH_MODE", AUTH_MODE)
        yield missed


_PRCTL = ctypes.CDLL(None, use_errno=True).prctl  # looked up before any fork


def _die_with_parent() -> None:
    """In the child before exec: SIGTERM it when the test process dies (PR_SET_PDEATHSIG)."""
    _PRCTL(1, signal.SIGTERM)


@contextlib.contextmanager
def ray_head(timeout_s: float = 120.0):
    """A Ray cluster started as a deployer starts one; yields (address, head process).

    ``ray start --head --block`` runs in its own session, so its process group holds every
    process of the cluster (GCS, raylet, agents, workers); at the end the head gets SIGTERM
    (it stops its processes) and the group SIGKILL for whatever is left, both by id.
    """
    if AUTH_MODE == "token":  # ray start joins token mode only with a token at hand
        command = [sys.executable, "-m", "ray.scripts.scripts", "get-auth-token", "--generate"]
        subprocess.run(command, capture_output=True, env=RAY_ENV, timeout=120, check=True)
    port = free_port()
    temp = tempfile.mkdtemp(prefix="ray-", dir="/tmp")  # short: Ray's Unix socket paths
    log_path = os.path.join(temp, "head.log")
    command = [sys.executable, "-m", "ray.scripts.scripts", "start", "--head", "--block"]
    command += ["--num-cpus", "2", "--port", str(port), "--node-ip-address", "127.0.0.1"]
    command += ["--ray-client-server-port", str(free_port()), "--dashboard-host", "127.0.0.1"]
    command += ["--include-dashboard", "false", "--disable-usage-stats", "--temp-dir", temp]
    env = {**RAY_ENV, "RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S": "0"}  # SIGTERM stops at once
    with open(log_path, "w") as log:
        head = subprocess.Popen(
            command,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )
    try:
        deadline = time.monotonic() + timeout_s
        while "Ray runtime started" not in open(log_path).read():
            if head.poll() is not None or time.monotonic() > deadline:
                tail = open(log_path).read().strip().splitlines()[-3:]
                pytest.skip(f"ray start --head did not start within {timeout_s:.0f} s: {tail}")
            time.sleep(0.5)
        yield f"127.0.0.1:{port}", head
    finally:
        if head.poll() is None:
            head.send_signal(signal.SIGTERM)
            try:
                head.wait(timeout=60)
            except subprocess.TimeoutExpired:
                head.kill()
                head.wait()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(head.pid, signal.SIGKILL)  # the cluster's processes that outlived it
        shutil.rmtree(temp, ignore_errors=True)


@pytest.fixture(scope="module")
def cluster(models, ray_auth_mode):
    """A Ray cluster from ``ray start --head`` serving /tied (2 replicas) and /variants."""
    if ray_auth_mode:
        pytest.fail("Ray was imported before RAY_AUTH_MODE was set: set it for the whole run")
    serve = pytest.importorskip("ray.serve", reason="Ray Serve is the serve extra")
    import ray

    with ray_head() as (address, head):
        # this process joins by the address too, in the mode ray_auth_mode set before Ray's import
        ray.init(address=address, log_to_driver=False, logging_level="error")
        try:
            port = free_port()
            serve.start(http_options={"host": "127.0.0.1", "port": port})
            app = icl_onnx.serve.app
            serve.run(app(models["tied"], replicas=2), name="tied", route_prefix="/tied")
            serve.run(app(models["variants"]), name="vars", route_prefix="/variants")
            client = Client(port)
            client.port, client.address, client.head = port, address, head
            yield client
        finally:
            serve.shutdown()
            ray.shutdown()


def replica_pids(app: str) -> dict[str, int]:
    """Process ids of an application's live replicas, by actor name, through Ray's API."""
    import ray

    pids = {}
    for actor in ray.util.list_named_actors(all_namespaces=True):
        if actor["name"].startswith(f"SERVE_REPLICA::{app}#"):
            handle = ray.get_actor(actor["name"], namespace=actor["namespace"])
            try:
                pids[actor["name"]] = ray.get(handle.__ray_call__.remote(lambda _: os.getpid()))
            except ray.exceptions.RayActorError:
                continue  # died since listed
    return pids


def test_health_answers_once_every_replica_is_up(cluster):
    status, body = cluster.call("/tied/health")
    assert status == 200 and body["replicas"] == body["target"] == 2
    assert body["variants"] == ["tied.opt"] and body["generate"] is False


def test_concurrent_infer_requests_equal_a_direct_session(cluster, models):
    rows = np.random.default_rng(0).integers(0, V, size=(16, 5))
    with ThreadPoolExecutor(8) as pool:
        replies = list(
            pool.map(lambda r: cluster.call("/tied/infer", {"inputs": {"ids": [r.tolist()]}}), rows)
        )
    assert all(status == 200 for status, _ in replies)
    got = np.concatenate([np.array(body["outputs"]["y"], np.float32) for _, body in replies])
    np.testing.assert_allclose(
        got, direct(models["tied"], {"ids": rows})["y"], rtol=1e-5, atol=1e-5
    )


def test_a_request_names_its_variant(cluster, models):
    feeds = encoder_decoder_feeds()
    for name in ("encoder", "decoder"):
        path = models["variants"] / f"{name}.onnx"
        inputs = {i.name for i in icl_onnx.create_session(path).get_inputs()}
        mine = {k: v for k, v in feeds.items() if k in inputs}
        body = {"variant": name, "inputs": {k: v.tolist() for k, v in mine.items()}}
        status, reply = cluster.call("/variants/infer", body)
        assert status == 200, reply
        for key, value in direct(path, mine).items():
            np.testing.assert_allclose(np.array(reply["outputs"][key]), value, rtol=1e-5)
    status, reply = cluster.call("/variants/infer", {"variant": "nope", "inputs": {}})
    assert status == 404 and reply["error"].startswith("unknown variant 'nope'")


@pytest.mark.parametrize(
    ("path", "raw", "status"),
    [
        ("/tied/infer", b"{not json", 400),
        ("/tied/infer", json.dumps({"inputs": {"ids": [[1.5]]}}).encode(), 400),
        ("/tied/infer", json.dumps({"inputs": {"ids": [[V + 5]]}}).encode(), 400),
        ("/tied/predict", b"{}", 404),
        ("/tied/generate", json.dumps({"input_ids": [1]}).encode(), 404),
    ],
)
def test_a_bad_request_gets_a_4xx_and_the_next_good_one_succeeds(cluster, path, raw, status):
    got, reply = cluster.call(path, raw=raw)
    assert got == status and "\n" not in reply["error"]
    got, reply = cluster.call("/tied/infer", {"inputs": {"ids": [[1, 2, 3]]}})
    assert got == 200 and np.array(reply["outputs"]["y"]).shape == (1, 3, V)


def test_a_killed_replica_is_replaced_and_requests_succeed_again(cluster):
    before = replica_pids("tied")
    assert len(before) == 2
    victim = next(iter(before.values()))
    os.kill(victim, signal.SIGKILL)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        now = replica_pids("tied")
        if len(now) == 2 and victim not in now.values():
            if cluster.call("/tied/health")[0] == 200:
                break
        time.sleep(0.5)
    else:
        pytest.fail(f"replica {victim} was not replaced within 90 s")
    for _ in range(6):
        status, reply = cluster.call("/tied/infer", {"inputs": {"ids": [[5, 6]]}})
        assert status == 200 and np.array(reply["outputs"]["y"]).shape == (1, 2, V)


def test_the_config_builder_needs_a_model_and_passes_the_rest_to_app(models):
    pytest.importorskip("ray.serve", reason="Ray Serve is the serve extra")
    with pytest.raises(ValueError, match="needs args.model"):
        icl_onnx.serve.app_builder({"replicas": 2})
    application = icl_onnx.serve.app_builder({"model": str(models["tied"]), "replicas": 3})
    deployment = application._bound_deployment
    assert deployment.num_replicas == 3 and deployment.name == "icl-onnx"


@contextlib.contextmanager
def serve_cli(model, *options: str):
    """``icl-onnx serve MODEL ...`` in a child process (stderr to a file), killed if left."""
    command = [sys.executable, "-m", "icl_onnx.cli.main", "serve", str(model), *options]
    with tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=err, text=True, env=RAY_ENV)
        proc.last_error = lambda: (err.seek(0), err.read().strip().splitlines() or [""])[1][-1]
        try:
            yield proc
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
            proc.stdout.close()


def first_line(proc, timeout_s: float = 240.0) -> str:
    """The first line the command prints (once every replica is up), waited for at most
    ``timeout_s``."""
    ready, _, _ = select.select([proc.stdout], [], [], timeout_s)
    assert ready, f"icl-onnx serve printed nothing within {timeout_s:.0f} s"
    return proc.stdout.readline()


def joins(cluster) -> list[str]:
    return ["--port", str(cluster.port), "--address", cluster.address]


def stop(proc) -> int:
    """SIGTERM, as a deployer's process manager stops the command; its exit status."""
    proc.send_signal(signal.SIGTERM)
    return proc.wait(timeout=60)


def test_the_cli_refuses_a_name_already_deployed_and_leaves_it_serving(cluster, models):
    with serve_cli(models["variants"], "--name", "tied", *joins(cluster)) as proc:
        assert proc.wait(timeout=120) == 2
        last = proc.last_error()
    assert last == (
        "icl-onnx serve: an application named 'tied' already runs on this Ray cluster; "
        "give another --name"
    )
    status, body = cluster.call("/tied/health")
    assert status == 200 and body["variants"] == ["tied.opt"]


def test_the_cli_joins_a_cluster_serves_and_removes_its_app_on_sigterm(cluster, models):
    import ray
    from ray import serve

    rows = np.random.default_rng(1).integers(0, V, size=(3, 4))
    with serve_cli(models["tied"], "--replicas", "1", *joins(cluster)) as proc:
        line = first_line(proc)
        assert line.startswith(f"serving {models['tied']} with 1 replica(s)"), line
        assert line.rstrip().endswith(": GET /health, POST /infer"), line  # no /generate
        status, body = cluster.call("/health")
        assert status == 200 and (body["replicas"], body["variants"]) == (1, ["tied.opt"])
        status, reply = cluster.call("/infer", {"inputs": {"ids": rows.tolist()}})
        assert status == 200
        expected = direct(models["tied"], {"ids": rows})["y"]
        np.testing.assert_allclose(reply["outputs"]["y"], expected, rtol=1e-5, atol=1e-5)
        assert stop(proc) == 0
    assert "icl-onnx" not in serve.status().applications
    assert cluster.settles("/health", 404)  # nothing routed at / any more
    # the cluster it joined keeps running, with its other applications
    assert cluster.head.poll() is None and ray.cluster_resources()["CPU"] == 2
    assert cluster.call("/tied/health")[0] == 200


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("a", "must start with '/', not 'a'"),
        ("/a/", "must not end with '/' (unless it is '/'): '/a/'"),
        ("/{x}", "must not hold braces, spaces or control characters: '/{x}'"),
    ],
)
def test_the_cli_refuses_a_bad_route_prefix_in_one_line(models, capsys, value, message):
    with pytest.raises(SystemExit) as e:
        cli_main(["serve", str(models["tied"]), "--route-prefix", value])
    err = capsys.readouterr().err
    assert e.value.code == 2 and len(err.strip().splitlines()) == 1
    assert f"argument --route-prefix: {message}" in err


def test_two_cli_applications_share_one_cluster_under_their_route_prefixes(cluster, models):
    """--name a --route-prefix /a and --name b --route-prefix /b side by side; /a again is
    refused in one line and leaves /a serving."""
    rows = np.random.default_rng(2).integers(0, V, size=(2, 3))
    feeds = encoder_decoder_feeds()
    decoder_path = models["variants"] / "decoder.onnx"
    names = {i.name for i in icl_onnx.create_session(decoder_path).get_inputs()}
    mine = {k: v for k, v in feeds.items() if k in names}
    with (
        serve_cli(models["tied"], "--name", "a", "--route-prefix", "/a", *joins(cluster)) as a,
        serve_cli(models["variants"], "--name", "b", "--route-prefix", "/b", *joins(cluster)) as b,
    ):
        line_a, line_b = first_line(a), first_line(b)
        assert line_a.rstrip().endswith(": GET /a/health, POST /a/infer"), line_a
        assert line_b.rstrip().endswith(": GET /b/health, POST /b/infer"), line_b
        status, body = cluster.call("/a/health")
        assert status == 200 and body["variants"] == ["tied.opt"]
        status, body = cluster.call("/b/health")
        assert status == 200 and body["variants"] == ["decoder", "encoder"]
        status, reply = cluster.call("/a/infer", {"inputs": {"ids": rows.tolist()}})
        assert status == 200
        expected = direct(models["tied"], {"ids": rows})["y"]
        np.testing.assert_allclose(reply["outputs"]["y"], expected, rtol=1e-5, atol=1e-5)
        body = {"variant": "decoder", "inputs": {k: v.tolist() for k, v in mine.items()}}
        status, reply = cluster.call("/b/infer", body)
        assert status == 200, reply
        for key, value in direct(decoder_path, mine).items():
            np.testing.assert_allclose(np.array(reply["outputs"][key]), value, rtol=1e-5)

        with serve_cli(models["tied"], "--name", "c", "--route-prefix", "/a", *joins(cluster)) as c:
            assert c.wait(timeout=120) == 2
            last = c.last_error()
        assert last == (
            "icl-onnx serve: Ray Serve refused the application: Prefix /a is being used by "
            'application "a". Failed to deploy application "c".'
        )
        assert cluster.call("/a/health")[0] == 200
        assert stop(a) == 0 and stop(b) == 0
    assert cluster.settles("/a/health", 404) and cluster.settles("/b/health", 404)


def test_an_optimized_optimum_with_past_folder_generates_optimums_tokens(cluster, tmp_path):
    """optimum-cli's text-generation-with-past export of a tiny Llama, optimized, served by
    the CLI at /gen: POST /gen/generate gives the tokens Optimum's own greedy generate gives
    on the original export (run in .venv-optimum)."""
    from icl_onnx.testing.clients import NEW_TOKENS, PROMPT, optimum_export, optimum_generate

    src = optimum_export("llama", dedup=False)
    out = tmp_path / "llama.opt"
    assert cli_main(["optimize", str(src), "-o", str(out), "-q"]) == 0
    expected = optimum_generate(src, "plain")["tokens"]
    assert expected[: len(PROMPT)] == PROMPT and len(expected) == len(PROMPT) + NEW_TOKENS
    with serve_cli(out, "--name", "gen", "--route-prefix", "/gen", *joins(cluster)) as proc:
        line = first_line(proc)
        assert line.rstrip().endswith(": GET /gen/health, POST /gen/infer, POST /gen/generate")
        status, body = cluster.call("/gen/health")
        assert status == 200 and (body["variants"], body["generate"]) == (["model"], True)
        request = {"input_ids": PROMPT, "max_new_tokens": NEW_TOKENS}
        status, reply = cluster.call("/gen/generate", request)
        assert status == 200, reply
        assert PROMPT + reply["tokens"] == expected
        assert stop(proc) == 0
