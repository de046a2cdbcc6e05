"""KFP component `simulate_world`: raw logs and feature tables of a simulated world."""

from kfp import dsl
from kfp.dsl import Dataset, Metrics, Output

from components.images import HM3_IMAGE


@dsl.component(base_image=HM3_IMAGE, install_kfp_package=False)
def simulate_world(
    impressions: int,
    seed: int,
    micro_signal: float,
    macro_signal: float,
    users: int,
    items: int,
    days: int,
    world: Output[Dataset],
    rates: Output[Metrics],
):
    """Generate impressions, events, users, items and truth tables into the `world` folder."""
    from model.simulator import WorldConfig, simulate

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
    world.metadata.update({"impressions": impressions, "seed": seed, "events": summary.events})
    for name, value in summary.rates().items():
        rates.log_metric(name, round(value, 5))
    rates.log_metric("events", summary.events)
