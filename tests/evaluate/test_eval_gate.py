"""Deploy gate decisions and the champion registry record, local and on a GCS emulator."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from model import storage
from model.evaluate.gate import GateConfig, decide, run_gate
from model.evaluate.registry import (
    RegistryError,
    RegistryRecord,
    read_registry,
    registry_uri,
    write_registry,
)

CONFIG = GateConfig(min_cvr_auc=0.6, tolerance=0.01)


def _record(**overrides: object) -> RegistryRecord:
    values: dict = {"model_uri": "/models/v1", "kind": "hm3", "version": "v1", "cvr_auc": 0.7}
    values.update(overrides)
    return RegistryRecord(**values)


def test_candidate_better_than_champion_deploys() -> None:
    decision = decide(0.72, 0.70, CONFIG, champion_version="v1")
    assert decision.deploy and decision.verdict == "deploy"
    assert "champion v1 0.7000 - tolerance 0.0100 = 0.6900" in decision.reasons[1]


def test_candidate_worse_within_tolerance_deploys() -> None:
    assert decide(0.695, 0.70, CONFIG).deploy


def test_candidate_worse_beyond_tolerance_holds() -> None:
    decision = decide(0.68, 0.70, CONFIG)
    assert not decision.deploy and decision.verdict == "hold"
    assert "0.6800 < champion 0.7000" in decision.reasons[1]


def test_candidate_below_minimum_holds_even_if_better() -> None:
    decision = decide(0.59, 0.50, CONFIG)
    assert not decision.deploy
    assert decision.reasons[0] == "candidate CVR AUC 0.5900 < minimum 0.6000"


def test_first_deployment_needs_only_the_minimum() -> None:
    assert decide(0.61, None, CONFIG).deploy
    assert not decide(0.55, None, CONFIG).deploy
    assert not decide(None, None, CONFIG).deploy


def test_config_validation_names_the_field() -> None:
    with pytest.raises(ValueError, match="min_cvr_auc must be in \\[0, 1\\], got 1.5"):
        GateConfig(min_cvr_auc=1.5)
    with pytest.raises(ValueError, match="tolerance must be in \\[0, 1\\), got -0.1"):
        GateConfig(tolerance=-0.1)


def test_registry_roundtrip_and_run_gate_local(tmp_path: Path) -> None:
    deploy = str(tmp_path / "deploy")
    assert read_registry(deploy) is None
    assert run_gate(0.65, deploy, CONFIG, lambda r: pytest.fail("no champion")).deploy
    write_registry(deploy, _record())
    record = read_registry(deploy)
    assert record == _record(deployed_at=record.deployed_at)
    # The champion is re-scored on the same data: 0.75 there, so 0.72 is worse beyond tolerance.
    scored: list[str] = []

    def score(rec: RegistryRecord) -> float:
        scored.append(rec.model_uri)
        return 0.75

    decision = run_gate(0.72, deploy, CONFIG, score)
    assert scored == ["/models/v1"] and not decision.deploy
    assert decision.champion_cvr_auc == 0.75 and decision.champion_version == "v1"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "not valid JSON"),
        ("[1, 2]", "expected a JSON object, got list"),
        ('{"kind": "hm3", "version": "v1", "cvr_auc": 0.7}', r"missing field\(s\) \['model_uri'\]"),
        (
            '{"model_uri": "m", "kind": "hm3", "version": "v1", "cvr_auc": "high"}',
            "cvr_auc must be a number in \\[0, 1\\], got 'high'",
        ),
        (
            '{"model_uri": "m", "kind": "hm3", "version": "v1", "cvr_auc": 0.7, "x": 1}',
            r"unknown field\(s\) \['x'\]",
        ),
        ("", "not valid JSON"),
    ],
)
def test_corrupted_record_is_a_clear_error_and_no_deploy(
    tmp_path: Path, content: str, message: str
) -> None:
    deploy = str(tmp_path / "deploy")
    storage.write_text_atomic(registry_uri(deploy), content)
    with pytest.raises(RegistryError, match=message) as err:
        read_registry(deploy)
    assert "registry.json" in str(err.value)
    decision = run_gate(0.99, deploy, CONFIG, lambda r: pytest.fail("must not score"))
    assert not decision.deploy
    assert "corrupt" in decision.reasons[0] and "registry.json" in decision.reasons[0]


def test_champion_that_cannot_be_evaluated_holds(tmp_path: Path) -> None:
    deploy = str(tmp_path / "deploy")
    write_registry(deploy, _record(model_uri=str(tmp_path / "gone")))

    def score(rec: RegistryRecord) -> float:
        raise FileNotFoundError(f"no such file: {rec.model_uri}")

    decision = run_gate(0.9, deploy, CONFIG, score)
    assert not decision.deploy and "could not be evaluated" in decision.reasons[0]


def test_registry_on_gcs(gcs_bucket: str) -> None:
    deploy = f"{gcs_bucket}/deploy-gate"
    assert read_registry(deploy) is None
    write_registry(deploy, _record(model_uri=f"{gcs_bucket}/models/v1"))
    assert read_registry(deploy).model_uri == f"{gcs_bucket}/models/v1"
    storage.write_text_atomic(registry_uri(deploy), json.dumps({"kind": 1}))
    with pytest.raises(RegistryError, match="gs://hm3-test/deploy-gate/registry.json"):
        read_registry(deploy)
