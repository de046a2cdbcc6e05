"""Read Kubernetes manifests into the KServe / Kubernetes SDK models, strictly.

The SDKs' own deserializers ignore unknown fields (a misspelled `minReplica` would vanish
silently) and KServe's cannot resolve Kubernetes types. This walks the generated models'
`openapi_types` / `attribute_map` itself and rejects any key the model does not declare.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

_LIST = re.compile(r"^list\[(.+)\]$")
_DICT = re.compile(r"^dict\(([^,]+), (.+)\)$")
_PRIMITIVES: dict[str, tuple[type, ...]] = {
    "str": (str,),
    "int": (int,),
    "float": (int, float),
    "bool": (bool,),
    "object": (object,),
    "datetime": (str,),
    "date": (str,),
}


class ManifestError(ValueError):
    """A manifest has a field its SDK model does not know, or a value of the wrong type."""


def model_class(name: str) -> type:
    """The SDK model class of that name, from kserve.models or kubernetes.client.models.

    Raises:
        ManifestError: If neither SDK has it.
    """
    import kserve.models
    import kubernetes.client.models

    for module in (kserve.models, kubernetes.client.models):
        if hasattr(module, name):
            return getattr(module, name)
    raise ManifestError(f"no SDK model named {name}")


def to_model(data: Any, type_name: str, where: str = "") -> Any:
    """Build an SDK model (or a list/dict/primitive) from parsed YAML, rejecting unknown keys.

    Args:
        data: Parsed YAML/JSON.
        type_name: OpenAPI type string, e.g. "V1beta1InferenceService" or "list[V1Container]".
        where: Path of `data` in the document, for error messages.

    Raises:
        ManifestError: Naming the path and the unknown key or mistyped value.
    """
    if data is None:
        return None
    if m := _LIST.match(type_name):
        if not isinstance(data, list):
            raise ManifestError(f"{where}: expected a list, got {type(data).__name__}")
        return [to_model(v, m.group(1), f"{where}[{i}]") for i, v in enumerate(data)]
    if m := _DICT.match(type_name):
        if not isinstance(data, dict):
            raise ManifestError(f"{where}: expected a mapping, got {type(data).__name__}")
        return {k: to_model(v, m.group(2), f"{where}.{k}") for k, v in data.items()}
    if type_name in _PRIMITIVES:
        if not isinstance(data, _PRIMITIVES[type_name]) or (
            type_name in ("int", "float") and isinstance(data, bool)
        ):
            raise ManifestError(f"{where}: expected {type_name}, got {data!r}")
        return data
    klass = model_class(type_name)
    if not isinstance(data, dict):
        raise ManifestError(f"{where}: expected a {type_name} mapping, got {type(data).__name__}")
    by_key = {key: attr for attr, key in klass.attribute_map.items()}
    unknown = sorted(set(data) - set(by_key))
    if unknown:
        raise ManifestError(f"{where or type_name}: unknown field(s) {unknown} for {type_name}")
    kwargs = {
        by_key[key]: to_model(value, klass.openapi_types[by_key[key]], f"{where}.{key}")
        for key, value in data.items()
    }
    try:
        return klass(**kwargs)
    except ValueError as err:  # the SDK's own required-field and enum checks
        raise ManifestError(f"{where or type_name}: {err}") from err


def load_documents(path: str | Path) -> list[dict[str, Any]]:
    """All YAML documents of a manifest file (empty documents skipped)."""
    import yaml

    with open(path) as handle:
        return [doc for doc in yaml.safe_load_all(handle) if doc]


SDK_TYPES: dict[str, str] = {
    "InferenceService": "V1beta1InferenceService",
    "ServingRuntime": "V1alpha1ServingRuntime",
    "ServiceAccount": "V1ServiceAccount",
    "ConfigMap": "V1ConfigMap",
}


def parse_document(doc: dict[str, Any], source: str = "") -> Any:
    """One manifest document as its SDK model, chosen by `kind`.

    Raises:
        ManifestError: On an unsupported kind, unknown field or mistyped value.
    """
    kind = doc.get("kind")
    if kind not in SDK_TYPES:
        raise ManifestError(
            f"{source}: unsupported kind {kind!r}; expected one of {sorted(SDK_TYPES)}"
        )
    return to_model(doc, SDK_TYPES[kind], f"{source}:{kind}")


def merge_patch(target: Any, patch: Any) -> Any:
    """`target` with a JSON merge patch applied (RFC 7386), as `kubectl patch --type merge` does.

    Objects merge key by key; a null deletes the key; anything else (lists included) replaces.
    Neither argument is modified.
    """
    if not isinstance(patch, dict):
        return patch
    out = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = merge_patch(out.get(key), value)
    return out
