"""The whole pipeline on kfp.local, end to end, on a small simulated world."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from safetensors.numpy import load_file

from pipelines.local_run import LocalRunConfig, run_local


def _small_run(out: Path) -> LocalRunConfig:
    # min_cvr_auc 0: the deploy branch must run (the gate's own rules are tested elsewhere).
    return LocalRunConfig(
        out=out, impressions=20_000, users=2_000, items=500, epochs=1, min_cvr_auc=0.0
    )


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory):
    return run_local(_small_run(tmp_path_factory.mktemp("run")))


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
    # The champion record carries the CVR AUC the gate judged, the one in metrics.json.
    metrics = json.loads((run.out / "metrics.json").read_text())
    assert registry["cvr_auc"] == pytest.approx(metrics["hm3"]["cvr"]["auc"], abs=1e-6)


def test_the_local_endpoint_reads_features_from_the_runs_feast_store(run) -> None:
    """User 1 and item 1 exist in the world: Feast fills their features, nothing is defaulted
    except the request context the demo instance leaves out."""
    from model.data import schema

    prediction = run.deployment["prediction"]
    assert prediction["unknown_ids"] == []
    assert set(prediction["defaulted"]) <= set(schema.CONTEXT_FEATURES), prediction["defaulted"]
    assert (run.out / "feature_store" / "feature_store.yaml").exists()


def test_corrupt_artifacts_between_steps_give_clear_errors(run, tmp_path: Path) -> None:
    """A truncated training table or an altered model is refused, naming the file."""
    import pyarrow as pa

    from model.evaluate.evaluation import evaluate_models
    from model.storage import ArtifactError
    from model.train.trainer import TrainConfig, train

    (table,) = run.run_dir.rglob("join-training-table/table")
    truncated = tmp_path / "table.parquet"
    truncated.write_bytes(table.read_bytes()[:-200])
    with pytest.raises(pa.ArrowInvalid, match="table.parquet.*corrupted"):
        train(truncated, tmp_path / "model", TrainConfig(epochs=1, progress=False))

    altered = tmp_path / "hm3"
    shutil.copytree(run.out / "models" / "hm3", altered)
    weights = bytearray((altered / "model.safetensors").read_bytes())
    weights[-1] ^= 0xFF  # one flipped bit pattern in the last weight
    (altered / "model.safetensors").write_bytes(bytes(weights))
    with pytest.raises(ArtifactError, match="model.safetensors does not match its SHA-256"):
        evaluate_models([str(altered)], str(table), tmp_path / "eval")


def test_same_parameters_and_seed_give_the_same_labels_models_and_metrics(
    run, tmp_path: Path
) -> None:
    """A second run, from scratch (kfp.local does not cache), reproduces the first on CPU."""
    again = run_local(_small_run(tmp_path / "again"))
    for table in ("labels/labels.parquet", "features/features.parquet"):
        assert pq.read_table(again.out / table).equals(pq.read_table(run.out / table)), table
    for kind in ("hm3", "esm2", "esmm", "naive"):
        # Tensors, not file bytes: safetensors writes its metadata map in hash order.
        first = load_file(run.out / "models" / kind / "model.safetensors")
        second = load_file(again.out / "models" / kind / "model.safetensors")
        assert first.keys() == second.keys(), kind
        for name, tensor in first.items():
            np.testing.assert_array_equal(second[name], tensor, err_msg=f"{kind} {name}")
    assert json.loads((again.out / "metrics.json").read_text()) == json.loads(
        (run.out / "metrics.json").read_text()
    )
    assert again.decision == run.decision


def test_pipeline_reads_logs_and_keeps_its_registry_in_gcs(
    small_world: Path, gcs_bucket: str, tmp_path: Path
) -> None:
    """Raw logs ingested from gs://; the served model and the champion registry in gs://."""
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
    # The champion was published to gs:// and the local endpoint served it from there.
    assert registry["model_uri"] == f"{deploy_dir}/models/{registry['version']}"
    assert storage.exists(f"{registry['model_uri']}/model.safetensors")
    assert result.deployment["model_uri"] == registry["model_uri"]
    metrics = json.loads((result.out / "metrics.json").read_text())
    assert "oracle" in metrics  # truth.parquet came along from gs://


def test_a_failed_step_fails_the_run_with_its_error_visible(
    small_world: Path, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """Truncated raw logs: load_logs fails, the run stops there, and its error is shown."""
    logs = tmp_path / "logs"
    logs.mkdir()
    for name in ("impressions", "events", "users", "items"):
        data = (small_world / f"{name}.parquet").read_bytes()
        (logs / f"{name}.parquet").write_bytes(data[: len(data) // 2] if name == "events" else data)
    cfg = LocalRunConfig(out=tmp_path / "run", source_uri=str(logs), min_cvr_auc=0.0)
    with pytest.raises(RuntimeError, match="load-logs"):
        run_local(cfg)
    shown = capfd.readouterr()
    assert "events: not a readable Parquet table (truncated or corrupt?)" in shown.out + shown.err
    assert not list((tmp_path / "run" / "kfp").rglob("train-model*"))  # nothing ran after it
