"""The deployment registry: which model is deployed now, as JSON in the deployment folder.

The record is a JSON file `registry.json` in the deployment folder (local path, file:// or gs://),
written by the deploy step with `write_registry` and read by the deploy gate
(`model.evaluate.gate.run_gate`) to find the champion.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime

from model import storage

REGISTRY_FILE = "registry.json"


class RegistryError(ValueError):
    """The deployment registry record exists but is unreadable or invalid."""


@dataclass(frozen=True)
class RegistryRecord:
    """What is deployed now, as written to `registry.json` by the deploy step.

    Attributes:
        model_uri: Where the deployed model artifact lives (local folder or gs://).
        kind: Model kind (hm3, esm2, esmm, naive).
        version: The artifact's version string.
        cvr_auc: CVR AUC measured when it was deployed (for the record; the gate re-evaluates
            the champion on the current data).
        data: The evaluation data that CVR AUC was measured on.
        deployed_at: ISO-8601 UTC time of deployment.
    """

    model_uri: str
    kind: str
    version: str
    cvr_auc: float
    data: str = ""
    deployed_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat())

    def __post_init__(self) -> None:
        for name in ("model_uri", "kind", "version", "data", "deployed_at"):
            value = getattr(self, name)
            if not isinstance(value, str):
                raise ValueError(f"{name} must be a string, got {value!r}")
        for name in ("model_uri", "kind", "version"):
            if not getattr(self, name):
                raise ValueError(f"{name} must not be empty")
        if (
            isinstance(self.cvr_auc, bool)
            or not isinstance(self.cvr_auc, int | float)
            or not 0.0 <= self.cvr_auc <= 1.0
        ):
            raise ValueError(f"cvr_auc must be a number in [0, 1], got {self.cvr_auc!r}")


def registry_uri(deploy_dir: str) -> str:
    """Location of the registry record in a deployment folder."""
    return storage.join(deploy_dir, REGISTRY_FILE)


def read_registry(deploy_dir: str) -> RegistryRecord | None:
    """Read the champion record of a deployment folder.

    Returns:
        The record, or None when the folder has no `registry.json` (first deployment).

    Raises:
        RegistryError: Naming the file and what is wrong when it exists but is not valid JSON,
            not an object, lacks a field, has an unknown field or a field of the wrong type.
    """
    uri = registry_uri(deploy_dir)
    if not storage.exists(uri):
        return None
    try:
        raw = json.loads(storage.read_text(uri))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise RegistryError(f"{uri}: not valid JSON ({err})") from err
    if not isinstance(raw, dict):
        raise RegistryError(f"{uri}: expected a JSON object, got {type(raw).__name__}")
    known = {f.name for f in fields(RegistryRecord)}
    required = {"model_uri", "kind", "version", "cvr_auc"}
    missing = sorted(required - raw.keys())
    if missing:
        raise RegistryError(f"{uri}: missing field(s) {missing}")
    unknown = sorted(raw.keys() - known)
    if unknown:
        raise RegistryError(f"{uri}: unknown field(s) {unknown}; expected {sorted(known)}")
    try:
        return RegistryRecord(**raw)
    except ValueError as err:
        raise RegistryError(f"{uri}: {err}") from err


def write_registry(deploy_dir: str, record: RegistryRecord) -> str:
    """Write the champion record atomically; returns its URI."""
    uri = registry_uri(deploy_dir)
    storage.write_text_atomic(uri, json.dumps(asdict(record), indent=2, sort_keys=True) + "\n")
    return uri
