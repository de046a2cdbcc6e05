"""Training end to end on small simulated tables: artifact, determinism, resume, DDP, CLI."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from model_helpers import fast_config
from safetensors.torch import load_file
from typer.testing import CliRunner

from model import artifact
from model.artifact import HISTORY
from model.storage import ArtifactError
from model.train.trainer import TrainConfig, _RunLog, train

ROOT = Path(__file__).resolve().parents[2]
# The trainer ranks float32 logits, the artifact float32 probabilities: equal AUCs but for
# rounding (sigmoid could merge near-equal logits into ties; none do on this data).
AUC_ATOL = 1e-9


@pytest.fixture(scope="module")
def hm3_run(training_table, tmp_path_factory):
    out = tmp_path_factory.mktemp("hm3") / "model"
    return out, train(training_table, out, fast_config(epochs=2))


def test_hm3_learns_and_writes_a_complete_artifact(hm3_run):
    out, result = hm3_run
    assert {p.name for p in out.iterdir()} >= {
        "model.safetensors",
        "config.json",
        "model.pt2",
        "history.json",
        "tensorboard",
        "MANIFEST.json",
    }
    assert not (out / "checkpoints").exists()
    assert list((out / "tensorboard").iterdir())
    history = json.loads((out / "history.json").read_text())
    assert [r["epoch"] for r in history] == [1, 2]
    assert history[1]["train_loss"] < history[0]["train_loss"]
    # 42k training rows are enough to beat chance clearly on every entire-space task.
    assert result.validation["auc_ctr"] > 0.58
    assert result.validation["auc_ctcvr"] > 0.6
    config = json.loads((out / "config.json").read_text())
    assert config["kind"] == "hm3" and config["version"] == result.version
    names = [f["name"] for f in config["feature_spec"]["features"]]
    assert names[:5] == ["user_id", "item_id", "position", "scene", "device"]
    assert "price_to_user_spend" in names


def test_loaded_model_predicts_every_task_and_export_matches(hm3_run, training_table):
    out, _ = hm3_run
    frame = pq.read_table(training_table).slice(0, 500).to_pandas()
    model = artifact.load_model(out)
    assert (model.kind, model.version) == (
        "hm3",
        json.loads((out / "config.json").read_text())["version"],
    )
    preds = model.predict(frame)
    assert set(preds) == {"ctr", "cvr", "ctcvr", "ct_micro", "ct_macro"}
    assert all(p.shape == (500,) for p in preds.values())
    exported = artifact.load_model(out, exported=True).predict(frame)
    for task in preds:
        np.testing.assert_allclose(exported[task], preds[task], rtol=1e-5, atol=1e-7)


# Each output and the label it is scored on (on clicked rows only for CVR), from docs/hm3.md.
VALIDATION_LABELS = {
    "ctr": ("click", False),
    "cvr": ("buy", True),
    "ctcvr": ("buy", False),
    "ct_micro": ("d_micro", False),
    "ct_macro": ("d_macro", False),
}


def test_loaded_artifact_reproduces_the_recorded_validation_auc_of_every_task(
    hm3_run, training_table
):
    # The artifact's predictions on the validation split, scored here with scikit-learn, give
    # the AUCs the trainer recorded for its best epoch: the saved weights are those weights, and
    # each output is the task it is named after.
    from sklearn.metrics import roc_auc_score

    from model.data.split import split_by_time

    out, result = hm3_run
    frame = split_by_time(pq.read_table(training_table))["validation"].to_pandas()
    preds = artifact.load_model(out).predict(frame)
    recorded = json.loads((out / "config.json").read_text())["validation"]
    assert recorded == result.validation
    assert set(recorded) == {f"auc_{task}" for task in VALIDATION_LABELS}
    for task, (label, clicked_only) in VALIDATION_LABELS.items():
        rows = frame["click"].to_numpy() == 1 if clicked_only else slice(None)
        auc = roc_auc_score(frame[label].to_numpy()[rows], preds[task][rows])
        assert auc == pytest.approx(recorded[f"auc_{task}"], abs=AUC_ATOL), task


def test_predict_fills_missing_features_with_defaults(hm3_run, training_table):
    out, _ = hm3_run
    model = artifact.load_model(out)
    frame = pq.read_table(training_table).slice(0, 50).to_pandas()
    sparse = frame[["user_id", "item_id", "scene"]].copy()
    sparse.loc[0, "scene"] = "never-seen-scene"
    preds = model.predict(sparse)
    assert all(np.isfinite(p).all() and p.shape == (50,) for p in preds.values())
    # Missing dense columns take the training mean: same as passing the mean explicitly.
    means = {f.name: f.mean for f in model.feature_spec.dense}
    explicit = model.predict(sparse.assign(**means))
    np.testing.assert_allclose(explicit["cvr"], preds["cvr"], rtol=1e-6)


def test_tampered_artifact_is_refused(hm3_run, tmp_path):
    import shutil

    out, _ = hm3_run
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    with open(copy / "model.safetensors", "r+b") as handle:
        handle.seek(-4, 2)
        handle.write(b"\x00\x01\x02\x03")
    with pytest.raises(ArtifactError):
        artifact.load_model(copy)


def test_training_is_deterministic_on_cpu(tiny_table, tmp_path):
    cfg = fast_config(model_kind="esm2", dropout=0.2, epochs=2)
    a = train(tiny_table, tmp_path / "a", cfg)
    b = train(tiny_table, tmp_path / "b", cfg)
    assert a.history[-1]["train_loss"] == b.history[-1]["train_loss"]
    wa = load_file(str(tmp_path / "a" / "model.safetensors"))
    wb = load_file(str(tmp_path / "b" / "model.safetensors"))
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


def test_resume_after_kill_gives_the_same_final_model(tiny_table, tmp_path):
    cfg = fast_config(model_kind="hm3", epochs=8, batch_size=128, patience=100)
    config_file = tmp_path / "cfg.json"
    config_file.write_text(json.dumps(cfg.to_dict() | {"progress": False}))
    killed = tmp_path / "killed"
    cmd = [
        sys.executable, "-m", "pipelines.cli", "train", "--data", str(tiny_table),
        "--model-kind", "hm3", "--out", str(killed), "--config", str(config_file),
        "--no-progress",
    ]  # fmt: skip
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    history = killed / "history.json"
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if history.exists() and len(json.loads(history.read_text() or "[]")) >= 2:
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.02)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "training finished before it could be killed"
    assert (killed / "checkpoints" / "last.pt").exists()
    assert not (killed / "MANIFEST.json").exists()

    resumed = train(tiny_table, killed, cfg, resume=True)
    straight = train(tiny_table, tmp_path / "straight", cfg)
    assert len(resumed.history) == len(straight.history) == 8
    assert resumed.history[-1]["train_loss"] == straight.history[-1]["train_loss"]
    # json: the tiny table may have no validation purchase, and NaN != NaN in a plain ==.
    assert json.dumps(resumed.validation) == json.dumps(straight.validation)
    wa = load_file(str(killed / "model.safetensors"))
    wb = load_file(str(tmp_path / "straight" / "model.safetensors"))
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


def test_history_json_is_replaced_whole_not_rewritten_in_place(tmp_path):
    """Each epoch's history.json is a new file renamed over the old one (storage.write_text_atomic).

    A reader polling it (the resume test above, a dashboard) then reads one whole history, never
    a truncated or half-written file. Rewritten in place, the file a reader already holds open is
    truncated and refilled under it: that reader reads the new content, not the version it opened.
    """
    log = _RunLog(tmp_path, enabled=True)
    try:
        first = [{"epoch": 1, "train_loss": 0.5}]
        log.write(first[-1], first)
        path = tmp_path / HISTORY
        with path.open() as reader:  # opened before the next epoch's write, read after it
            second = [*first, {"epoch": 2, "train_loss": 0.4}]
            log.write(second[-1], second)
            assert json.loads(reader.read()) == first, "history.json was rewritten in place"
        assert json.loads(path.read_text()) == second
        assert sorted(p.name for p in tmp_path.iterdir()) == [HISTORY, "tensorboard"]  # no temp
    finally:
        log.close()


def test_resume_refuses_a_checkpoint_of_another_config(tiny_table, tmp_path):
    out = tmp_path / "m"
    cfg = fast_config(epochs=1)
    ckpt_dir = out / "checkpoints"
    ckpt_dir.mkdir(parents=True)
    torch.save(
        {"config": json.dumps({"other": 1}), "model": {}, "optimizers": [], "best_model": {},
         "state": "{}"},
        ckpt_dir / "last.pt",
    )  # fmt: skip
    with pytest.raises(ValueError, match="different train config"):
        train(tiny_table, out, cfg, resume=True)


def _ddp_worker(rank: int, world: int, port: int, table: str, out: str, results: str) -> None:
    import torch.distributed as dist

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    result = train(table, out, fast_config(model_kind="esmm", epochs=3, batch_size=256))
    Path(results, f"rank{rank}.json").write_text(
        json.dumps({"history": result.history, "weights_sum": result.weights_sum})
    )
    dist.destroy_process_group()


def test_ddp_two_cpu_processes_match_one_process(tiny_table, tmp_path):
    import torch.multiprocessing as mp

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    results = tmp_path / "results"
    results.mkdir()
    args = (2, port, str(tiny_table), str(tmp_path / "ddp"), str(results))
    mp.spawn(_ddp_worker, args=args, nprocs=2, join=True)
    ranks = [json.loads((results / f"rank{r}.json").read_text()) for r in range(2)]
    # Replicas in sync: identical weights on both ranks and in the artifact rank 0 wrote.
    assert ranks[0]["weights_sum"] == ranks[1]["weights_sum"]
    saved = load_file(str(tmp_path / "ddp" / "model.safetensors"))
    assert ranks[0]["weights_sum"] == pytest.approx(
        sum(
            v.double().sum().item()
            for k, v in saved.items()
            if k.startswith(("embedding.table", "heads."))
        ),
        rel=1e-9,
    )
    single = train(
        tiny_table, tmp_path / "single", fast_config(model_kind="esmm", epochs=3, batch_size=256)
    )
    ddp_loss = [r["train_loss"] for r in ranks[0]["history"]]
    one_loss = [r["train_loss"] for r in single.history]
    # Same global batch and averaged gradients: the same loss curve up to float summation order.
    np.testing.assert_allclose(ddp_loss, one_loss, rtol=2e-3)
    assert ddp_loss[-1] < ddp_loss[0]


def test_config_validation_names_the_field():
    with pytest.raises(ValueError, match="model_kind"):
        TrainConfig(model_kind="mmoe")
    with pytest.raises(ValueError, match="dropout"):
        TrainConfig(dropout=1.5)
    with pytest.raises(ValueError, match="batch_size"):
        TrainConfig(batch_size=0)
    with pytest.raises(ValueError, match="unknown train config field"):
        TrainConfig.from_dict({"learning_rate": 0.1})
    with pytest.raises(ValueError, match="loss_weights"):
        TrainConfig(model_kind="esmm", loss_weights={"ct_micro": 1.0})


def test_cli_train_writes_artifact_and_rejects_bad_config(tiny_table, tmp_path):
    from pipelines.cli import app

    runner = CliRunner()
    cfg = tmp_path / "cfg.json"
    cfg.write_text(json.dumps({"embedding_dim": 4, "hidden": [8], "epochs": 1, "threads": 1}))
    out = tmp_path / "naive"
    res = runner.invoke(
        app,
        ["train", "--data", str(tiny_table), "--model-kind", "naive", "--out", str(out),
         "--config", str(cfg), "--no-progress"],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    line = json.loads(res.stdout.strip().splitlines()[-1])
    assert line["version"].startswith("naive-")
    assert set(
        artifact.load_model(out).predict(pq.read_table(tiny_table).slice(0, 5).to_pandas())
    ) == {"cvr"}
    cfg.write_text(json.dumps({"dropout": 2.0}))
    res = runner.invoke(app, ["train", "--data", str(tiny_table), "--config", str(cfg)])
    assert res.exit_code == 2 and "dropout" in res.output


def test_train_fraction_trains_on_the_same_half_of_the_train_split_for_every_seed(
    tiny_table, tmp_path
):
    from model.data.encoding import FeatureSpec, feature_kinds
    from model.data.split import split_by_time
    from model.train.trainer import train_subset

    table = pq.read_table(tiny_table)
    parts = split_by_time(table)
    configs = {}
    for name, fraction, seed in (("full", 1.0, 0), ("half0", 0.5, 0), ("half1", 0.5, 1)):
        cfg = fast_config(epochs=1, train_fraction=fraction, seed=seed)
        train(tiny_table, tmp_path / name, cfg)
        configs[name] = json.loads((tmp_path / name / "config.json").read_text())
    n_train = parts["train"].num_rows
    assert configs["full"]["rows"]["train"] == n_train
    for name in ("half0", "half1"):
        assert configs[name]["train_config"]["train_fraction"] == 0.5
        assert configs[name]["rows"]["train"] == round(n_train / 2)
        # Validation and test rows are those of the full run: the split happens before the subset.
        for split in ("validation", "test"):
            assert configs[name]["rows"][split] == configs["full"]["rows"][split]
    # The feature spec is fit on the rows trained on: the same rows for both seeds, and exactly
    # the rows `train_subset` picks (not the full split's).
    assert configs["half0"]["feature_spec"] == configs["half1"]["feature_spec"]
    assert configs["half0"]["feature_spec"] != configs["full"]["feature_spec"]
    subset = train_subset(parts["train"], 0.5)
    kinds = feature_kinds(table.schema)
    expected = FeatureSpec.fit(subset.select(list(kinds)).to_pandas(), kinds, 5_000)
    means = {f["name"]: f["mean"] for f in configs["half0"]["feature_spec"]["features"]}
    for feature in expected.dense:
        assert means[feature.name] == pytest.approx(feature.mean, rel=1e-12)


def test_train_subset_is_a_nested_time_ordered_sample():
    import pyarrow as pa

    from model.train.trainer import train_subset

    table = pa.table({"ts": np.arange(1_000), "row": np.arange(1_000)})
    quarter, half = train_subset(table, 0.25), train_subset(table, 0.5)
    rows_q, rows_h = quarter["row"].to_numpy(), half["row"].to_numpy()
    assert (len(rows_q), len(rows_h)) == (250, 500)
    assert (np.diff(rows_h) > 0).all()  # original order, no repeats
    assert set(rows_q) <= set(rows_h)
    # Spread over the whole split, not a block of it.
    assert rows_h.min() < 50 and rows_h.max() > 950
    assert train_subset(table, 1.0) is table


@pytest.mark.parametrize("bad", [0, 0.0, -0.5, 1.5, float("nan"), True, "0.5"])
def test_train_fraction_outside_0_1_is_rejected(bad):
    with pytest.raises(ValueError, match="train_fraction must be in \\(0, 1\\]"):
        TrainConfig(train_fraction=bad)
