"""Evaluation scores each model on its own test rows: the split comes from the model's config."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq
import pytest

from model.data.split import split_by_time
from model.evaluate.evaluation import evaluate_models

SPLIT = (0.9, 0.05, 0.05)


@pytest.fixture(scope="module")
def late_split_model(eval_table: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from model.train.trainer import TrainConfig, train

    out = tmp_path_factory.mktemp("late-split") / "naive"
    config = TrainConfig(
        model_kind="naive",
        embedding_dim=4,
        hidden=(8,),
        dropout=0.0,
        batch_size=4096,
        epochs=1,
        hash_buckets=1_000,
        split=SPLIT,
        device="cpu",
        progress=False,
    )
    train(eval_table, out, config)
    return out


def test_evaluated_rows_are_exactly_the_models_test_rows(
    eval_table: Path, late_split_model: Path, tmp_path: Path
) -> None:
    evaluation = evaluate_models({"late": str(late_split_model)}, str(eval_table), tmp_path)
    test_rows = split_by_time(pq.read_table(eval_table), SPLIT)["test"].to_pandas()
    default_test = split_by_time(pq.read_table(eval_table))["test"]
    assert evaluation.data.rows == len(test_rows) != default_test.num_rows
    assert evaluation.data.ts_min == str(test_rows["ts"].min())
    assert evaluation.data.ts_max == str(test_rows["ts"].max())


def test_models_trained_on_different_splits_are_refused_naming_both(
    eval_table: Path, late_split_model: Path, trained_models: dict[str, Path], tmp_path: Path
) -> None:
    models = {"hm3": str(trained_models["hm3"]), "late": str(late_split_model)}
    with pytest.raises(ValueError, match=r"'hm3' on \[0.7, 0.15, 0.15\], 'late' on \[0.9"):
        evaluate_models(models, str(eval_table), tmp_path)
