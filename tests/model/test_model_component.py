"""The train_model and join_training_table components on real artifacts and files."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from kfp import compiler, dsl
from kfp.dsl import Dataset, Metrics, Model

from components.train_model import join_training_table, request_gpus, train_model
from model.artifact import load_model
from model.data import schema


def test_join_training_table_component_keeps_kinds(training_table, tmp_path):
    full = pq.read_table(training_table)
    label_cols = [*schema.IMPRESSIONS.names, *schema.LABEL_COLUMNS]
    (tmp_path / "labels").mkdir()
    (tmp_path / "features").mkdir()
    pq.write_table(full.select(label_cols).slice(0, 300), tmp_path / "labels" / "labels.parquet")
    feature_cols = ["impression_id", *[c for c in full.column_names if c not in label_cols]]
    features = full.select(feature_cols).slice(0, 250)
    features = features.replace_schema_metadata(full.schema.metadata)
    pq.write_table(features, tmp_path / "features" / "features.parquet")
    out = Dataset(uri=str(tmp_path / "table.parquet"))
    join_training_table.python_func(
        labels=Dataset(uri=str(tmp_path / "labels")),
        features=Dataset(uri=str(tmp_path / "features")),
        table=out,
    )
    joined = pq.read_table(out.path)
    assert joined.num_rows == 250 and out.metadata["rows"] == 250
    assert (
        joined.schema.metadata[schema.FEATURE_KINDS_KEY]
        == full.schema.metadata[schema.FEATURE_KINDS_KEY]
    )


def test_join_rejects_duplicate_impressions(training_table, tmp_path):
    from model.data.training_table import join_training_table as join

    full = pq.read_table(training_table).slice(0, 10)
    dup = pa.concat_tables([full, full.slice(0, 1)])
    pq.write_table(dup, tmp_path / "labels.parquet")
    pq.write_table(
        full.select(["impression_id", "price"]).replace_schema_metadata(full.schema.metadata),
        tmp_path / "f.parquet",
    )
    with pytest.raises(ValueError, match="impression_id is not unique"):
        join(tmp_path / "labels.parquet", tmp_path / "f.parquet", tmp_path / "out.parquet")


def test_train_model_component_writes_model_and_metrics(tiny_table, tmp_path):
    model = Model(uri=str(tmp_path / "model"))
    metrics = Metrics(uri=str(tmp_path / "metrics"))
    config = {"embedding_dim": 4, "hidden": [8], "epochs": 1, "threads": 1, "device": "cpu"}
    train_model.python_func(
        table=Dataset(uri=str(tiny_table)),
        model=model,
        metrics=metrics,
        model_kind="esmm",
        config_json=json.dumps(config),
    )
    loaded = load_model(model.path)
    assert loaded.kind == "esmm" and model.metadata["version"] == loaded.version
    # The component reports what the trainer recorded in the artifact, not its own guess.
    recorded = json.loads((Path(model.path) / "config.json").read_text())
    assert metrics.metadata["best_epoch"] == recorded["best_epoch"]
    validation = {k: v for k, v in metrics.metadata.items() if k.startswith("validation_")}
    expected = {f"validation_{k}": v for k, v in recorded["validation"].items()}
    assert set(expected) == {"validation_auc_ctr", "validation_auc_cvr", "validation_auc_ctcvr"}
    # Through JSON: a validation split this small has no purchase, so two AUCs are NaN.
    assert json.dumps(validation, sort_keys=True) == json.dumps(expected, sort_keys=True)


def test_gpu_request_compiles_into_the_pipeline_spec(tmp_path):
    @dsl.pipeline(name="train-gpu")
    def pipe():
        data = dsl.importer(artifact_uri="gs://b/t.parquet", artifact_class=Dataset)
        request_gpus(train_model(table=data.output, model_kind="hm3"), gpus=2)

    path = tmp_path / "p.yaml"
    compiler.Compiler().compile(pipe, str(path))
    executors = yaml.safe_load(path.read_text())["deploymentSpec"]["executors"]
    accelerator = executors["exec-train-model"]["container"]["resources"]["accelerator"]
    assert (accelerator["resourceType"], accelerator["resourceCount"]) == ("nvidia.com/gpu", "2")
    assert "resources" not in executors["exec-importer"].get("container", {})
    with pytest.raises(ValueError, match="gpus"):
        request_gpus(None, 0)
