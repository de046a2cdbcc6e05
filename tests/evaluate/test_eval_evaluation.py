"""Evaluation of real trained artifacts: metrics.json, the report, the oracle and the gate."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from model.evaluate import metrics as m
from model.evaluate.evaluation import GateSpec, evaluate_models, parse_model_specs
from model.evaluate.gate import GateConfig
from model.evaluate.registry import RegistryRecord, write_registry
from model.evaluate.report import _table, history_series
from model.evaluate.scoring import EvalConfig, evaluate_predictions, paired_gaps


def _frame() -> pd.DataFrame:
    # Two users; user 1 clicks twice (one purchase), user 2 clicks once.
    return pd.DataFrame(
        {
            "user_id": [1, 1, 1, 2, 2, 2],
            "click": [1, 1, 0, 1, 0, 0],
            "d_micro": [1, 0, 0, 1, 0, 0],
            "d_macro": [1, 0, 0, 0, 0, 0],
            "buy": [1, 0, 0, 0, 0, 0],
            "p_click": [0.9, 0.6, 0.1, 0.5, 0.2, 0.3],
            "p_d_micro_given_click": [0.5] * 6,
            "p_d_macro_given_click": [0.2] * 6,
            "p_buy_given_click": [0.3, 0.1, 0.2, 0.2, 0.1, 0.1],
        }
    )


def test_evaluate_predictions_hand_computed_with_oracle() -> None:
    frame = _frame()
    naive_cvr = np.array([0.4, 0.5, 0.9, 0.1, 0.9, 0.9])
    results = evaluate_predictions(frame, {"naive": {"cvr": naive_cvr}}, EvalConfig(threshold=0.3))
    assert set(results) == {"naive", "oracle"}
    assert set(results["naive"]) == {"cvr"}  # a model is scored only on what it predicts
    cvr = results["naive"]["cvr"]
    # CVR rows = the 3 clicked impressions: buy [1, 0, 0] scored [0.4, 0.5, 0.1] -> 1 of 2 pairs.
    assert cvr.rows == 3 and cvr.positives == 1 and cvr.auc == 0.5
    # User 1 has both classes on clicks (AUC 0); user 2 has one click only -> skipped.
    assert (cvr.gauc, cvr.gauc_users, cvr.gauc_skipped_users) == (0.0, 1, 1)
    assert cvr.logloss == pytest.approx(m.log_loss(np.array([1, 0, 0]), np.array([0.4, 0.5, 0.1])))
    assert cvr.confusion == [[1, 1], [0, 1]]
    oracle = results["oracle"]
    assert oracle["ctr"].auc == 1.0  # p_click ranks the 3 clicks above the 3 non-clicks
    # ctcvr oracle = p_click * p_buy_given_click on all rows; the one buyer scores 0.27, top.
    assert oracle["ctcvr"].auc == 1.0 and oracle["ctcvr"].rows == 6
    assert oracle["cvr"].auc == 1.0 and oracle["cvr"].rows == 3


def _entire_frame(n: int = 4000, seed: int = 0) -> tuple[pd.DataFrame, dict]:
    """Truth with buy_if_clicked on every row; naive's cvr is good on clicks, noise off them."""
    rng = np.random.default_rng(seed)
    p_click = rng.uniform(0.02, 0.3, n)
    p_buy = rng.uniform(0.05, 0.5, n)
    click = (rng.random(n) < p_click).astype(int)
    buy_if_clicked = (rng.random(n) < p_buy).astype(np.int8)
    frame = pd.DataFrame(
        {
            "user_id": rng.integers(0, 300, n),
            "click": click,
            "d_micro": click,
            "d_macro": click,
            "buy": click * buy_if_clicked,
            "buy_if_clicked": buy_if_clicked,
            "p_click": p_click,
            "p_d_micro_given_click": np.full(n, 0.5),
            "p_d_macro_given_click": np.full(n, 0.2),
            "p_buy_given_click": p_buy,
        }
    )
    naive = np.where(click == 1, p_buy, rng.random(n))
    esmm = np.clip(p_buy + 0.05 * rng.standard_normal(n), 0.001, 0.999)
    return frame, {"esmm": {"ctr": p_click, "cvr": esmm}, "naive": {"cvr": naive}}


