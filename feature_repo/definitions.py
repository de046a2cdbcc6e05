"""The one module `feast apply` reads: every object of the split modules, built once.

`.feastignore` hides the split modules from Feast's repo scan; they are imported here as the
`feature_repo` package, so each object exists once (Feast de-duplicates by identity, and would
otherwise see e.g. `entities.user` and `feature_repo.entities.user` as two entities).

Module-level objects read `data/users.parquet` and `data/items.parquet` relative to this folder
(Feast resolves relative paths against the repo). Other locations: `build(users, items)`.
"""

from __future__ import annotations

from dataclasses import dataclass

from feast import Entity, FeatureService, FeatureView, OnDemandFeatureView
from feast.data_source import DataSource

from feature_repo.data_sources import items_source, users_source
from feature_repo.entities import item, user
from feature_repo.feature_services import hm3_v1_service
from feature_repo.feature_views import item_features_view, user_features_view
from feature_repo.on_demand import price_to_user_spend_view

DEFAULT_USERS = "data/users.parquet"
DEFAULT_ITEMS = "data/items.parquet"


@dataclass(frozen=True)
class Definitions:
    """Every Feast object of the repository, wired to one pair of data locations."""

    entities: tuple[Entity, ...]
    sources: tuple[DataSource, ...]
    feature_views: tuple[FeatureView, ...]
    on_demand_views: tuple[OnDemandFeatureView, ...]
    services: tuple[FeatureService, ...]

    def objects(self) -> list[object]:
        """All objects, in the order `FeatureStore.apply` takes them."""
        return [
            *self.entities,
            *self.sources,
            *self.feature_views,
            *self.on_demand_views,
            *self.services,
        ]


def build(users: str, items: str, spark: bool = False) -> Definitions:
    """Build the repository's objects over the given users and items tables.

    Args:
        users: Location of the users table (path, file:// or gs:// Parquet, or bq://).
        items: Location of the items table.
        spark: Parquet sources as `SparkSource`s, for a store whose offline store is Spark.
    """
    users_src, items_src = users_source(users, spark), items_source(items, spark)
    user_fv, item_fv = user_features_view(users_src), item_features_view(items_src)
    ratio = price_to_user_spend_view(user_fv, item_fv)
    return Definitions(
        entities=(user, item),
        sources=(users_src, items_src),
        feature_views=(user_fv, item_fv),
        on_demand_views=(ratio,),
        services=(hm3_v1_service(user_fv, item_fv, ratio),),
    )


_default = build(DEFAULT_USERS, DEFAULT_ITEMS)
users_source_default, items_source_default = _default.sources
user_features, item_features = _default.feature_views
(price_to_user_spend,) = _default.on_demand_views
(hm3_v1,) = _default.services
