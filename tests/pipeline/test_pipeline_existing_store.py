"""`hm3 run --feature-store FILE`: the whole pipeline on an existing Feast store, end to end."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq

from model.data import features, schema
from model.world.mechanism import WorldConfig
from model.world.simulator import simulate

ROOT = Path(__file__).resolve().parents[2]


def test_hm3_run_on_an_existing_store_registers_nothing_and_serves_from_it(
    tmp_path: Path,
) -> None:
    """A team's store, applied and materialized beforehand over the world's users and items:
    the run reads the raw logs, takes features from that store without touching its registry,
    and the local endpoint reads that store's online store."""
    world = tmp_path / "world"
    simulate(WorldConfig(impressions=20_000, seed=3, users=2_000, items=500, days=7), world)
    store_dir = tmp_path / "team-feast"
    store = features.open_store(
        features.write_repo_config(features.StoreConfig(repo_dir=str(store_dir)))
    )
    features.apply(store, str(world / "users.parquet"), str(world / "items.parquet"))
    features.materialize(store)
    registry = store_dir / features.REGISTRY_DB
    registered = registry.read_bytes()
    yaml_file = store_dir / "feature_store.yaml"

    out = tmp_path / "run"
    proc = subprocess.run(
        [
            sys.executable, "-m", "pipelines.cli", "run",
            "--source-uri", str(world),
            "--feature-store", str(yaml_file),
            "--out", str(out),
            "--epochs", "1",
            "--min-cvr-auc", "0",
        ],
        cwd=ROOT,
        env=os.environ | {"COLUMNS": "400"},  # the summary's long paths stay on one line
        capture_output=True,
        text=True,
        timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert registry.read_bytes() == registered  # nothing was registered
    reference = json.loads((out / "feature_store" / features.REFERENCE_FILE).read_text())
    assert reference == {"feature_store": str(yaml_file)}
    assert pq.read_metadata(out / "features" / features.FEATURES_FILE).num_rows == 20_000
    (record,) = (out / "kfp").rglob("deploy-model*/deployment")
    prediction = json.loads(record.read_text())["prediction"]
    # User 1 and item 1 are in the store's online store: only the request context defaults.
    assert prediction["unknown_ids"] == []
    assert set(prediction["defaulted"]) <= set(schema.CONTEXT_FEATURES), prediction
    assert f"features from the Feast store {yaml_file} online store" in proc.stdout, proc.stdout


def test_hm3_run_refuses_a_feature_store_that_is_not_there(tmp_path: Path) -> None:
    """A wrong path is a usage error before anything runs, not a failed step later."""
    from typer.testing import CliRunner

    from pipelines.cli import app

    missing = tmp_path / "nope" / "feature_store.yaml"
    out = tmp_path / "run"
    result = CliRunner().invoke(
        app, ["run", "--feature-store", str(missing), "--out", str(out), "--impressions", "1000"]
    )
    assert result.exit_code == 2, result.output
    # The console folds long paths anywhere: compare without the whitespace.
    expected = f"--feature-store '{missing}': no such file or folder"
    assert "".join(expected.split()) in "".join(result.output.split()), result.output
    assert not out.exists()