def test_cvr_entire_scores_cvr_on_all_rows_against_buy_if_clicked() -> None:
    frame, predictions = _entire_frame()
    results = evaluate_predictions(frame, predictions, EvalConfig(bootstrap=50))
    label = frame["buy_if_clicked"].to_numpy()
    for name, cvr in (
        ("naive", predictions["naive"]["cvr"]),
        ("esmm", predictions["esmm"]["cvr"]),
        ("oracle", frame["p_buy_given_click"].to_numpy()),
    ):
        entire = results[name]["cvr_entire"]
        assert entire.rows == len(frame) and entire.positives == label.sum()
        assert entire.auc == pytest.approx(roc_auc_score(label, cvr), abs=1e-12), name
        assert entire.auc_lo < entire.auc < entire.auc_hi
    # Naive is as good as the oracle on clicks but blind off them: the bias only cvr_entire sees.
    assert results["naive"]["cvr"].auc == results["oracle"]["cvr"].auc
    assert results["naive"]["cvr_entire"].auc < results["esmm"]["cvr_entire"].auc - 0.05
    gap = paired_gaps(results)["esmm-naive"]["cvr_entire"]
    assert gap["mean"] == pytest.approx(
        results["esmm"]["cvr_entire"].auc - results["naive"]["cvr_entire"].auc
    )
    assert 0 < gap["lo"] < gap["hi"]
    assert "cvr_entire" in _table(results, ["esmm", "naive", "oracle"], "auc")


def test_cvr_entire_is_absent_without_buy_if_clicked() -> None:
    frame, predictions = _entire_frame(500)
    results = evaluate_predictions(frame.drop(columns="buy_if_clicked"), predictions)
    assert all("cvr_entire" not in tasks for tasks in results.values())
    assert set(results["naive"]) == {"cvr"} and "cvr" in results["oracle"]
    assert all("cvr_entire" not in tasks for tasks in paired_gaps(results).values())
    assert "cvr_entire" not in _table(results, ["esmm", "naive", "oracle"], "auc")


def test_evaluate_predictions_rejects_bad_input() -> None:
    frame = _frame()
    with pytest.raises(
        ValueError, match=r"hm3: cvr predictions have shape \(2,\), expected \(6,\)"
    ):
        evaluate_predictions(frame, {"hm3": {"cvr": np.zeros(2)}})
    with pytest.raises(ValueError, match="reserved"):
        evaluate_predictions(frame, {"oracle": {"cvr": np.zeros(6)}})
    with pytest.raises(ValueError, match="lacks column 'buy'"):
        evaluate_predictions(frame.drop(columns="buy"), {"x": {"cvr": np.zeros(6)}})
    bad = frame.assign(click=[1, 1, 0, 2, 0, 0])
    with pytest.raises(ValueError, match=r"click\[3\] = 2: labels must be 0 or 1"):
        evaluate_predictions(bad, {"x": {"cvr": np.zeros(6)}})
    with pytest.raises(ValueError, match="lacks \\['p_d_macro_given_click'\\]"):
        evaluate_predictions(frame.drop(columns="p_d_macro_given_click"), {})


def test_config_validation_names_the_field() -> None:
    with pytest.raises(ValueError, match="split must be one of"):
        EvalConfig(split="holdout")
    with pytest.raises(ValueError, match="gauc_weight must be one of"):
        EvalConfig(gauc_weight="users")


def test_parse_model_specs() -> None:
    assert parse_model_specs(["out/hm3", "base=gs://b/m=1", "/a/b=c"]) == [
        (None, "out/hm3"),
        ("base", "gs://b/m=1"),
        (None, "/a/b=c"),
    ]
    with pytest.raises(ValueError, match="empty location"):
        parse_model_specs(["x="])


