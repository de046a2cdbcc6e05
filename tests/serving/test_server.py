"""The real KServe servers on loopback: protocols, Feast completion, bad input and load.

`servers` (conftest) runs a predictor with only the model artifact and a standalone Feast
transformer forwarding to it over HTTP, exactly the cluster's two-component layout.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import numpy as np
import pyarrow.parquet as pq
import pytest

if TYPE_CHECKING:
    from tests.serving.conftest import Server

V1 = "/v1/models/hm3:predict"
V2 = "/v2/models/hm3/infer"
TASK_FIELDS = ("p_ctr", "p_cvr", "p_ctcvr", "p_ct_micro", "p_ct_macro")
UNKNOWN_USER = 10**12  # far outside the world's user ids


@pytest.fixture(scope="session")
def predictor(servers: dict[str, Server]) -> Server:
    return servers["predictor"]


@pytest.fixture(scope="session")
def transformer(servers: dict[str, Server]) -> Server:
    return servers["transformer"]


@pytest.fixture(scope="session")
def known_pairs(small_world: Path) -> list[tuple[int, int]]:
    """(user_id, item_id) pairs whose entities have snapshots in the world."""
    imps = pq.read_table(small_world / "impressions.parquet", columns=["user_id", "item_id"])
    frame = imps.to_pandas().drop_duplicates().iloc[:200]
    return [(int(u), int(i)) for u, i in zip(frame.user_id, frame.item_id, strict=True)]


def post(server: Server, path: str, body: object, **kwargs) -> httpx.Response:
    return httpx.post(server.url + path, json=body, timeout=30.0, **kwargs)


def check_prediction(p: dict, version: str) -> None:
    # Exactly the model outputs: evaluation-only tasks (cvr_entire) are never served.
    assert sorted(k for k in p if k.startswith("p_")) == sorted(TASK_FIELDS)
    for field in TASK_FIELDS:
        assert 0.0 <= p[field] <= 1.0, (field, p)
    # The graph's product rule survives the wire: pCTCVR = pCTR * pCVR.
    assert p["p_ctcvr"] == pytest.approx(p["p_ctr"] * p["p_cvr"], rel=1e-5)
    assert p["p_ct_micro"] <= p["p_ctr"] + 1e-7 and p["p_ct_macro"] <= p["p_ctr"] + 1e-7
    assert p["model_version"] == version


@pytest.fixture(scope="session")
def version(artifact: Path) -> str:
    return json.loads((artifact / "config.json").read_text())["version"]


def test_predictor_without_feast_answers_ids_only(predictor: Server, version: str) -> None:
    r = post(predictor, V1, {"instances": [{"user_id": 1, "item_id": 2}]})
    assert r.status_code == 200, r.text
    (p,) = r.json()["predictions"]
    check_prediction(p, version)
    # Every feature but the two ids took its documented default, and the response says so.
    config = json.loads((predictor_artifact_dir(predictor) / "config.json").read_text())
    names = [f["name"] for f in config["feature_spec"]["features"]]
    assert sorted(p["defaulted"]) == sorted(n for n in names if n not in ("user_id", "item_id"))
    assert p["unknown_ids"] == []


def predictor_artifact_dir(server: Server) -> Path:
    args = server.proc.args
    return Path(args[args.index("--model_dir") + 1])


def test_transformer_fills_features_from_feast_like_sending_them(
    transformer: Server, predictor: Server, feast_repo: Path, known_pairs: list, version: str
) -> None:
    from model.data import features

    pairs = known_pairs[:20]
    rows = [{"user_id": u, "item_id": i, "scene": "home", "position": 3} for u, i in pairs]
    via_feast = post(transformer, V1, {"instances": rows})
    assert via_feast.status_code == 200, via_feast.text
    # The same features fetched here and sent directly to the predictor: identical scores.
    online = features.online_features(features.open_store(feast_repo), rows)
    explicit = [
        row | {name: values[j] for name, values in online.values.items()}
        for j, row in enumerate(rows)
    ]
    direct = post(predictor, V1, {"instances": explicit})
    assert direct.status_code == 200, direct.text
    for a, b, j in zip(
        via_feast.json()["predictions"], direct.json()["predictions"], range(20), strict=True
    ):
        check_prediction(a, version)
        for field in TASK_FIELDS:
            assert a[field] == pytest.approx(b[field], abs=1e-6)
        assert a["unknown_ids"] == []
        feast_defaulted = sorted(n for n, idx in online.missing.items() if j in idx)
        assert sorted(a["defaulted"]) == sorted(feast_defaulted + ["device"])


def test_unknown_ids_are_served_with_defaults_and_flagged(
    transformer: Server, version: str
) -> None:
    r = post(transformer, V1, {"instances": [{"user_id": UNKNOWN_USER, "item_id": 10**12}]})
    assert r.status_code == 200, r.text
    (p,) = r.json()["predictions"]
    check_prediction(p, version)
    assert sorted(p["unknown_ids"]) == ["item_id", "user_id"]
    assert {"age_bucket", "price", "price_to_user_spend"} <= set(p["defaulted"])


def test_features_carried_by_the_instance_win_over_feast(
    transformer: Server, known_pairs: list
) -> None:
    u, i = known_pairs[0]
    cheap = post(transformer, V1, {"instances": [{"user_id": u, "item_id": i, "price": 0.5}]})
    dear = post(transformer, V1, {"instances": [{"user_id": u, "item_id": i, "price": 5_000.0}]})
    assert cheap.status_code == dear.status_code == 200
    assert cheap.json()["predictions"][0]["p_cvr"] != dear.json()["predictions"][0]["p_cvr"]
    assert "price" not in cheap.json()["predictions"][0]["defaulted"]


def _v2_body(rows: list[dict]) -> dict:
    return {
        "id": "req-1",
        "inputs": [
            {
                "name": "user_id",
                "shape": [len(rows)],
                "datatype": "INT64",
                "data": [r["user_id"] for r in rows],
            },
            {
                "name": "item_id",
                "shape": [len(rows)],
                "datatype": "INT64",
                "data": [r["item_id"] for r in rows],
            },
            {
                "name": "scene",
                "shape": [len(rows)],
                "datatype": "BYTES",
                "data": [r["scene"] for r in rows],
            },
        ],
    }


@pytest.mark.parametrize("which", ["predictor", "transformer"])
def test_v2_matches_v1(
    servers: dict[str, Server], known_pairs: list, version: str, which: str
) -> None:
    server = servers[which]
    rows = [{"user_id": u, "item_id": i, "scene": "search"} for u, i in known_pairs[:5]]
    v1 = post(server, V1, {"instances": rows}).json()["predictions"]
    r = post(server, V2, _v2_body(rows))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model_version"] == version and body["id"] == "req-1"
    outputs = {o["name"]: o for o in body["outputs"]}
    for field in TASK_FIELDS:
        assert outputs[field]["shape"] == [5] and outputs[field]["datatype"] == "FP32"
        np.testing.assert_allclose(outputs[field]["data"], [p[field] for p in v1], rtol=1e-5)
    assert outputs["defaulted"]["data"] == [",".join(p["defaulted"]) for p in v1]


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
    assert r.status_code == 422 and "inputs" in r.text


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


def test_servers_keep_serving_after_bad_input(servers: dict[str, Server], version: str) -> None:
    for server in servers.values():
        assert httpx.get(server.url + "/v2/health/ready").status_code == 200
        r = post(server, V1, {"instances": [{"user_id": 3, "item_id": 4}]})
        assert r.status_code == 200
        check_prediction(r.json()["predictions"][0], version)


# Load: 32 concurrent clients, bounded in requests and time; zero 5xx; bounded memory growth.
CLIENTS = 32
REQUESTS_PER_CLIENT = 10
LOAD_DEADLINE_S = 20.0
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
    statuses: list[int] = []
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
                body = (
                    {"instances": rows} if rng.random() > 0.1 else {"instances": [{"user_id": "x"}]}
                )
                code = http.post(V1, json=body).status_code
                with lock:
                    statuses.append(code)

    threads = [threading.Thread(target=client, args=(k,)) for k in range(CLIENTS)]
    start = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - start
    after = {s: _rss_mb(s.proc.pid) for s in (transformer, predictor)}
    assert len(statuses) >= CLIENTS * 2, f"only {len(statuses)} requests in {elapsed:.1f} s"
    assert not [c for c in statuses if c >= 500]
    assert set(statuses) <= {200, 400}
    for server in (transformer, predictor):
        growth = after[server] - before[server]
        assert growth < RSS_GROWTH_BOUND_MB, f"{server.url}: RSS grew {growth:.1f} MB"
