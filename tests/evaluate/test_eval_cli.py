"""`hm3 evaluate` on real artifacts: metrics.json, report and gate decision; bad options."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from pipelines.cli import app


def test_cli_evaluate_with_gate(
    trained_models: dict[str, Path], eval_table: Path, small_world: Path, tmp_path: Path
) -> None:
    out = tmp_path / "eval"
    result = CliRunner().invoke(
        app,
        [
            "evaluate",
            "--model",
            str(trained_models["hm3"]),
            "--model",
            f"base={trained_models['naive']}",
            "--data",
            str(eval_table),
            "--out",
            str(out),
            "--truth",
            str(small_world / "truth.parquet"),
            "--deploy-dir",
            str(tmp_path / "deploy"),
            "--min-cvr-auc",
            "0.0",
        ],
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["gate"]["decision"] == "deploy"  # first deployment, minimum 0
    assert summary["gate"]["reasons"][1] == "no champion deployed: first deployment"
    saved = json.loads((out / "metrics.json").read_text())
    assert list(saved) == ["hm3", "base", "oracle", "gaps"]
    assert set(saved["gaps"]) == {"hm3-base"}
    assert summary["auc"]["hm3"]["cvr"] == round(saved["hm3"]["cvr"]["auc"], 4)
    assert (
        json.loads((out / "gate.json").read_text())["candidate_cvr_auc"]
        == (saved["hm3"]["cvr"]["auc"])
    )
    assert "evaluate --model" in (out / "report.html").read_text()


def test_cli_evaluate_rejects_bad_options(
    tmp_path: Path, eval_table: Path, trained_models: dict[str, Path]
) -> None:
    runner = CliRunner()
    result = runner.invoke(
        app, ["evaluate", "--model", "m", "--data", "d", "--out", str(tmp_path), "--split", "x"]
    )
    assert result.exit_code == 2 and "split must be one of" in result.output
    model = str(trained_models["naive"])
    result = runner.invoke(
        app,
        ["evaluate", "--model", model, "--data", str(tmp_path / "none.parquet"), "--out", "o"],
    )
    assert result.exit_code == 2 and "none.parquet" in result.output
    missing = str(tmp_path / "no-model")
    result = runner.invoke(
        app, ["evaluate", "--model", missing, "--data", str(eval_table), "--out", "o"]
    )
    assert result.exit_code == 2 and "no-model" in result.output