def test_history_series_shapes() -> None:
    epochs = [{"epoch": 1, "train_loss": 0.5, "auc_cvr": 0.6}, {"epoch": 2, "train_loss": 0.4}]
    assert history_series(epochs) == {"train_loss": [0.5, 0.4], "auc_cvr": [0.6]}
    assert history_series({"epochs": epochs})["train_loss"] == [0.5, 0.4]
    assert history_series({"loss": [1, 2], "val": [{"auc": 0.5}]}) == {
        "loss": [1.0, 2.0],
        "val.auc": [0.5],
    }


# Model output and label of every scored task (CVR on clicked rows only), from docs/hm3.md and
# model/tasks.py; cvr_entire scores the cvr output on every row against the world's truth.
SCORED = {
    "ctr": ("ctr", "click", False),
    "cvr": ("cvr", "buy", True),
    "ctcvr": ("ctcvr", "buy", False),
    "ct_micro": ("ct_micro", "d_micro", False),
    "ct_macro": ("ct_macro", "d_macro", False),
    "cvr_entire": ("cvr", "buy_if_clicked", False),
}


def _test_rows(table: Path, world: Path) -> pd.DataFrame:
    """The evaluated rows: the last 15% of the time range, with the world's truth joined."""
    import pyarrow.parquet as pq

    from model.data.split import DEFAULT_SPLIT, split_by_time

    test = split_by_time(pq.read_table(table), DEFAULT_SPLIT)["test"].to_pandas()
    truth = pq.read_table(world / "truth.parquet").to_pandas()
    truth = truth[["impression_id", "p_click", "buy_if_clicked"]]
    return test.merge(truth, on="impression_id", how="left", validate="one_to_one")


def _recompute_metrics(
    model_dir: Path, table: Path, world: Path
) -> dict[str, tuple[float, float, float]]:
    """Task -> (AUC, log loss, ECE over 10 equal-count bins) of a model on the test rows."""
    from model.artifact import load_model

    test = _test_rows(table, world)
    model = load_model(model_dir)
    predictions = model.predict(test)
    out = {}
    for task, (output, label, clicked_only) in SCORED.items():
        if output not in predictions:
            continue
        rows = test["click"].to_numpy() == 1 if clicked_only else np.ones(len(test), dtype=bool)
        y = test[label].to_numpy(dtype=np.float64)[rows]
        p = predictions[output].astype(np.float64)[rows]
        clipped = np.clip(p, 1e-7, 1 - 1e-7)
        logloss = -np.mean(y * np.log(clipped) + (1 - y) * np.log(1 - clipped))
        order = np.argsort(p, kind="stable")
        edges = np.linspace(0, len(p), 11).round().astype(int)
        ece = sum(
            (hi - lo) / len(p) * abs(p[order[lo:hi]].mean() - y[order[lo:hi]].mean())
            for lo, hi in zip(edges[:-1], edges[1:], strict=True)
        )
        out[task] = (roc_auc_score(y, p), float(logloss), float(ece))
    return out


