"""Versioned feature services: THE feature contract of a model version.

Training retrieval (`model.data.features.retrieve_historical`) and the serving transformer
(`model.data.features.online_features`) both ask Feast for a service by name; neither lists features
itself. A new model version that needs different features gets a new service (`hm3_v2`), so a
deployed model keeps the exact features it was trained with.
"""

from __future__ import annotations

from feast import FeatureService, FeatureView, OnDemandFeatureView

from feature_repo.entities import OWNER

HM3_V1 = "hm3_v1"


def hm3_v1_service(
    user_features: FeatureView,
    item_features: FeatureView,
    price_to_user_spend: OnDemandFeatureView,
) -> FeatureService:
    """Every user and item feature plus the price-to-spend ratio."""
    return FeatureService(
        name=HM3_V1,
        features=[user_features, item_features, price_to_user_spend],
        description="Features of HM^3 model version 1 and its baselines.",
        owner=OWNER,
        tags={"model": "hm3", "version": "1"},
    )
