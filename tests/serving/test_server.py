"""The real KServe servers on loopback: protocols, Feast completion, bad input and load.

`servers` (conftest) runs a predictor with only the model artifact and a standalone Feast
transformer forwarding to it over HTTP, exactly the cluster's two-component layout;
`exported_servers` serves the artifact's torch.export program, from a predictor and from a
one-process transformer + predictor. Every served probability is checked field by field against
`model.artifact.load_model(...).predict` on the same features, for a trained artifact whose
tasks give different numbers, so a field that carries another task's score fails.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from online_features import feast_completed, offline_scores

from components.serving.protocol import FLOAT, INT, STR, schema_from_feature_spec
from model.artifact import TrainedModel, load_model

if TYPE_CHECKING:
    from tests.serving.conftest import Server

V1 = "/v1/models/hm3:predict"
V2 = "/v2/models/hm3/infer"
TASKS = ("ctr", "cvr", "ctcvr", "ct_micro", "ct_macro")
TASK_FIELDS = tuple(f"p_{t}" for t in TASKS)
UNKNOWN_USER = 10**12  # far outside the world's user ids
V2_TYPES = {INT: "INT64", FLOAT: "FP64", STR: "BYTES"}
# Served numbers are the offline float32 probabilities, through JSON (V1) or FP32 (V2).
ATOL = 1e-6
PROGRAMS = ("eager", "exported")
ROLES = ("predictor", "transformer")
PROTOCOLS = ("v1", "v2")


@pytest.fixture(scope="session")
def predictor(servers: dict[str, Server]) -> Server:
    return servers["predictor"]


@pytest.fixture(scope="session")
def transformer(servers: dict[str, Server]) -> Server:
    return servers["transformer"]


def endpoint(request: pytest.FixtureRequest, program: str, role: str) -> Server:
    """The server of a role serving the eager network or the exported program."""
    fixture = "servers" if program == "eager" else "exported_servers"
    return request.getfixturevalue(fixture)[role]


@pytest.fixture(scope="session")
def offline(artifact: Path) -> dict[str, TrainedModel]:
    """The artifact loaded here, outside any server, both ways it can be run."""
    return {"eager": load_model(artifact), "exported": load_model(artifact, exported=True)}


@pytest.fixture(scope="session")
def field_types(offline: dict[str, TrainedModel]) -> dict[str, str]:
    """Feature name -> the value type the endpoint accepts (int, float, str)."""
    request_schema = schema_from_feature_spec(offline["eager"].feature_spec)
    return {f.name: f.value_type for f in request_schema.fields}


@pytest.fixture(scope="session")
def known_pairs(small_world: Path) -> list[tuple[int, int]]:
    """(user_id, item_id) pairs whose entities have snapshots in the world."""
    imps = pq.read_table(small_world / "impressions.parquet", columns=["user_id", "item_id"])
    frame = imps.to_pandas().drop_duplicates().iloc[:200]
    return [(int(u), int(i)) for u, i in zip(frame.user_id, frame.item_id, strict=True)]


@pytest.fixture(scope="session")
def full_rows(world_features: pd.DataFrame, field_types: dict[str, str]) -> list[dict[str, Any]]:
    """24 impressions carrying every feature the model reads (no nulls), as JSON values."""
    frame = world_features.dropna(subset=list(field_types))
    frame = frame.iloc[:: len(frame) // 24][:24]
    return [
        {name: _json_value(row[name], field_types[name]) for name in field_types}
        for _, row in frame.iterrows()
    ]


def _json_value(value: Any, value_type: str) -> Any:
    if value_type == INT:
        return int(value)
    if value_type == FLOAT:
        return float(value)
    return str(value)


def serve(
    server: Server, protocol: str, rows: list[dict[str, Any]], field_types: dict[str, str]
) -> tuple[dict[str, list[float]], list[list[str]], dict[str, Any]]:
    """Send rows in one request; (p_<task> -> one value per row, defaulted per row, response).

    V2 sends one tensor per field, so every row must carry the same fields.
    """
    if protocol == "v1":
        r = post(server, V1, {"instances": rows})
        assert r.status_code == 200, r.text
        body = r.json()
        predictions = body["predictions"]
        scores = {f: [p[f] for p in predictions] for f in TASK_FIELDS}
        return scores, [p["defaulted"] for p in predictions], body
    names = list(rows[0])
    assert all(list(row) == names for row in rows)
    inputs = [
        {
            "name": name,
            "shape": [len(rows)],
            "datatype": V2_TYPES[field_types[name]],
            "data": [row[name] for row in rows],
        }
        for name in names
    ]
    r = post(server, V2, {"id": "req-1", "inputs": inputs})
    assert r.status_code == 200, r.text
    body = r.json()
    outputs = {o["name"]: o for o in body["outputs"]}
    for f in TASK_FIELDS:
        assert outputs[f]["shape"] == [len(rows)] and outputs[f]["datatype"] == "FP32"
    scores = {f: outputs[f]["data"] for f in TASK_FIELDS}
    defaulted = [d.split(",") if d else [] for d in outputs["defaulted"]["data"]]
    return scores, defaulted, body


def assert_served_equals_offline(
    served: dict[str, list[float]], expected: dict[str, np.ndarray]
) -> None:
    """Each p_<task> field equals the offline probability of that task, row by row."""
    assert sorted(expected) == sorted(TASKS)
    # The tasks' numbers differ, so a field carrying another task's score cannot pass.
    for a in TASKS:
        for b in TASKS:
            if a < b:
                assert np.abs(expected[a] - expected[b]).max() > 100 * ATOL, (a, b)
    for task in TASKS:
        np.testing.assert_allclose(
            served[f"p_{task}"], expected[task], rtol=0, atol=ATOL, err_msg=f"p_{task}"
        )


def post(server: Server, path: str, body: object, **kwargs) -> httpx.Response:
    return httpx.post(server.url + path, json=body, timeout=30.0, **kwargs)


@pytest.fixture(scope="session")
def version(artifact: Path) -> str:
    return json.loads((artifact / "config.json").read_text())["version"]


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("program", PROGRAMS)
def test_served_scores_equal_offline_scores_on_the_same_features(
    request: pytest.FixtureRequest,
    offline: dict[str, TrainedModel],
    full_rows: list[dict[str, Any]],
    field_types: dict[str, str],
    version: str,
    program: str,
    role: str,
    protocol: str,
) -> None:
    # Instances that carry every feature: the transformer has nothing to fetch.
    server = endpoint(request, program, role)
    served, defaulted, body = serve(server, protocol, full_rows, field_types)
    assert_served_equals_offline(served, offline_scores(offline[program], full_rows))
    assert defaulted == [[] for _ in full_rows]
    if protocol == "v1":
        assert {p["model_version"] for p in body["predictions"]} == {version}
    else:
        assert body["model_version"] == version and body["id"] == "req-1"


def test_eager_and_exported_programs_agree_offline(
    offline: dict[str, TrainedModel], full_rows: list[dict[str, Any]]
) -> None:
    eager = offline_scores(offline["eager"], full_rows)
    exported = offline_scores(offline["exported"], full_rows)
    for task in TASKS:
        np.testing.assert_allclose(exported[task], eager[task], rtol=0, atol=ATOL, err_msg=task)


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("program", PROGRAMS)
def test_predictor_without_feast_answers_ids_only(
    request: pytest.FixtureRequest,
    offline: dict[str, TrainedModel],
    field_types: dict[str, str],
    program: str,
    protocol: str,
) -> None:
    rows = [{"user_id": 1, "item_id": 2}, {"user_id": 7, "item_id": 3}]
    served, defaulted, _ = serve(
        endpoint(request, program, "predictor"), protocol, rows, field_types
    )
    # Every feature but the two ids takes the model's documented default, and the response says so.
    assert_served_equals_offline(served, offline_scores(offline[program], rows))
    others = sorted(n for n in field_types if n not in ("user_id", "item_id"))
    assert [sorted(d) for d in defaulted] == [others, others]


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("program", PROGRAMS)
def test_transformer_fills_features_from_feast_as_documented(
    request: pytest.FixtureRequest,
    offline: dict[str, TrainedModel],
    known_pairs: list[tuple[int, int]],
    online_truth: tuple[dict[str, pd.DataFrame], dict[str, Any]],
    field_types: dict[str, str],
    program: str,
    protocol: str,
) -> None:
    rows = [
        {"user_id": u, "item_id": i, "scene": "home", "position": 3} for u, i in known_pairs[:20]
    ]
    server = endpoint(request, program, "transformer")
    served, defaulted, body = serve(server, protocol, rows, field_types)
    completed, feast_defaulted = feast_completed(rows, online_truth)
    assert_served_equals_offline(served, offline_scores(offline[program], completed))
    # The request-time context the client left out (device) takes the model's default.
    assert [sorted(d) for d in defaulted] == [sorted([*d, "device"]) for d in feast_defaulted]
    if protocol == "v1":
        assert all(p["unknown_ids"] == [] for p in body["predictions"])


def test_unknown_ids_are_served_with_defaults_and_flagged(
    transformer: Server,
    offline: dict[str, TrainedModel],
    online_truth: tuple[dict[str, pd.DataFrame], dict[str, Any]],
    field_types: dict[str, str],
) -> None:
    rows = [{"user_id": UNKNOWN_USER, "item_id": 10**12}]
    r = post(transformer, V1, {"instances": rows})
    assert r.status_code == 200, r.text
    (p,) = r.json()["predictions"]
    assert sorted(p["unknown_ids"]) == ["item_id", "user_id"]
    completed, _ = feast_completed(rows, online_truth)
    _, defaults = online_truth
    assert completed[0] == rows[0] | defaults
    assert_served_equals_offline(
        {f: [p[f]] for f in TASK_FIELDS}, offline_scores(offline["eager"], completed)
    )
    assert sorted(p["defaulted"]) == sorted(n for n in field_types if n not in rows[0])


def test_features_carried_by_the_instance_win_over_feast(
    transformer: Server, known_pairs: list
) -> None:
    u, i = known_pairs[0]
    cheap = post(transformer, V1, {"instances": [{"user_id": u, "item_id": i, "price": 0.5}]})
    dear = post(transformer, V1, {"instances": [{"user_id": u, "item_id": i, "price": 5_000.0}]})
    assert cheap.status_code == dear.status_code == 200
    assert cheap.json()["predictions"][0]["p_cvr"] != dear.json()["predictions"][0]["p_cvr"]
    assert "price" not in cheap.json()["predictions"][0]["defaulted"]


OVERSIZED = "oversized"  # built in the test, from the servers' --max_batch_size
BAD_V1 = [
    ("not json", b'{"instances": [', "Unrecognized request format"),
    ("array body", [1, 2], "JSON object"),
    ("no instances", {"inputs": []}, "lacks field 'instances'"),
    ("instances not a list", {"instances": {"user_id": 1}}, "'instances' must be a list"),
    ("empty batch", {"instances": []}, "'instances' is empty"),
    ("oversized batch", OVERSIZED, "max_batch_size"),
    ("instance not object", {"instances": [[1, 2]]}, "instances[0] must be an object"),
    (
        "missing user_id",
        {"instances": [{"item_id": 2}]},
        "instances[0]: missing required field 'user_id'",
    ),
    (
        "string id",
        {"instances": [{"user_id": "7", "item_id": 2}]},
        "field 'user_id' must be an integer",
    ),
    (
        "bool id",
        {"instances": [{"user_id": True, "item_id": 2}]},
        "field 'user_id' must be an integer",
    ),
    ("fractional id", {"instances": [{"user_id": 1.5, "item_id": 2}]}, "field 'user_id'"),
    (
        "unknown field",
        {"instances": [{"user_id": 1, "item_id": 2, "colour": 3}]},
        "unknown field(s) ['colour']",
    ),
    (
        "dense as string",
        {"instances": [{"user_id": 1, "item_id": 2, "price": "9.9"}]},
        "field 'price' must be a number",
    ),
    (
        "scene as number",
        {"instances": [{"user_id": 1, "item_id": 2, "scene": 4}]},
        "field 'scene' must be a string",
    ),
    (
        "second row bad",
        {"instances": [{"user_id": 1, "item_id": 2}, {"user_id": 1}]},
        "instances[1]: missing required field 'item_id'",
    ),
]


@pytest.mark.parametrize("which", ["predictor", "transformer"])
@pytest.mark.parametrize(("case", "body", "message"), BAD_V1, ids=[c[0] for c in BAD_V1])
def test_bad_v1_input_is_a_400_naming_the_field(
    servers: dict[str, Server], which: str, case: str, body: object, message: str, max_batch: int
) -> None:
    server = servers[which]
    if body == OVERSIZED:
        body = {"instances": [{"user_id": 1, "item_id": 2}] * (max_batch + 1)}
    if isinstance(body, bytes):
        r = httpx.post(server.url + V1, content=body, headers={"content-type": "application/json"})
    else:
        r = post(server, V1, body)
    assert r.status_code == 400, (case, r.status_code, r.text)
    assert message in r.json()["error"], r.text


def test_a_body_without_json_content_type_is_still_parsed_or_refused(predictor: Server) -> None:
    ok = httpx.post(
        predictor.url + V1,
        content=b'{"instances": [{"user_id": 1, "item_id": 2}]}',
        headers={"content-type": "text/plain"},
    )
    assert ok.status_code == 200, ok.text
    bad = httpx.post(
        predictor.url + V1,
        content=b"\x00\xff garbage",
        headers={"content-type": "application/octet-stream"},
    )
    assert bad.status_code == 400
    assert any(m in bad.json()["error"] for m in ("not valid JSON", "Unrecognized request format"))


BAD_V2 = [
    (
        "unknown input",
        [{"name": "colour", "shape": [1], "datatype": "INT64", "data": [1]}],
        "unknown input",
    ),
    (
        "wrong datatype",
        [{"name": "user_id", "shape": [1], "datatype": "FP32", "data": [1.0]}],
        "datatype FP32 not accepted",
    ),
    (
        "shape mismatch",
        [{"name": "user_id", "shape": [3], "datatype": "INT64", "data": [1, 2]}],
        "does not match shape",
    ),
    (
        "missing item_id",
        [{"name": "user_id", "shape": [1], "datatype": "INT64", "data": [1]}],
        "missing required input 'item_id'",
    ),
    ("empty inputs", [], "non-empty"),
    (
        "batch sizes differ",
        [
            {"name": "user_id", "shape": [2], "datatype": "INT64", "data": [1, 2]},
            {"name": "item_id", "shape": [1], "datatype": "INT64", "data": [1]},
        ],
        "differs",
    ),
]


@pytest.mark.parametrize(("case", "inputs", "message"), BAD_V2, ids=[c[0] for c in BAD_V2])
def test_bad_v2_input_is_a_400_naming_the_input(
    transformer: Server, case: str, inputs: list, message: str
) -> None:
    r = post(transformer, V2, {"inputs": inputs})
    assert r.status_code == 400, (case, r.status_code, r.text)
    assert message in r.json()["error"], r.text


def test_v2_schema_violations_are_4xx(transformer: Server) -> None:
    r = post(transformer, V2, {"inputz": []})
    assert r.status_code == 422, r.text
    # FastAPI's detail names the one missing field: body -> (the model, by KServe) -> inputs.
    missing = [e["loc"] for e in r.json()["detail"] if e["type"] == "missing"]
    assert [(loc[0], loc[-1]) for loc in missing] == [("body", "inputs")], missing


def test_oversized_body_is_a_413_before_parsing(predictor: Server) -> None:
    body = b'{"instances": [' + b" " * (4 * 1024 * 1024) + b"]}"
    r = httpx.post(predictor.url + V1, content=body, headers={"content-type": "application/json"})
    assert r.status_code == 413 and "max_body_bytes" in r.json()["error"]


def _oversized_v1_body(instances: int = 200_000) -> bytes:
    """A V1 body of `instances` instances: 200,000 are about 6 MB, over the default 4 MiB."""
    return json.dumps({"instances": [{"user_id": 1, "item_id": 2}] * instances}).encode()


@pytest.mark.parametrize("which", ["predictor", "transformer"])
def test_a_client_that_sends_the_whole_body_first_reads_the_413(
    servers: dict[str, Server], which: str
) -> None:
    # urllib sends all of a Content-Length body, with "Connection: close", before it reads the
    # answer; a server that answers and closes while the body is still coming resets it.
    import urllib.error
    import urllib.request

    body = _oversized_v1_body()
    request = urllib.request.Request(
        servers[which].url + V1, data=body, headers={"content-type": "application/json"}
    )
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(request, timeout=60)  # noqa: S310 - a loopback test server
    assert caught.value.code == 413
    error = json.loads(caught.value.read())["error"]
    assert error == (
        f"request body of {len(body)} bytes exceeds max_body_bytes {4 * 1024 * 1024}; "
        "split the batch"
    )


def test_a_chunked_oversized_body_sent_whole_gets_the_413(predictor: Server) -> None:
    import http.client

    # Sent whole before reading, like urllib (and with its "Connection: close"), and larger than
    # what loopback socket buffers hold once a server stops reading at 4 MiB.
    body = _oversized_v1_body(800_000)
    chunks = [body[k : k + 65_536] for k in range(0, len(body), 65_536)]
    connection = http.client.HTTPConnection("127.0.0.1", predictor.port, timeout=60)
    try:
        connection.request(
            "POST",
            V1,
            body=iter(chunks),
            headers={"content-type": "application/json", "connection": "close"},
            encode_chunked=True,
        )
        response = connection.getresponse()
        assert response.status == 413
        assert json.loads(response.read())["error"] == (
            f"request body of {len(body)} bytes exceeds max_body_bytes {4 * 1024 * 1024}; "
            "split the batch"
        )
    finally:
        connection.close()


def test_servers_keep_serving_after_bad_input(
    servers: dict[str, Server],
    offline: dict[str, TrainedModel],
    online_truth: tuple[dict[str, pd.DataFrame], dict[str, Any]],
    version: str,
) -> None:
    rows = [{"user_id": 3, "item_id": 4}]
    completed, _ = feast_completed(rows, online_truth)
    expected = {
        "predictor": offline_scores(offline["eager"], rows),
        "transformer": offline_scores(offline["eager"], completed),
    }
    for name, server in servers.items():
        assert httpx.get(server.url + "/v2/health/ready").status_code == 200
        r = post(server, V1, {"instances": rows})
        assert r.status_code == 200, r.text
        (p,) = r.json()["predictions"]
        assert p["model_version"] == version
        assert_served_equals_offline({f: [p[f]] for f in TASK_FIELDS}, expected[name])


# Load: 32 concurrent clients, 10 requests each, every one answered as it should be (zero 5xx);
# bounded memory growth. The deadline only keeps a hung server from hanging the test.
CLIENTS = 32
REQUESTS_PER_CLIENT = 10
LOAD_DEADLINE_S = 120.0
RSS_GROWTH_BOUND_MB = 64.0


def _rss_mb(pid: int) -> float:
    import psutil

    return psutil.Process(pid).memory_info().rss / 2**20


def test_load_32_concurrent_clients_no_5xx_bounded_memory(
    servers: dict[str, Server], known_pairs: list
) -> None:
    transformer, predictor = servers["transformer"], servers["predictor"]
    # Warm-up, so the baseline includes what the first requests allocate once.
    for n in (1, 10, 50):
        rows = [{"user_id": u, "item_id": i} for u, i in known_pairs[:n]]
        assert post(transformer, V1, {"instances": rows}).status_code == 200
    before = {s: _rss_mb(s.proc.pid) for s in (transformer, predictor)}
    # Per request: (status expected, status received, predictions expected, received).
    answers: list[tuple[int, int, int, int]] = []
    lock = threading.Lock()
    deadline = time.monotonic() + LOAD_DEADLINE_S

    def client(k: int) -> None:
        rng = np.random.default_rng(k)
        with httpx.Client(base_url=transformer.url, timeout=30.0) as http:
            for _ in range(REQUESTS_PER_CLIENT):
                if time.monotonic() > deadline:
                    return
                n = int(rng.choice([1, 1, 1, 10, 50]))
                picks = rng.integers(0, len(known_pairs), n)
                rows = [{"user_id": known_pairs[p][0], "item_id": known_pairs[p][1]} for p in picks]
                valid = rng.random() > 0.1
                body = {"instances": rows} if valid else {"instances": [{"user_id": "x"}]}
                r = http.post(V1, json=body)
                got = len(r.json().get("predictions", [])) if r.status_code == 200 else 0
                with lock:
                    answers.append((200 if valid else 400, r.status_code, n if valid else 0, got))

    threads = [threading.Thread(target=client, args=(k,)) for k in range(CLIENTS)]
    start = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - start
    after = {s: _rss_mb(s.proc.pid) for s in (transformer, predictor)}
    total = CLIENTS * REQUESTS_PER_CLIENT
    assert len(answers) == total, f"only {len(answers)} of {total} requests in {elapsed:.1f} s"
    wrong = [a for a in answers if a[0] != a[1] or a[2] != a[3]]
    assert not wrong, f"{len(wrong)} of {total} answered wrongly, e.g. {wrong[:3]}"
    for server in (transformer, predictor):
        growth = after[server] - before[server]
        assert growth < RSS_GROWTH_BOUND_MB, f"{server.url}: RSS grew {growth:.1f} MB"
