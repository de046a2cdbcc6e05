"""Request validation and response formatting for the HM^3 endpoint, V1 and V2 protocols.

Everything a client can get wrong is checked here, before the model runs, and reported as
`kserve.errors.InvalidInput` (HTTP 400) with the instance index and field named. Nothing is
dropped silently: an unknown field is an error, a missing or null feature is filled with the
model's documented default and listed in the response under `defaulted`.

V1 request (`POST /v1/models/hm3:predict`)::

    {"instances": [{"user_id": 1, "item_id": 2, "scene": "home", "price": 19.9}, ...]}

V1 response, one prediction per instance, in order::

    {"predictions": [{"p_ctr": 0.03, "p_cvr": 0.02, "p_ctcvr": 0.0006, "p_ct_micro": 0.01,
                      "p_ct_macro": 0.004, "model_version": "...", "defaulted": ["age_bucket"],
                      "unknown_ids": []}]}

V2 request (`POST /v2/models/hm3/infer`): one input tensor per field, shape [N] or [N, 1],
named like the V1 field (INT64/INT32 for ids and integer features, FP32/FP64 for dense ones,
BYTES for string categories). V2 response: FP32 outputs `p_ctr` ... `p_ct_macro` of shape [N]
(tasks the model kind does not predict are omitted), BYTES outputs `defaulted` and
`unknown_ids` (one comma-separated string per instance), and `model_version` at the top level.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
from kserve.errors import InvalidInput
from kserve.protocol.infer_type import InferOutput, InferRequest, InferResponse

from model.data import schema
from model.tasks import OUTPUTS

# Output name -> response field. The model returns a subset keyed by task (model.artifact);
# evaluation-only tasks (cvr_entire) are no outputs and never served.
RESPONSE_FIELDS: dict[str, str] = {t.name: t.response_field for t in OUTPUTS.values()}
DEFAULTED = "defaulted"
UNKNOWN_IDS = "unknown_ids"
MODEL_VERSION = "model_version"

PROTOCOL_V1 = "v1"
PROTOCOL_V2 = "v2"

# Python value types a field accepts. A categorical whose training vocabulary mixes types (or is
# empty) accepts both ints and strings; the encoder maps anything unseen to "unknown".
INT = "int"
FLOAT = "float"
STR = "str"
INT_OR_STR = "int|str"

_V2_TYPES: dict[str, frozenset[str]] = {
    INT: frozenset({"INT64", "INT32", "INT16", "INT8", "UINT8", "UINT16", "UINT32", "UINT64"}),
    FLOAT: frozenset({"FP64", "FP32", "INT64", "INT32", "INT16", "INT8"}),
    STR: frozenset({"BYTES"}),
    INT_OR_STR: frozenset({"BYTES", "INT64", "INT32", "INT16", "INT8"}),
}


@dataclass(frozen=True)
class ServingConfig:
    """Limits and names of one endpoint.

    Attributes:
        model_name: Name on the URL path (`/v1/models/<name>:predict`).
        max_batch_size: Most instances in one request; larger batches get HTTP 400.
        max_body_bytes: Largest request body accepted; larger bodies get HTTP 413 before they
            are parsed. The default fits a full batch of instances carrying every feature.
    """

    model_name: str = "hm3"
    max_batch_size: int = 512
    max_body_bytes: int = 4 * 1024 * 1024

    def __post_init__(self) -> None:
        if not self.model_name or "/" in self.model_name or ":" in self.model_name:
            raise ValueError(f"model_name must be a plain name, got {self.model_name!r}")
        if not 1 <= self.max_batch_size <= 100_000:
            raise ValueError(f"max_batch_size must be in [1, 100000], got {self.max_batch_size}")
        if not 1024 <= self.max_body_bytes <= 1024**3:
            raise ValueError(
                f"max_body_bytes must be in [1024, 1073741824], got {self.max_body_bytes}"
            )


@dataclass(frozen=True)
class FieldSpec:
    """One field an instance may carry.

    Attributes:
        name: Field name, as in the training table.
        kind: `id`, `categorical` or `dense` (see `model.data.schema`).
        value_type: Accepted JSON type: `int`, `float`, `str` or `int|str`.
    """

    name: str
    kind: str
    value_type: str

    def __post_init__(self) -> None:
        if self.value_type not in _V2_TYPES:
            raise ValueError(f"field {self.name}: unknown value_type {self.value_type!r}")


@dataclass(frozen=True)
class RequestSchema:
    """The fields of an instance: the required keys, then optional context and features."""

    fields: tuple[FieldSpec, ...]
    required: tuple[str, ...] = tuple(schema.KEY_FEATURES)

    def __post_init__(self) -> None:
        names = [f.name for f in self.fields]
        missing = [r for r in self.required if r not in names]
        if missing:
            raise ValueError(f"request schema lacks required field(s) {missing}")

    @property
    def by_name(self) -> dict[str, FieldSpec]:
        """Fields keyed by name."""
        return {f.name: f for f in self.fields}

    @property
    def optional(self) -> list[str]:
        """Names of the fields that may be left out (they are then defaulted)."""
        return [f.name for f in self.fields if f.name not in self.required]


def context_value_type(name: str) -> str:
    """The JSON type of a request-time context field, from the impressions table contract."""
    return STR if pa.types.is_string(schema.IMPRESSIONS.field(name).type) else INT


def schema_from_feature_spec(spec: Any) -> RequestSchema:
    """The request schema of a trained model, from its `model.data.encoding.FeatureSpec`.

    Ids are integers, dense features numbers, context fields typed as in `schema.IMPRESSIONS`,
    and other categoricals typed by their training vocabulary.
    """
    fields = []
    for info in spec.features:
        if info.kind == schema.KIND_ID:
            value_type = INT
        elif info.kind == schema.KIND_DENSE:
            value_type = FLOAT
        elif info.name in schema.CONTEXT_FEATURES:
            value_type = context_value_type(info.name)
        else:
            value_type = _vocabulary_type(info.vocabulary)
        fields.append(FieldSpec(info.name, info.kind, value_type))
    return RequestSchema(tuple(fields))


def _vocabulary_type(vocabulary: Sequence[object]) -> str:
    if vocabulary and all(isinstance(v, str) for v in vocabulary):
        return STR
    if vocabulary and all(isinstance(v, int) and not isinstance(v, bool) for v in vocabulary):
        return INT
    return INT_OR_STR


@dataclass
class Batch:
    """A validated request: one dict of field values per instance, plus what to report.

    Attributes:
        rows: Field name -> value per instance; fields not given (or null) are absent.
        protocol: `v1` or `v2`, the protocol the response must use.
        request_id: V2 request id echoed in the response ("" for V1).
        defaulted: Per instance, features the transformer filled with their Feast default.
        unknown_ids: Per instance, the key fields whose entity the feature store did not know.
    """

    rows: list[dict[str, object]]
    protocol: str = PROTOCOL_V1
    request_id: str = ""
    defaulted: list[list[str]] = field(default_factory=list)
    unknown_ids: list[list[str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.defaulted:
            self.defaulted = [[] for _ in self.rows]
        if not self.unknown_ids:
            self.unknown_ids = [[] for _ in self.rows]


@dataclass
class Scores:
    """Model output for a batch, ready to be formatted in the request's protocol.

    Attributes:
        tasks: Task name -> probability per instance (only the tasks the model predicts).
        defaulted: Per instance, the features filled with their documented default.
        unknown_ids: Per instance, key fields whose entity the feature store did not know.
        model_version: Version string of the model that scored the batch.
        protocol: Protocol of the originating request.
        request_id: V2 request id to echo.
    """

    tasks: dict[str, np.ndarray]
    defaulted: list[list[str]]
    unknown_ids: list[list[str]]
    model_version: str
    protocol: str = PROTOCOL_V1
    request_id: str = ""


def parse_request(payload: object, request_schema: RequestSchema, config: ServingConfig) -> Batch:
    """Validate a V1 dict or V2 `InferRequest` into a `Batch`.

    Raises:
        InvalidInput: Naming the instance and field, for any client error.
    """
    if isinstance(payload, InferRequest):
        return parse_v2(payload, request_schema, config)
    return parse_v1(payload, request_schema, config)


def parse_v1(payload: object, request_schema: RequestSchema, config: ServingConfig) -> Batch:
    """Validate a V1 body `{"instances": [{...}, ...]}`.

    KServe hands over raw bytes when the Content-Type is not JSON; those are decoded here too,
    so a client that forgot the header still gets an answer (or a 400 saying why not).

    Raises:
        InvalidInput: On a malformed body, a missing or mistyped field, an unknown field, an
            empty batch or one larger than `config.max_batch_size`.
    """
    if isinstance(payload, (bytes, bytearray)):
        try:
            payload = orjson.loads(payload)
        except orjson.JSONDecodeError as err:
            raise InvalidInput(f"request body is not valid JSON: {err}") from err
    if not isinstance(payload, Mapping):
        raise InvalidInput(
            f"request body must be a JSON object with 'instances', got {_json_type(payload)}"
        )
    if "instances" not in payload:
        raise InvalidInput("request body lacks field 'instances' (a list of objects)")
    extra = sorted(set(payload) - {"instances", "parameters"})
    if extra:
        raise InvalidInput(f"unknown top-level field(s) {extra}; expected 'instances'")
    instances = payload["instances"]
    if not isinstance(instances, list):
        raise InvalidInput(f"'instances' must be a list, got {_json_type(instances)}")
    _check_batch_size(len(instances), "instances", config)
    by_name = request_schema.by_name
    rows = []
    for i, instance in enumerate(instances):
        where = f"instances[{i}]"
        if not isinstance(instance, Mapping):
            raise InvalidInput(f"{where} must be an object, got {_json_type(instance)}")
        unknown = sorted(set(instance) - set(by_name))
        if unknown:
            raise InvalidInput(
                f"{where}: unknown field(s) {unknown}; known fields: {sorted(by_name)}"
            )
        row: dict[str, object] = {}
        for name, value in instance.items():
            if value is not None:
                row[name] = _check_value(value, by_name[name], where)
        for name in request_schema.required:
            if name not in row:
                raise InvalidInput(f"{where}: missing required field {name!r} (an integer id)")
        rows.append(row)
    return Batch(rows=rows, protocol=PROTOCOL_V1)


def parse_v2(request: InferRequest, request_schema: RequestSchema, config: ServingConfig) -> Batch:
    """Validate a V2 inference request with one input tensor per field.

    Raises:
        InvalidInput: On an unknown input name, a wrong datatype, inconsistent or bad shapes,
            a missing required input, or an empty or oversized batch.
    """
    by_name = request_schema.by_name
    if not request.inputs:
        raise InvalidInput("'inputs' must be a non-empty list of tensors")
    columns: dict[str, list[object]] = {}
    n_rows: int | None = None
    for inp in request.inputs:
        where = f"inputs[name={inp.name!r}]"
        spec = by_name.get(inp.name)
        if spec is None:
            raise InvalidInput(f"{where}: unknown input; known inputs: {sorted(by_name)}")
        if inp.name in columns:
            raise InvalidInput(f"{where}: input given twice")
        if inp.datatype not in _V2_TYPES[spec.value_type]:
            raise InvalidInput(
                f"{where}: datatype {inp.datatype} not accepted; expected one of "
                f"{sorted(_V2_TYPES[spec.value_type])}"
            )
        shape = list(inp.shape)
        if not (len(shape) == 1 or (len(shape) == 2 and shape[1] == 1)) or shape[0] < 0:
            raise InvalidInput(f"{where}: shape must be [N] or [N, 1], got {shape}")
        try:
            values = inp.as_numpy().reshape(-1)
        except (ValueError, TypeError) as err:
            raise InvalidInput(f"{where}: data does not match shape {shape}: {err}") from err
        if n_rows is None:
            n_rows = shape[0]
            _check_batch_size(n_rows, "inputs", config)
        elif shape[0] != n_rows:
            raise InvalidInput(f"{where}: batch size {shape[0]} differs from {n_rows}")
        columns[inp.name] = [
            _check_value(_plain(v), spec, f"{where}[{j}]") for j, v in enumerate(values)
        ]
    for name in request_schema.required:
        if name not in columns:
            raise InvalidInput(f"missing required input {name!r} (INT64 ids, shape [N])")
    rows = [{name: col[j] for name, col in columns.items()} for j in range(n_rows or 0)]
    return Batch(rows=rows, protocol=PROTOCOL_V2, request_id=request.id or "")


def _check_batch_size(n: int, name: str, config: ServingConfig) -> None:
    if n == 0:
        raise InvalidInput(f"'{name}' is empty; send at least one instance")
    if n > config.max_batch_size:
        raise InvalidInput(
            f"'{name}' holds {n} instances, more than max_batch_size {config.max_batch_size}; "
            "split the batch"
        )


def _plain(value: object) -> object:
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, np.generic):
        return value.item()
    return value


def _check_value(value: object, spec: FieldSpec, where: str) -> object:
    """Check one value against its field's type; ints are accepted where floats are."""
    is_int = isinstance(value, int) and not isinstance(value, bool)
    if spec.value_type == INT:
        if is_int:
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        expected = "an integer"
    elif spec.value_type == FLOAT:
        if is_int or isinstance(value, float):
            if not math.isfinite(value):
                raise InvalidInput(f"{where}: field {spec.name!r} must be finite, got {value}")
            return float(value)
        expected = "a number"
    elif spec.value_type == STR:
        if isinstance(value, str):
            return value
        expected = "a string"
    else:
        if is_int or isinstance(value, str):
            return value
        expected = "an integer or a string"
    raise InvalidInput(
        f"{where}: field {spec.name!r} must be {expected}, got {_json_type(value)} {value!r:.40}"
    )


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, (list, tuple)):
        return "array"
    if isinstance(value, Mapping):
        return "object"
    return type(value).__name__


