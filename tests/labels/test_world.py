"""Labels of simulated worlds: accounting, agreement with the sampled truth, noise in quarantine."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from model.data import schema
from model.data.labels import LabelReport, build_labels

LABELS = list(schema.LABEL_COLUMNS)


@dataclass
class Built:
    report: LabelReport
    labels: pd.DataFrame
    joined: pd.DataFrame  # labels with the world's truth columns (suffix _true)
    out: Path
    world: Path


def _build(world: Path, out: Path) -> Built:
    report = build_labels(world / "impressions.parquet", world / "events.parquet", out)
    labels = pq.read_table(out / "labels.parquet").to_pandas()
    truth = pq.read_table(world / "truth.parquet").to_pandas()
    joined = labels.merge(truth, on="impression_id", suffixes=("", "_true"))
    return Built(report, labels, joined, out, world)


@pytest.fixture(scope="module")
def small_built(small_world: Path, tmp_path_factory: pytest.TempPathFactory):
    return _build(small_world, tmp_path_factory.mktemp("small_labels"))


@pytest.fixture(scope="module")
def damaged_built(damaged_world: Path, tmp_path_factory: pytest.TempPathFactory):
    return _build(damaged_world, tmp_path_factory.mktemp("damaged_labels"))


@pytest.mark.parametrize("built", ["small_built", "damaged_built"])
def test_labels_equal_sampled_outcomes_on_clean_impressions(built: str, request) -> None:
    b: Built = request.getfixturevalue(built)
    report, labels, joined = b.report, b.labels, b.joined
    assert len(joined) == len(labels) == report.nodes["impression"]
    clean = joined[~joined["noisy"]]
    assert len(clean) > 0.9 * len(joined)
    for name in LABELS:
        assert (clean[name] == clean[f"{name}_true"]).all(), name
    # Only damaged logs may disagree, and damage only ever loses labels, never invents them.
    noisy = joined[joined["noisy"]]
    assert (noisy[LABELS].to_numpy() <= noisy[[f"{n}_true" for n in LABELS]].to_numpy()).all()


@pytest.mark.parametrize("built", ["small_built", "damaged_built"])
def test_accounting_counts_the_files_and_the_outputs_and_graph(built: str, request) -> None:
    """The accounting's numbers are the input files' rows, the labels' rows and the quarantine's.

    (That input = used + quarantined, build_labels enforces itself by raising AccountingError.)
    """
    b: Built = request.getfixturevalue(built)
    report, labels = b.report, b.labels
    quarantine = pq.read_table(b.out / "quarantine.parquet", columns=["table"]).to_pandas()
    for table in ("impressions", "events"):
        entry = report.accounting[table]
        assert entry["input"] == pq.ParquetFile(b.world / f"{table}.parquet").metadata.num_rows
        assert entry["quarantined"] == (quarantine["table"] == table).sum(), table
    assert report.accounting["impressions"]["used"] == len(labels)
    assert labels["impression_id"].is_unique
    for name in ("d_micro", "d_macro", "buy"):
        assert (labels[name] <= labels["click"]).all(), f"{name} without click"
    assert report.nodes["click"] == labels["click"].sum()
    assert report.nodes["o_micro"] == ((labels["click"] == 1) & (labels["d_micro"] == 0)).sum()
    rate = report.edges["d_macro>buy"]["rate"]
    expected = labels.loc[labels["d_macro"] == 1, "buy"].mean()
    assert rate == pytest.approx(expected, abs=1e-6)


def test_every_kind_of_log_damage_has_its_reason(damaged_world: Path, damaged_built: Built) -> None:
    report = damaged_built.report
    held = report.quarantine["events"]
    # duplicates, dropped clicks, late purchases, 1970 clocks, purchases of never-shown pairs
    for reason in ("duplicate", "no_click", "click_outside_window", "ts_out_of_range"):
        assert held.get(reason, 0) > 0, reason
    assert held.get("never_shown", 0) > 0
    events = pq.read_table(damaged_world / "events.parquet")
    quarantine = pq.read_table(damaged_built.out / "quarantine.parquet")
    n_dup = events.num_rows - pc.count_distinct(events["event_id"]).as_py()
    assert held["duplicate"] == n_dup
    n_1970 = pc.sum(pc.less(pc.year(events["ts"]), 2000)).as_py()
    q_1970 = quarantine.filter(pc.less(pc.year(quarantine["ts"]), 2000))
    assert q_1970.num_rows == n_1970 and set(q_1970["reason"].to_pylist()) <= {
        "ts_out_of_range",
        "duplicate",
    }
    never = quarantine.filter(pc.equal(quarantine["reason"], "never_shown"))
    assert set(never["event_type"].to_pylist()) == {"purchase"}
