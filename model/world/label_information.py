"""What each model's labels can teach about purchase intent, at a world's scale, model-free.

HM^3 differs from ESM^2 only in its D-Micro labels, and ESM^2 from ESMM only in D-Macro. So
HM^3 can beat ESM^2 on a world only by what D-Micro reveals about purchase intent that the
features and the other labels do not already reveal. This module measures that without training
a model, so that a world can be checked as an instrument: if the features already pin down the
intent that micro behaviors reveal, no correct HM^3 can lead, and a tie says nothing.

It reads out the recurring parts of intent (`model.world.mechanism.Population`): the item's
(own + brand + category, `item_intent`) and the demographic cells' (`age_category`,
`gender_category`). The user's own part recurs too rarely to learn at our scale and stays hidden.

1. Read-out columns. Per item: its features as the scored rows carry them (mean over its test
   clicks of logit `item_cvr_30d`, logit `item_ctr_7d`, log1p `item_sales_30d`), its
   train-window traffic (log1p clicks), and its train-window label rates, shrunk towards the
   world's rate for small counts (logit (count + PRIOR * rate) / (n + PRIOR)): clicks per
   impression, and purchases, D-Macro and D-Micro per click. Per (segment, category) cell: its
   traffic and label rates, its category's label rates over every segment, and the mean item
   feature of its clicks (a cell's rates mix its own intent with its category's and its items').
2. For each label set (the base columns alone; + clicks and purchases, what ESMM trains on;
   + D-Macro, ESM^2's; + D-Micro, HM^3's), a read-out of each true part by gradient-boosted
   trees, cross-fitted over two folds (fitted on one half, applied to the other; cells fall into
   folds by category), so that a column that carries nothing cannot raise the score by
   overfitting. Trees, not a linear fit: how much a rate says depends on how many clicks it
   rests on (a tail item's rate is mostly prior), an interaction with traffic that one linear
   coefficient per column cannot express; measured, the linear read-out lost R^2 as columns were
   added on one world seed. Every item weighs the same in the fit, because with Zipf traffic a
   fit weighted by clicks is decided by a handful of head items.
3. The score of each read-out: its R^2 against the truth weighted by test clicks (what the
   scored rows see), and the CVR ceiling "oracle without the user's own intent" with every
   recurring part replaced by its read-out (`model.world.ceiling.marginal_cvr` on a population
   holding the read-outs; `model.world.world_files.label_information`).

The read-out is one good estimator, not the best possible one, so the figures do not prove that
no model can do better; they say what the labels carry in a form a learner can use, and their
differences between label sets say how much each extra label can add. Needs scikit-learn (the
`bench` and `dev` extras).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from model.world.mechanism import Population

# Pseudo-counts of the shrunk rates: the feature job's choice for rates of the same kind
# (`model.world.sampling`: 100 impressions for a CTR, 40 clicks for a CVR); D-Micro and D-Macro,
# ten times as frequent as purchases, need fewer.
PRIOR = {"click": 100.0, "buy": 40.0, "d_macro": 10.0, "d_micro": 10.0}
# What every model sees of an item: its features and how often it was clicked in training.
BASE_COLUMNS = ("f_item_cvr_30d", "f_item_ctr_7d", "f_item_sales_30d", "train_clicks")


LABELS = ("click", "buy", "d_macro", "d_micro")


@dataclass(frozen=True)
class LabelSet:
    """One model family's labels: what its read-outs may use besides the base columns."""

    name: str
    labels: tuple[str, ...]

    @property
    def columns(self) -> tuple[str, ...]:
        """Item read-out columns of `item_columns`: the base columns, then one rate per label."""
        return (*BASE_COLUMNS, *(f"r_{label}" for label in self.labels))

    @property
    def cell_columns(self) -> tuple[str, ...]:
        """Cell read-out columns of `cell_columns`: per label, the cell's and its category's."""
        rates = [f"{scope}_{label}" for label in self.labels for scope in ("r", "cat")]
        return (*CELL_BASE_COLUMNS, *rates)


LABEL_SETS = (
    LabelSet("item features only", ()),
    LabelSet("+ clicks, purchases (ESMM's labels)", ("click", "buy")),
    LabelSet("+ D-Macro (ESM^2's labels)", ("click", "buy", "d_macro")),
    LabelSet("+ D-Micro (HM^3's labels)", ("click", "buy", "d_macro", "d_micro")),
)
# What every model sees of a (segment, category) cell: its training traffic and the items its
# users clicked there (through their features).
CELL_BASE_COLUMNS = ("train_clicks", "item_mix")


def _logit(p: np.ndarray | pd.Series) -> np.ndarray:
    p = np.clip(np.asarray(p, dtype=np.float64), 1e-6, 1 - 1e-6)
    return np.log(p / (1 - p))


