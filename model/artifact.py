"""The model artifact: safetensors weights, a JSON config, an exported inference program.

Layout of an artifact folder (sealed by `MANIFEST.json`, see `model.storage`)::

    model.safetensors   weights and normalization buffers (no pickle)
    config.json         kind, version, tasks, feature spec (vocabularies, hash buckets,
                        normalization statistics, defaults), architecture, train config
    model.pt2           torch.export program: (categorical int64 (B, C), dense float32 (B, N))
                        -> {task: probability (B,)}; runs without this package
    history.json        per-epoch train loss, validation AUCs, samples/s
    tensorboard/        TensorBoard scalars

`load_model(path).predict(frame)` encodes a pandas frame with the saved spec (missing columns
and nulls get the documented defaults) and returns {task: probabilities}.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from model import storage
from model.data.encoding import FeatureSpec
from model.devices import check_device_name
from model.nn.nets import GraphNet, build_model

log = logging.getLogger(__name__)

WEIGHTS = "model.safetensors"
CONFIG = "config.json"
PROGRAM = "model.pt2"
HISTORY = "history.json"
FORMAT_VERSION = 1
PREDICT_BATCH = 65_536


class _Probabilities(nn.Module):
    """Wraps a net so the exported program returns probabilities, not logits."""

    def __init__(self, net: GraphNet) -> None:
        super().__init__()
        self.net = net

    def forward(self, categorical: torch.Tensor, dense: torch.Tensor) -> dict[str, torch.Tensor]:
        return {task: torch.sigmoid(logit) for task, logit in self.net(categorical, dense).items()}


def save_artifact(
    net: GraphNet,
    spec: FeatureSpec,
    architecture: Mapping[str, Any],
    train_config: Mapping[str, Any],
    out_dir: str | Path,
    extra: Mapping[str, Any] | None = None,
) -> str:
    """Write weights, config and the exported program into `out_dir`, then seal it.

    Args:
        net: The trained model (moved to CPU for saving).
        spec: The fitted feature spec.
        architecture: Arguments of `build_model` besides the spec (kind, embedding_dim, ...).
        train_config: The training configuration, recorded as is.
        out_dir: Local folder (may already hold history.json and tensorboard/).
        extra: More JSON-ready facts for config.json (best epoch, validation metrics).

    Returns:
        The model version string.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    net = net.to("cpu").eval()
    state = {k: v.detach().contiguous() for k, v in net.state_dict().items()}
    save_file(state, str(out / WEIGHTS), metadata={"format": "hm3", "kind": net.kind})
    digest = hashlib.sha256((out / WEIGHTS).read_bytes()).hexdigest()[:10]
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    version = f"{net.kind}-{stamp}-{digest}"
    config = {
        "format_version": FORMAT_VERSION,
        "kind": net.kind,
        "version": version,
        "tasks": list(net.tasks),
        "losses": [
            {"task": s.task, "label": s.label, "weight": s.weight, "where": s.where}
            for s in net.losses
        ],
        "architecture": dict(architecture),
        "feature_spec": spec.to_json(),
        "defaults": spec.defaults(),
        "inputs": {
            "categorical": [f.name for f in spec.categorical],
            "dense": [f.name for f in spec.dense],
        },
        "train_config": dict(train_config),
        **dict(extra or {}),
    }
    (out / CONFIG).write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    export_program(net, spec, out / PROGRAM)
    storage.seal_dir(out)
    log.info("saved %s model %s to %s", net.kind, version, out)
    return version


def export_program(net: GraphNet, spec: FeatureSpec, path: Path) -> None:
    """Export the inference program with a dynamic batch dimension (torch.export)."""
    batch = torch.export.Dim("batch")
    example = (
        torch.zeros(4, len(spec.categorical), dtype=torch.int64),
        torch.zeros(4, len(spec.dense), dtype=torch.float32),
    )
    program = torch.export.export(
        _Probabilities(net.eval()),
        example,
        dynamic_shapes={"categorical": {0: batch}, "dense": {0: batch}},
    )
    torch.export.save(program, str(path))


