"""Deploy gate: deploy a candidate only if it is good enough and not worse than the champion.

The champion is the currently deployed model, recorded in the deployment registry
(`model.evaluate.registry`: `registry.json` in the deployment folder, written by the deploy
step). The rule, on CVR AUC (the headline metric) measured on the *same* evaluation data::

    deploy = candidate >= min_cvr_auc
             and (no champion or candidate >= champion - tolerance)

A registry record that exists but cannot be read is never taken as "no champion": that would let
any model replace the deployed one. It yields a decision not to deploy, with the error as reason.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass

from model.evaluate.registry import RegistryError, RegistryRecord, read_registry

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class GateConfig:
    """Thresholds of the deploy gate.

    Attributes:
        min_cvr_auc: The candidate's CVR AUC must reach this, champion or not.
        tolerance: The candidate may be at most this much below the champion's CVR AUC.
    """

    min_cvr_auc: float = 0.6
    tolerance: float = 0.002

    def __post_init__(self) -> None:
        if not 0.0 <= self.min_cvr_auc <= 1.0 or math.isnan(self.min_cvr_auc):
            raise ValueError(f"min_cvr_auc must be in [0, 1], got {self.min_cvr_auc}")
        if not 0.0 <= self.tolerance < 1.0 or math.isnan(self.tolerance):
            raise ValueError(f"tolerance must be in [0, 1), got {self.tolerance}")


@dataclass(frozen=True)
class GateDecision:
    """The gate's verdict and why.

    Attributes:
        deploy: Whether to deploy the candidate.
        reasons: One sentence per rule checked (or the error that stopped the check).
        candidate_cvr_auc: The candidate's CVR AUC on the evaluation data.
        champion_cvr_auc: The champion's CVR AUC on the same data; None without champion.
        champion_version: The champion's version; None without champion.
    """

    deploy: bool
    reasons: tuple[str, ...]
    candidate_cvr_auc: float | None
    champion_cvr_auc: float | None = None
    champion_version: str | None = None

    @property
    def verdict(self) -> str:
        """The string a pipeline condition compares against: "deploy" or "hold"."""
        return "deploy" if self.deploy else "hold"

    def to_dict(self) -> dict[str, object]:
        """JSON-ready form, including the verdict."""
        return {"verdict": self.verdict, **asdict(self), "reasons": list(self.reasons)}


def decide(
    candidate_cvr_auc: float | None,
    champion_cvr_auc: float | None,
    config: GateConfig,
    champion_version: str | None = None,
) -> GateDecision:
    """Apply the gate rule to AUCs measured on the same data.

    Args:
        candidate_cvr_auc: The candidate's CVR AUC; None when it could not be computed (e.g. no
            purchases among the evaluated clicks), which never deploys.
        champion_cvr_auc: The champion's CVR AUC, or None when nothing is deployed yet.
        config: The thresholds.
        champion_version: For the reasons text.
    """
    if candidate_cvr_auc is None or math.isnan(candidate_cvr_auc):
        return GateDecision(
            deploy=False,
            reasons=("candidate CVR AUC could not be computed on the evaluation data",),
            candidate_cvr_auc=None,
            champion_cvr_auc=champion_cvr_auc,
            champion_version=champion_version,
        )
    reasons = []
    meets_min = candidate_cvr_auc >= config.min_cvr_auc
    reasons.append(
        f"candidate CVR AUC {candidate_cvr_auc:.4f} "
        f"{'>=' if meets_min else '<'} minimum {config.min_cvr_auc:.4f}"
    )
    if champion_cvr_auc is None:
        beats_champion = True
        reasons.append("no champion deployed: first deployment")
    else:
        floor = champion_cvr_auc - config.tolerance
        beats_champion = candidate_cvr_auc >= floor
        champion = f"champion {champion_version}" if champion_version else "champion"
        reasons.append(
            f"candidate CVR AUC {candidate_cvr_auc:.4f} {'>=' if beats_champion else '<'} "
            f"{champion} {champion_cvr_auc:.4f} - tolerance {config.tolerance:.4f} = {floor:.4f}"
        )
    return GateDecision(
        deploy=meets_min and beats_champion,
        reasons=tuple(reasons),
        candidate_cvr_auc=candidate_cvr_auc,
        champion_cvr_auc=champion_cvr_auc,
        champion_version=champion_version,
    )


def run_gate(
    candidate_cvr_auc: float | None,
    deploy_dir: str,
    config: GateConfig,
    score_champion: Callable[[RegistryRecord], float | None],
) -> GateDecision:
    """Read the champion from the registry, score it on the same data, and decide.

    Errors reading the record or scoring the champion model do not raise: they produce a
    decision not to deploy whose reason is the error, logged at ERROR level, so that a pipeline
    shows why nothing was deployed instead of replacing a model it could not compare against.

    Args:
        candidate_cvr_auc: The candidate's CVR AUC on the evaluation data.
        deploy_dir: Deployment folder holding `registry.json` (local or gs://).
        config: The thresholds.
        score_champion: Returns the champion model's CVR AUC on the same evaluation data.
    """
    try:
        record = read_registry(deploy_dir)
    except RegistryError as err:
        log.error("deploy gate: %s", err)
        return GateDecision(
            deploy=False,
            reasons=(f"champion registry record is corrupt, not deploying: {err}",),
            candidate_cvr_auc=candidate_cvr_auc,
        )
    if record is None:
        return decide(candidate_cvr_auc, None, config)
    try:
        champion_auc = score_champion(record)
    except (OSError, ValueError, RuntimeError) as err:
        log.error("deploy gate: cannot evaluate champion %s: %s", record.model_uri, err)
        return GateDecision(
            deploy=False,
            reasons=(
                f"champion {record.version} at {record.model_uri} could not be evaluated on "
                f"the same data, not deploying: {err}",
            ),
            candidate_cvr_auc=candidate_cvr_auc,
            champion_version=record.version,
        )
    if champion_auc is None:
        return GateDecision(
            deploy=False,
            reasons=(f"champion {record.version} CVR AUC could not be computed on the same data",),
            candidate_cvr_auc=candidate_cvr_auc,
            champion_version=record.version,
        )
    return decide(candidate_cvr_auc, champion_auc, config, champion_version=record.version)
