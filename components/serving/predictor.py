"""The KServe predictor: scores validated instances with a trained model artifact.

The artifact is loaded through `model.artifact.load_model`: safetensors weights + config.json, or
the torch.export program (`--exported_program`); nothing is unpickled. A `gs://` location is
copied to a local folder verified against its manifest, so a half-uploaded artifact is refused
instead of served.
"""

from __future__ import annotations

import asyncio
import logging
import os
from typing import Any

import numpy as np
from kserve.protocol.infer_type import InferRequest

from components.serving.base import ScoringModel
from components.serving.protocol import (
    Batch,
    RequestSchema,
    Scores,
    ServingConfig,
    parse_request,
    schema_from_feature_spec,
)
from model.tasks import OUTPUTS

log = logging.getLogger(__name__)


class HM3Predictor(ScoringModel):
    """Serves one model artifact under `config.model_name` (V1 and V2 protocols)."""

    def __init__(
        self,
        model_uri: str | os.PathLike[str],
        config: ServingConfig,
        exported: bool = False,
        device: str = "cpu",
    ) -> None:
        """Create an unloaded predictor; `load()` reads the artifact.

        Args:
            model_uri: Model artifact folder: local path, file:// or gs:// URI.
            config: Endpoint name and request limits.
            exported: Run the exported `model.pt2` program instead of the rebuilt network.
            device: Where the network runs: `cpu`, `cuda`, `cuda:N` or `auto`.
        """
        super().__init__(config.model_name)
        self.model_uri = str(model_uri)
        self.exported = exported
        self.device = device
        self.config = config
        self.model: Any = None
        self.request_schema: RequestSchema | None = None

    def load(self) -> bool:
        """Load the artifact and derive the request schema from its feature spec."""
        from model.artifact import load_model

        self.model = load_model(self.model_uri, exported=self.exported, device=self.device)
        self.request_schema = schema_from_feature_spec(self.model.feature_spec)
        log.info(
            "loaded %s model version %s from %s on %s (%d input fields)",
            self.model.kind,
            self.model.version,
            self.model_uri,
            self.model.device,
            len(self.request_schema.fields),
        )
        self.ready = True
        return self.ready

    @property
    def version(self) -> str:
        """Version string of the loaded model."""
        return str(self.model.version)

    async def preprocess(
        self, payload: dict | InferRequest | bytes, headers: dict[str, str] | None = None
    ) -> Batch:
        """Validate a V1/V2 request into a `Batch` (HTTP 400 naming the field on errors)."""
        return parse_request(payload, self.request_schema, self.config)

    async def predict(
        self,
        payload: Batch,
        headers: dict[str, str] | None = None,
        response_headers: dict[str, str] | None = None,
    ) -> Scores:
        """Score the batch off the event loop, so health checks answer during a forward pass."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(None, self.score, payload)

    def score(self, batch: Batch) -> Scores:
        """Run the model on a validated batch; missing features take the model's defaults.

        Features an instance does not carry (and the transformer did not fill) are passed to
        the model as missing, which fills its documented default; they are listed per instance
        in `defaulted`, after any the transformer already defaulted.
        """
        names = [f.name for f in self.request_schema.fields]
        outputs = self.model.predict_records(batch.rows)
        tasks = {
            task: np.clip(np.asarray(outputs[task], dtype=np.float64).reshape(-1), 0.0, 1.0)
            for task in OUTPUTS
            if task in outputs
        }
        defaulted = []
        for j, row in enumerate(batch.rows):
            upstream = batch.defaulted[j]
            defaulted.append(upstream + [n for n in names if n not in row and n not in upstream])
        return Scores(
            tasks=tasks,
            defaulted=defaulted,
            unknown_ids=batch.unknown_ids,
            model_version=self.version,
            protocol=batch.protocol,
            request_id=batch.request_id,
        )
