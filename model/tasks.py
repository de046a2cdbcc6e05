"""The one registry of prediction tasks: name, label, rows, which kinds predict it, served field.

Nets (`model.nn.nets`), validation in the trainer, offline evaluation and the serving protocol all
read this table; nobody lists tasks again.

| task       | label          | measured on     | scores   | predicted by           | served as    |
|------------|----------------|-----------------|----------|------------------------|--------------|
| ctr        | click          | all impressions | ctr      | hm3, esm2, esmm        | p_ctr        |
| cvr        | buy            | clicked only    | cvr      | hm3, esm2, esmm, naive | p_cvr        |
| ctcvr      | buy            | all impressions | ctcvr    | hm3, esm2, esmm        | p_ctcvr      |
| ct_micro   | d_micro        | all impressions | ct_micro | hm3                    | p_ct_micro   |
| ct_macro   | d_macro        | all impressions | ct_macro | hm3, esm2              | p_ct_macro   |
| cvr_entire | buy_if_clicked | all impressions | cvr      | hm3, esm2, esmm, naive | (not served) |

CVR is a click-conditional rate, so it is measured on clicked impressions only: the headline
metric of the papers and what the deploy gate and early stopping compare.

`cvr_entire` is evaluation only: it scores the `cvr` output on every impression against
`buy_if_clicked`, the purchase a simulated world draws from p(buy | click) for clicked and
unclicked impressions alike (truth.parquet only). It is the sample-selection-bias test of ESMM:
a CVR model trained on clicked rows only is asked about the rows it never saw. No model outputs
it, no loss trains it, no endpoint serves it, and it is scored only when the label is present.
"""

from __future__ import annotations

from dataclasses import dataclass

CLICK = "click"


@dataclass(frozen=True)
class Task:
    """One prediction task.

    Attributes:
        name: Key of the task in metrics and, for a model output, in model outputs and losses.
        label: Label column it is scored against.
        clicked_only: Whether it is measured on clicked impressions only.
        kinds: Model kinds scored on it.
        title: Human-readable name for plots and reports.
        output: The model output it scores, when not its own name (then no model outputs it).
        truth_only: Whether its label exists only in a simulated world's truth.parquet: never
            trained or served, scored only where the label column is present.
    """

    name: str
    label: str
    clicked_only: bool
    kinds: tuple[str, ...]
    title: str
    output: str | None = None
    truth_only: bool = False

    def __post_init__(self) -> None:
        if self.truth_only and self.is_output:
            raise ValueError(
                f"task {self.name!r}: truth_only label {self.label!r} is never trained, so no "
                f"model outputs it; set output to the model output it scores"
            )

    @property
    def model_output(self) -> str:
        """The model output this task scores."""
        return self.output or self.name

    @property
    def is_output(self) -> bool:
        """Whether models output (and the endpoint serves) this task under its own name."""
        return self.model_output == self.name

    @property
    def where(self) -> str | None:
        """The label column that selects the measured rows (None = all rows)."""
        return CLICK if self.clicked_only else None

    @property
    def response_field(self) -> str:
        """Name of the served probability in a prediction response (model outputs only)."""
        return f"p_{self.name}"


TASKS: dict[str, Task] = {
    t.name: t
    for t in (
        Task("ctr", "click", False, ("hm3", "esm2", "esmm"), "CTR (all impressions)"),
        Task("cvr", "buy", True, ("hm3", "esm2", "esmm", "naive"), "CVR (clicked impressions)"),
        Task("ctcvr", "buy", False, ("hm3", "esm2", "esmm"), "CTCVR (all impressions)"),
        Task("ct_micro", "d_micro", False, ("hm3",), "CT-Micro: click and D-Micro"),
        Task("ct_macro", "d_macro", False, ("hm3", "esm2"), "CT-Macro: click and D-Macro"),
        Task(
            "cvr_entire",
            "buy_if_clicked",
            False,
            ("hm3", "esm2", "esmm", "naive"),
            "CVR, all impressions (counterfactual buy_if_clicked, simulator only)",
            output="cvr",
            truth_only=True,
        ),
    )
}
# The tasks models output, train and serve, in registry order (cvr_entire only scores cvr).
OUTPUTS: dict[str, Task] = {name: t for name, t in TASKS.items() if t.is_output}
HEADLINE = "cvr"


def tasks_of(kind: str) -> tuple[str, ...]:
    """The outputs of a model kind, in registry order (evaluation-only tasks left out).

    Raises:
        ValueError: When no task names the kind.
    """
    names = tuple(t.name for t in OUTPUTS.values() if kind in t.kinds)
    if not names:
        raise ValueError(f"model kind {kind!r} predicts no registered task")
    return names
