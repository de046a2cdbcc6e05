"""Training across nodes and GPUs: the TrainJob's node command on two local "nodes" with gs://
output, and a step pod's own torchrun over its devices.

Two `torchrun` processes on loopback, each given the environment Kubeflow Trainer's Torch
plugin sets on a node (PET_NNODES, PET_NPROC_PER_NODE, PET_NODE_RANK, PET_MASTER_ADDR,
PET_MASTER_PORT), run the exact command `components.trainjob.train_command` puts in the
TrainJob; the table and the model live on a real GCS API emulator, as on a cluster.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from model_helpers import fast_config
from typer.testing import CliRunner

from components.torchrun import pod_processes, standalone_command, train_in_pod
from components.trainjob import TrainOutcome, train_command
from model import storage
from model.artifact import load_model
from model.train.trainer import train

ROOT = Path(__file__).resolve().parents[2]
DONE = re.compile(r"rank (\d+) of (\d+) done: best epoch (\d+), weights sum (\S+)")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def node1_gcs(gcs_bucket: str) -> Iterator[str]:
    """A second GCS emulator with the same bucket, for node 1 alone: what lands there, node 1
    wrote. Yields its STORAGE_EMULATOR_HOST (node 0 uses the session's, `gcs_bucket`)."""
    from gcp_storage_emulator.server import create_server

    port = _free_port()
    server = create_server("127.0.0.1", port, in_memory=True, default_bucket=gcs_bucket[5:])
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


def _bucket(emulator: str, bucket: str):  # noqa: ANN202
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage as gcs

    client = gcs.Client(
        project="hm3-local",
        credentials=AnonymousCredentials(),
        client_options={"api_endpoint": emulator},
    )
    return client.bucket(bucket)


def test_two_nodes_agree_and_rank_0_alone_writes_the_model_to_gcs(
    tiny_table: Path, gcs_bucket: str, node1_gcs: str, tmp_path: Path
) -> None:
    table_uri = f"{gcs_bucket}/multinode/train.parquet"
    model_uri = f"{gcs_bucket}/multinode/model"
    storage.write_bytes_atomic(table_uri, tiny_table.read_bytes())
    node1_bucket = _bucket(node1_gcs, gcs_bucket[len("gs://") :])
    node1_bucket.blob("multinode/train.parquet").upload_from_filename(str(tiny_table))
    cfg = fast_config(model_kind="esmm", epochs=2, batch_size=256)
    command = train_command(table_uri, model_uri, "esmm", json.dumps(cfg.to_dict()))
    assert command[0] == "torchrun"
    # This venv's torchrun, as `python -m torch.distributed.run` (the same entry point).
    argv = [sys.executable, "-m", "torch.distributed.run", *command[1:]]
    port = _free_port()
    node_env = {
        "PYTHONPATH": str(ROOT),
        "PET_NNODES": "2",
        "PET_NPROC_PER_NODE": "1",
        "PET_MASTER_ADDR": "127.0.0.1",
        "PET_MASTER_PORT": str(port),
    }
    nodes = [
        subprocess.Popen(
            argv,
            env=os.environ
            | node_env
            | {"PET_NODE_RANK": str(rank)}
            | ({"STORAGE_EMULATOR_HOST": node1_gcs} if rank == 1 else {}),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=tmp_path,
        )
        for rank in (0, 1)
    ]
    outputs = []
    try:
        for node in nodes:
            outputs.append(node.communicate(timeout=240))
    finally:
        for node in nodes:
            node.kill()
    for rank, (node, (out, err)) in enumerate(zip(nodes, outputs, strict=True)):
        assert node.returncode == 0, f"node {rank} failed:\n{out}\n{err[-3000:]}"

    # Each node ran one rank of the same two-process job, and the replicas ended identical.
    done = [DONE.findall(err) for _, err in outputs]
    assert [len(d) for d in done] == [1, 1], done
    (rank0,), (rank1,) = done
    assert (rank0[:2], rank1[:2]) == (("0", "2"), ("1", "2"))
    assert rank0[2:] == rank1[2:], "best epoch or weights differ across nodes"

    # Only rank 0 reports and writes an artifact: node 1 (on its own emulator) wrote nothing.
    summary = json.loads(outputs[0][0].strip().splitlines()[-1])
    assert summary["out"] == model_uri
    assert outputs[1][0].strip() == ""
    assert [b.name for b in node1_bucket.client.list_blobs(node1_bucket)] == [
        "multinode/train.parquet"
    ]

    # The sealed artifact on gs:// holds exactly its manifest's files and loads.
    local = storage.download_dir(model_uri, tmp_path / "fetched")
    manifest = json.loads((local / storage.MANIFEST).read_text())["files"]
    assert {"model.safetensors", "config.json", "model.pt2", "history.json"} <= set(manifest)
    listed = {u[len(model_uri) + 1 :] for u in storage.list_files(model_uri)}
    assert listed == set(manifest) | {storage.MANIFEST}
    outcome = TrainOutcome.read(local)
    assert (outcome.version, outcome.best_epoch) == (summary["version"], summary["best_epoch"])
    assert outcome.epochs_run == 2
    assert load_model(local).version == summary["version"]


def test_gcs_out_dir_cannot_resume(tiny_table: Path) -> None:
    with pytest.raises(ValueError, match="resume needs a local out_dir"):
        train(tiny_table, "gs://bucket/model", fast_config(), resume=True)


def test_cli_train_takes_the_config_as_json_but_not_with_a_file(
    tiny_table: Path, tmp_path: Path
) -> None:
    from pipelines.cli import app

    runner = CliRunner()
    cfg = tmp_path / "cfg.json"
    cfg.write_text("{}")
    both = ["--config", str(cfg), "--config-json", "{}"]
    res = runner.invoke(app, ["train", "--data", str(tiny_table), *both])
    assert res.exit_code == 2 and "not both" in res.output
    res = runner.invoke(app, ["train", "--data", str(tiny_table), "--config-json", "[1]"])
    assert res.exit_code == 2 and "JSON object" in res.output
    res = runner.invoke(
        app, ["train", "--data", str(tiny_table), "--config-json", '{"dropout": 2.0}']
    )
    assert res.exit_code == 2 and "dropout" in res.output


def test_a_pod_with_several_gpus_trains_under_torchrun_standalone(
    tiny_table: Path, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """One node, several devices: the step's `torchrun --standalone` path, here 2 CPU ranks."""
    cfg = fast_config(model_kind="esmm", epochs=2, batch_size=256)
    outcome = train_in_pod(str(tiny_table), str(tmp_path / "m"), cfg, processes=2)
    done = DONE.findall(capfd.readouterr().err)
    assert sorted(d[:2] for d in done) == [("0", "2"), ("1", "2")], done
    assert done[0][2:] == done[1][2:], "best epoch or weights differ across ranks"
    assert outcome.epochs_run == 2
    assert load_model(tmp_path / "m").version == outcome.version


def test_standalone_command_resumes_in_the_step_folder() -> None:
    cfg = fast_config(model_kind="hm3")
    command = standalone_command("/in/table.parquet", "/gcs/b/model", cfg, 4)
    assert command[1:5] == ["-m", "torch.distributed.run", "--standalone", "--nproc-per-node=4"]
    assert command[5:8] == ["-m", "pipelines.cli", "train"]
    assert command[-1] == "--resume" and "/gcs/b/model" in command
    with pytest.raises(ValueError, match="processes >= 2, got 1"):
        standalone_command("/in/t", "/out", cfg, 1)
    assert pod_processes("cpu") == 1 and pod_processes("cuda:1") == 1
