"""KFP component `load_logs`: the raw logs the pipeline starts from.

Either copies a user's raw tables from `source_uri` (local folder, file:// or gs://; each table a
file `<name>.parquet` or a folder `<name>/` of Parquet partitions) or, when `source_uri` is empty,
simulates a world with known truth (the default of the demo).
"""

from kfp import dsl
from kfp.dsl import Dataset, Metrics, Output

from components.images import HM3_IMAGE


@dsl.component(base_image=HM3_IMAGE, install_kfp_package=False)
def load_logs(
    source_uri: str,
    impressions: int,
    seed: int,
    micro_signal: float,
    macro_signal: float,
    users: int,
    items: int,
    days: int,
    world: Output[Dataset],
    stats: Output[Metrics],
):
    """Fill the `world` folder with impressions, events, users, items (and truth if simulated)."""
    from model.data.ingest import ingest_logs
    from model.world.mechanism import WorldConfig
    from model.world.simulator import simulate

    if source_uri:
        counts = ingest_logs(source_uri, world.path)
        world.metadata.update({"source": source_uri})
        for name, rows in counts.items():
            stats.log_metric(f"{name}_rows", rows)
        return
    cfg = WorldConfig(
        impressions=impressions,
        seed=seed,
        users=users,
        items=items,
        days=days,
        micro_signal=micro_signal,
        macro_signal=macro_signal,
    )
    summary = simulate(cfg, world.path)
    world.metadata.update({"source": "simulated", "seed": seed, "impressions": impressions})
    for name, value in summary.rates().items():
        stats.log_metric(name, round(value, 5))
    stats.log_metric("events_rows", summary.events)
