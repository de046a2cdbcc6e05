"""Inputs (files, day partitions, globs, gs://), schema errors, the KFP component and the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from kfp import dsl
from typer.testing import CliRunner

from model import storage
from model.data import schema
from model.data.labels import build_labels


@pytest.fixture(scope="module")
def reference(small_world: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Labels of the small world from its single-file tables."""
    out = tmp_path_factory.mktemp("reference_labels")
    build_labels(small_world / "impressions.parquet", small_world / "events.parquet", out)
    return out


def _by_day(table_path: Path, folder: Path) -> int:
    """Write a table as one Parquet file per day, as a log export would."""
    table = pq.read_table(table_path)
    day = pc.strftime(table["ts"], format="%Y-%m-%d")
    folder.mkdir(parents=True)
    for value in pc.unique(day).to_pylist():
        pq.write_table(table.filter(pc.equal(day, value)), folder / f"day={value}.parquet")
    return len(pc.unique(day))


def _same_outputs(out: Path, reference: Path) -> None:
    assert pq.read_table(out / "labels.parquet").equals(pq.read_table(reference / "labels.parquet"))
    got, want = (json.loads((d / "report.json").read_text()) for d in (out, reference))
    for key in ("nodes", "edges", "quarantine", "accounting"):
        assert got[key] == want[key], key


def test_day_partitions_and_globs(small_world: Path, tmp_path: Path, reference: Path) -> None:
    days = _by_day(small_world / "events.parquet", tmp_path / "events")
    _by_day(small_world / "impressions.parquet", tmp_path / "impressions")
    assert days > 5
    build_labels(tmp_path / "impressions", tmp_path / "events", tmp_path / "from_folders")
    _same_outputs(tmp_path / "from_folders", reference)
    # A list mixing a file and a glob: the 1970 partition (broken clocks) and the real days.
    bad_clock = tmp_path / "events" / "day=1970-01-01.parquet"
    assert bad_clock.exists()
    build_labels(
        str(tmp_path / "impressions" / "day=*.parquet"),
        [bad_clock, str(tmp_path / "events" / "day=2026-*.parquet")],
        tmp_path / "from_globs",
    )
    _same_outputs(tmp_path / "from_globs", reference)


def test_gcs_input_and_output(
    small_world: Path, tmp_path: Path, reference: Path, gcs_bucket: str
) -> None:
    _by_day(small_world / "events.parquet", tmp_path / "events")
    src = f"{gcs_bucket}/labels-src-{tmp_path.name}"
    storage.write_bytes_atomic(
        f"{src}/impressions.parquet", (small_world / "impressions.parquet").read_bytes()
    )
    for path in sorted((tmp_path / "events").glob("*.parquet")):
        storage.write_bytes_atomic(f"{src}/events/{path.name}", path.read_bytes())
    out = f"{gcs_bucket}/labels-out-{tmp_path.name}"
    build_labels(f"{src}/impressions.parquet", f"{src}/events/day=*.parquet", out)
    with storage.local_dir(out) as local:  # verifies the sealed manifest
        _same_outputs(local, reference)


def _rewrite(src: Path, dst: Path, column: str, values: pa.Array | None) -> Path:
    table = pq.read_table(src)
    idx = table.schema.get_field_index(column)
    table = table.remove_column(idx) if values is None else table.set_column(idx, column, values)
    pq.write_table(table, dst)
    return dst


def test_missing_column_names_file_column_and_type(small_world: Path, tmp_path: Path) -> None:
    bad = _rewrite(small_world / "events.parquet", tmp_path / "events.parquet", "component", None)
    with pytest.raises(
        schema.SchemaError, match=rf"{bad}: missing column 'component' \(expected string\)"
    ):
        build_labels(small_world / "impressions.parquet", bad, tmp_path / "out")


def test_mistyped_column_names_file_column_and_type(small_world: Path, tmp_path: Path) -> None:
    imp = pq.read_table(small_world / "impressions.parquet")
    bad = _rewrite(
        small_world / "impressions.parquet",
        tmp_path / "impressions.parquet",
        "user_id",
        pc.cast(imp["user_id"], pa.string()),
    )
    with pytest.raises(
        schema.SchemaError, match=rf"{bad}: column 'user_id' has type string, expected int64"
    ):
        build_labels(bad, small_world / "events.parquet", tmp_path / "out")


def test_missing_input_is_named(small_world: Path, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="events: no Parquet file matches"):
        build_labels(small_world / "impressions.parquet", tmp_path / "nope", tmp_path / "out")


