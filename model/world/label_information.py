"""What each model's labels can teach about item purchase intent, at a world's scale, model-free.

HM^3 differs from ESM^2 only in its D-Micro labels, and ESM^2 from ESMM only in D-Macro. So
HM^3 can beat ESM^2 on a world only by what D-Micro reveals about purchase intent that the
features and the other labels do not already reveal. This module measures that without training
a model, so that a world can be checked as an instrument: if the features already pin down the
intent that micro behaviors reveal, no correct HM^3 can lead, and a tie says nothing.

The measurement, for the item's part of intent (own + brand + category, the largest recurring
part; `model.world.mechanism.Population.item_intent`):

1. Per item, read-out columns: its features as the scored rows carry them (mean over its test
   clicks of logit `item_cvr_30d`, logit `item_ctr_7d`, log1p `item_sales_30d`), its
   train-window traffic (log1p clicks), and its train-window label rates, shrunk towards the
   world's rate for small counts (logit (count + PRIOR * rate) / (n + PRIOR)): clicks per
   impression, and purchases, D-Macro and D-Micro per click.
2. For each label set (the features alone; + clicks and purchases, what ESMM trains on; + D-Macro,
   ESM^2's; + D-Micro, HM^3's), a read-out of the true item intent by gradient-boosted trees,
   cross-fitted over two folds of items (fitted on one half, applied to the other), so that a
   column that carries nothing cannot raise the score by overfitting. Trees, not a linear fit:
   how much a rate says depends on how many clicks it rests on (a tail item's rate is mostly
   prior), an interaction with traffic that one linear coefficient per column cannot express;
   measured, the linear read-out lost R^2 as columns were added on one world seed. Every item
   weighs the same in the fit, because with Zipf traffic a fit weighted by clicks is decided by
   a handful of head items.
3. The score of each read-out: its R^2 against the true item intent weighted by test clicks
   (what the scored rows see), and the CVR ceiling "oracle without the user's own intent" with
   the true item intent replaced by the read-out (`model.world.ceiling.marginal_cvr` on a
   population whose `item_intent` is the read-out).

The read-out is one good estimator, not the best possible one, so the figures do not prove that
no model can do better; they say what the labels carry in a form a learner can use, and their
differences between label sets say how much each extra label can add. Needs scikit-learn (the
`bench` and `dev` extras).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

# Pseudo-counts of the shrunk rates: the feature job's choice for rates of the same kind
# (`model.world.sampling`: 100 impressions for a CTR, 40 clicks for a CVR); D-Micro and D-Macro,
# ten times as frequent as purchases, need fewer.
PRIOR = {"click": 100.0, "buy": 40.0, "d_macro": 10.0, "d_micro": 10.0}
# What every model sees of an item: its features and how often it was clicked in training.
BASE_COLUMNS = ("f_item_cvr_30d", "f_item_ctr_7d", "f_item_sales_30d", "train_clicks")


@dataclass(frozen=True)
class LabelSet:
    """One model family's view of an item: features plus the rates of its labels."""

    name: str
    labels: tuple[str, ...]

    @property
    def columns(self) -> tuple[str, ...]:
        """Read-out columns of `item_columns`: the base columns, then one rate per label."""
        return (*BASE_COLUMNS, *(f"r_{label}" for label in self.labels))


LABEL_SETS = (
    LabelSet("item features only", ()),
    LabelSet("+ clicks, purchases (ESMM's labels)", ("click", "buy")),
    LabelSet("+ D-Macro (ESM^2's labels)", ("click", "buy", "d_macro")),
    LabelSet("+ D-Micro (HM^3's labels)", ("click", "buy", "d_macro", "d_micro")),
)


def _logit(p: np.ndarray | pd.Series) -> np.ndarray:
    p = np.clip(np.asarray(p, dtype=np.float64), 1e-6, 1 - 1e-6)
    return np.log(p / (1 - p))


def item_columns(train: pd.DataFrame, test: pd.DataFrame, items: int) -> pd.DataFrame:
    """Read-out columns per item id 0..items-1, plus `weight` (its clicked test rows).

    Args:
        train: Train-window rows: item_id, click, buy, d_macro, d_micro.
        test: Test rows: item_id, click, item_cvr_30d, item_ctr_7d, item_sales_30d.
        items: Number of items in the world.
    """
    index = pd.RangeIndex(items, name="item_id")
    clicked = test[test["click"] == 1]
    features = pd.DataFrame(
        {
            "item_id": clicked["item_id"].to_numpy(),
            "f_item_cvr_30d": _logit(clicked["item_cvr_30d"]),
            "f_item_ctr_7d": _logit(clicked["item_ctr_7d"]),
            "f_item_sales_30d": np.log1p(clicked["item_sales_30d"].to_numpy(dtype=np.float64)),
        }
    ).groupby("item_id")
    out = features.mean().reindex(index)
    # Items never clicked in the test window carry no weight; their columns are the averages.
    out = out.fillna(out.mean())
    out["weight"] = features.size().reindex(index, fill_value=0).astype(np.float64)

    counts = train.groupby("item_id")[["click", "buy", "d_macro", "d_micro"]].sum()
    counts["impressions"] = train.groupby("item_id").size()
    counts = counts.reindex(index, fill_value=0).astype(np.float64)
    out["train_clicks"] = np.log1p(counts["click"].to_numpy())
    for label in PRIOR:
        base = "impressions" if label == "click" else "click"
        rate = counts[label].sum() / max(counts[base].sum(), 1.0)
        shrunk = (counts[label] + PRIOR[label] * rate) / (counts[base] + PRIOR[label])
        out[f"r_{label}"] = _logit(shrunk)
    return out


def cross_fitted_readout(
    columns: pd.DataFrame, names: tuple[str, ...], target: np.ndarray, folds: int = 2
) -> np.ndarray:
    """Gradient-boosted trees of target on the columns, each fold predicted by the others' fit.

    Items fall into folds by id (id mod folds), so the split is fixed; the trees are seeded.
    """
    from sklearn.ensemble import HistGradientBoostingRegressor
    from threadpoolctl import threadpool_limits

    x = columns[list(names)].to_numpy()
    fold = np.arange(len(columns)) % folds
    estimate = np.empty(len(columns))
    # A few thousand items fit in milliseconds on one thread; OpenMP threads spinning against
    # other jobs on a busy machine made the same fits take minutes.
    with threadpool_limits(limits=1, user_api="openmp"):
        for k in range(folds):
            fit = fold != k
            trees = HistGradientBoostingRegressor(max_iter=200, learning_rate=0.05, random_state=0)
            estimate[~fit] = trees.fit(x[fit], target[fit]).predict(x[~fit])
    return estimate


def weighted_r2(estimate: np.ndarray, target: np.ndarray, weight: np.ndarray) -> float:
    """1 - weighted residual variance / weighted variance of the target."""
    mean = np.average(target, weights=weight)
    residual = np.average((target - estimate) ** 2, weights=weight)
    return float(1.0 - residual / np.average((target - mean) ** 2, weights=weight))


def item_intent_readouts(
    train: pd.DataFrame, test: pd.DataFrame, item_intent: np.ndarray
) -> dict[str, tuple[np.ndarray, float]]:
    """Label set name -> (read-out of item intent per item id, its R^2 over test clicks)."""
    columns = item_columns(train, test, len(item_intent))
    weight = columns["weight"].to_numpy()
    out = {}
    for label_set in LABEL_SETS:
        estimate = cross_fitted_readout(columns, label_set.columns, item_intent)
        out[label_set.name] = (estimate, weighted_r2(estimate, item_intent, weight))
    return out
