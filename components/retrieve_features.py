"""KFP component `retrieve_features`: point-in-time Feast features for every impression."""

from kfp import dsl
from kfp.dsl import Dataset, Input, Metrics, Output

from components.images import HM3_IMAGE


@dsl.component(base_image=HM3_IMAGE, install_kfp_package=False)
def retrieve_features(
    world: Input[Dataset],
    features: Output[Dataset],
    metrics: Output[Metrics],
    feature_service: str = "hm3_v1",
    offline_store: str = "duckdb",
) -> None:
    """Retrieve the feature service's features for every impression of a world.

    Registers `feature_repo` over the world's users.parquet / items.parquet in a throw-away
    Feast repo and runs a point-in-time join with impressions.parquet as the entity dataframe.

    Args:
        world: Folder with impressions.parquet, users.parquet and items.parquet.
        features: Output folder: features.parquet (impression_id + one column per feature,
            kinds in the Arrow metadata) and report.json.
        metrics: rows, features, seconds, filled_total and filled_<feature> (missing values
            replaced by the feature's documented default).
        feature_service: Feast FeatureService name.
        offline_store: Feast offline store, `duckdb` or `file`.
    """
    from model.features import retrieve_world

    report = retrieve_world(
        world.path, features.path, features=feature_service, offline_store=offline_store
    )
    features.metadata["feature_service"] = report.service
    features.metadata["rows"] = report.rows
    metrics.log_metric("rows", report.rows)
    metrics.log_metric("features", len(report.features))
    metrics.log_metric("seconds", report.seconds)
    metrics.log_metric("filled_total", report.filled_total)
    for name, count in report.filled.items():
        metrics.log_metric(f"filled_{name}", count)