def to_v1_instances(batch: Batch) -> dict[str, object]:
    """The V1 body a transformer forwards to the predictor (features filled in)."""
    return {"instances": batch.rows}


def scores_from_v1(response: Mapping[str, object], batch: Batch) -> Scores:
    """Rebuild `Scores` from a predictor's V1 response (transformer side).

    Raises:
        ValueError: If the predictor's answer does not hold one prediction per instance.
    """
    predictions = response.get("predictions")
    if not isinstance(predictions, list) or len(predictions) != len(batch.rows):
        raise ValueError(
            f"predictor returned {type(predictions).__name__} for {len(batch.rows)} instances"
        )
    tasks = {
        task: np.array([p[key] for p in predictions], dtype=np.float64)
        for task, key in RESPONSE_FIELDS.items()
        if predictions[0].get(key) is not None
    }
    defaulted = []
    for upstream, prediction in zip(batch.defaulted, predictions, strict=True):
        downstream = [n for n in prediction.get(DEFAULTED, []) if n not in upstream]
        defaulted.append(upstream + downstream)
    return Scores(
        tasks=tasks,
        defaulted=defaulted,
        unknown_ids=batch.unknown_ids,
        model_version=str(predictions[0].get(MODEL_VERSION, "")),
        protocol=batch.protocol,
        request_id=batch.request_id,
    )


