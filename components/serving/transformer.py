"""The KServe transformer: completes instances with Feast online features before scoring.

The feature list, kinds and defaults come from the Feast `FeatureService` (`hm3_v1` by default)
through `model.data.features`; this module names no feature. Per instance:

- a feature the instance carries is used as is (Feast is not consulted for it);
- otherwise the online store's value is used; a value the store lacks gets the Field's
  documented default (the same one training retrieval used) and is listed in `defaulted`;
- a key (user_id, item_id) whose entity the store does not know at all (every feature of its
  views missing) is listed in `unknown_ids`; the instance is still scored.

On a cluster the transformer forwards the completed V1 instances to the predictor component
(`--predictor_host`, V1 protocol). Locally it may hold the predictor in the same process
(`hm3 serve --feast-repo`), and then calls it directly instead of over HTTP.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from kserve.errors import InvalidInput
from kserve.protocol.infer_type import InferRequest

from components.serving.base import ScoringModel
from components.serving.predictor import HM3Predictor
from components.serving.protocol import (
    FLOAT,
    INT,
    Batch,
    FieldSpec,
    RequestSchema,
    Scores,
    ServingConfig,
    context_value_type,
    parse_request,
    scores_from_v1,
    to_v1_instances,
)
from model.data import schema

log = logging.getLogger(__name__)


class FeastTransformer(ScoringModel):
    """Fetches the FeatureService's features for each instance, then has the predictor score."""

    def __init__(
        self,
        feast_repo: str,
        config: ServingConfig,
        service: str = "hm3_v1",
        predictor: HM3Predictor | None = None,
    ) -> None:
        """Create an unloaded transformer; `load()` opens the feature store.

        Args:
            feast_repo: Feast repo folder (or its feature_store.yaml), applied and materialized.
            config: Endpoint name and request limits (shared with the predictor).
            service: Feature service whose features the model was trained on.
            predictor: An in-process predictor to call instead of `--predictor_host`.
        """
        super().__init__(config.model_name)
        self.feast_repo = feast_repo
        self.config = config
        self.service = service
        self.predictor = predictor
        self.store: Any = None
        self.online: Any = None
        self.request_schema: RequestSchema | None = None
        self.features: list[Any] = []
        self.key_features: dict[str, list[str]] = {}

    def load(self) -> bool:
        """Open the store, resolve the service's features, and load an in-process predictor."""
        from model.data.features import OnlineFeatureClient, open_store

        self.store = open_store(self.feast_repo)
        # Resolve the FeatureService once: re-reading the registry per request cost ~25 ms.
        self.online = OnlineFeatureClient(self.store, self.service)
        self.features = self.online.features
        fields = [FieldSpec(name, kind, INT) for name, kind in schema.KEY_FEATURES.items()]
        fields += [
            FieldSpec(name, kind, context_value_type(name))
            for name, kind in schema.CONTEXT_FEATURES.items()
        ]
        fields += [
            FieldSpec(f.name, f.kind, INT if f.kind == schema.KIND_CATEGORICAL else FLOAT)
            for f in self.features
        ]
        self.request_schema = RequestSchema(tuple(fields))
        views = {v.name: v for v in self.store.list_feature_views()}
        self.key_features = {}
        for f in self.features:
            view = views.get(f.view)  # on-demand views have no entity of their own
            if view is not None and len(view.join_keys) == 1:
                self.key_features.setdefault(view.join_keys[0], []).append(f.name)
        if self.predictor is not None and not self.predictor.ready:
            self.predictor.load()
        log.info(
            "feature service %s: %d features from %s",
            self.service,
            len(self.features),
            self.feast_repo,
        )
        self.ready = True
        return self.ready

    async def preprocess(
        self, payload: dict | InferRequest | bytes, headers: dict[str, str] | None = None
    ) -> Batch:
        """Validate the request, then fill the features instances do not carry from Feast."""
        batch = parse_request(payload, self.request_schema, self.config)
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, self.complete, batch)
        return batch

    def complete(self, batch: Batch) -> None:
        """Fill missing features of every instance in place from the online store.

        Raises:
            InvalidInput: If the store rejects a key (names the row and key).
        """
        names = [f.name for f in self.features]
        todo = [j for j, row in enumerate(batch.rows) if any(n not in row for n in names)]
        if not todo:
            return
        try:
            found = self.online.get([batch.rows[j] for j in todo])
        except ValueError as err:
            raise InvalidInput(f"feature lookup: {err}") from err
        missing = {name: set(rows) for name, rows in found.missing.items()}
        for k, j in enumerate(todo):
            row = batch.rows[j]
            for name in names:
                if name in row:
                    continue
                row[name] = found.values[name][k]
                if k in missing.get(name, ()):
                    batch.defaulted[j].append(name)
            for key, key_names in self.key_features.items():
                if all(k in missing.get(n, ()) for n in key_names):
                    batch.unknown_ids[j].append(key)

    async def predict(
        self,
        payload: Batch,
        headers: dict[str, str] | None = None,
        response_headers: dict[str, str] | None = None,
    ) -> Scores:
        """Score with the in-process predictor, or forward V1 instances to the predictor host."""
        if self.predictor is not None:
            return await self.predictor.predict(payload, headers)
        response = await super().predict(to_v1_instances(payload), headers, response_headers)
        return scores_from_v1(response, payload)
