"""The FeatureService contract, and the repo as Feast's own CLI sees it."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
from feature_helpers import applied_store

from feature_repo import definitions
from feature_repo.feature_services import HM3_V1
from model.data import features, schema

REPO = Path(__file__).resolve().parents[2] / "feature_repo"


def test_service_holds_every_view_feature_once_with_kind_and_default():
    defs = definitions.build("users.parquet", "items.parquet")
    (service,) = defs.services
    assert service.name == HM3_V1
    views = {v.name: v for v in (*defs.feature_views, *defs.on_demand_views)}
    infos = features.service_features(service, views)
    declared = [f.name for v in defs.feature_views for f in v.features] + [
        f.name for v in defs.on_demand_views for f in v.features
    ]
    assert [f.name for f in infos] == declared
    assert {f.view for f in infos} == {"user_features", "item_features", "price_to_user_spend"}
    for info in infos:
        assert info.kind in (schema.KIND_CATEGORICAL, schema.KIND_DENSE)
        if info.kind == schema.KIND_CATEGORICAL:
            assert info.dtype == "int64" and info.default == -1
    # The users/items contract columns are exactly the batch features (plus key and timestamp).
    user_cols = set(schema.USERS.names) - {"user_id", "event_timestamp"}
    item_cols = set(schema.ITEMS.names) - {"item_id", "event_timestamp"}
    assert {f.name for f in infos if f.view == "user_features"} == user_cols
    assert {f.name for f in infos if f.view == "item_features"} == item_cols
    assert features.feature_kinds(infos)["price_to_user_spend"] == schema.KIND_DENSE
    assert features.feature_defaults(infos)["price_to_user_spend"] == 1.0


def test_registry_round_trip_keeps_kinds_and_defaults(tmp_path, timeline):
    """Kinds and defaults read back from the registry equal the ones in the definitions."""
    store = applied_store(tmp_path / "repo", timeline)
    defs = definitions.build("u", "i")
    views = {v.name: v for v in (*defs.feature_views, *defs.on_demand_views)}
    assert features.resolve_features(store) == features.service_features(defs.services[0], views)


def test_retrieved_table_carries_kinds_metadata(tmp_path, timeline):
    store = applied_store(tmp_path / "repo", timeline)
    impressions = tmp_path / "impressions.parquet"
    import pyarrow as pa
    from feature_helpers import T0

    pq.write_table(
        pa.Table.from_pylist(
            [
                {
                    "impression_id": "a",
                    "user_id": 1,
                    "item_id": 1,
                    "ts": T0,
                    "position": 1,
                    "scene": "home",
                    "device": "ios",
                },
                {
                    "impression_id": "b",
                    "user_id": 9,
                    "item_id": 2,
                    "ts": T0,
                    "position": 2,
                    "scene": "home",
                    "device": "web",
                },
            ],
            schema=schema.IMPRESSIONS,
        ),
        impressions,
    )
    out = tmp_path / "features.parquet"
    report = features.retrieve_historical(store, str(impressions), str(out))
    table = pq.read_table(out)
    infos = features.resolve_features(store)
    assert table.column_names == ["impression_id", *(f.name for f in infos)]
    assert table["impression_id"].to_pylist() == ["a", "b"]
    assert features.read_feature_kinds(str(out)) == features.feature_kinds(infos)
    assert report.rows == 2
    assert report.filled["age_bucket"] == 1  # user 9 is unknown
    assert table["age_bucket"].to_pylist() == [3, -1]


def test_feast_cli_apply_and_materialize(tmp_path, timeline):
    """`feast apply` / `feast materialize` in a copy of feature_repo, as a Feast user runs them."""
    repo = tmp_path / "feature_repo"
    shutil.copytree(REPO, repo, ignore=shutil.ignore_patterns("data", "__pycache__"))
    shutil.copytree(timeline, repo / "data")
    feast = [str(Path(sys.executable).parent / "feast")]
    subprocess.run([*feast, "apply"], cwd=repo, check=True, capture_output=True)
    subprocess.run(
        [*feast, "materialize", "2026-09-30T00:00:00", "2026-10-04T00:00:00"],
        cwd=repo,
        check=True,
        capture_output=True,
    )
    store = features.open_store(repo)
    assert [s.name for s in store.list_feature_services()] == [HM3_V1]
    result = features.online_features(store, [{"user_id": 1, "item_id": 1}])
    assert result.values["user_ctr_7d"] == [0.3]
    assert result.values["price_to_user_spend"] == [0.4]  # 20 / 50