def label_rates(train: pd.DataFrame, group: np.ndarray, groups: int) -> pd.DataFrame:
    """Per group 0..groups-1: log1p of its train clicks and its shrunk label rates (logit).

    Args:
        train: Train-window rows with the four labels.
        group: The group of each row.
        groups: Number of groups.
    """
    index = pd.RangeIndex(groups)
    by = pd.Series(group, index=train.index)
    counts = train.groupby(by)[list(LABELS)].sum()
    counts["impressions"] = train.groupby(by).size()
    counts = counts.reindex(index, fill_value=0).astype(np.float64)
    out = pd.DataFrame({"train_clicks": np.log1p(counts["click"].to_numpy())}, index=index)
    for label in PRIOR:
        base = "impressions" if label == "click" else "click"
        rate = counts[label].sum() / max(counts[base].sum(), 1.0)
        shrunk = (counts[label] + PRIOR[label] * rate) / (counts[base] + PRIOR[label])
        out[f"r_{label}"] = _logit(shrunk)
    return out


def _test_clicks(test: pd.DataFrame, group: np.ndarray, groups: int) -> np.ndarray:
    clicked = test["click"].to_numpy() == 1
    return np.bincount(group[clicked], minlength=groups).astype(np.float64)


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
    out["weight"] = _test_clicks(test, test["item_id"].to_numpy(), items)
    rates = label_rates(train, train["item_id"].to_numpy(), items)
    return pd.concat([out, rates.set_axis(index)], axis=1)


def cell_columns(
    train: pd.DataFrame,
    test: pd.DataFrame,
    cells: tuple[np.ndarray, np.ndarray],
    categories: tuple[np.ndarray, np.ndarray],
    shape: tuple[int, int],
) -> pd.DataFrame:
    """Read-out columns per (segment, category) cell, flattened row-major, plus `weight`.

    A cell's label rates mix its own intent with its category's and with the items its users
    happened to click, so the columns also carry the category's rates over every segment
    (`cat_<label>`) and the mean logit `item_cvr_30d` of the cell's train clicks (`item_mix`).

    Args:
        train: Train-window rows with the four labels and item_cvr_30d.
        test: Test rows with click.
        cells: Flat cell index of each (train row, test row).
        categories: Category of each (train row, test row).
        shape: (segments, categories).
    """
    n_cells, n_categories = shape[0] * shape[1], shape[1]
    out = label_rates(train, cells[0], n_cells)
    category_rates = label_rates(train, categories[0], n_categories)
    of_cell = np.arange(n_cells) % n_categories
    for label in PRIOR:
        out[f"cat_{label}"] = category_rates[f"r_{label}"].to_numpy()[of_cell]
    clicked = train["click"].to_numpy() == 1
    item_cvr = pd.Series(_logit(train["item_cvr_30d"].to_numpy()[clicked]))
    mix = item_cvr.groupby(cells[0][clicked]).mean().reindex(out.index)
    out["item_mix"] = mix.fillna(item_cvr.mean()).to_numpy()
    out["weight"] = _test_clicks(test, cells[1], n_cells)
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


@dataclass(frozen=True)
class Readout:
    """The recurring parts of intent as one label set reads them, and how well (R^2).

    Attributes:
        item_intent: Per item id, own + brand + category intent.
        age_category: (age buckets, categories).
        gender_category: (genders, categories).
        r2: Part name -> R^2 of its read-out against the truth, weighted by test clicks.
    """

    item_intent: np.ndarray
    age_category: np.ndarray
    gender_category: np.ndarray
    r2: dict[str, float]


def readouts(train: pd.DataFrame, test: pd.DataFrame, pop: Population) -> dict[str, Readout]:
    """Label set name -> its read-out of every recurring part of intent.

    Args:
        train: Train-window rows: user_id, item_id, the four labels and item_cvr_30d.
        test: Test rows: user_id, item_id, click and the item features.
        pop: The world's population (the truths, and each user's segment, each item's category).
    """
    items = item_columns(train, test, len(pop.item_intent))
    category = tuple(pop.item_category[f["item_id"].to_numpy()] for f in (train, test))
    n_categories = pop.age_category.shape[1]
    cells = {}
    for part, segment in (("age_category", "age_bucket"), ("gender_category", "gender")):
        truth = getattr(pop, part)
        codes = tuple(
            pop.user_static[segment][f["user_id"].to_numpy()] * n_categories + c
            for f, c in zip((train, test), category, strict=True)
        )
        cells[part] = (cell_columns(train, test, codes, category, truth.shape), truth)
    out = {}
    for label_set in LABEL_SETS:
        item = cross_fitted_readout(items, label_set.columns, pop.item_intent)
        r2 = {"item_intent": weighted_r2(item, pop.item_intent, items["weight"].to_numpy())}
        read = {}
        for part, (columns, truth) in cells.items():
            estimate = cross_fitted_readout(columns, label_set.cell_columns, truth.ravel())
            r2[part] = weighted_r2(estimate, truth.ravel(), columns["weight"].to_numpy())
            read[part] = estimate.reshape(truth.shape)
        out[label_set.name] = Readout(item, read["age_category"], read["gender_category"], r2)
    return out