def test_component_with_real_artifacts(small_world: Path, tmp_path: Path, reference: Path) -> None:
    from components.build_labels import build_labels as component

    labels = dsl.Dataset(uri=str(tmp_path / "labels"))
    stats = dsl.Metrics(uri=str(tmp_path / "stats"))
    graph = dsl.HTML(uri=str(tmp_path / "graph.html"))
    component.python_func(
        world=dsl.Dataset(uri=str(small_world)),
        labels=labels,
        label_stats=stats,
        label_graph=graph,
        config_json="{}",
    )
    _same_outputs(tmp_path / "labels", reference)
    report = json.loads((reference / "report.json").read_text())
    assert labels.metadata["clicks"] == report["nodes"]["click"]
    assert stats.metadata["rate_impression_to_click"] == report["edges"]["impression>click"]["rate"]
    page = (tmp_path / "graph.html").read_text()
    assert "<svg" in page and "Accounting" in page and "duplicate" in page


def test_component_rejects_a_bad_config(small_world: Path, tmp_path: Path) -> None:
    from components.build_labels import build_labels as component

    with pytest.raises(ValueError, match="micro_window_s must be a positive integer"):
        component.python_func(
            world=dsl.Dataset(uri=str(small_world)),
            labels=dsl.Dataset(uri=str(tmp_path / "labels")),
            label_stats=dsl.Metrics(uri=str(tmp_path / "stats")),
            label_graph=dsl.HTML(uri=str(tmp_path / "graph.html")),
            config_json='{"micro_window_s": -5}',
        )


def test_component_compiles(tmp_path: Path) -> None:
    from kfp import compiler

    from components.build_labels import build_labels as component

    compiler.Compiler().compile(component, str(tmp_path / "build_labels.yaml"))
    text = (tmp_path / "build_labels.yaml").read_text()
    for name in ("world", "labels", "label_stats", "label_graph", "config_json"):
        assert name in text


def test_cli(small_world: Path, tmp_path: Path, reference: Path) -> None:
    from pipelines.cli import app

    config = tmp_path / "config.json"
    config.write_text(json.dumps({"purchase_window_s": 259_200}))
    result = CliRunner().invoke(
        app,
        [
            "labels",
            "--impressions",
            str(small_world / "impressions.parquet"),
            "--events",
            str(small_world / "events.parquet"),
            "--out",
            str(tmp_path / "out"),
            "--config",
            str(config),
        ],
    )
    assert result.exit_code == 0, result.output
    printed = json.loads(result.stdout.strip().splitlines()[-1])
    _same_outputs(tmp_path / "out", reference)
    written = json.loads((tmp_path / "out" / "report.json").read_text())
    assert (printed["nodes"], printed["quarantine"]) == (written["nodes"], written["quarantine"])

    config.write_text(json.dumps({"click_window": 60}))
    result = CliRunner().invoke(
        app,
        [
            "labels",
            "--impressions",
            str(small_world / "impressions.parquet"),
            "--events",
            str(small_world / "events.parquet"),
            "--out",
            str(tmp_path / "out2"),
            "--config",
            str(config),
        ],
    )
    assert result.exit_code == 2
    assert "unknown label config key(s) ['click_window']" in result.output


def test_unreadable_file_is_named(small_world: Path, tmp_path: Path) -> None:
    folder = tmp_path / "events"
    folder.mkdir()
    (folder / "day=2026-10-01.parquet").write_bytes((small_world / "events.parquet").read_bytes())
    (folder / "day=2026-10-02.parquet").write_text("not parquet")
    with pytest.raises(schema.SchemaError, match=r"day=2026-10-02.parquet: not a readable Parquet"):
        build_labels(small_world / "impressions.parquet", folder, tmp_path / "out")


def test_component_on_kfp_local(small_world: Path, tmp_path: Path, reference: Path) -> None:
    from kfp import local

    from components.build_labels import build_labels as component

    local.init(
        runner=local.SubprocessRunner(use_venv=False),
        pipeline_root=str(tmp_path / "root"),
        raise_on_error=True,
    )

    @dsl.pipeline
    def labels_only():  # kfp reads a return annotation as an output type
        world = dsl.importer(artifact_uri=str(small_world), artifact_class=dsl.Dataset)
        component(world=world.output)

    labels_only()
    (out,) = (tmp_path / "root").glob("labels-only-*/build-labels/labels")
    _same_outputs(out, reference)
    (page,) = (tmp_path / "root").glob("labels-only-*/build-labels/label_graph")
    assert "<svg" in page.read_text()


def test_graph_picture_and_html_from_a_report(reference: Path, tmp_path: Path) -> None:
    from model.data.labels import LabelReport
    from model.data.labels_report import report_html, write_graph_picture

    saved = json.loads((reference / "report.json").read_text())
    saved.pop("reasons")
    report = LabelReport(**saved)
    write_graph_picture(report, tmp_path / "graph.png")
    assert (tmp_path / "graph.png").read_bytes().startswith(b"\x89PNG")
    with pytest.raises(ValueError, match=r"must end in \.svg or \.png"):
        write_graph_picture(report, tmp_path / "graph.jpg")
    page = report_html(report, "<svg/>")
    assert "<svg/>" in page and "impression → click" in page
