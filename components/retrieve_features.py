"""KFP component `retrieve_features`: point-in-time Feast features for every impression."""

from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Metrics, Output

from components.images import HM3_IMAGE


@dsl.component(base_image=HM3_IMAGE, install_kfp_package=False)
def retrieve_features(
    world: Input[Dataset],
    features: Output[Dataset],
    metrics: Output[Metrics],
    feature_store: Output[Artifact],
    feature_service: str = "hm3_v1",
    offline_store: str = "duckdb",
    materialize_online: bool = True,
    spark_master: str = "local[2]",
    feature_store_uri: str = "",
) -> None:
    """Retrieve the feature service's features for every impression of a world.

    Registers `feature_repo` over the world's users.parquet / items.parquet in the run's own
    Feast repo and runs a point-in-time join with impressions.parquet as the entity dataframe.
    With `feature_store_uri`, an existing store is used instead: nothing is registered or
    materialized, and its `feature_service` is first checked against `feature_repo/`.

    Args:
        world: Folder with impressions.parquet, users.parquet and items.parquet.
        features: Output folder: features.parquet (impression_id + one column per feature,
            kinds in the Arrow metadata) and report.json.
        metrics: rows, features, seconds, filled_total and filled_<feature> (missing values
            replaced by the feature's documented default).
        feature_store: Output folder: the run's Feast repo (feature_store.yaml, registry.db,
            and online_store.db when materialized). The local deployment serves from it; a
            cluster serves from Redis through the Feast ConfigMap instead. With
            `feature_store_uri`: only `reference.json`, naming the store used.
        feature_service: Feast FeatureService name.
        offline_store: Feast offline store, `duckdb`, `spark` or `file`.
        materialize_online: Load the latest user and item snapshots into the SQLite online store.
        spark_master: With offline_store `spark`: master of the session Feast starts.
        feature_store_uri: An existing store's feature_store.yaml (local or gs://); empty: the
            run's own repo. Its yaml decides the offline store (`offline_store` and
            `spark_master` are unused).
    """
    from model.data.features import retrieve_world, write_store_reference

    report = retrieve_world(
        world.path,
        features.path,
        features=feature_service,
        offline_store=offline_store,
        repo_dir=None if feature_store_uri else feature_store.path,
        materialize_online=materialize_online and not feature_store_uri,
        spark_master=spark_master,
        feature_store=feature_store_uri,
    )
    feature_store.metadata["feature_service"] = report.service
    if feature_store_uri:
        write_store_reference(feature_store.path, feature_store_uri)
        feature_store.metadata["feature_store"] = feature_store_uri
        feature_store.metadata["online_store"] = "external"
    else:
        feature_store.metadata["online_store"] = "sqlite" if materialize_online else "empty"
    features.metadata["feature_service"] = report.service
    features.metadata["rows"] = report.rows
    metrics.log_metric("rows", report.rows)
    metrics.log_metric("features", len(report.features))
    metrics.log_metric("seconds", report.seconds)
    metrics.log_metric("filled_total", report.filled_total)
    for name, count in report.filled.items():
        metrics.log_metric(f"filled_{name}", count)
