"""What the predictor and the transformer share as KServe models: one request path.

Both validate a whole V1/V2 request in `preprocess` (into a `protocol.Batch`, or HTTP 400 naming
the field), so KServe's own `validate` step passes the payload through; and both answer in the
protocol of the request from `protocol.Scores`.
"""

from __future__ import annotations

from typing import Any

import kserve
from kserve.protocol.infer_type import InferResponse

from components.serving.protocol import Scores, format_response


class ScoringModel(kserve.Model):
    """A `kserve.Model` that validates in `preprocess` and formats `Scores` in `postprocess`."""

    def validate(self, payload: Any) -> Any:
        """Pass through: `preprocess` validates the request completely."""
        return payload

    async def postprocess(
        self,
        result: Scores,
        headers: dict[str, str] | None = None,
        response_headers: dict[str, str] | None = None,
    ) -> dict | InferResponse:
        """Format the scores in the protocol of the client's request."""
        return format_response(result, self.name)
