"""`deploy_cluster` against a test double of the KServe API: create or patch, canary, timeout.

The client here is `FakeKServe`, a test double of the four `kserve.KServeClient` calls that
`deploy_cluster` makes, not a cluster: no Kubernetes API server, controller or Knative runs. It
answers as KServeClient does (RuntimeError from `get` for a missing object, KServe's timeout
RuntimeError from `wait_isvc_ready`), keeps what it was sent as the JSON the real client would
put on the wire, and becomes ready a set number of (simulated) seconds after it was applied.
The model artifact's config.json lives in a GCS API emulator (a cluster deployment needs gs://).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from components.serving.deploy import DeployConfig, deploy_cluster
from model import storage
from model.evaluate.registry import RegistryRecord, read_registry, write_registry


class FakeKServe:
    """A test double of the KServe API, not a cluster (see the module docstring).

    Args:
        ready_after_s: Simulated seconds from apply until the InferenceService is Ready;
            `wait_isvc_ready` raises KServe's timeout error when its timeout is shorter.
    """

    def __init__(self, ready_after_s: float = 0.0) -> None:
        self.ready_after_s = ready_after_s
        self.objects: dict[tuple[str, str], dict[str, Any]] = {}
        self.calls: list[tuple] = []

    @staticmethod
    def _wire(isvc: Any) -> dict[str, Any]:
        """The JSON body KServeClient sends: the model object serialized by the k8s ApiClient."""
        from kubernetes.client import ApiClient

        return ApiClient().sanitize_for_serialization(isvc)

    def get(self, name: str, namespace: str | None = None, **_: Any) -> dict[str, Any]:
        self.calls.append(("get", name, namespace))
        if (namespace, name) not in self.objects:
            raise RuntimeError(
                "Exception when calling CustomObjectsApi->get_namespaced_custom_object: "
                "(404) Reason: Not Found"
            )
        return self.objects[(namespace, name)]

    def create(self, isvc: Any, namespace: str | None = None, **_: Any) -> dict[str, Any]:
        body = self._wire(isvc)
        self.calls.append(("create", body["metadata"]["name"], namespace))
        self.objects[(namespace, body["metadata"]["name"])] = body
        return body

    def patch(self, name: str, isvc: Any, namespace: str | None = None, **_: Any) -> dict:
        self.calls.append(("patch", name, namespace))
        body = self._wire(isvc)
        body["status"] = {}  # a new revision: not Ready until it rolls out
        self.objects[(namespace, name)] = body
        return body

    def wait_isvc_ready(
        self, name: str, namespace: str | None = None, timeout_seconds: int = 600, **_: Any
    ) -> None:
        self.calls.append(("wait", name, namespace, timeout_seconds))
        if self.ready_after_s > timeout_seconds:
            raise RuntimeError(
                f"Timeout to start the InferenceService {name}. The InferenceService is as "
                f"following: {self.objects[(namespace, name)]}"
            )
        self.objects[(namespace, name)]["status"] = {
            "url": f"http://{name}.{namespace}.example.com",
            "conditions": [{"type": "Ready", "status": "True"}],
        }

    def predictor(self, name: str = "hm3", namespace: str = "hm3") -> dict[str, Any]:
        return self.objects[(namespace, name)]["spec"]["predictor"]

    def verbs(self) -> list[str]:
        return [call[0] for call in self.calls]


@pytest.fixture()
def model_uri(gcs_bucket: str, tmp_path: Path) -> str:
    """A published artifact's folder in the GCS emulator (only config.json is read)."""
    uri = f"{gcs_bucket}/deploy-{tmp_path.name}/models/v7"
    storage.write_text_atomic(f"{uri}/config.json", json.dumps({"kind": "hm3", "version": "v7"}))
    return uri


def _cluster(**overrides: Any) -> DeployConfig:
    return DeployConfig(mode="cluster", **overrides)


def _previous_champion(deploy_dir: str) -> RegistryRecord:
    record = RegistryRecord(model_uri="gs://old/models/v6", kind="hm3", version="v6", cvr_auc=0.7)
    write_registry(deploy_dir, record)
    return read_registry(deploy_dir)


