"""Read a simulated world back from its files, and score the information ceilings on them.

`load_world` rebuilds the config and population recorded in world.json, `impression_rows` joins
impressions.parquet on impression ids, `ceiling_predictions` scores the ceilings of
`model.world.ceiling` on the rows of an evaluated frame, and `label_information` the ceilings
whose item intent is read from each model family's labels (`model.world.label_information`).
The files are written by `model.world.simulator.simulate`.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from model.data import schema
from model.world.ceiling import CEILINGS, Integration, Knowledge, marginal_cvr, true_cvr
from model.world.label_information import readouts
from model.world.mechanism import (
    DAY_US,
    ImpressionDraws,
    NoiseConfig,
    Population,
    WorldConfig,
    population,
)


def load_world(world_dir: str | Path) -> tuple[WorldConfig, Population]:
    """The config recorded in world.json and the population it rebuilds."""
    config = json.loads((Path(world_dir) / "world.json").read_text())["config"]
    cfg = WorldConfig(**(config | {"noise": NoiseConfig(**config["noise"])}))
    return cfg, population(cfg)


def impression_rows(
    world_dir: str | Path, impression_ids: pd.Series | np.ndarray, cfg: WorldConfig
) -> ImpressionDraws:
    """Join impressions.parquet on impression_id, in the given order.

    Raises:
        ValueError: When an impression id is not in the world.
    """
    table = pq.read_table(
        Path(world_dir) / "impressions.parquet",
        columns=["impression_id", "user_id", "item_id", "ts", "position", "scene", "device"],
    )
    index = pc.index_in(pa.array(np.asarray(impression_ids, dtype=object)), table["impression_id"])
    if index.null_count:
        raise ValueError(f"{index.null_count} impression ids are not in {world_dir}")
    table = table.take(index)
    ts = pc.cast(table["ts"], pa.int64()).to_numpy()
    codes = {}
    for column, vocabulary in (("scene", schema.SCENES), ("device", schema.DEVICES)):
        values = table[column].to_numpy(zero_copy_only=False)
        codes[column] = pd.Categorical(values, list(vocabulary)).codes
        if (codes[column] < 0).any():
            raise ValueError(f"unknown {column} in impressions.parquet")
    return ImpressionDraws(
        user=table["user_id"].to_numpy(),
        item=table["item_id"].to_numpy(),
        day=np.minimum((ts - cfg.start_us) // DAY_US, cfg.days - 1),
        position=table["position"].to_numpy(),
        scene=codes["scene"],
        device=codes["device"],
    )


def ceiling_predictions(
    world_dir: str | Path,
    frame: pd.DataFrame,
    ceilings: tuple[Knowledge, ...] = CEILINGS,
    integration: Integration | None = None,
) -> tuple[dict[str, np.ndarray], float]:
    """CVR of each ceiling on every row of an evaluation frame, plus a consistency check.

    Every row, not only clicked ones: p(buy | click) is defined for any impression, and the
    counterfactual metric cvr_entire scores it over all of them.

    Args:
        world_dir: The simulated world (world.json, impressions.parquet).
        frame: Evaluated rows with impression_id, user_id and p_buy_given_click (the truth join
            of `model.evaluate.evaluation.load_eval_frame`).
        ceilings: What each ceiling hides.
        integration: Accuracy settings.

    Returns:
        (ceiling name -> probabilities per frame row, largest |recomputed truth - truth.parquet|;
        0.0 means the rebuilt world is the one that was simulated).

    Raises:
        ValueError: When the frame's users differ from the world's impressions.
    """
    cfg, pop = load_world(world_dir)
    rows = impression_rows(world_dir, frame["impression_id"].to_numpy(), cfg)
    if not np.array_equal(rows.user, frame["user_id"].to_numpy()):
        raise ValueError("evaluated rows' user_id differ from the world's impressions")
    truth = frame["p_buy_given_click"].to_numpy()
    mismatch = float(np.max(np.abs(true_cvr(cfg, pop, rows) - truth), initial=0.0))
    out = {k.name: marginal_cvr(cfg, pop, rows, k, integration) for k in ceilings}
    return out, mismatch


def label_information(
    world_dir: str | Path,
    train: pd.DataFrame,
    test: pd.DataFrame,
    integration: Integration | None = None,
) -> dict[str, dict]:
    """What each label set can teach about the recurring parts of intent, and the ceiling.

    Args:
        world_dir: The simulated world.
        train: Train-window rows of the training table (user_id, item_id, the four labels and
            item_cvr_30d).
        test: Evaluated rows (impression_id, user_id, item_id, click and the item features).
        integration: Accuracy settings of the ceilings.

    Returns:
        Label set name -> {"r2": part -> R^2 of its read-out over test clicks, "cvr": p(buy |
        click) per test row of "oracle without the user's own intent" with every recurring part
        of intent (item, age x category, gender x category) read from that label set}.
    """
    cfg, pop = load_world(world_dir)
    rows = impression_rows(world_dir, test["impression_id"].to_numpy(), cfg)
    without_user = Knowledge("oracle without the user's own intent", ("user",))
    out = {}
    for name, read in readouts(train, test, pop).items():
        known = replace(
            pop,
            item_intent=read.item_intent,
            age_category=read.age_category,
            gender_category=read.gender_category,
        )
        cvr = marginal_cvr(cfg, known, rows, without_user, integration)
        out[name] = {"r2": read.r2, "cvr": cvr}
    return out
