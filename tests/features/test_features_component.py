"""The `retrieve_features` component and the `hm3 features` CLI on a simulated world."""

from __future__ import annotations

import json
import shutil

import pyarrow.compute as pc
import pyarrow.parquet as pq
from kfp import dsl
from typer.testing import CliRunner

from components.retrieve_features import retrieve_features
from model.data import features
from pipelines.cli import app


def imps_first(world) -> tuple[int, int]:
    row = pq.read_table(world / "impressions.parquet", columns=["user_id", "item_id"]).slice(0, 1)
    return row["user_id"][0].as_py(), row["item_id"][0].as_py()


def test_component_writes_one_row_per_impression_with_kinds(tmp_path, small_world):
    out = tmp_path / "features"
    artifact = dsl.Dataset(name="features", uri=str(out))
    metrics = dsl.Metrics(name="metrics", uri=str(tmp_path / "metrics"))
    repo = dsl.Artifact(name="feature_store", uri=str(tmp_path / "repo"))
    retrieve_features.python_func(
        world=dsl.Dataset(name="world", uri=str(small_world)),
        features=artifact,
        metrics=metrics,
        feature_store=repo,
    )
    table = pq.read_table(out / features.FEATURES_FILE)
    impressions = pq.read_table(small_world / "impressions.parquet", columns=["impression_id"])
    assert table.num_rows == impressions.num_rows
    assert table["impression_id"].equals(impressions["impression_id"])  # order kept
    kinds = features.read_feature_kinds(str(out / features.FEATURES_FILE))
    assert list(kinds) == table.column_names[1:]
    assert sum(table[c].null_count for c in table.column_names) == 0
    report = json.loads((out / features.REPORT_FILE).read_text())
    assert metrics.metadata["rows"] == impressions.num_rows
    assert metrics.metadata["filled_total"] == sum(report["filled"].values())
    assert artifact.metadata["feature_service"] == "hm3_v1"
    assert repo.metadata["online_store"] == "sqlite"
    # The repo is relocatable (a KFP artifact moves between steps): serve from a copy of it.
    moved = tmp_path / "elsewhere"
    shutil.copytree(tmp_path / "repo", moved)
    shutil.rmtree(tmp_path / "repo")
    user, item = imps_first(small_world)
    online = features.online_features(
        features.open_store(moved), [{"user_id": user, "item_id": item}]
    )
    assert online.missing == {}, online.missing  # the latest snapshots are in the online store
    # Point in time on real data: each impression sees the snapshot of its own day (00:00 UTC).
    users = pq.read_table(small_world / "users.parquet").to_pandas()
    imps = pq.read_table(small_world / "impressions.parquet").to_pandas()
    joined = imps.assign(event_timestamp=imps["ts"].dt.floor("D")).merge(
        users, on=["user_id", "event_timestamp"], how="left"
    )
    got = table.to_pandas()
    assert (got["user_ctr_7d"].to_numpy() == joined["user_ctr_7d"].to_numpy()).all()
    assert pc.min(table["price"]).as_py() > 0


def test_cli_apply_materialize_online_retrieve(tmp_path, small_world):
    runner = CliRunner()
    repo = tmp_path / "repo"
    result = runner.invoke(
        app, ["features", "apply", "--repo", str(repo), "--data", str(small_world)]
    )
    assert result.exit_code == 0, result.output
    checks = json.loads(result.stdout)
    assert [c["rows"] for c in checks] == [3000 * 7, 800 * 7]
    result = runner.invoke(app, ["features", "materialize", "--repo", str(repo)])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["views"] == ["user_features", "item_features"]
    result = runner.invoke(
        app,
        [
            "features",
            "online",
            "--repo",
            str(repo),
            "--user-id",
            "5",
            "--item-id",
            "7",
            "--user-id",
            "999999",
            "--item-id",
            "7",
        ],
    )
    assert result.exit_code == 0, result.output
    online = json.loads(result.stdout)
    assert online["missing"]["age_bucket"] == [1]
    assert len(online["values"]["price_to_user_spend"]) == 2
    out = tmp_path / "out"
    result = runner.invoke(
        app,
        [
            "features",
            "retrieve",
            "--repo",
            str(repo),
            "--out",
            str(out),
            "--impressions",
            str(small_world / "impressions.parquet"),
        ],
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["rows"] == 60_000
    assert pq.read_metadata(out / features.FEATURES_FILE).num_rows == 60_000


def test_cli_errors_are_clear(tmp_path, small_world):
    runner = CliRunner()
    result = runner.invoke(app, ["features", "apply", "--repo", str(tmp_path / "r")])
    assert result.exit_code == 2
    assert "give --data, or both --users and --items" in result.output
    result = runner.invoke(
        app,
        [
            "features",
            "apply",
            "--repo",
            str(tmp_path / "r"),
            "--data",
            str(small_world),
            "--online",
            "memcached",
        ],
    )
    assert result.exit_code == 2
    assert "online_store must be one of" in result.output


def test_component_compiles_with_typed_artifacts(tmp_path):
    import yaml
    from kfp import compiler

    path = tmp_path / "retrieve_features.yaml"
    compiler.Compiler().compile(retrieve_features, str(path))
    spec = yaml.safe_load(path.read_text())
    inputs = spec["root"]["inputDefinitions"]
    outputs = spec["root"]["outputDefinitions"]["artifacts"]
    assert inputs["artifacts"]["world"]["artifactType"]["schemaTitle"] == "system.Dataset"
    assert inputs["parameters"]["feature_service"]["defaultValue"] == "hm3_v1"
    assert outputs["features"]["artifactType"]["schemaTitle"] == "system.Dataset"
    assert outputs["metrics"]["artifactType"]["schemaTitle"] == "system.Metrics"
