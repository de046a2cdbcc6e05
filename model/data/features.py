"""Feast feature store operations: apply, materialize, point-in-time and online retrieval.

The feature list, each feature's kind and its default all come from the Feast definitions in
`feature_repo/` (Field tags `kind` and `default`), looked up through a `FeatureService`; this
module never names a feature.

A pipeline run gets its own Feast repo folder (`write_repo_config`): a `feature_store.yaml`
whose registry and SQLite online store live in that folder (or whose online store is a Redis
server), and `apply` registers the definitions over the users/items tables that run generated.

Missing values: a feature is missing when no snapshot of its entity lies within the view's ttl
before the impression, when the entity was never seen, or when the source table holds a null.
Every missing value is replaced by the Field's documented `default` tag and counted per feature
(`RetrievalReport.filled`, `OnlineFeatures.missing`); nothing is dropped.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import shutil
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from model import storage
from model.arrow_memory import keeping_freed_pages
from model.data import schema

if TYPE_CHECKING:
    from feast import FeatureService, FeatureStore

log = logging.getLogger(__name__)

DEFAULT_SERVICE = "hm3_v1"
TIMESTAMP_COLUMN = "event_timestamp"  # the entity dataframe's timestamp, as Feast names it
FEATURES_FILE = "features.parquet"
REPORT_FILE = "report.json"
REFERENCE_FILE = "reference.json"
REGISTRY_DB = "registry.db"
ONLINE_DB = "online_store.db"
DEFAULTS_KEY = b"hm3.feature_defaults"
SERVICE_KEY = b"hm3.feature_service"
ONLINE_STORES = ("sqlite", "redis")
OFFLINE_STORES = ("file", "duckdb", "spark")
DEFAULT_SPARK_MASTER = "local[2]"
SPARK_STAGING = "spark_staging"  # Spark's retrieval results, in the run's repo folder
# Feast's file store can miss the last row when the end equals it (feast-dev/feast#5228).
MATERIALIZE_MARGIN = timedelta(seconds=1)
_ROW = "_hm3_row"  # carries each entity row's position through Feast, which may reorder rows
ON_DEMAND_ROWS = 1 << 20  # rows per call of an on-demand view in historical retrieval
ENTITY_ROWS = 2_000_000  # entity rows per Feast query in historical retrieval
_PROJECT_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_]*$")


class FeatureReferenceError(ValueError):
    """A feature service or feature reference is not in the registry."""


class StoreContractError(ValueError):
    """An existing Feast store does not hold the feature contract of `feature_repo/`."""


@dataclass(frozen=True)
class StoreConfig:
    """Where a run's Feast repo lives and which stores it uses.

    Attributes:
        repo_dir: Local folder for feature_store.yaml, the registry and the SQLite online store.
        online_store: `sqlite` (a file in repo_dir) or `redis`.
        redis: Redis `host:port` (only with online_store="redis").
        offline_store: `duckdb` (Parquet sources read by DuckDB, the default), `spark`
            (Feast's Spark store, sources as `SparkSource`s) or `file` (Feast's dask store; in
            Feast 0.67 it drops entity rows that have no snapshot within the ttl, which
            `historical_features` refuses with an error).
        project: Feast project name.
        spark_master: Spark master for a new session of the Spark store (`local[2]`, or a
            cluster's). Feast reuses an already active SparkSession and then ignores it.
    """

    repo_dir: str
    online_store: str = "sqlite"
    redis: str = "127.0.0.1:6379"
    offline_store: str = "duckdb"
    project: str = "hm3"
    spark_master: str = DEFAULT_SPARK_MASTER

    def __post_init__(self) -> None:
        if not self.repo_dir:
            raise ValueError(f"repo_dir must be a folder, got {self.repo_dir!r}")
        if self.online_store not in ONLINE_STORES:
            raise ValueError(
                f"online_store must be one of {ONLINE_STORES}, got {self.online_store!r}"
            )
        if self.offline_store not in OFFLINE_STORES:
            raise ValueError(
                f"offline_store must be one of {OFFLINE_STORES}, got {self.offline_store!r}"
            )
        host, _, port = self.redis.partition(":")
        if not host or not port.isdigit():
            raise ValueError(f"redis must be host:port, got {self.redis!r}")
        if not _PROJECT_RE.match(self.project):
            raise ValueError(f"project must be alphanumeric with underscores, got {self.project!r}")


@dataclass(frozen=True)
class ServiceFeature:
    """One feature of a service, as its Feast Field declares it."""

    name: str
    view: str
    dtype: str  # "int64" or "float64"
    kind: str  # schema.KIND_CATEGORICAL or schema.KIND_DENSE
    default: int | float
    description: str


@dataclass(frozen=True)
class TableCheck:
    """What `check_feature_table` found in one users/items table."""

    source: str
    rows: int
    nulls: dict[str, int]


@dataclass(frozen=True)
class RetrievalReport:
    """What a historical retrieval wrote."""

    out: str
    service: str
    rows: int
    features: list[str]
    filled: dict[str, int]  # missing values replaced by the default, per feature
    seconds: float

    @property
    def filled_total(self) -> int:
        """Missing values replaced by defaults, all features together."""
        return sum(self.filled.values())


@dataclass(frozen=True)
class OnlineFeatures:
    """Online feature values for a batch of entity rows.

    Attributes:
        values: Feature name -> one value per requested row, defaults filled in.
        missing: Feature name -> indices of the rows whose value was missing (default used);
            only features with at least one missing value appear.
    """

    values: dict[str, list[Any]]
    missing: dict[str, list[int]] = field(default_factory=dict)


# ---------------------------------------------------------------------------------------------
# Repo configuration and registration


def write_repo_config(cfg: StoreConfig) -> Path:
    """Write `feature_store.yaml` for a run's own repo folder and return the folder.

    Registry and SQLite online store are files in `cfg.repo_dir`, named relative to it (Feast
    resolves them against the repo folder), so the folder can be moved or handed to another
    pipeline step as an artifact; data locations are not part of the config (they live in the
    registered data sources, see `apply`).
    """
    repo = Path(cfg.repo_dir).absolute()
    repo.mkdir(parents=True, exist_ok=True)
    if cfg.online_store == "sqlite":
        online = f"    type: sqlite\n    path: {ONLINE_DB}\n"
    else:
        online = f'    type: redis\n    connection_string: "{cfg.redis}"\n'
    text = (
        "# Written by model.data.features.write_repo_config for one pipeline run.\n"
        f"project: {cfg.project}\n"
        "provider: local\n"
        f"registry:\n    path: {REGISTRY_DB}\n    cache_ttl_seconds: 60\n"
        f"offline_store:\n{_offline_yaml(cfg)}"
        f"online_store:\n{online}"
        "entity_key_serialization_version: 3\n"
        "auth:\n    type: no_auth\n"
    )
    storage.write_text_atomic(repo / "feature_store.yaml", text)
    return repo


def _offline_yaml(cfg: StoreConfig) -> str:
    if cfg.offline_store != "spark":
        return f"    type: {cfg.offline_store}\n"
    local = cfg.spark_master.startswith("local")
    # A staging folder makes the retrieval job write its result as Parquet from Spark, which
    # `_retrieve_batch` reads with pyarrow; without one, Feast collects the result through the
    # driver into pandas, row by row. Local mode only: a cluster's executors cannot write to
    # this pod's disk (a team's own store names gs:// there).
    staging = (
        f"    staging_location: {Path(cfg.repo_dir).absolute() / SPARK_STAGING}\n" if local else ""
    )
    # Settings for the session Feast starts when none is active. UTC: Feast's point-in-time
    # comparisons run in the session time zone. Few shuffle partitions and a 4 GB driver in
    # local mode: the default 200 partitions are sized for a cluster (each is a task of fixed
    # overhead), and with the default 1 GB heap 1M entity rows left the JVM collecting garbage
    # for minutes. No Arrow transfer: with it, 1M entity rows hung here (driver and Python each
    # waiting on the other for 3 minutes, 2026-12-01).
    lines = [
        ("spark.master", cfg.spark_master),
        ("spark.sql.session.timeZone", "UTC"),
        ("spark.ui.enabled", "false"),
        ("spark.sql.shuffle.partitions", "4" if local else "200"),
        *((("spark.driver.memory", "4g"),) if local else ()),
    ]
    conf = "".join(f'        {key}: "{value}"\n' for key, value in lines)
    return f"    type: spark\n{staging}    spark_conf:\n{conf}"


def _is_spark(store: FeatureStore) -> bool:
    return store.config.offline_store.type == "spark"


def open_store(config: str | Path) -> FeatureStore:
    """Open a Feast store from a repo folder or a feature_store.yaml file, local or gs://.

    A gs:// location (a `feature_store.yaml` object, or a prefix holding one) is downloaded
    and read with Feast's own loader (`${VAR}` expanded from the environment); see
    `load_gcs_config` for what its paths must look like.

    Raises:
        FileNotFoundError: If there is no feature_store.yaml there.
        StoreContractError: A gs:// yaml with a relative registry or SQLite path.
    """
    from feast import FeatureStore

    if storage.is_gcs(config):
        return FeatureStore(config=load_gcs_config(str(config)))
    path = Path(config)
    yaml_file = path / "feature_store.yaml" if path.is_dir() else path
    if not yaml_file.is_file():
        raise FileNotFoundError(f"no feature_store.yaml at {path}")
    return FeatureStore(repo_path=str(yaml_file.parent), fs_yaml_file=yaml_file)


def load_gcs_config(uri: str) -> Any:
    """Feast's `RepoConfig` of a gs:// feature_store.yaml (or of a gs:// prefix holding one).

    The yaml is downloaded into a temporary folder and read by Feast's `load_repo_config`. There
    is no repo folder on this machine to resolve relative paths against, so the registry must
    be absolute (`gs://...`, which Feast reads through google-cloud-storage and so through
    `STORAGE_EMULATOR_HOST` too, an absolute local path, or a SQL registry URL) and so must a
    SQLite online store's path.

    Raises:
        FileNotFoundError: Naming the URI when there is no such object.
        StoreContractError: Naming the field whose path is relative.
    """
    from feast.repo_config import load_repo_config

    yaml_uri = uri if uri.endswith((".yaml", ".yml")) else storage.join(uri, "feature_store.yaml")
    text = storage.read_text(yaml_uri)
    with tempfile.TemporaryDirectory(prefix="hm3-feast-yaml-") as tmp:
        local = Path(tmp) / "feature_store.yaml"
        local.write_text(text)
        config = load_repo_config(Path(tmp), local)
    paths = [("registry.path", config.registry.path)]
    if config.online_store.type == "sqlite":
        paths.append(("online_store.path", config.online_store.path))
    for name, value in paths:
        if "://" not in str(value) and not Path(str(value)).is_absolute():
            raise StoreContractError(
                f"{yaml_uri}: {name} is {value!r}, a relative path; a feature_store.yaml read "
                "from gs:// has no local repo folder, so it must be absolute (gs://..., /...)"
            )
    return config


def check_feature_table(
    location: str, expected: pa.Schema, keys: Sequence[str], spark: bool = False
) -> TableCheck:
    """Validate a users/items table before Feast reads it.

    Args:
        location: Parquet path or gs:// URI (bq:// tables are checked by BigQuery).
        expected: The contract, `schema.USERS` or `schema.ITEMS`.
        keys: Columns that must never be null (the join key and the timestamp).
        spark: The table is for Spark, which cannot read nanosecond timestamps.

    Returns:
        Row count and null count per feature column (nulls there are allowed: retrieval fills
        them with the Field's default and counts them).

    Raises:
        schema.SchemaError: A column is missing or mistyped (names the column), or (Spark) a
            timestamp is in nanoseconds.
        ValueError: A key column holds nulls (names the column and the first bad row).
    """
    with storage.local_file(location) as path:
        found = pq.read_schema(path)
        schema.validate_columns(found, expected, location)
        if spark:
            schema.refuse_nanoseconds(found, location)
        table = pq.read_table(path, columns=expected.names)
    for key in keys:
        nulls = table[key].null_count
        if nulls:
            first = pc.index(pc.is_null(table[key]), True).as_py()
            raise ValueError(
                f"{location}: column {key!r} has {nulls} null values (first at row {first}); "
                "every snapshot needs its key and timestamp"
            )
    counts = {name: table[name].null_count for name in expected.names if name not in keys}
    return TableCheck(source=location, rows=table.num_rows, nulls=counts)


def apply(store: FeatureStore, users: str, items: str, validate: bool = True) -> list[TableCheck]:
    """Register the repo's definitions in `store`, reading features from `users` and `items`.

    Args:
        store: An opened store (`open_store`).
        users: Location of the users table (path, file://, gs:// or bq://project.dataset.table).
        items: Location of the items table.
        validate: Check Parquet tables against `schema.USERS` / `ITEMS` first.

    Returns:
        The table checks (empty for bq:// locations or validate=False).
    """
    from feature_repo.data_sources import BIGQUERY_SCHEME
    from feature_repo.definitions import build

    users, items = _absolute(users), _absolute(items)
    checks = []
    if validate:
        for location, contract, key in (
            (users, schema.USERS, "user_id"),
            (items, schema.ITEMS, "item_id"),
        ):
            if location.startswith(BIGQUERY_SCHEME):
                continue
            check = check_feature_table(
                location, contract, [key, TIMESTAMP_COLUMN], spark=_is_spark(store)
            )
            if any(check.nulls.values()):
                log.warning(
                    "%s: null feature values %s; retrieval fills them with defaults",
                    location,
                    {k: v for k, v in check.nulls.items() if v},
                )
            checks.append(check)
    definitions = build(users, items, spark=_is_spark(store))
    store.apply(definitions.objects())
    log.info(
        "applied %d Feast objects (users=%s, items=%s)", len(definitions.objects()), users, items
    )
    return checks


def _absolute(location: str) -> str:
    """Local paths become absolute so the registry does not depend on the working directory."""
    if "://" in location:
        return location
    return str(Path(location).absolute())


# ---------------------------------------------------------------------------------------------
# The feature contract: names, kinds and defaults from the Field tags


def service_features(service: FeatureService, views: Mapping[str, Any]) -> list[ServiceFeature]:
    """Every feature of a FeatureService, in service order, with kind and default from its tags.

    Args:
        service: The service (from the registry or from `feature_repo.definitions`).
        views: View name -> FeatureView/OnDemandFeatureView; on-demand views carry their output
            Fields' tags on the view (see `feature_repo/on_demand.py`).

    Raises:
        ValueError: A Field lacks a valid `kind` or `default` tag (names the view and field).
    """
    from feature_repo.feature_views import DEFAULT_TAG, KIND_TAG

    out = []
    for projection in service.feature_view_projections:
        view = views.get(projection.name)
        view_tags = dict(view.tags) if view is not None else {}
        for f in projection.features:
            tags = dict(f.tags)
            for key in (KIND_TAG, DEFAULT_TAG):
                tags.setdefault(key, view_tags.get(f"{f.name}.{key}"))
            out.append(
                _feature_info(projection.name_to_use(), f, tags[KIND_TAG], tags[DEFAULT_TAG])
            )
    names = [f.name for f in out]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        # full_feature_names=False needs unique names; a service must not repeat one.
        raise ValueError(f"service {service.name}: feature names repeated: {duplicates}")
    return out


def _feature_info(view: str, f: Any, kind: str | None, raw: str | None) -> ServiceFeature:
    from feast.types import Float32, Float64, Int32, Int64

    ref = f"{view}:{f.name}"
    if kind not in (schema.KIND_CATEGORICAL, schema.KIND_DENSE):
        raise ValueError(f"feature {ref}: tag 'kind' must be categorical or dense, got {kind!r}")
    if f.dtype in (Int64, Int32):
        dtype, parse = "int64", int
    elif f.dtype in (Float64, Float32):
        dtype, parse = "float64", float
    else:
        raise ValueError(f"feature {ref}: dtype must be Int64 or Float64, got {f.dtype}")
    try:
        default = parse(raw)
    except (TypeError, ValueError) as err:
        raise ValueError(f"feature {ref}: tag 'default' must be a {dtype}, got {raw!r}") from err
    return ServiceFeature(f.name, view, dtype, kind, default, f.description)


def _registry_views(store: FeatureStore) -> dict[str, Any]:
    views: dict[str, Any] = {v.name: v for v in store.list_feature_views()}
    return views | {v.name: v for v in store.list_on_demand_feature_views()}


def resolve_features(
    store: FeatureStore, features: str | Sequence[str] = DEFAULT_SERVICE
) -> list[ServiceFeature]:
    """Look up a feature service by name, or a list of `view:feature` references.

    Raises:
        FeatureReferenceError: Naming the unknown service or reference and what exists.
    """
    from feast.errors import FeatureServiceNotFoundException

    if isinstance(features, str):
        try:
            service = store.get_feature_service(features)
        except FeatureServiceNotFoundException as err:
            known = sorted(s.name for s in store.list_feature_services())
            raise FeatureReferenceError(
                f"unknown feature service {features!r}; registered: {known}"
            ) from err
        return service_features(service, _registry_views(store))
    from feast import FeatureService

    views = _registry_views(store)
    chosen: dict[str, list[str]] = {}
    for ref in features:
        view, sep, name = ref.partition(":")
        if not sep or view not in views:
            raise FeatureReferenceError(
                f"unknown feature reference {ref!r}: expected view:feature, "
                f"view one of {sorted(views)}"
            )
        known = [f.name for f in views[view].features]
        if name not in known:
            raise FeatureReferenceError(
                f"unknown feature reference {ref!r}: view {view!r} has {known}"
            )
        chosen.setdefault(view, []).append(name)
    adhoc = FeatureService(name="adhoc", features=[views[v][names] for v, names in chosen.items()])
    return service_features(adhoc, views)


def check_store_contract(
    store: FeatureStore, service: str = DEFAULT_SERVICE, where: str = ""
) -> list[ServiceFeature]:
    """Check that an existing store's registry holds `service` exactly as `feature_repo/` does.

    For a store somebody else applied: the service must exist with the same views and features
    in the same order, and each of its views must exist with the same kind (batch or on
    demand), the same fields and dtypes, and (batch) the same join keys, or (on demand) the
    same source features. Data sources, ttl and tags are the store owner's.

    Args:
        store: The opened store.
        service: Feature service name, one that `feature_repo/` defines.
        where: How to name the store in errors (default: its registry path).

    Returns:
        The service's features as the registry declares them (kinds and defaults from its tags).

    Raises:
        StoreContractError: Naming the service, view or field and what `feature_repo/` expects.
    """
    from feast.errors import FeatureServiceNotFoundException

    from feature_repo.definitions import build

    where = where or f"registry {store.config.registry.path}"
    # Only the schemas are compared, so the data locations of this build do not matter.
    expected = build("users.parquet", "items.parquet")
    wanted = {s.name: s for s in expected.services}
    if service not in wanted:
        raise StoreContractError(
            f"feature service {service!r} is not defined in feature_repo/ (it defines "
            f"{sorted(wanted)}), so there is nothing to check {where} against"
        )
    try:
        found = store.get_feature_service(service)
    except FeatureServiceNotFoundException as err:
        known = sorted(s.name for s in store.list_feature_services())
        raise StoreContractError(
            f"{where}: feature service {service!r} is missing (registered: {known}); expected "
            "the one feature_repo/feature_services.py defines"
        ) from err
    want = _projections(wanted[service])
    got = _projections(found)
    if list(want) != list(got):
        raise StoreContractError(
            f"{where}: feature service {service!r} reads views {list(got)}, expected {list(want)}"
        )
    for view, names in want.items():
        if got[view] != names:
            raise StoreContractError(
                f"{where}: feature service {service!r}, view {view!r}: features {got[view]}, "
                f"expected {names}"
            )
    batch = {v.name: v for v in store.list_feature_views()}
    on_demand = {v.name: v for v in store.list_on_demand_feature_views()}
    entities = {e.name: e for e in store.list_entities()}
    our_entities = {e.name: e for e in expected.entities}
    for view in expected.feature_views:
        if view.name not in batch:
            kind = " (as an on-demand view)" if view.name in on_demand else ""
            raise StoreContractError(
                f"{where}: feature view {view.name!r} of service {service!r} is missing{kind}; "
                f"expected a batch feature view with fields {_fields(view)}"
            )
        _check_fields(where, view, batch[view.name])
        keys = _join_keys_of(batch[view.name], entities)
        ours = _join_keys_of(view, our_entities)
        if keys != ours:
            raise StoreContractError(
                f"{where}: feature view {view.name!r}: join keys {keys}, expected {ours}"
            )
    for view in expected.on_demand_views:
        if view.name not in on_demand:
            raise StoreContractError(
                f"{where}: on-demand feature view {view.name!r} of service {service!r} is "
                f"missing; expected one with fields {_fields(view)}"
            )
        _check_fields(where, view, on_demand[view.name])
        sources = _projections_of(on_demand[view.name].source_feature_view_projections)
        ours = _projections_of(view.source_feature_view_projections)
        if sources != ours:
            raise StoreContractError(
                f"{where}: on-demand feature view {view.name!r}: sources {sources}, expected {ours}"
            )
    return service_features(found, batch | on_demand)


def _projections(service: FeatureService) -> dict[str, list[str]]:
    return {p.name: [f.name for f in p.features] for p in service.feature_view_projections}


def _projections_of(projections: Mapping[str, Any]) -> dict[str, list[str]]:
    return {name: [f.name for f in p.features] for name, p in sorted(projections.items())}


def _fields(view: Any) -> dict[str, str]:
    return {f.name: str(f.dtype) for f in view.features}


def _check_fields(where: str, ours: Any, theirs: Any) -> None:
    want, got = _fields(ours), _fields(theirs)
    for name, dtype in want.items():
        if name not in got:
            raise StoreContractError(
                f"{where}: feature view {ours.name!r}: field {name!r} is missing; expected "
                f"{dtype} (fields there: {sorted(got)})"
            )
        if got[name] != dtype:
            raise StoreContractError(
                f"{where}: feature view {ours.name!r}, field {name!r}: dtype {got[name]}, "
                f"expected {dtype}"
            )
    extra = sorted(set(got) - set(want))
    if extra:
        raise StoreContractError(
            f"{where}: feature view {ours.name!r}: fields {extra} are not in feature_repo/; "
            f"expected exactly {sorted(want)}"
        )


def _join_keys_of(view: Any, entities: Mapping[str, Any]) -> list[str]:
    return [entities[name].join_key if name in entities else name for name in view.entities]


def feature_kinds(infos: Sequence[ServiceFeature]) -> dict[str, str]:
    """{feature: kind}, the map stored in features.parquet under `schema.FEATURE_KINDS_KEY`."""
    return {f.name: f.kind for f in infos}


def feature_defaults(infos: Sequence[ServiceFeature]) -> dict[str, int | float]:
    """{feature: default}, the values used for missing or null features."""
    return {f.name: f.default for f in infos}


def _feast_features(store: FeatureStore, features: str | Sequence[str]) -> Any:
    """What Feast's retrieval calls take: the FeatureService object, or the reference list."""
    return store.get_feature_service(features) if isinstance(features, str) else list(features)


def fill_missing(frame: pd.DataFrame, infos: Sequence[ServiceFeature]) -> dict[str, int]:
    """Replace missing values (None/NaN) by each feature's default, in place; count them.

    Returns:
        Feature name -> number of values filled.
    """
    filled = {}
    for f in infos:
        column = pd.to_numeric(frame[f.name], errors="coerce") if f.name in frame else None
        if column is None:
            column = pd.Series(np.nan, index=frame.index)
        missing = column.isna()
        filled[f.name] = int(missing.sum())
        frame[f.name] = column.where(~missing, f.default).astype(f.dtype)
    return filled


# ---------------------------------------------------------------------------------------------
# Historical (point-in-time) retrieval


def validate_entity_frame(entities: pd.DataFrame, join_keys: Sequence[str]) -> None:
    """Check an entity dataframe before Feast sees it.

    Raises:
        ValueError: A join key or `event_timestamp` is missing, `event_timestamp` is not a
            timestamp, or a key/timestamp is null (names the column and the first bad row).
    """
    for column in (*join_keys, TIMESTAMP_COLUMN):
        if column not in entities.columns:
            raise ValueError(
                f"entity dataframe: missing column {column!r} (have {list(entities.columns)})"
            )
    ts = entities[TIMESTAMP_COLUMN]
    if not pd.api.types.is_datetime64_any_dtype(ts):
        raise ValueError(
            f"entity dataframe: column {TIMESTAMP_COLUMN!r} must be a timestamp, got {ts.dtype}"
        )
    for column in (*join_keys, TIMESTAMP_COLUMN):
        nulls = entities[column].isna()
        if nulls.any():
            first = entities.index[nulls.to_numpy()][0]
            raise ValueError(
                f"entity dataframe: column {column!r} has {int(nulls.sum())} nulls "
                f"(first at row {first})"
            )
    for key in join_keys:
        if not pd.api.types.is_integer_dtype(entities[key]):
            raise ValueError(
                f"entity dataframe: column {key!r} must be int64, got {entities[key].dtype}"
            )


@keeping_freed_pages()
def historical_features(
    store: FeatureStore,
    entities: pd.DataFrame,
    features: str | Sequence[str] = DEFAULT_SERVICE,
) -> tuple[pd.DataFrame, list[ServiceFeature], dict[str, int]]:
    """Point-in-time correct features for each entity row, defaults filled in.

    For each row and feature view, Feast takes the latest snapshot with
    `row.event_timestamp - ttl <= snapshot.event_timestamp <= row.event_timestamp`; a later
    snapshot never leaks in.

    Args:
        store: An applied store.
        entities: Join key columns, `event_timestamp` (UTC timestamps) and any pass-through
            columns (e.g. impression_id).
        features: A feature service name or `view:feature` references.

    Returns:
        (frame in the input row order with the input columns plus one column per feature,
        the features, filled counts per feature).
    """
    table, infos, filled = _point_in_time_table(store, entities, features)
    # The caller's own columns, as given: stores hand them back retyped (Spark: naive ns times).
    frame = pd.concat([entities.reset_index(drop=True), table.to_pandas()], axis=1)
    return frame, infos, filled


def _point_in_time_table(
    store: FeatureStore, entities: pd.DataFrame, features: str | Sequence[str]
) -> tuple[pa.Table, list[ServiceFeature], dict[str, int]]:
    """One column per feature, in the entity rows' order, defaults filled in; and the counts.

    Feast sees only what its join needs: the join keys, `event_timestamp` and a row number (a
    string pass-through column such as impression_id would ride through every join and window
    of Feast's query). The on-demand views' sources are retrieved as ordinary features, and each
    on-demand view runs afterwards through Feast's own `OnDemandFeatureView.transform_arrow` on
    a table of its inputs only: Feast's retrieval job would hand its python-mode UDF the whole
    result, keys and timestamps included, converted to Python lists. Entity rows go to Feast
    `ENTITY_ROWS` at a time (each row's values depend on that row alone), which bounds the
    memory of Feast's query.
    """
    infos = resolve_features(store, features)
    join_keys = _join_keys(store, infos)
    validate_entity_frame(entities, join_keys)
    on_demand = _on_demand_views(store, infos)
    refs = _batch_refs(infos, on_demand)
    tables: list[pa.Table] = []
    filled = dict.fromkeys((f.name for f in infos), 0)
    for start in range(0, len(entities), ENTITY_ROWS) or [0]:
        part = entities.iloc[start : start + ENTITY_ROWS]
        columns, order = _retrieve_batch(store, _feast_entity_frame(part, join_keys), refs)
        # Every step up to the reorder works row by row, so it runs in Feast's row order; the
        # one reorder then gathers columns without nulls (about 3x faster than with them).
        for view, odfv in on_demand.items():
            inputs = pa.table({name: columns[name] for name in _on_demand_inputs(odfv)})
            columns |= _transform(odfv, inputs, [f for f in infos if f.view == view])
        # Filled per part: a store may type a column differently from one part to the next.
        table, _, counts = _fill_missing_table(columns, infos, len(part))
        tables.append(_reordered(table, order))
        filled = {name: filled[name] + counts[name] for name in filled}
    return pa.concat_tables(tables), infos, filled


def _reordered(table: pa.Table, order: np.ndarray) -> pa.Table:
    """`table.take(order)`, column by column.

    Each column is made contiguous first: several times faster than a take over Feast's many
    small chunks, and only one column is copied at a time.
    """
    return pa.table({name: table[name].combine_chunks().take(order) for name in table.column_names})


def _feast_entity_frame(entities: pd.DataFrame, join_keys: Sequence[str]) -> pd.DataFrame:
    """The entity frame Feast sees: join keys, UTC `event_timestamp` and the row number."""
    return pd.DataFrame(
        {
            **{key: entities[key].array for key in join_keys},
            TIMESTAMP_COLUMN: _as_utc(entities[TIMESTAMP_COLUMN]).array,
            _ROW: np.arange(len(entities), dtype=np.int64),
        },
        copy=False,  # no copy, no merge into one 2-D block: Feast converts the columns to Arrow
    )


def _retrieve_batch(
    store: FeatureStore, frame: pd.DataFrame, refs: Sequence[str]
) -> tuple[dict[str, pa.ChunkedArray], np.ndarray]:
    """Feast's point-in-time values of `refs` for `frame`'s rows, as Arrow, in Feast's row order.

    Returns:
        (the values by feature name, the indices that put them in `frame`'s row order).
    """
    if _is_spark(store):
        result = _retrieve_spark(store, frame, refs)
    else:
        job = store.get_historical_features(
            entity_df=frame, features=list(refs), full_feature_names=False
        )
        result = job.to_arrow()
    if result.num_rows != len(frame):
        # Feast 0.67's `file` (dask) store drops entity rows without a snapshot in the ttl.
        raise RuntimeError(
            f"Feast's {store.config.offline_store.type!r} offline store returned "
            f"{result.num_rows} rows for {len(frame)} entity rows; rows without a feature "
            "snapshot must be kept (use offline_store='duckdb')"
        )
    order = _input_order(result[_ROW], len(frame))
    names = dict.fromkeys(ref.partition(":")[2] for ref in refs)
    return {name: result[name] for name in names}, order


def _retrieve_spark(store: FeatureStore, frame: pd.DataFrame, refs: Sequence[str]) -> pa.Table:
    """Feast's Spark store, with the entity rows and the result kept out of the driver.

    Handed a pandas frame, Feast's Spark store turns every entity row into a Python object for
    `createDataFrame`, and `to_arrow` collects the result through the driver into pandas; at 1M
    rows the two sides stalled for minutes (2026-12-01). Instead the entity rows go to Spark as a
    Parquet file it reads itself (a SQL entity_df: Feast's public API), and, when the store has
    a staging location, the result comes back as the Parquet files Spark writes there.
    """
    with tempfile.TemporaryDirectory(prefix="hm3-entities-") as tmp:
        path = Path(tmp, "entities.parquet")
        # Spark reads microsecond timestamps only (a sub-microsecond time raises, as a cast would).
        pq.write_table(
            pa.Table.from_pandas(frame, preserve_index=False), path, coerce_timestamps="us"
        )
        job = store.get_historical_features(
            entity_df=f"SELECT * FROM parquet.`{path}`",
            features=list(refs),
            full_feature_names=False,
        )
        if not getattr(store.config.offline_store, "staging_location", None):
            return job.to_arrow()
        files = [f for f in job.to_remote_storage() if f.endswith(".parquet")]
    if not files:
        raise RuntimeError(f"Feast's Spark store wrote no Parquet result for {len(frame)} rows")
    try:
        return pq.read_table(files)  # local paths, or gs:// where a team's store stages
    finally:
        if files[0].startswith("/"):  # Feast leaves the staged result behind
            shutil.rmtree(Path(files[0]).parent, ignore_errors=True)


def _transform(
    view: Any, inputs: pa.Table, outputs: Sequence[ServiceFeature]
) -> dict[str, pa.ChunkedArray]:
    """Run an on-demand view over its input columns, `ON_DEMAND_ROWS` rows at a time.

    A python-mode view converts its inputs to Python lists: slices keep those lists (about
    100 bytes a row) from growing with the entity table. A python-mode view tagged
    `COLUMNAR_UDF_TAG` gets numpy float arrays instead (NaN for missing), which its UDF declares
    it takes: no lists, about 4x faster.
    """
    from feature_repo.on_demand import COLUMNAR_UDF_TAG

    columnar = view.mode == "python" and view.tags.get(COLUMNAR_UDF_TAG) == "true"
    types = {f.name: _arrow_type(f) for f in outputs}
    chunks: dict[str, list[pa.Array]] = {name: [] for name in types}
    for start in range(0, inputs.num_rows, ON_DEMAND_ROWS):
        rows = inputs.slice(start, ON_DEMAND_ROWS)
        if columnar:
            arrays = {name: rows[name].cast(pa.float64()).to_numpy() for name in rows.column_names}
            part = pa.Table.from_pydict(view.feature_transformation.udf(arrays))
        else:
            part = view.transform_arrow(rows, full_feature_names=False)
        for name, target in types.items():
            if name in part.column_names:
                # A slice whose outputs are all None comes back with Arrow's null type.
                chunks[name].extend(part[name].cast(target).chunks)
            else:
                chunks[name].append(pa.nulls(part.num_rows, target))
    return {name: pa.chunked_array(chunks[name], target) for name, target in types.items()}


def _arrow_type(f: ServiceFeature) -> pa.DataType:
    return pa.int64() if f.dtype == "int64" else pa.float64()


def _on_demand_views(store: FeatureStore, infos: Sequence[ServiceFeature]) -> dict[str, Any]:
    """The registry's on-demand views behind `infos`, by name.

    Raises:
        ValueError: A view reads request data (columns of the entity rows), which this
            retrieval does not hand to on-demand views.
    """
    registered = {v.name: v for v in store.list_on_demand_feature_views()}
    views = {f.view: registered[f.view] for f in infos if f.view in registered}
    for name, view in views.items():
        if view.source_request_sources:
            raise ValueError(
                f"on-demand view {name!r} reads request data "
                f"{sorted(view.source_request_sources)}; historical retrieval supports "
                "on-demand views over feature views only"
            )
    return views


def _on_demand_inputs(view: Any) -> list[str]:
    """The source feature names an on-demand view reads, in declaration order."""
    return list(
        dict.fromkeys(
            f.name for p in view.source_feature_view_projections.values() for f in p.features
        )
    )


def _batch_refs(infos: Sequence[ServiceFeature], on_demand: Mapping[str, Any]) -> list[str]:
    """`view:feature` references of the batch features and of every on-demand view's sources."""
    refs = [f"{f.view}:{f.name}" for f in infos if f.view not in on_demand]
    for view in on_demand.values():
        for projection in view.source_feature_view_projections.values():
            refs.extend(f"{projection.name_to_use()}:{f.name}" for f in projection.features)
    return list(dict.fromkeys(refs))


def _input_order(rows: pa.ChunkedArray, n: int) -> np.ndarray:
    """Indices that put Feast's result back in entity row order, from the `_ROW` numbers.

    Raises:
        RuntimeError: The numbers are not each entity row exactly once.
    """
    numbers = rows.to_numpy()
    order = np.full(n, -1, dtype=np.int64)
    valid = (numbers >= 0) & (numbers < n)
    order[numbers[valid]] = np.flatnonzero(valid)
    if not valid.all() or (order < 0).any():
        raise RuntimeError(
            f"Feast returned entity rows out of {n} duplicated or renumbered; cannot restore "
            "the input order"
        )
    return order


def _fill_missing_table(
    columns: Mapping[str, pa.ChunkedArray | pa.Array], infos: Sequence[ServiceFeature], n: int
) -> tuple[pa.Table, list[ServiceFeature], dict[str, int]]:
    """Replace missing values (null/NaN) by each feature's default; count them per feature.

    The Arrow counterpart of `fill_missing`: a column absent from `columns` is all missing,
    and each column comes out in its feature's dtype.
    """
    out: dict[str, pa.ChunkedArray | pa.Array] = {}
    filled: dict[str, int] = {}
    for f in infos:
        column = columns.get(f.name)
        if column is None or column.type == pa.null():
            column = pa.nulls(n, _arrow_type(f))
        missing = pc.is_null(column, nan_is_null=True)
        filled[f.name] = pc.sum(missing).as_py() or 0
        if filled[f.name]:
            # In the column's own type: Spark hands back Int features as float where a join
            # left nulls, and those cast to int64 only once filled.
            default = pa.scalar(f.default).cast(column.type)
            column = pc.if_else(missing, default, column)
        out[f.name] = column.cast(_arrow_type(f))
    return pa.table(out), list(infos), filled


def _join_keys(store: FeatureStore, infos: Sequence[ServiceFeature]) -> list[str]:
    """Join keys of the batch views behind `infos`, on-demand views' sources included."""
    views = {v.name: v for v in store.list_feature_views()}
    on_demand = {v.name: v for v in store.list_on_demand_feature_views()}
    names: list[str] = []
    for view in dict.fromkeys(f.view for f in infos):
        if view in on_demand:
            names.extend(on_demand[view].source_feature_view_projections)
        else:
            names.append(view)
    keys: list[str] = []
    for name in dict.fromkeys(names):
        for column in views[name].entity_columns:
            if column.name not in keys:
                keys.append(column.name)
    return keys


def _as_utc(ts: pd.Series) -> pd.Series:
    return ts.dt.tz_localize("UTC") if ts.dt.tz is None else ts.dt.tz_convert("UTC")


@keeping_freed_pages()
def retrieve_historical(
    store: FeatureStore,
    impressions: str,
    out_path: str,
    features: str | Sequence[str] = DEFAULT_SERVICE,
) -> RetrievalReport:
    """Write features.parquet: `impression_id` + every feature, one row per impression.

    The impressions are the entity dataframe (their `ts` is the point in time). The Arrow schema
    metadata carries `schema.FEATURE_KINDS_KEY` -> {feature: kind}, the defaults and the service.

    Args:
        store: An applied store.
        impressions: impressions.parquet path or gs:// URI (`schema.IMPRESSIONS`).
        out_path: Output Parquet path (local or gs://).
        features: A feature service name or `view:feature` references.

    Raises:
        schema.SchemaError: The impressions lack a column or have it mistyped.
        ValueError: Null keys/timestamps or duplicate impression ids (named with the row).
    """
    start = time.perf_counter()
    needed = ["impression_id", "user_id", "item_id", "ts"]
    with storage.local_file(impressions) as path:
        schema.validate_columns(pq.read_schema(path), schema.IMPRESSIONS, impressions, needed)
        table = pq.read_table(path, columns=needed)
    ids = table["impression_id"]
    if ids.null_count:
        raise ValueError(f"{impressions}: column 'impression_id' has {ids.null_count} nulls")
    duplicate = _a_duplicate(ids)
    if duplicate is not None:
        raise ValueError(f"{impressions}: duplicate impression_id values, e.g. {duplicate!r}")
    entities = (
        table.select(["user_id", "item_id", "ts"])
        .rename_columns(["user_id", "item_id", TIMESTAMP_COLUMN])
        .to_pandas()
    )
    values, infos, filled = _point_in_time_table(store, entities, features)
    out = values.add_column(0, "impression_id", ids)
    service = features if isinstance(features, str) else "adhoc"
    _write_feature_table(out, infos, out_path, service)
    report = RetrievalReport(
        out=str(out_path),
        service=service,
        rows=out.num_rows,
        features=[f.name for f in infos],
        filled=filled,
        seconds=round(time.perf_counter() - start, 3),
    )
    log.info(
        "retrieved %d features for %d impressions in %.1f s",
        len(infos),
        report.rows,
        report.seconds,
    )
    return report


def _a_duplicate(values: pa.ChunkedArray) -> Any:
    """One value that occurs more than once, or None.

    DuckDB's parallel GROUP BY: about 4x faster than `pc.unique` on 10M string ids.
    """
    with duckdb.connect() as con:
        con.register("ids", pa.table({"v": values}))
        row = con.execute("SELECT v FROM ids GROUP BY v HAVING count(*) > 1 LIMIT 1").fetchone()
    return None if row is None else row[0]


def write_features(
    frame: pd.DataFrame, infos: Sequence[ServiceFeature], out_path: str, service: str
) -> None:
    """Write a feature frame as Parquet with the kinds, defaults and service in its metadata."""
    table = pa.Table.from_pandas(frame, preserve_index=False)
    _write_feature_table(table, infos, out_path, service)


def _write_feature_table(
    table: pa.Table, infos: Sequence[ServiceFeature], out_path: str, service: str
) -> None:
    metadata = dict(table.schema.metadata or {})
    metadata[schema.FEATURE_KINDS_KEY] = json.dumps(feature_kinds(infos)).encode()
    metadata[DEFAULTS_KEY] = json.dumps(feature_defaults(infos)).encode()
    metadata[SERVICE_KEY] = service.encode()
    table = table.replace_schema_metadata(metadata)
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, compression="zstd")
    storage.write_bytes_atomic(out_path, sink.getvalue().to_pybytes())


def read_feature_kinds(path: str) -> dict[str, str]:
    """The {feature: kind} map stored in a features.parquet (or a table derived from it)."""
    with storage.local_file(path) as local:
        metadata = pq.read_schema(local).metadata or {}
    if schema.FEATURE_KINDS_KEY not in metadata:
        raise ValueError(f"{path}: no {schema.FEATURE_KINDS_KEY.decode()} in the Parquet metadata")
    return json.loads(metadata[schema.FEATURE_KINDS_KEY])


# ---------------------------------------------------------------------------------------------
# Materialization and online retrieval


@dataclass(frozen=True)
class MaterializeReport:
    """What was loaded into the online store."""

    start: str
    end: str
    views: list[str]
    seconds: float


def materialize(
    store: FeatureStore, start: datetime | None = None, end: datetime | None = None
) -> MaterializeReport:
    """Load the latest snapshot per entity in [start, end] into the online store.

    Args:
        store: An applied store.
        start: Default: the earliest snapshot timestamp in the Parquet sources.
        end: Default: the latest snapshot timestamp plus one second (feast-dev/feast#5228).

    Raises:
        ValueError: If start/end are not given and a source is not Parquet, or start >= end.
    """
    began = time.perf_counter()
    if start is None or end is None:
        lo, hi = _source_time_range(store)
        start = start or lo
        end = end or hi + MATERIALIZE_MARGIN
    start, end = _utc(start), _utc(end)
    if start >= end:
        raise ValueError(f"materialize: start {start} must be before end {end}")
    views = [v.name for v in store.list_feature_views() if v.online]
    # Feast prints its progress to stdout; keep stdout for the caller's output (CLI JSON).
    with contextlib.redirect_stdout(sys.stderr):
        store.materialize(start_date=start, end_date=end, feature_views=views)
    return MaterializeReport(
        start=start.isoformat(),
        end=end.isoformat(),
        views=views,
        seconds=round(time.perf_counter() - began, 3),
    )


@dataclass(frozen=True)
class IncrementalReport:
    """What one incremental materialization loaded.

    Attributes:
        end: Every view is now materialized up to here (ISO, UTC).
        previous: View -> the end of its previous materialization, None the first time (Feast
            then starts at `end`'s wall clock minus the view's ttl).
        seconds: Wall time.
    """

    end: str
    previous: dict[str, str | None]
    seconds: float


def materialize_incremental(
    store: FeatureStore, end: datetime | None = None, service: str = DEFAULT_SERVICE
) -> IncrementalReport:
    """Load what changed since the last materialization, up to `end`, for a service's views.

    The views are the batch views behind `service` (on-demand views' sources included), and the
    store is checked against `feature_repo/` first (`check_store_contract`), so a scheduled run
    on a drifted store fails naming what differs instead of loading something else.

    Args:
        store: An applied store (typically an existing one, `open_store(uri)`).
        end: Upper bound of the snapshots loaded; default now (UTC).
        service: Feature service whose views are materialized.

    Raises:
        StoreContractError: The store lacks the service or a view, or has another schema.
        ValueError: If `end` is in the future (a snapshot not yet written would be skipped
            for good: the next run starts at this end).
    """
    began = time.perf_counter()
    now = datetime.now(UTC)
    end = _utc(end) if end is not None else now
    if end > now:
        raise ValueError(f"materialize_incremental: end {end.isoformat()} is in the future")
    infos = check_store_contract(store, service)
    on_demand = {v.name: v for v in store.list_on_demand_feature_views()}
    names: list[str] = []
    for view in dict.fromkeys(f.view for f in infos):
        sources = on_demand[view].source_feature_view_projections if view in on_demand else [view]
        names.extend(name for name in sources if name not in names)
    views = [v for v in (store.get_feature_view(name) for name in names) if v.online]
    previous = {
        v.name: v.most_recent_end_time.isoformat() if v.most_recent_end_time else None
        for v in views
    }
    # Feast prints its progress to stdout; keep stdout for the caller's output (CLI JSON).
    with contextlib.redirect_stdout(sys.stderr):
        store.materialize_incremental(end_date=end, feature_views=[v.name for v in views])
    return IncrementalReport(
        end=end.isoformat(), previous=previous, seconds=round(time.perf_counter() - began, 3)
    )


def _utc(ts: datetime) -> datetime:
    return ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)


def _source_time_range(store: FeatureStore) -> tuple[datetime, datetime]:
    from feast import FileSource
    from feast.infra.offline_stores.contrib.spark_offline_store.spark_source import SparkSource

    lows, highs = [], []
    for view in store.list_feature_views():
        source = view.batch_source
        if isinstance(source, FileSource):
            path = FileSource.get_uri_for_file_path(store.repo_path, source.path)
        elif isinstance(source, SparkSource) and source.path:
            path = source.path
        else:
            raise ValueError(
                f"materialize: view {view.name!r} reads {type(source).__name__}; pass start and end"
            )
        with storage.local_file(path) as local:
            column = pq.read_table(local, columns=[source.timestamp_field])[source.timestamp_field]
        lo, hi = pc.min_max(column).values()
        lows.append(lo.as_py())
        highs.append(hi.as_py())
    return min(lows), max(highs)


class OnlineFeatureClient:
    """Reads online features of one feature service; the serving transformer holds one.

    The service is resolved against the registry once, at construction (registry lookups cost
    tens of milliseconds, more than the online read itself); build a new client after the
    definitions change.
    """

    def __init__(self, store: FeatureStore, features: str | Sequence[str] = DEFAULT_SERVICE):
        """Resolve the service (or `view:feature` references) in `store`'s registry.

        Raises:
            FeatureReferenceError: Naming the unknown service or reference.
        """
        self.store = store
        self.features = resolve_features(store, features)
        self.join_keys = _join_keys(store, self.features)
        self._feast_features = _feast_features(store, features)

    def get(self, rows: Sequence[Mapping[str, Any]]) -> OnlineFeatures:
        """Online features for a batch of entity rows.

        Args:
            rows: One mapping per request row holding every join key (user_id, item_id) as int.

        Returns:
            Values with defaults filled in, and which rows were missing which feature.

        Raises:
            ValueError: A row lacks a join key or has a non-integer key (names row and key).
        """
        entity_rows = []
        for i, row in enumerate(rows):
            entity = {}
            for key in self.join_keys:
                if key not in row:
                    raise ValueError(f"row {i}: missing join key {key!r} (have {sorted(row)})")
                value = row[key]
                if isinstance(value, bool) or not isinstance(value, int | np.integer):
                    raise ValueError(f"row {i}: join key {key!r} must be an int, got {value!r}")
                entity[key] = int(value)
            entity_rows.append(entity)
        if not entity_rows:
            return OnlineFeatures(values={f.name: [] for f in self.features})
        response = self.store.get_online_features(
            features=self._feast_features, entity_rows=entity_rows, full_feature_names=False
        ).to_dict()
        values: dict[str, list[Any]] = {}
        missing: dict[str, list[int]] = {}
        cast = {"int64": int, "float64": float}
        for f in self.features:
            out = []
            for i, value in enumerate(response[f.name]):
                if value is None or (isinstance(value, float) and np.isnan(value)):
                    missing.setdefault(f.name, []).append(i)
                    value = f.default
                out.append(cast[f.dtype](value))
            values[f.name] = out
        return OnlineFeatures(values=values, missing=missing)


def online_features(
    store: FeatureStore,
    rows: Sequence[Mapping[str, Any]],
    features: str | Sequence[str] = DEFAULT_SERVICE,
) -> OnlineFeatures:
    """One-off online read by feature service: `OnlineFeatureClient(store, features).get(rows)`.

    A server should keep an `OnlineFeatureClient` instead: this resolves the service each call.
    """
    return OnlineFeatureClient(store, features).get(rows)


def report_dict(
    report: RetrievalReport | MaterializeReport | IncrementalReport | TableCheck,
) -> dict[str, Any]:
    """A report as a JSON-ready dict."""
    return asdict(report)


def retrieve_world(
    world: str,
    out_dir: str,
    features: str = DEFAULT_SERVICE,
    offline_store: str = "duckdb",
    repo_dir: str | None = None,
    materialize_online: bool = False,
    spark_master: str = DEFAULT_SPARK_MASTER,
    feature_store: str = "",
) -> RetrievalReport:
    """One-shot retrieval for a pipeline run: apply over a world's tables, retrieve, report.

    Writes `out_dir/features.parquet` and `out_dir/report.json`. The Feast repo is a temporary
    folder unless `repo_dir` is given (historical retrieval needs no online store). With
    `feature_store`, an existing store is used instead (`retrieve_from_store`).

    Args:
        world: Folder or gs:// prefix with impressions.parquet, users.parquet, items.parquet.
        out_dir: Output folder or gs:// prefix.
        features: Feature service name.
        offline_store: `duckdb`, `spark` or `file`.
        repo_dir: Keep the run's Feast repo here (relocatable: its paths are relative).
        materialize_online: Also load the latest snapshot of every user and item into the
            repo's SQLite online store, so a local endpoint can serve from `repo_dir`.
        spark_master: With `offline_store="spark"`: the master of a new Spark session.
        feature_store: An existing store's feature_store.yaml (or its folder), local or gs://:
            nothing is registered, the world's users/items tables are not read, and
            `offline_store`, `repo_dir` and `spark_master` are unused (the yaml decides).

    Raises:
        ValueError: If `materialize_online` is set without a `repo_dir` to keep, or together
            with `feature_store` (an existing store's online store is its owner's to load).
        StoreContractError: The existing store lacks the service or a view, or has another
            schema than `feature_repo/`.
    """
    if feature_store:
        if materialize_online:
            raise ValueError(
                "materialize_online writes a run's own online store; with feature_store "
                f"{feature_store!r} the store's owner materializes it (hm3-materialize)"
            )
        return retrieve_from_store(world, out_dir, feature_store, features)
    if materialize_online and not repo_dir:
        raise ValueError("materialize_online needs a repo_dir to keep the online store in")
    with tempfile.TemporaryDirectory(prefix="hm3-feast-") as tmp:
        cfg = StoreConfig(
            repo_dir=repo_dir or tmp, offline_store=offline_store, spark_master=spark_master
        )
        store = open_store(write_repo_config(cfg))
        apply(
            store,
            storage.join(world, "users.parquet"),
            storage.join(world, "items.parquet"),
        )
        report = retrieve_historical(
            store,
            storage.join(world, "impressions.parquet"),
            storage.join(out_dir, FEATURES_FILE),
            features,
        )
        if materialize_online:
            done = materialize(store)
            log.info("materialized %s into %s in %.1f s", done.views, repo_dir, done.seconds)
    _write_report(out_dir, report)
    return report


def retrieve_from_store(
    world: str, out_dir: str, feature_store: str, features: str = DEFAULT_SERVICE
) -> RetrievalReport:
    """Retrieve a world's impressions from an existing store, checked against `feature_repo/`.

    The store's registry is only read: its contract is checked first (`check_store_contract`),
    so a store without the service, or with another schema, fails before any retrieval.

    Args:
        world: Folder or gs:// prefix with impressions.parquet (the entity rows).
        out_dir: Output folder or gs:// prefix for features.parquet and report.json.
        feature_store: The store's feature_store.yaml (or its folder), local or gs://.
        features: Feature service name.

    Raises:
        StoreContractError: Naming the service, view or field and what was expected.
    """
    store = open_store(feature_store)
    check_store_contract(store, features, where=f"feature store {feature_store}")
    report = retrieve_historical(
        store,
        storage.join(world, "impressions.parquet"),
        storage.join(out_dir, FEATURES_FILE),
        features,
    )
    _write_report(out_dir, report)
    return report


def _write_report(out_dir: str, report: RetrievalReport) -> None:
    storage.write_text_atomic(
        storage.join(out_dir, REPORT_FILE), json.dumps(report_dict(report), indent=2) + "\n"
    )


def write_store_reference(folder: str, feature_store: str) -> str:
    """Write `folder/reference.json` naming an existing store; returns its location.

    A run that uses an existing store has no Feast repo of its own, yet its `feature_store`
    output must exist for the steps and the local run's layout that expect one: it says which
    store the features came from.
    """
    location = storage.join(folder, REFERENCE_FILE)
    storage.write_text_atomic(location, json.dumps({"feature_store": feature_store}) + "\n")
    return location
