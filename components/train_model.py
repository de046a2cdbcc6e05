"""KFP components `join_training_table` and `train_model`, and the GPU request for training.

`train_model` runs in the training image (CUDA torch); `request_gpus` asks the cluster for
accelerators for one task; with several, the step trains under `torchrun --standalone`, one
process per GPU (components/torchrun.py). The component resumes from the checkpoint inside its
output folder, so a retried pod (preempted node, OOM kill) continues instead of starting over.

With `nodes > 1` the step trains on a Kubeflow Trainer `TrainJob` of `nodes` GPU pods instead of
in its own pod (components/trainjob.py): it launches the job, waits for it, and outputs the
model the job wrote to the step's artifact URI.
"""

from kfp import dsl
from kfp.dsl import Dataset, Input, Metrics, Model, Output

from components.images import HM3_IMAGE, HM3_TRAIN_IMAGE

GPU_RESOURCE = "nvidia.com/gpu"


@dsl.component(base_image=HM3_IMAGE, install_kfp_package=False)
def join_training_table(labels: Input[Dataset], features: Input[Dataset], table: Output[Dataset]):
    """Inner-join labels.parquet and features.parquet on impression_id (kinds metadata kept).

    Args:
        labels: Folder of the label builder, with labels.parquet.
        features: Folder of feature retrieval, with features.parquet.
        table: Output Parquet file: the training table.
    """
    import pyarrow.parquet as pq

    from model.data.training_table import join_training_table as join

    join(f"{labels.path}/labels.parquet", f"{features.path}/features.parquet", table.path)
    table.metadata["rows"] = pq.ParquetFile(table.path).metadata.num_rows


@dsl.component(base_image=HM3_TRAIN_IMAGE, install_kfp_package=False)
def train_model(
    table: Input[Dataset],
    model: Output[Model],
    metrics: Output[Metrics],
    model_kind: str = "hm3",
    config_json: str = "{}",
    nodes: int = 1,
    trainjob_json: str = "",
):
    """Train one model kind on the training table and write its artifact folder.

    Args:
        table: The joined training table (Parquet, with the feature kinds metadata).
        model: Output folder: model.safetensors, config.json, model.pt2, history.json,
            tensorboard/, MANIFEST.json.
        metrics: best_epoch, epochs_run and the validation AUC of every task (validation_auc_*).
        model_kind: hm3, esm2, esmm or naive.
        config_json: TrainConfig fields as a JSON object (see model/train/trainer.py); model_kind
            wins.
        nodes: 1 trains in this pod (under torchrun, one process per GPU, when it has
            several); more launches a TrainJob on that many nodes.
        trainjob_json: The TrainJob's settings (components.trainjob.TrainJobSettings as JSON;
            image, GPUs per node, runtime, pod settings), set at compile time when nodes > 1.
    """
    import json

    from components.torchrun import train_in_pod
    from components.trainjob import TrainJobSettings, train_with_trainjob
    from model.train.trainer import TrainConfig

    overrides = {"model_kind": model_kind, "progress": False}
    cfg = TrainConfig.from_dict(json.loads(config_json or "{}") | overrides)
    if nodes > 1:
        settings = TrainJobSettings.from_json(trainjob_json)
        outcome = train_with_trainjob(settings, nodes, table.uri, model.uri, model.path, cfg)
    else:
        outcome = train_in_pod(table.path, model.path, cfg)
    model.metadata.update({"kind": model_kind, "version": outcome.version, "framework": "pytorch"})
    metrics.log_metric("best_epoch", outcome.best_epoch)
    metrics.log_metric("epochs_run", outcome.epochs_run)
    for name, value in outcome.validation.items():
        metrics.log_metric(f"validation_{name}", value)


def request_gpus(task: dsl.PipelineTask, gpus: int = 1) -> dsl.PipelineTask:
    """Ask the cluster for `gpus` NVIDIA GPUs for one task (ignored by kfp.local).

    Raises:
        ValueError: If gpus < 1.
    """
    if gpus < 1:
        raise ValueError(f"gpus must be >= 1, got {gpus}")
    return task.set_accelerator_type(GPU_RESOURCE).set_accelerator_limit(gpus)
