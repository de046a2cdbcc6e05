"""KFP component `materialize_features`: load an existing Feast store's online store."""

from kfp import dsl
from kfp.dsl import Metrics, Output

from components.images import HM3_IMAGE


@dsl.component(base_image=HM3_IMAGE, install_kfp_package=False)
def materialize_features(
    feature_store_uri: str,
    metrics: Output[Metrics],
    feature_service: str = "hm3_v1",
    end: str = "",
) -> str:
    """Materialize the service's views incrementally, up to `end`, into the store's online store.

    The store is checked against `feature_repo/` first; each view loads the snapshots since its
    previous materialization (the first time, since `end` minus its ttl).

    Args:
        feature_store_uri: The store's feature_store.yaml (local or gs://).
        metrics: views, seconds.
        feature_service: Feast FeatureService whose views are loaded.
        end: ISO timestamp (UTC when it names no zone); empty = the step's own clock, i.e. the
            run time of a scheduled run.

    Returns:
        The end the views are now materialized up to (ISO, UTC).
    """
    from datetime import datetime

    from model.data.features import materialize_incremental, open_store

    report = materialize_incremental(
        open_store(feature_store_uri),
        end=datetime.fromisoformat(end) if end else None,
        service=feature_service,
    )
    metrics.log_metric("views", len(report.previous))
    metrics.log_metric("seconds", report.seconds)
    return report.end