class TrainedModel:
    """A loaded model: its kind, version, feature spec, and a pandas-in, numpy-out `predict`.

    Attributes:
        kind: `hm3`, `esm2`, `esmm` or `naive`.
        version: Unique version string of the weights.
        feature_spec: The fitted `FeatureSpec` (input columns, vocabularies, defaults).
        tasks: Task names `predict` returns.
        config: The whole config.json.
    """

    def __init__(
        self, config: Mapping[str, Any], module: nn.Module, device: torch.device | None = None
    ) -> None:
        self.config = dict(config)
        self.device = device or torch.device("cpu")
        self.kind: str = config["kind"]
        self.version: str = config["version"]
        self.tasks: tuple[str, ...] = tuple(config["tasks"])
        self.feature_spec = FeatureSpec.from_json(config["feature_spec"])
        self._module = module

    def predict(self, frame: pd.DataFrame) -> dict[str, np.ndarray]:
        """Probabilities per task for each row of `frame`.

        Args:
            frame: Rows with (some of) the spec's feature columns; extra columns are ignored,
                missing columns and nulls take the documented defaults.

        Returns:
            Task name -> float32 array of shape (len(frame),).
        """
        return self._forward(*self.feature_spec.encode(frame))

    def predict_records(self, rows: Sequence[Mapping[str, Any]]) -> dict[str, np.ndarray]:
        """`predict` for rows given as mappings (a served request), without pandas."""
        return self._forward(*self.feature_spec.encode_records(rows))

    def _forward(self, cat: np.ndarray, dense: np.ndarray) -> dict[str, np.ndarray]:
        outputs: dict[str, list[np.ndarray]] = {t: [] for t in self.tasks}
        device = self.device
        with torch.inference_mode():
            for lo in range(0, len(cat), PREDICT_BATCH):
                hi = lo + PREDICT_BATCH
                probs = self._module(
                    torch.from_numpy(cat[lo:hi]).to(device),
                    torch.from_numpy(dense[lo:hi]).to(device),
                )
                for task in self.tasks:
                    outputs[task].append(probs[task].float().cpu().numpy())
        return {
            t: np.concatenate(v) if v else np.zeros(0, dtype=np.float32) for t, v in outputs.items()
        }


def load_model(path: str | Path, exported: bool = False, device: str = "cpu") -> TrainedModel:
    """Load an artifact folder (local path, file:// or gs://), verified against its manifest.

    Args:
        path: The artifact folder.
        exported: Run the exported `model.pt2` program instead of rebuilding the net from
            config.json + safetensors (serving can do either; both give the same numbers).
        device: `cpu`, `cuda`, `cuda:N`, or `auto` (cuda if present). Inputs are encoded on
            the CPU and moved there per batch.

    Raises:
        model.storage.ArtifactError: If the folder is incomplete or altered.
        ValueError: If config.json has an unknown format version, or CUDA is asked for on a
            machine without it.
    """
    target = resolve_device(device)
    with storage.local_dir(path) as root:
        config = json.loads((root / CONFIG).read_text())
        if config.get("format_version") != FORMAT_VERSION:
            raise ValueError(
                f"{path}: config.json format_version {config.get('format_version')!r}, "
                f"expected {FORMAT_VERSION}"
            )
        if exported:
            module: nn.Module = torch.export.load(str(root / PROGRAM)).module()
        else:
            spec = FeatureSpec.from_json(config["feature_spec"])
            arch = config["architecture"]
            net = build_model(
                config["kind"],
                spec,
                arch["embedding_dim"],
                tuple(arch["hidden"]),
                arch["dropout"],
                {loss["task"]: loss["weight"] for loss in config["losses"]},
                interaction=arch.get("interaction", "none"),  # absent in older artifacts
            )
            net.load_state_dict(load_file(str(root / WEIGHTS)))
            module = _Probabilities(net.eval())
    return TrainedModel(config, module.to(target), target)


def resolve_device(name: str) -> torch.device:
    """`auto` -> cuda if present, else cpu; refuses CUDA on a machine without it.

    Raises:
        ValueError: On an unknown name or unavailable CUDA.
    """
    if check_device_name(name) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r}: CUDA is not available on this machine")
    return device
