"""Where the served network runs: `--device` resolution and the row fast path's results."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from model.artifact import load_model, resolve_device


def test_auto_is_cpu_here_and_cuda_is_refused_without_a_gpu(artifact: Path) -> None:
    model = load_model(artifact, device="auto")
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert model.device.type == expected
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            load_model(artifact, device="cuda")
    with pytest.raises(ValueError, match="device must be"):
        resolve_device("tpu")


def test_records_and_frames_predict_the_same(artifact: Path) -> None:
    model = load_model(artifact)
    rows = [{"user_id": 1, "item_id": 2}, {"user_id": 7, "item_id": 3, "position": 4}, {}]
    names = model.feature_spec.names
    by_frame = model.predict(pd.DataFrame.from_records(rows, columns=names))
    by_rows = model.predict_records(rows)
    assert by_rows.keys() == by_frame.keys() == set(model.tasks)
    for task in model.tasks:
        np.testing.assert_array_equal(by_rows[task], by_frame[task])
