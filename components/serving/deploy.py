"""Deploy a model artifact and record it as the champion: locally or on a KServe cluster.

- `local` (the embedded default): start `hm3 serve` on loopback from the artifact, wait until
  it is ready, send one real V1 request, record the champion, stop the server. The demo prints
  that prediction last.
- `cluster`: create or patch the InferenceService of `manifests/inferenceservice.yaml` through
  KServe's `KServeClient` with the artifact's storageUri and a canary traffic percent, wait for
  readiness with a timeout, and record the champion once it takes all traffic.

Both first publish the artifact into the deployment folder, `<deploy_dir>/models/<version>/`
(local or gs://, sealed with its manifest; see `publish_model`), serve it from there and record
that URI: the champion outlives the pipeline run that trained it, and with a gs:// deployment
folder the served model lives in GCS. The champion record is `model.evaluate.registry`'s
registry.json in the deployment folder.
"""

import copy
import json
import logging
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

MODES = ("local", "cluster")
ROOT = Path(__file__).resolve().parents[2]
DEFAULT_MANIFEST = ROOT / "manifests" / "inferenceservice.yaml"
DEFAULT_INSTANCE: dict[str, object] = {"user_id": 1, "item_id": 1}


@dataclass(frozen=True)
class DeployConfig:
    """How and where to deploy.

    Attributes:
        mode: `local` (server on loopback) or `cluster` (KServe InferenceService).
        ready_timeout_s: How long to wait for the server / InferenceService to become ready.
        instance: The one request instance sent after a local deployment.
        feast_repo: Local only: serve with this Feast repo (transformer + predictor in one
            process); without it, features the instance lacks take their defaults.
        name: InferenceService name (cluster).
        namespace: Kubernetes namespace (cluster).
        manifest: InferenceService manifest used as the template (cluster).
        canary_traffic_percent: Share of traffic for the new model (cluster); 100 rolls out
            fully, less keeps the previous revision serving the rest.
    """

    mode: str = "local"
    ready_timeout_s: float = 180.0
    instance: tuple[tuple[str, object], ...] = tuple(DEFAULT_INSTANCE.items())
    feast_repo: str | None = None
    name: str = "hm3"
    namespace: str = "hm3"
    manifest: str = str(DEFAULT_MANIFEST)
    canary_traffic_percent: int = 100

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {self.mode!r}")
        if not 1.0 <= self.ready_timeout_s <= 3600.0:
            raise ValueError(f"ready_timeout_s must be in [1, 3600], got {self.ready_timeout_s}")
        if not 0 <= self.canary_traffic_percent <= 100:
            raise ValueError(
                f"canary_traffic_percent must be in [0, 100], got {self.canary_traffic_percent}"
            )
        if not self.name or not self.namespace:
            raise ValueError(
                f"name and namespace must be set, got {self.name!r}/{self.namespace!r}"
            )


@dataclass(frozen=True)
class DeployResult:
    """What a deployment did."""

    mode: str
    endpoint: str
    model_uri: str  # what is served: the published copy in the deployment folder
    version: str
    registry: str | None  # registry.json written, None when the champion did not change
    prediction: dict[str, Any] | None  # the local request's answer
    request: dict[str, Any] | None = None  # the local request's body, for people to replay


def _model_config(model_uri: str) -> dict[str, Any]:
    from model import storage

    return json.loads(storage.read_text(storage.join(model_uri, "config.json")))


def publish_model(model_uri: str, deploy_dir: str) -> str:
    """Copy a sealed artifact to `<deploy_dir>/models/<version>` and return that URI.

    The source is verified against its manifest first, so a corrupt artifact is never
    published; the copy is sealed last (`model.storage.upload_dir`), so a reader never takes
    a half-copied folder for complete. Publishing a version that is already there replaces it
    with identical bytes.

    Raises:
        model.storage.ArtifactError: If the source is incomplete or altered.
    """
    from model import storage

    with storage.local_dir(model_uri) as local:
        version = json.loads((local / "config.json").read_text())["version"]
        published = storage.upload_dir(local, storage.join(deploy_dir, "models", version))
    log.info("published %s to %s", model_uri, published)
    return published


