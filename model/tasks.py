"""The one registry of prediction tasks: name, label, rows, which kinds predict it, served field.

Nets (`model.nn.nets`), validation in the trainer, offline evaluation and the serving protocol all
read this table; nobody lists tasks again.

| task     | label   | measured on          | predicted by         | response field |
|----------|---------|----------------------|----------------------|----------------|
| ctr      | click   | all impressions      | hm3, esm2, esmm      | p_ctr          |
| cvr      | buy     | clicked impressions  | hm3, esm2, esmm, naive | p_cvr        |
| ctcvr    | buy     | all impressions      | hm3, esm2, esmm      | p_ctcvr        |
| ct_micro | d_micro | all impressions      | hm3                  | p_ct_micro     |
| ct_macro | d_macro | all impressions      | hm3, esm2            | p_ct_macro     |

CVR is a click-conditional rate, so it is measured on clicked impressions only: the headline
metric of the papers and what the deploy gate and early stopping compare.
"""

from __future__ import annotations

from dataclasses import dataclass

CLICK = "click"


@dataclass(frozen=True)
class Task:
    """One prediction task.

    Attributes:
        name: Key of the task in model outputs, metrics and losses.
        label: Label column it is scored against.
        clicked_only: Whether it is measured on clicked impressions only.
        kinds: Model kinds that output it.
        title: Human-readable name for plots and reports.
    """

    name: str
    label: str
    clicked_only: bool
    kinds: tuple[str, ...]
    title: str

    @property
    def where(self) -> str | None:
        """The label column that selects the measured rows (None = all rows)."""
        return CLICK if self.clicked_only else None

    @property
    def response_field(self) -> str:
        """Name of the served probability in a prediction response."""
        return f"p_{self.name}"


TASKS: dict[str, Task] = {
    t.name: t
    for t in (
        Task("ctr", "click", False, ("hm3", "esm2", "esmm"), "CTR (all impressions)"),
        Task("cvr", "buy", True, ("hm3", "esm2", "esmm", "naive"), "CVR (clicked impressions)"),
        Task("ctcvr", "buy", False, ("hm3", "esm2", "esmm"), "CTCVR (all impressions)"),
        Task("ct_micro", "d_micro", False, ("hm3",), "CT-Micro: click and D-Micro"),
        Task("ct_macro", "d_macro", False, ("hm3", "esm2"), "CT-Macro: click and D-Macro"),
    )
}
HEADLINE = "cvr"


def tasks_of(kind: str) -> tuple[str, ...]:
    """The tasks a model kind outputs, in registry order.

    Raises:
        ValueError: When no task names the kind.
    """
    names = tuple(t.name for t in TASKS.values() if kind in t.kinds)
    if not names:
        raise ValueError(f"model kind {kind!r} predicts no registered task")
    return names
