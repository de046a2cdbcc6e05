"""The whole pipeline on kfp.local, end to end, on a small simulated world."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipelines.local_run import LocalRunConfig, run_local


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("run")
    # min_cvr_auc 0: the deploy branch must run (the gate's own rules are tested elsewhere).
    cfg = LocalRunConfig(
        out=out, impressions=20_000, users=2_000, items=500, epochs=1, min_cvr_auc=0.0
    )
    return run_local(cfg)


def test_outputs_land_in_the_documented_layout(run) -> None:
    out: Path = run.out
    for kind in ("hm3", "esm2", "esmm", "naive"):
        config = json.loads((out / "models" / kind / "config.json").read_text())
        assert config["kind"] == kind
        assert (out / "models" / kind / "model.safetensors").exists()
    assert (out / "labels" / "labels.parquet").exists()
    assert (out / "features" / "features.parquet").exists()
    assert "<html" in (out / "report.html").read_text().lower()
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics) >= {"hm3", "esm2", "esmm", "naive", "oracle"}
    assert 0.0 <= metrics["hm3"]["cvr"]["auc"] <= 1.0
    assert set(metrics["hm3"]) >= {"ctr", "cvr", "ctcvr", "ct_micro", "ct_macro"}


def test_gate_passes_and_the_local_endpoint_answered(run) -> None:
    assert run.decision == "deploy"
    assert run.deployment is not None and run.deployment["mode"] == "local"
    prediction = run.deployment["prediction"]
    flat = json.dumps(prediction)
    for key in ("p_ctr", "p_cvr", "p_ctcvr", "p_ct_micro", "p_ct_macro"):
        assert key in flat
    registry = json.loads((run.out / "deployment" / "registry.json").read_text())
    assert registry["kind"] == "hm3"


def test_the_local_endpoint_reads_features_from_the_runs_feast_store(run) -> None:
    """User 1 and item 1 exist in the world: Feast fills their features, nothing is defaulted
    except the request context the demo instance leaves out."""
    from model import schema

    prediction = run.deployment["prediction"]
    assert prediction["unknown_ids"] == []
    assert set(prediction["defaulted"]) <= set(schema.CONTEXT_FEATURES), prediction["defaulted"]
    assert (run.out / "feature_store" / "feature_store.yaml").exists()


def test_pipeline_reads_logs_and_keeps_its_registry_in_gcs(
    small_world: Path, gcs_bucket: str, tmp_path: Path
) -> None:
    """Raw logs ingested from gs:// and the champion registry written to gs:// (emulator)."""
    from model import storage

    logs = f"{gcs_bucket}/logs-{tmp_path.name}"
    for name in ("impressions", "events", "users", "items", "truth"):
        data = (small_world / f"{name}.parquet").read_bytes()
        storage.write_bytes_atomic(f"{logs}/{name}.parquet", data)
    deploy_dir = f"{gcs_bucket}/deploy-{tmp_path.name}"
    cfg = LocalRunConfig(
        out=tmp_path / "run", source_uri=logs, deploy_dir=deploy_dir, epochs=1, min_cvr_auc=0.0
    )
    result = run_local(cfg)
    assert result.decision == "deploy"
    registry = json.loads(storage.read_text(f"{deploy_dir}/registry.json"))
    assert registry["kind"] == "hm3"
    metrics = json.loads((result.out / "metrics.json").read_text())
    assert "oracle" in metrics  # truth.parquet came along from gs://