def _record_champion(
    deploy_dir: str, model_uri: str, config: dict, cvr_auc: float, data: str
) -> str:
    from model.evaluate.registry import RegistryRecord, write_registry

    record = RegistryRecord(
        model_uri=model_uri,
        kind=config["kind"],
        version=config["version"],
        cvr_auc=cvr_auc,
        data=data,
    )
    return write_registry(deploy_dir, record)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def deploy_local(
    model_uri: str, deploy_dir: str, cvr_auc: float, config: DeployConfig, data: str = ""
) -> DeployResult:
    """Serve the artifact on loopback, send one request, record the champion, stop serving.

    Raises:
        RuntimeError: If the server exits or is not ready within the timeout (with its log
            tail), or the request does not answer 200.
    """
    import httpx

    model_config = _model_config(model_uri)
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    cmd = [
        sys.executable, "-m", "components.serving.server",
        "--model_dir", model_uri,
        "--http_port", str(port),
        "--bind_host", "127.0.0.1",
        "--enable_grpc", "false",
    ]  # fmt: skip
    if config.feast_repo:
        cmd += ["--feast_repo", config.feast_repo]
    with tempfile.TemporaryFile() as server_log:
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=server_log, stderr=subprocess.STDOUT)
        try:
            _wait_ready(proc, url, config.ready_timeout_s, server_log)
            body = {"instances": [dict(config.instance)]}
            response = httpx.post(f"{url}/v1/models/hm3:predict", json=body, timeout=30.0)
            if response.status_code != 200:
                raise RuntimeError(
                    f"request {body} answered {response.status_code}: {response.text}"
                )
            prediction = response.json()["predictions"][0]
        finally:
            _stop(proc)
    registry = _record_champion(deploy_dir, model_uri, model_config, cvr_auc, data)
    log.info("local deployment of %s answered %s", model_config["version"], prediction)
    return DeployResult(
        "local", url, model_uri, model_config["version"], registry, prediction, body
    )


def _wait_ready(proc: subprocess.Popen, url: str, timeout_s: float, server_log: Any) -> None:
    import httpx

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            server_log.seek(0)
            tail = server_log.read().decode(errors="replace")[-3000:]
            raise RuntimeError(f"server exited with {proc.returncode}:\n{tail}")
        try:
            if httpx.get(f"{url}/v2/health/ready", timeout=1.0).status_code == 200:
                return
        except httpx.TransportError:
            pass  # not listening yet
        time.sleep(0.25)
    raise RuntimeError(f"server at {url} not ready after {timeout_s} s")


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def inference_service(model_uri: str, config: DeployConfig) -> Any:
    """The InferenceService to apply: the manifest with this model and canary share.

    Raises:
        ValueError: If the manifest holds no InferenceService or the model URI is not gs://.
        components.serving.manifests.ManifestError: If the manifest does not parse strictly.
    """
    from components.serving.manifests import load_documents, parse_document

    docs = [d for d in load_documents(config.manifest) if d.get("kind") == "InferenceService"]
    if len(docs) != 1:
        raise ValueError(f"{config.manifest}: expected one InferenceService, found {len(docs)}")
    if not model_uri.startswith("gs://"):
        raise ValueError(f"a cluster deployment needs a gs:// model URI, got {model_uri!r}")
    doc = copy.deepcopy(docs[0])
    doc["metadata"]["name"] = config.name
    doc["metadata"]["namespace"] = config.namespace
    predictor = doc["spec"]["predictor"]
    predictor["model"]["storageUri"] = model_uri
    if config.canary_traffic_percent < 100:
        predictor["canaryTrafficPercent"] = config.canary_traffic_percent
    else:
        predictor.pop("canaryTrafficPercent", None)
    return parse_document(doc, config.manifest)


def deploy_cluster(
    model_uri: str,
    deploy_dir: str,
    cvr_auc: float,
    config: DeployConfig,
    data: str = "",
    client: Any = None,
) -> DeployResult:
    """Create or patch the InferenceService, wait until ready, record a fully rolled-out champion.

    Args:
        model_uri: gs:// artifact folder.
        deploy_dir: Folder of the champion registry.json.
        cvr_auc: The candidate's CVR AUC (recorded).
        config: Name, namespace, canary percent, timeout.
        data: The evaluation data the AUC was measured on (recorded).
        client: A `kserve.KServeClient` (default: one from the in-cluster or kube config).

    Raises:
        RuntimeError: If KServe rejects the object or it is not ready within the timeout.
    """
    from kserve import KServeClient

    model_config = _model_config(model_uri)
    isvc = inference_service(model_uri, config)
    client = client or KServeClient()
    try:
        client.get(config.name, namespace=config.namespace)
        exists = True
    except RuntimeError:
        exists = False
    if exists:
        client.patch(config.name, isvc, namespace=config.namespace)
    else:
        client.create(isvc, namespace=config.namespace)
    client.wait_isvc_ready(
        config.name, namespace=config.namespace, timeout_seconds=int(config.ready_timeout_s)
    )
    status = client.get(config.name, namespace=config.namespace).get("status", {})
    endpoint = status.get("url", "")
    registry = None
    if config.canary_traffic_percent == 100:
        registry = _record_champion(deploy_dir, model_uri, model_config, cvr_auc, data)
    else:
        log.info(
            "canary %s at %d%%: champion unchanged; redeploy with 100 to promote",
            model_config["version"],
            config.canary_traffic_percent,
        )
    return DeployResult("cluster", endpoint, model_uri, model_config["version"], registry, None)


def deploy(
    model_uri: str, deploy_dir: str, cvr_auc: float, config: DeployConfig, data: str = ""
) -> DeployResult:
    """Publish the artifact into `deploy_dir`, then deploy it in `config.mode`.

    See the module docstring; the result's model URI is the published copy.
    """
    published = publish_model(model_uri, deploy_dir)
    if config.mode == "local":
        return deploy_local(published, deploy_dir, cvr_auc, config, data)
    return deploy_cluster(published, deploy_dir, cvr_auc, config, data)
