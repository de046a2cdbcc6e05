"""HM^3 written the way a torch-rechub user writes a multi-task model: the bench's fair peer.

torch-rechub 0.9.0 has no HM^3. This is ours (`model.nn.nets.HM3`) rebuilt from the library's own
building blocks, in the style of its `ESMM` and `MMOE` (torch_rechub/models/multi_task): one
`SparseFeature` per column (one `nn.Embedding` each) behind its `EmbeddingLayer`, the embeddings
concatenated (`squeeze_dim=True`), six towers of its `MLP` (Linear -> BatchNorm1d -> ReLU ->
Dropout per hidden layer, then Linear(*, 1); it has no switch to leave BatchNorm out), a sigmoid per
tower and the composition in probability space, as its ESMM multiplies `ctr_pred * cvr_pred`.

Same sizes as ours: embedding dim D per feature, input C * D, towers `hidden` -> 1, six of them;
same outputs trained with the same four losses (BCE of ctr on click, ct_micro on d_micro, ct_macro
on d_macro, ctcvr on buy, weight 1 each) over the entire impression space. The only architectural
difference is the BatchNorm its MLP adds; `ours_state_dict` maps its weights onto ours so a test
can check that both compute the same function (BatchNorm at its initial statistics, in eval mode).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch_rechub.basic.features import SparseFeature
from torch_rechub.basic.layers import MLP, EmbeddingLayer

# Output columns, in order (torch-rechub's models return one (B, T) tensor of probabilities).
TASKS = ("ctr", "ct_micro", "ct_macro", "ctcvr")
# The label each output column is trained on (our `HM3.default_losses`).
LABELS = ("click", "d_micro", "d_macro", "buy")


class RechubHM3(nn.Module):
    """Six torch-rechub MLP towers y1..y6 over a shared embedding, composed by the HM^3 graph.

    Args:
        features: One `SparseFeature` per categorical column, all with the same `embed_dim`.
        tower_params: Its MLP's params, e.g. `{"dims": [256, 128, 64], "dropout": 0.0,
            "activation": "relu"}`, the same for all six towers.
    """

    def __init__(self, features: Sequence[SparseFeature], tower_params: dict) -> None:
        super().__init__()
        self.features = list(features)
        self.embedding = EmbeddingLayer(self.features)
        self.input_dims = sum(fea.embed_dim for fea in self.features)
        self.towers = nn.ModuleList(MLP(self.input_dims, **tower_params) for _ in range(6))

    def forward(self, x: dict[str, torch.Tensor]) -> torch.Tensor:
        """{feature name: (B,) indices} -> (B, 4) probabilities, columns as in `TASKS`."""
        embed_x = self.embedding(x, self.features, squeeze_dim=True)  # (B, C * D)
        y = torch.cat([torch.sigmoid(tower(embed_x)) for tower in self.towers], dim=1)  # (B, 6)
        return compose(y)


def compose(y: torch.Tensor) -> torch.Tensor:
    """Six head probabilities (B, 6) -> (B, 4): pCTR, pCTMi, pCTMa, pCTCVR (Wen et al. 2021).

    q = y2 * y3 + (1 - y2) * y4, pCVR = q * y5 + (1 - q) * y6; pCTMi = y1 * y2, pCTMa = y1 * q,
    pCTCVR = y1 * pCVR.
    """
    y1, y2, y3, y4, y5, y6 = y.unbind(dim=1)
    q = y2 * y3 + (1 - y2) * y4
    cvr = q * y5 + (1 - q) * y6
    return torch.stack([y1, y1 * y2, y1 * q, y1 * cvr], dim=1)


def build(sizes: Sequence[int], names: Sequence[str], dim: int, hidden: Sequence[int]) -> RechubHM3:
    """The peer for categorical columns `names` with vocabularies `sizes`, no dropout."""
    feats = [SparseFeature(n, s, embed_dim=dim) for n, s in zip(names, sizes, strict=True)]
    return RechubHM3(feats, {"dims": list(hidden), "dropout": 0.0, "activation": "relu"})


def loss(pred: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Sum of the four BCE terms, with the library's classification loss (`nn.BCELoss`).

    `pred` and `y` are (B, 4) with columns `TASKS` and `LABELS`.
    """
    bce = nn.BCELoss()  # torch_rechub.utils.data.get_loss_func("classification")
    return sum(bce(pred[:, i], y[:, i].float()) for i in range(len(TASKS)))


def ours_state_dict(peer: RechubHM3) -> dict[str, torch.Tensor]:
    """The peer's weights in the layout of `model.nn.nets.HM3` (one table, fused towers).

    BatchNorm has no counterpart in ours and is dropped: at its initial statistics (mean 0,
    variance 1, weight 1, bias 0) in eval mode it scales by 1 / sqrt(1 + eps), ~1 - 5e-6.
    """
    table = torch.cat([peer.embedding.embed_dict[f.name].weight for f in peer.features])
    linears = [[m for m in t.mlp if isinstance(m, nn.Linear)] for t in peer.towers]
    state = {"embedding.table.weight": table.detach().clone()}
    for i, layer in enumerate(zip(*linears, strict=True)):
        state[f"heads.weights.{i}"] = torch.stack([m.weight.detach().T for m in layer])
        state[f"heads.biases.{i}"] = torch.stack([m.bias.detach()[None, :] for m in layer])
    return state
