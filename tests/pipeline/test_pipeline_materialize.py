"""hm3-materialize: incremental materialization of an existing store, on kfp.local and as IR."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml
from feature_helpers import items_table, users_table
from kfp_ir import parse_ir_strictly
from typer.testing import CliRunner

from model.data import features
from pipelines.cli import app


def _store_with_recent_snapshots(folder: Path, now: datetime) -> Path:
    """A store applied over snapshots of a day ago and of ten minutes ago; its yaml."""
    day_ago, just_now = now - timedelta(days=1), now - timedelta(minutes=10)
    spend = {"user_avg_spend": 40.0}
    users = users_table(
        [
            spend | {"user_id": 1, "event_timestamp": day_ago, "user_ctr_7d": 0.1},
            spend | {"user_id": 1, "event_timestamp": just_now, "user_ctr_7d": 0.3},
        ]
    )
    items = items_table(
        [
            {"item_id": 1, "event_timestamp": day_ago, "price": 10.0},
            {"item_id": 1, "event_timestamp": just_now, "price": 20.0},
        ]
    )
    data = folder / "data"
    data.mkdir(parents=True)
    pq.write_table(users, data / "users.parquet")
    pq.write_table(items, data / "items.parquet")
    repo = features.write_repo_config(features.StoreConfig(repo_dir=str(folder / "feast")))
    features.apply(
        features.open_store(repo), str(data / "users.parquet"), str(data / "items.parquet")
    )
    return repo / "feature_store.yaml"


def _online(yaml_file: Path) -> dict[str, list]:
    values = features.online_features(
        features.open_store(yaml_file), [{"user_id": 1, "item_id": 1}]
    ).values
    return {name: values[name] for name in ("user_ctr_7d", "price", "price_to_user_spend")}


def test_materialize_pipeline_loads_what_is_new_up_to_the_run_time(tmp_path: Path) -> None:
    """Run 1 ends an hour ago: the day-old snapshots go online. Run 2 ends at its own run
    time and starts where run 1 ended: the ten-minute-old snapshots replace them."""
    from kfp import local

    from pipelines.pipeline import create_materialize_pipeline

    now = datetime.now(UTC)
    yaml_file = _store_with_recent_snapshots(tmp_path, now)
    assert _online(yaml_file) == {
        "user_ctr_7d": [0.0],
        "price": [0.0],
        "price_to_user_spend": [1.0],
    }  # nothing online yet: the defaults
    local.init(
        runner=local.SubprocessRunner(use_venv=False),
        pipeline_root=str(tmp_path / "kfp"),
        raise_on_error=True,
    )
    pipeline = create_materialize_pipeline()
    an_hour_ago = now - timedelta(hours=1)
    pipeline(feature_store=str(yaml_file), end=an_hour_ago.isoformat())
    assert _online(yaml_file) == {
        "user_ctr_7d": [0.1],
        "price": [10.0],
        "price_to_user_spend": [0.25],
    }
    pipeline(feature_store=str(yaml_file))
    assert _online(yaml_file) == {
        "user_ctr_7d": [0.3],
        "price": [20.0],
        "price_to_user_spend": [0.5],
    }
    store = features.open_store(yaml_file)
    for view in ("user_features", "item_features"):
        assert store.get_feature_view(view).most_recent_end_time >= now


def test_materialize_refuses_a_future_end_and_a_store_without_the_contract(
    tmp_path: Path,
) -> None:
    now = datetime.now(UTC)
    store = features.open_store(_store_with_recent_snapshots(tmp_path, now))
    with pytest.raises(ValueError, match="is in the future"):
        features.materialize_incremental(store, end=now + timedelta(hours=1))
    store.delete_feature_view("item_features")
    with pytest.raises(features.StoreContractError, match="'item_features' of service 'hm3_v1'"):
        features.materialize_incremental(store)


def test_hm3_compile_pipeline_materialize(tmp_path: Path) -> None:
    """`hm3 compile --pipeline materialize`: one uncached step wired to the store parameter."""
    out = tmp_path / "materialize.yaml"
    uri = "gs://team-feast/prod/feature_store.yaml"
    result = CliRunner().invoke(
        app, ["compile", "--out", str(out), "--pipeline", "materialize", "--feature-store", uri]
    )
    assert result.exit_code == 0, result.output
    docs = list(yaml.safe_load_all(out.read_text()))
    spec = parse_ir_strictly(*docs)
    assert spec.pipeline_info.name == "hm3-materialize"
    pipeline = docs[0]
    assert pipeline["root"]["inputDefinitions"]["parameters"]["feature_store"]["defaultValue"] == (
        uri
    )
    (task,) = pipeline["root"]["dag"]["tasks"].values()
    assert task["inputs"]["parameters"]["feature_store_uri"] == {
        "componentInputParameter": "feature_store"
    }
    assert task.get("cachingOptions", {}).get("enableCache", False) is False
    result = CliRunner().invoke(app, ["compile", "--out", str(out), "--pipeline", "nope"])
    assert result.exit_code == 2
    assert "--pipeline must be one of ('cvr', 'materialize'), got 'nope'" in result.output
