"""KFP component `deploy_model`: a thin wrapper over `components.serving.deploy`.

The deploy logic lives in its own module because the component body imports it at run time,
where the KFP executor's `kfp.dsl` has no `component` decorator to re-run.
"""

from kfp import dsl
from kfp.dsl import Artifact, Input, Model, Output

from components.images import HM3_IMAGE


@dsl.component(base_image=HM3_IMAGE, install_kfp_package=False)
def deploy_model(
    model: Input[Model],
    feature_store: Input[Artifact],
    deploy_dir: str,
    cvr_auc: float,
    deployment: Output[Artifact],
    mode: str = "local",
    data: str = "",
    canary_traffic_percent: int = 100,
    name: str = "hm3",
    namespace: str = "hm3",
    ready_timeout_s: float = 180.0,
    feature_store_uri: str = "",
) -> str:
    """Deploy the model (local loopback server or KServe InferenceService), record the champion.

    Locally the server reads features from `feature_store` (the run's Feast repo, as
    `retrieve_features` materialized it), or from `feature_store_uri` (an existing store's
    feature_store.yaml, local or gs://) when set; on a cluster the transformer reads them from
    the Feast online store of `manifests/feast-configmap.yaml`, and both are unused.
    The model is first published to `<deploy_dir>/models/<version>/` and served from there.
    Writes `deployment` (JSON: mode, endpoint, model URI (the published copy), version,
    registry, request and prediction).

    Returns:
        The local request's prediction as JSON (local), or the endpoint URL (cluster).
    """
    import json as _json

    from components.serving.deploy import DeployConfig, deploy

    config = DeployConfig(
        mode=mode,
        ready_timeout_s=ready_timeout_s,
        feast_repo=(feature_store_uri or feature_store.path) if mode == "local" else None,
        name=name,
        namespace=namespace,
        canary_traffic_percent=canary_traffic_percent,
    )
    result = deploy(model.uri, deploy_dir, cvr_auc, config, data)
    record = {
        "mode": result.mode,
        "endpoint": result.endpoint,
        "model_uri": result.model_uri,
        "version": result.version,
        "registry": result.registry or "",
        "request": result.request,
        "prediction": result.prediction,
    }
    with open(deployment.path, "w") as handle:
        _json.dump(record, handle, indent=2, sort_keys=True)
    deployment.metadata.update(
        {k: v for k, v in record.items() if k not in ("request", "prediction")}
    )
    if result.prediction is not None:
        return _json.dumps(result.prediction, sort_keys=True)
    return result.endpoint
