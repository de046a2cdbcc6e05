"""An existing Feast store, applied beforehand: read as it is, checked against feature_repo/."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from feature_helpers import applied_store
from kfp import dsl

from components.retrieve_features import retrieve_features
from model import storage
from model.data import features


def _gcs_store_yaml(registry: str, online_db: Path) -> str:
    """A feature_store.yaml as a team would keep it next to a gs:// registry."""
    return (
        "project: hm3\n"
        "provider: local\n"
        f"registry:\n    path: {registry}\n    cache_ttl_seconds: 60\n"
        "offline_store:\n    type: duckdb\n"
        f"online_store:\n    type: sqlite\n    path: {online_db}\n"
        "entity_key_serialization_version: 3\n"
        "auth:\n    type: no_auth\n"
    )


def test_a_gcs_store_gives_the_features_of_a_runs_own_repo_and_stays_untouched(
    tmp_path: Path, small_world: Path, gcs_bucket: str
) -> None:
    """feature_store.yaml and registry on the GCS emulator, applied once beforehand: the
    component reads it without registering anything and writes the same features.parquet as
    today's per-run repo."""
    prefix = f"{gcs_bucket}/feast-{tmp_path.name}"
    yaml_uri = f"{prefix}/feature_store.yaml"
    registry = f"{prefix}/registry.pb"
    storage.write_text_atomic(yaml_uri, _gcs_store_yaml(registry, tmp_path / "online.db"))
    features.apply(
        features.open_store(yaml_uri),
        str(small_world / "users.parquet"),
        str(small_world / "items.parquet"),
    )
    registered = storage.read_bytes(registry)

    own = tmp_path / "own"
    features.retrieve_world(str(small_world), str(own))

    out = tmp_path / "features"
    repo = dsl.Artifact(name="feature_store", uri=str(tmp_path / "repo"))
    retrieve_features.python_func(
        world=dsl.Dataset(name="world", uri=str(small_world)),
        features=dsl.Dataset(name="features", uri=str(out)),
        metrics=dsl.Metrics(name="metrics", uri=str(tmp_path / "metrics")),
        feature_store=repo,
        feature_store_uri=yaml_uri,
    )
    got = pq.read_table(out / features.FEATURES_FILE)
    assert got.num_rows == 60_000
    # Values, kinds, defaults and service name in the metadata: all the same.
    assert got.equals(pq.read_table(own / features.FEATURES_FILE), check_metadata=True)
    assert storage.read_bytes(registry) == registered  # nothing was registered
    reference = json.loads((tmp_path / "repo" / features.REFERENCE_FILE).read_text())
    assert reference == {"feature_store": yaml_uri}
    assert repo.metadata["online_store"] == "external"
    assert not (tmp_path / "repo" / "feature_store.yaml").exists()  # no per-run repo


def test_a_gcs_yaml_with_a_relative_registry_is_refused_naming_the_field(
    tmp_path: Path, gcs_bucket: str
) -> None:
    yaml_uri = f"{gcs_bucket}/relative-{tmp_path.name}/feature_store.yaml"
    storage.write_text_atomic(yaml_uri, _gcs_store_yaml("registry.db", tmp_path / "o.db"))
    with pytest.raises(features.StoreContractError, match="registry.path is 'registry.db'"):
        features.open_store(yaml_uri)
    with pytest.raises(FileNotFoundError, match="nope/feature_store.yaml"):
        features.open_store(f"{gcs_bucket}/nope")


def _retyped_user_view(dtype_name: str):
    """Our definitions with user_features' user_ctr_7d declared as another dtype."""
    from feast import FeatureView, Field, types

    from feature_repo import definitions, feature_views, on_demand
    from feature_repo.entities import user
    from feature_repo.feature_services import hm3_v1_service

    defs = definitions.build("u", "i")
    schema = [
        Field(name=f.name, dtype=getattr(types, dtype_name), tags=f.tags)
        if f.name == "user_ctr_7d"
        else f
        for f in feature_views.USER_SCHEMA
    ]
    user_fv = FeatureView(
        name="user_features",
        entities=[user],
        ttl=feature_views.USER_FEATURES_TTL,
        schema=schema,
        source=defs.sources[0],
    )
    item_fv = defs.feature_views[1]
    ratio = on_demand.price_to_user_spend_view(user_fv, item_fv)
    return user_fv, ratio, hm3_v1_service(user_fv, item_fv, ratio)


@pytest.mark.parametrize("damage", ["no service", "no view", "wrong dtype"])
def test_a_store_without_our_contract_fails_early_naming_what_differs(
    tmp_path: Path, timeline: Path, damage: str
) -> None:
    """The store is checked before any retrieval: nothing is written, and the error names the
    service, view or field and what feature_repo/ expects."""
    store = applied_store(tmp_path / "store", timeline)
    if damage == "no service":
        store.delete_feature_service("hm3_v1")
        expected = r"feature service 'hm3_v1' is missing \(registered: \[\]\)"
    elif damage == "no view":
        store.delete_feature_view("item_features")
        expected = "feature view 'item_features' of service 'hm3_v1' is missing; expected a batch"
    else:
        store.apply(list(_retyped_user_view("Int64")))
        expected = (
            "feature view 'user_features', field 'user_ctr_7d': dtype Int64, expected Float64"
        )
    yaml_file = tmp_path / "store" / "feature_store.yaml"
    out = tmp_path / "out"
    with pytest.raises(features.StoreContractError, match=expected) as raised:
        features.retrieve_world(str(timeline), str(out), feature_store=str(yaml_file))
    assert str(raised.value).startswith(f"feature store {yaml_file}: ")
    assert not out.exists()


def test_our_own_applied_store_passes_the_contract_check(tmp_path: Path, timeline: Path) -> None:
    store = applied_store(tmp_path / "store", timeline)
    infos = features.check_store_contract(store)
    assert infos == features.resolve_features(store)
    with pytest.raises(
        features.StoreContractError, match="'hm3_v9' is not defined in feature_repo"
    ):
        features.check_store_contract(store, "hm3_v9")
