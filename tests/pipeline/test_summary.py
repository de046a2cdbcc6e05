"""What `hm3 run` prints about the comparison: the candidate sentence and the convergence line."""

from __future__ import annotations

import json
from pathlib import Path

from pipelines.summary import candidate_sentence, convergence_line

METRICS = {
    "hm3": {"cvr": {"auc": 0.74}},
    "esm2": {"cvr": {"auc": 0.75}},
    "naive": {"cvr": {"auc": 0.77}},
    "oracle": {"cvr": {"auc": 0.83}},
}


def _gaps(lo: float, hi: float) -> dict:
    return {"hm3-naive": {"cvr": {"mean": (lo + hi) / 2, "lo": lo, "hi": hi}}}


def test_candidate_sentence_names_the_best_baseline_and_reads_the_interval():
    crossing = candidate_sentence(METRICS, _gaps(-0.02, 0.01))
    assert crossing == (
        "hm3 vs best baseline naive: CVR AUC gap -0.0050 [-0.0200, +0.0100] (paired bootstrap "
        "95%): not significant at this size; see bench/quality.py"
    )
    assert candidate_sentence(METRICS, _gaps(0.001, 0.02)).endswith(": significant")
    assert candidate_sentence(METRICS, _gaps(-0.05, -0.01)).endswith(": significantly worse")
    assert candidate_sentence(METRICS, {}).endswith("no paired interval (bootstrap off)")


def _model(models: Path, kind: str, best_epoch: int, epochs: int) -> None:
    folder = models / kind
    folder.mkdir(parents=True)
    config = {"kind": kind, "best_epoch": best_epoch, "train_config": {"epochs": epochs}}
    (folder / "config.json").write_text(json.dumps(config))


def test_convergence_line_names_exactly_the_models_stopped_at_their_budget(tmp_path: Path):
    _model(tmp_path, "hm3", 2, 2)
    _model(tmp_path, "naive", 1, 2)
    _model(tmp_path, "esm2", 6, 6)
    line = convergence_line(tmp_path)
    assert line is not None
    assert line.startswith("not converged: best epoch = epoch budget for esm2 (6), hm3 (2);")
    assert "naive" not in line


def test_no_convergence_line_when_every_model_stopped_early(tmp_path: Path):
    _model(tmp_path, "hm3", 3, 6)
    assert convergence_line(tmp_path) is None