@pytest.fixture(scope="module")
def labels_dir(small_world: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from model.data.labels import build_labels

    out = tmp_path_factory.mktemp("labels")
    build_labels(
        small_world / "impressions.parquet", small_world / "events.parquet", out, threads=1
    )
    return out


def test_evaluate_models_writes_metrics_and_report(
    trained_models: dict[str, Path],
    eval_table: Path,
    small_world: Path,
    labels_dir: Path,
    tmp_path: Path,
) -> None:
    evaluation = evaluate_models(
        [str(trained_models["hm3"]), f"base={trained_models['naive']}"],
        str(eval_table),
        tmp_path / "out",
        truth_path=str(small_world / "truth.parquet"),
        labels_dir=str(labels_dir),
        command="hm3 evaluate --model X",
    )
    saved = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert list(saved) == ["hm3", "base", "oracle", "gaps"]
    gaps = saved.pop("gaps")
    # The world's truth has buy_if_clicked: every model is also scored on cvr_entire.
    assert set(saved["hm3"]) == {"ctr", "cvr", "ctcvr", "ct_micro", "ct_macro", "cvr_entire"}
    assert set(saved["base"]) == {"cvr", "cvr_entire"}
    for name, tasks in saved.items():
        for task, values in tasks.items():
            assert {"auc", "auc_lo", "auc_hi", "gauc", "logloss", "ece"} <= set(values)
            assert values["auc_lo"] < values["auc"] < values["auc_hi"], (name, task)
    # AUC, log loss and ECE of every model and task, recomputed here from the artifacts.
    for name, path in (("hm3", trained_models["hm3"]), ("base", trained_models["naive"])):
        recomputed = _recompute_metrics(path, eval_table, small_world)
        assert set(recomputed) == set(saved[name])
        for task, (auc, logloss, ece) in recomputed.items():
            got = saved[name][task]
            assert got["auc"] == pytest.approx(auc, abs=1e-9), (name, task)
            assert got["logloss"] == pytest.approx(logloss, rel=1e-6), (name, task)
            assert got["ece"] == pytest.approx(ece, rel=1e-6, abs=1e-12), (name, task)
    # The oracle scores the world's true probabilities, which are calibrated (see the simulator
    # tests): in each calibration bin of a task with enough positives, the observed rate is its
    # mean prediction within 4 binomial SEs, and the ECE is the count-weighted gap of the bins.
    details = json.loads((tmp_path / "out" / "details.json").read_text())["results"]["oracle"]
    for task in ("ctr", "ct_micro", "cvr_entire"):
        cal = details[task]["calibration"]
        bins = list(zip(cal["mean_predicted"], cal["observed_rate"], cal["counts"], strict=True))
        for predicted, observed, n in bins:
            assert abs(observed - predicted) < 4 * (predicted * (1 - predicted) / n) ** 0.5, task
        ece = sum(n * abs(predicted - observed) for predicted, observed, n in bins) / sum(
            cal["counts"]
        )
        assert saved["oracle"][task]["ece"] == pytest.approx(ece, abs=1e-9), task
    # Only the tasks both models are scored on, named in the order the models were given; the
    # oracle has no gaps.
    assert list(gaps) == ["hm3-base"] and list(gaps["hm3-base"]) == ["cvr", "cvr_entire"]
    gap = gaps["hm3-base"]["cvr"]
    assert gap["mean"] == pytest.approx(saved["hm3"]["cvr"]["auc"] - saved["base"]["cvr"]["auc"])
    assert gap["lo"] < gap["mean"] < gap["hi"]
    # The test split is the last 15% of the time range; CVR is measured on its clicks only.
    assert saved["hm3"]["ctr"]["rows"] == evaluation.data.rows
    assert saved["hm3"]["cvr"]["rows"] == evaluation.data.clicks
    assert saved["hm3"]["cvr"]["positives"] == evaluation.data.buys
    assert saved["base"]["cvr_entire"]["rows"] == evaluation.data.rows
    # The simulator's truth is informative: the oracle ranks clicks well above chance.
    test = _test_rows(eval_table, small_world)
    oracle_auc = roc_auc_score(test["click"], test["p_click"])
    assert saved["oracle"]["ctr"]["auc"] == pytest.approx(oracle_auc, abs=1e-9)
    assert oracle_auc > 0.7
    assert saved["oracle"]["ctr"]["gauc_skipped_users"] > 0
    report = (tmp_path / "out" / "report.html").read_text()
    for needle in (
        str(eval_table),
        "hm3 evaluate --model X",
        evaluation.models["hm3"].version,
        evaluation.models["base"].version,
        "Training curves",
        "Behavior graph of the labels",
        "impression&gt;click",
        "data:image/svg+xml;base64,",
        "<th>cvr_entire</th>",
        "<code>buy_if_clicked</code>",
    ):
        assert needle in report, needle
    assert report.count("data:image/png;base64,") == 3  # ROC, calibration, training
    details = json.loads((tmp_path / "out" / "details.json").read_text())
    assert len(details["results"]["hm3"]["cvr"]["calibration"]["counts"]) == 10


def test_evaluate_models_gate_scores_champion_on_same_rows(
    trained_models: dict[str, Path], eval_table: Path, tmp_path: Path
) -> None:
    deploy = str(tmp_path / "deploy")
    write_registry(
        deploy,
        RegistryRecord(
            model_uri=str(trained_models["naive"]), kind="naive", version="v0", cvr_auc=0.99
        ),
    )
    evaluation = evaluate_models(
        [str(trained_models["hm3"]), str(trained_models["naive"])],
        str(eval_table),
        tmp_path / "out",
        gate=GateSpec(deploy, "hm3", GateConfig(min_cvr_auc=0.0, tolerance=0.0)),
    )
    decision = evaluation.gate
    # The champion is the naive artifact: re-scored on these rows, not its recorded 0.99.
    assert decision.champion_cvr_auc == evaluation.results["naive"]["cvr"].auc
    assert decision.champion_cvr_auc == evaluation.results["champion"]["cvr"].auc
    assert decision.candidate_cvr_auc == evaluation.results["hm3"]["cvr"].auc
    assert decision.deploy == (decision.candidate_cvr_auc >= decision.champion_cvr_auc)
    gate = json.loads((tmp_path / "out" / "gate.json").read_text())
    assert gate["verdict"] == decision.verdict and gate["reasons"]
    assert "Deploy gate" in (tmp_path / "out" / "report.html").read_text()


def test_evaluate_models_rejects_duplicate_names(
    trained_models: dict[str, Path], eval_table: Path, tmp_path: Path
) -> None:
    with pytest.raises(ValueError, match="'hm3' is used twice"):
        evaluate_models([str(trained_models["hm3"])] * 2, str(eval_table), tmp_path)


def test_load_eval_frame_split_folder_and_truth_coverage(
    eval_table: Path, small_world: Path, tmp_path: Path
) -> None:
    import pyarrow.parquet as pq

    from model.evaluate.evaluation import load_eval_frame

    frame, info = load_eval_frame(str(eval_table), EvalConfig(), str(small_world / "truth.parquet"))
    total = pq.ParquetFile(eval_table).metadata.num_rows
    assert info.rows == len(frame) and 0.1 * total < info.rows < 0.2 * total  # the last ~15%
    assert frame["ts"].min() >= pq.read_table(eval_table)["ts"].to_pandas().quantile(0.8)
    assert frame["p_click"].notna().all()
    # The counterfactual label comes with the truth, row for row.
    by_id = pq.read_table(small_world / "truth.parquet").to_pandas().set_index("impression_id")
    expected = by_id.loc[frame["impression_id"], "buy_if_clicked"].to_numpy()
    assert (frame["buy_if_clicked"].to_numpy() == expected).all()
    # A truth file without it (an older world): the frame has no such column, nothing fails.
    older = tmp_path / "older_truth.parquet"
    pq.write_table(pq.read_table(small_world / "truth.parquet").drop(["buy_if_clicked"]), older)
    assert "buy_if_clicked" not in load_eval_frame(str(eval_table), EvalConfig(), str(older))[0]
    # A folder of Parquet parts (plus a manifest) reads as one table.
    folder = tmp_path / "table"
    folder.mkdir()
    table = pq.read_table(eval_table)
    pq.write_table(table.slice(0, 1000), folder / "part-0.parquet")
    pq.write_table(table.slice(1000, 500), folder / "part-1.parquet")
    (folder / "MANIFEST.json").write_text("{}")
    assert load_eval_frame(str(folder), EvalConfig(split="all"))[1].rows == 1500
    # Truth missing for some evaluated impressions: an error with the count and an example.
    truth = pq.read_table(small_world / "truth.parquet")
    pq.write_table(truth.slice(0, 100), tmp_path / "truth.parquet")
    with pytest.raises(ValueError, match=r"no truth for 1400 of 1500 evaluated impressions"):
        load_eval_frame(str(folder), EvalConfig(split="all"), str(tmp_path / "truth.parquet"))
