"""The report's plots: one color per model on every plot, training curves on shared axes."""

from __future__ import annotations

from matplotlib.colors import to_hex

from model.evaluate.report import history_figure, how_to_read, model_styles
from model.evaluate.scoring import CHAMPION, ORACLE

HISTORIES = {
    "hm3": [
        {"epoch": 1, "train_loss": 1.5, "auc_ctr": 0.70, "auc_ct_micro": 0.78, "auc_cvr": 0.79},
        {"epoch": 2, "train_loss": 1.4, "auc_ctr": 0.71, "auc_ct_micro": 0.79, "auc_cvr": 0.81},
    ],
    "esmm": [{"epoch": 1, "train_loss": 0.9, "auc_ctr": 0.69, "auc_cvr": 0.60}],
    "naive": [
        {"epoch": 1, "train_loss": 0.3, "auc_cvr": 0.80},
        {"epoch": 2, "train_loss": 0.2, "auc_cvr": 0.82},
        {"epoch": 3, "train_loss": 0.2, "auc_cvr": 0.83},
    ],
}


def test_a_models_color_does_not_depend_on_which_other_models_are_plotted() -> None:
    few = model_styles(["naive", ORACLE])
    many = model_styles(["hm3", "esm2", "esmm", "naive", CHAMPION, ORACLE, "extra"])
    assert few["naive"] == many["naive"] and few[ORACLE] == many[ORACLE]
    colors = [style["color"] for name, style in many.items()]
    assert len(set(colors)) == len(colors)  # and no two models share one


def test_training_curves_give_each_model_its_color_and_share_the_auc_axis() -> None:
    fig = history_figure(HISTORIES)
    assert fig is not None
    styles = model_styles(list(HISTORIES))
    panels = {ax.get_title(): ax for ax in fig.axes if ax.get_visible()}
    # A panel per series, the loss first and the headline AUC next; every model on each.
    assert list(panels) == [
        "train_loss",
        "validation auc_cvr",
        "validation auc_ctr",
        "validation auc_ct_micro",
    ]
    for title, ax in panels.items():
        for line in ax.get_lines():
            name = line.get_label()
            assert to_hex(line.get_color()) == to_hex(styles[name]["color"]), (title, name)
    assert {line.get_label() for line in panels["validation auc_cvr"].get_lines()} == set(HISTORIES)
    auc_limits = {ax.get_ylim() for title, ax in panels.items() if "auc" in title}
    assert len(auc_limits) == 1  # the same AUC range on every AUC panel
    (low, high), *_ = auc_limits
    assert low < 0.60 and high > 0.83  # and no curve is cut off
    assert {ax.get_xlim() for ax in panels.values()} == {(0.5, 3.5)}  # the longest run's epochs


def test_the_report_opens_with_how_to_read_it() -> None:
    text = how_to_read()
    assert "How to read this page" in text
    for name, style in model_styles(["hm3", "esm2", "esmm", "naive"]).items():
        assert f"color:{style['color']}'><b>{name}</b>" in text