def _existing(fake: FakeKServe, storage_uri: str = "gs://old/models/v6") -> None:
    fake.objects[("hm3", "hm3")] = {
        "metadata": {"name": "hm3", "namespace": "hm3"},
        "spec": {"predictor": {"model": {"storageUri": storage_uri}}},
        "status": {"url": "http://hm3.hm3.example.com"},
    }


def test_a_new_service_is_created_waited_for_and_recorded(model_uri: str, tmp_path: Path) -> None:
    fake, deploy_dir = FakeKServe(), str(tmp_path / "deploy")
    result = deploy_cluster(model_uri, deploy_dir, 0.71, _cluster(), "world-7/test", fake)
    assert fake.verbs() == ["get", "create", "wait", "get"]
    assert fake.calls[1] == ("create", "hm3", "hm3")
    predictor = fake.predictor()
    assert predictor["model"]["storageUri"] == model_uri
    assert "canaryTrafficPercent" not in predictor
    assert (result.mode, result.version, result.endpoint) == (
        "cluster",
        "v7",
        "http://hm3.hm3.example.com",
    )
    record = read_registry(deploy_dir)
    assert result.registry == storage.join(deploy_dir, "registry.json")
    assert (record.model_uri, record.version, record.cvr_auc, record.data) == (
        model_uri,
        "v7",
        0.71,
        "world-7/test",
    )


def test_an_existing_service_is_patched_not_recreated(model_uri: str, tmp_path: Path) -> None:
    fake = FakeKServe()
    _existing(fake)
    config = _cluster(name="hm3", namespace="hm3")
    deploy_cluster(model_uri, str(tmp_path / "deploy"), 0.71, config, client=fake)
    assert fake.verbs() == ["get", "patch", "wait", "get"]
    assert fake.calls[1] == ("patch", "hm3", "hm3")
    assert fake.predictor()["model"]["storageUri"] == model_uri


def test_a_canary_below_100_percent_keeps_the_champion(model_uri: str, tmp_path: Path) -> None:
    fake, deploy_dir = FakeKServe(), str(tmp_path / "deploy")
    _existing(fake)
    before = _previous_champion(deploy_dir)
    result = deploy_cluster(
        model_uri, deploy_dir, 0.74, _cluster(canary_traffic_percent=10), "", fake
    )
    assert fake.predictor()["canaryTrafficPercent"] == 10
    assert fake.predictor()["model"]["storageUri"] == model_uri
    assert result.registry is None
    assert read_registry(deploy_dir) == before  # the champion is still v6
    # Promoting the same model to 100% records it and drops the canary split.
    result = deploy_cluster(model_uri, deploy_dir, 0.74, _cluster(), "", fake)
    assert "canaryTrafficPercent" not in fake.predictor()
    assert result.registry is not None and read_registry(deploy_dir).version == "v7"


@pytest.mark.parametrize(("ready_after_s", "ready"), [(59.0, True), (61.0, False)])
def test_the_readiness_timeout_is_the_configured_one(
    model_uri: str, tmp_path: Path, ready_after_s: float, ready: bool
) -> None:
    """Ready 59 s after apply passes a 60 s timeout; 61 s fails it, and records no champion."""
    fake, deploy_dir = FakeKServe(ready_after_s=ready_after_s), str(tmp_path / "deploy")
    config = _cluster(ready_timeout_s=60.0)
    if ready:
        assert deploy_cluster(model_uri, deploy_dir, 0.71, config, client=fake).registry
    else:
        with pytest.raises(RuntimeError, match="Timeout to start the InferenceService hm3"):
            deploy_cluster(model_uri, deploy_dir, 0.71, config, client=fake)
        assert read_registry(deploy_dir) is None
    assert ("wait", "hm3", "hm3", 60) in fake.calls


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("mode", "k8s", r"mode must be one of \('local', 'cluster'\), got 'k8s'"),
        ("canary_traffic_percent", 101, r"canary_traffic_percent must be in \[0, 100\], got 101"),
        ("ready_timeout_s", 0.0, r"ready_timeout_s must be in \[1, 3600\], got 0.0"),
        ("name", "", r"name and namespace must be set, got ''/'hm3'"),
        ("namespace", "", r"name and namespace must be set, got 'hm3'/''"),
    ],
)
def test_deploy_config_errors_name_the_field_and_value(
    field: str, value: object, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        DeployConfig(**{field: value})
