"""The training table: labels joined with features in one Parquet file.

The training table is `labels.parquet` (one row per impression, graph labels) inner-joined with
`features.parquet` (Feast point-in-time features) on `impression_id`. Its Arrow schema keeps the
feature kinds metadata of the features file, so the model knows each column's kind without a
hard-coded list. It is split by time by `model.data.split.split_by_time` and encoded into tensors
by `model.data.dataset.TensorData`.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pyarrow.compute as pc
import pyarrow.parquet as pq

from model.data import schema

log = logging.getLogger(__name__)


def join_training_table(
    labels_path: str | Path, features_path: str | Path, out_path: str | Path
) -> Path:
    """Inner-join labels and features on impression_id into one Parquet training table.

    Rows present on one side only are counted and logged (features are retrieved for every
    labelled impression, so a mismatch means an upstream problem worth seeing, not a silent drop).

    Args:
        labels_path: labels.parquet of the label builder.
        features_path: features.parquet of feature retrieval (with the kinds metadata).
        out_path: Where to write the joined table.

    Returns:
        The output path.

    Raises:
        schema.SchemaError: If a required column is missing or mistyped.
        ValueError: If the features lack the kinds metadata or an impression_id repeats.
    """
    labels = pq.read_table(labels_path)
    features = pq.read_table(features_path)
    schema.validate_columns(labels.schema, schema.IMPRESSIONS, str(labels_path))
    for name in schema.LABEL_COLUMNS:
        if name not in labels.column_names:
            raise schema.SchemaError(f"{labels_path}: missing label column {name!r} (int8 0/1)")
    if "impression_id" not in features.column_names:
        raise schema.SchemaError(f"{features_path}: missing column 'impression_id'")
    meta = features.schema.metadata or {}
    if schema.FEATURE_KINDS_KEY not in meta:
        raise ValueError(f"{features_path}: no {schema.FEATURE_KINDS_KEY.decode()} metadata")
    for table, path in ((labels, labels_path), (features, features_path)):
        ids = table["impression_id"]
        if pc.count_distinct(ids).as_py() != len(ids):
            raise ValueError(f"{path}: impression_id is not unique")
    clash = (set(features.column_names) & set(labels.column_names)) - {"impression_id"}
    if clash:
        raise ValueError(f"{features_path}: columns {sorted(clash)} also exist in the labels")
    joined = labels.join(features, "impression_id", join_type="inner")
    missing = labels.num_rows - joined.num_rows
    if missing or features.num_rows != joined.num_rows:
        log.warning(
            "join: %d labelled impressions without features, %d feature rows without labels",
            missing,
            features.num_rows - joined.num_rows,
        )
    joined = joined.sort_by("ts").replace_schema_metadata(
        {schema.FEATURE_KINDS_KEY: meta[schema.FEATURE_KINDS_KEY]}
    )
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(joined, out)
    log.info("training table: %d rows -> %s", joined.num_rows, out)
    return out
