"""The shared layer's pairwise interactions and the embedding learning rate."""

from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from model_helpers import fast_config, random_inputs

from model import artifact
from model.data.encoding import FeatureInfo, FeatureSpec
from model.nn.embedding import INTERACTIONS, FeatureEmbedding
from model.nn.losses import multitask_loss
from model.nn.nets import MODEL_KINDS, build_model
from model.train.optim import LazyAdam
from model.train.trainer import TrainConfig, make_optimizers, train

SPEC = FeatureSpec(
    (
        FeatureInfo("user_id", "id", size=50),
        FeatureInfo("item_id", "id", size=40),
        FeatureInfo("scene", "categorical", size=5, vocabulary=("a", "b", "c", "d")),
        FeatureInfo("price", "dense", mean=40.0, std=20.0),
    )
)
DIM = 4


@pytest.mark.parametrize(
    ("interaction", "width"),
    [("none", 0), ("dot", 3), ("id_hadamard", DIM)],  # 3 categorical pairs; 1 id pair of D
)
def test_interaction_widths_and_values(interaction, width):
    layer = FeatureEmbedding(SPEC, DIM, interaction=interaction)
    cat, dense = random_inputs(16, SPEC)
    out = layer(cat, dense)
    assert out.shape == (16, 3 * DIM + width + 1) and layer.output_dim == out.shape[1]
    emb = layer.table(cat + layer.offsets)  # (B, C, D)
    extra = out[:, 3 * DIM : 3 * DIM + width]
    if interaction == "dot":
        expected = torch.stack(
            [(emb[:, i] * emb[:, j]).sum(-1) for i, j in ((0, 1), (0, 2), (1, 2))], dim=1
        )
        torch.testing.assert_close(extra, expected)
    elif interaction == "id_hadamard":
        torch.testing.assert_close(extra, emb[:, 0] * emb[:, 1])
    # The interaction adds no parameters and no saved tensors.
    assert set(layer.state_dict()) == {"offsets", "table.weight", "mean", "std"}


def test_unknown_interaction_is_rejected_by_name():
    with pytest.raises(ValueError, match="interaction"):
        FeatureEmbedding(SPEC, DIM, interaction="cross")
    with pytest.raises(ValueError, match="interaction"):
        TrainConfig(interaction="cross")


@pytest.mark.parametrize("interaction", INTERACTIONS)
@pytest.mark.parametrize("kind", sorted(MODEL_KINDS))
def test_every_kind_trains_through_every_interaction(kind, interaction):
    torch.manual_seed(0)
    net = build_model(kind, SPEC, DIM, (8,), 0.0, interaction=interaction)
    cat, dense = random_inputs(64, SPEC)
    labels = {n: torch.zeros(64) for n in ("click", "d_micro", "d_macro", "buy")}
    labels["click"][:8] = 1
    outputs = net(cat, dense)
    assert set(outputs) == set(net.tasks)
    loss, _ = multitask_loss(outputs, labels, net.losses)
    loss.backward()
    assert torch.isfinite(loss)
    table_grad = net.embedding.table.weight.grad
    assert torch.isfinite(table_grad).all() and table_grad.abs().sum() > 0
    assert all(torch.isfinite(p.grad).all() for p in net.heads.parameters())


def test_embedding_lr_sets_the_table_rate_sparse_or_dense():
    for sparse in (True, False):
        net = build_model("esmm", SPEC, DIM, (8,), 0.0, sparse_embeddings=sparse)
        cfg = TrainConfig(lr=1e-3, embedding_lr=2e-4)
        rates = {
            id(p): group["lr"]
            for opt in make_optimizers(cfg, net)
            for group in opt.param_groups
            for p in group["params"]
        }
        assert rates.pop(id(net.embedding.table.weight)) == 2e-4
        assert set(rates.values()) == {1e-3}
    with pytest.raises(ValueError, match="embedding_lr"):
        TrainConfig(embedding_lr=0.0)


def test_feature_embedding_lr_gives_one_feature_its_own_rows_rate():
    net = build_model("esmm", SPEC, DIM, (8,), 0.0, sparse_embeddings=True)
    cfg = TrainConfig(lr=1e-3, embedding_lr=2e-4, feature_embedding_lr={"item_id": 1e-3})
    (lazy,) = [opt for opt in make_optimizers(cfg, net, SPEC) if isinstance(opt, LazyAdam)]
    scale = lazy.param_groups[0]["row_scale"]
    # Rows in spec order: user_id 0-49, item_id 50-89, scene 90-94.
    assert lazy.param_groups[0]["lr"] == 2e-4
    torch.testing.assert_close(scale[50:90] * 2e-4, torch.full((40,), 1e-3))
    assert torch.equal(scale[:50], torch.ones(50)) and torch.equal(scale[90:], torch.ones(5))
    named = r"\['brand_id'\].*it has \['user_id', 'item_id', 'scene'\]"
    with pytest.raises(ValueError, match=named):
        make_optimizers(TrainConfig(feature_embedding_lr={"brand_id": 1e-3}), net, SPEC)
    with pytest.raises(ValueError, match="needs the feature spec"):
        make_optimizers(cfg, net)
    with pytest.raises(
        ValueError, match=r"feature_embedding_lr\['item_id'\] must be a positive number"
    ):
        TrainConfig(feature_embedding_lr={"item_id": 0.0})
    with pytest.raises(ValueError, match="needs sparse_embeddings"):
        TrainConfig(feature_embedding_lr={"item_id": 1e-3}, sparse_embeddings=False)
    dense_table = build_model("esmm", SPEC, DIM, (8,), 0.0, sparse_embeddings=False)
    with pytest.raises(ValueError, match="needs a sparse embedding table; this one is dense"):
        make_optimizers(cfg, dense_table, SPEC)


def test_artifact_with_interaction_round_trips_and_export_matches(tiny_table, tmp_path):
    out = tmp_path / "m"
    cfg = fast_config(model_kind="esm2", interaction="id_hadamard", embedding_lr=1e-3, epochs=1)
    train(tiny_table, out, cfg)
    config = json.loads((out / "config.json").read_text())
    assert config["architecture"]["interaction"] == "id_hadamard"
    frame = pq.read_table(tiny_table).slice(0, 300).to_pandas()
    rebuilt = artifact.load_model(out).predict(frame)
    exported = artifact.load_model(out, exported=True).predict(frame)
    for task, p in rebuilt.items():
        assert np.isfinite(p).all(), task
        np.testing.assert_allclose(exported[task], p, rtol=1e-5, atol=1e-7)


def test_embedding_l2_shrinks_the_table_and_is_validated(tiny_table, tmp_path):
    from safetensors.torch import load_file

    tables = {}
    for l2 in (0.0, 50.0):
        out = tmp_path / f"l2-{l2}"
        result = train(
            tiny_table,
            out,
            fast_config(model_kind="esmm", embedding_l2=l2, embedding_lr=None, epochs=1),
        )
        assert np.isfinite(result.history[0]["train_loss"])
        tables[l2] = load_file(str(out / "model.safetensors"))["embedding.table.weight"]
    # Same seed, same init: the rows that differ are the rows training used; only they shrink.
    used = (tables[0.0] != tables[50.0]).any(dim=1)
    assert used.any() and not used.all()
    assert tables[50.0][used].norm() < 0.9 * tables[0.0][used].norm()
    with pytest.raises(ValueError, match="embedding_l2"):
        TrainConfig(embedding_l2=-1.0)
