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