def format_response(scores: Scores, model_name: str) -> dict[str, object] | InferResponse:
    """Format scores in the protocol of the request they answer."""
    if scores.protocol == PROTOCOL_V2:
        return format_v2(scores, model_name)
    return format_v1(scores)


def format_v1(scores: Scores) -> dict[str, object]:
    """The V1 response: one object per instance with every task field (null if not predicted)."""
    n = len(scores.defaulted)
    columns = {
        key: (scores.tasks[task].tolist() if task in scores.tasks else [None] * n)
        for task, key in RESPONSE_FIELDS.items()
    }
    predictions = []
    for j in range(n):
        prediction: dict[str, object] = {key: columns[key][j] for key in RESPONSE_FIELDS.values()}
        prediction[MODEL_VERSION] = scores.model_version
        prediction[DEFAULTED] = scores.defaulted[j]
        prediction[UNKNOWN_IDS] = scores.unknown_ids[j]
        predictions.append(prediction)
    return {"predictions": predictions}


def format_v2(scores: Scores, model_name: str) -> InferResponse:
    """The V2 response: one FP32 output per predicted task plus the per-instance flags."""
    n = len(scores.defaulted)
    outputs = []
    for task, key in RESPONSE_FIELDS.items():
        if task in scores.tasks:
            out = InferOutput(name=key, shape=[n], datatype="FP32")
            out.set_data_from_numpy(scores.tasks[task].astype(np.float32), binary_data=False)
            outputs.append(out)
    for name, values in ((DEFAULTED, scores.defaulted), (UNKNOWN_IDS, scores.unknown_ids)):
        outputs.append(
            InferOutput(name=name, shape=[n], datatype="BYTES", data=[",".join(v) for v in values])
        )
    return InferResponse(
        response_id=scores.request_id or str(uuid.uuid4()),
        model_name=model_name,
        model_version=scores.model_version,
        infer_outputs=outputs,
    )
