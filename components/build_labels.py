"""KFP component `build_labels`: per-impression graph labels from a world's raw logs.

Wraps `model.data.labels.build_labels`. The `world` input is the folder `load_logs` writes: each of
impressions and events is a file `<name>.parquet` or a folder `<name>/` of Parquet partitions.
"""

from kfp import dsl
from kfp.dsl import HTML, Dataset, Input, Metrics, Output

from components.images import HM3_IMAGE


@dsl.component(base_image=HM3_IMAGE, install_kfp_package=False)
def build_labels(
    world: Input[Dataset],
    labels: Output[Dataset],
    label_stats: Output[Metrics],
    label_graph: Output[HTML],
    config_json: str = "{}",
    engine: str = "duckdb",
    spark_master: str = "local[2]",
    spark_remote: str = "",
):
    """Write labels.parquet, quarantine.parquet, report.json and graph.svg into `labels`.

    Args:
        world: Folder with impressions and events (file or day-partitioned folder each).
        labels: Output folder; its metadata records the row counts.
        label_stats: Node counts, edge rates and quarantine counts as KFP metrics.
        label_graph: The behavior graph picture with rates, quarantine and accounting tables.
        config_json: `LabelConfig` overrides as a JSON object, e.g. '{"purchase_window_s": 604800}'.
        engine: `duckdb` (embedded) or `spark`; same rules, same files.
        spark_master: With engine `spark`: master of the step's own session (local[2] runs
            Spark inside the step's container).
        spark_remote: With engine `spark`: a Spark Connect URL (sc://HOST:15002) of a cluster
            that reads the world from gs://; empty = the master above.
    """
    from pathlib import Path

    from model.data.label_engines import SparkTarget
    from model.data.labels import GRAPH_FILE, LabelConfig
    from model.data.labels import build_labels as run
    from model.data.labels_report import report_html

    def table(name: str) -> str:
        single = Path(world.path, f"{name}.parquet")
        return str(single if single.exists() else Path(world.path, name))

    config = LabelConfig.from_json(config_json)
    spark = SparkTarget(master=spark_master, remote=spark_remote or None)
    report = run(
        table("impressions"), table("events"), labels.path, config, engine=engine, spark=spark
    )
    labels.metadata["engine"] = engine

    labels.metadata.update(
        {
            "impressions": report.nodes["impression"],
            "clicks": report.nodes["click"],
            "buys": report.nodes["buy"],
        }
    )
    for node, count in report.nodes.items():
        label_stats.log_metric(f"n_{node}", count)
    for edge, entry in report.edges.items():
        if entry["rate"] is not None:  # None: the edge's source node is empty
            label_stats.log_metric(f"rate_{edge.replace('>', '_to_')}", entry["rate"])
    for table_name, reasons in report.quarantine.items():
        label_stats.log_metric(f"quarantined_{table_name}", sum(reasons.values()))
    svg = Path(labels.path, GRAPH_FILE).read_text()
    Path(label_graph.path).write_text(report_html(report, svg))
