"""HM^3 and its baselines in one framework: shared embedding, fused towers, graph composition.

Every model maps `(categorical (B, C) int64, dense (B, N) float32)` to a dict of task *logits*
(`sigmoid` gives the probability) and declares its losses; nothing else differs between them.

| kind  | towers | outputs                                | losses (entire space unless noted)  |
|-------|--------|----------------------------------------|-------------------------------------|
| hm3   | 6      | ctr, ct_micro, ct_macro, cvr, ctcvr    | ctr, ct_micro, ct_macro, ctcvr      |
| esm2  | 4      | ctr, ct_macro, cvr, ctcvr              | ctr, ct_macro, ctcvr                |
| esmm  | 2      | ctr, cvr, ctcvr                        | ctr, ctcvr                          |
| naive | 1      | cvr                                    | cvr on clicked impressions only     |

References: HM^3, Wen et al. SIGIR 2021 (arXiv 2104.09713); ESM^2, Wen et al. SIGIR 2020
(arXiv 1910.07099); ESMM, Ma et al. SIGIR 2018 (arXiv 1804.07931).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import ClassVar

import torch
from torch import nn

from model.data.encoding import FeatureSpec
from model.nn import graph
from model.nn.embedding import FeatureEmbedding
from model.nn.heads import FusedTowers
from model.nn.losses import LossSpec
from model.tasks import tasks_of


class GraphNet(nn.Module):
    """Shared embedding -> K fused towers -> parameter-free composition into task logits.

    Subclasses set `towers`, `tasks`, `default_losses` and `compose`.
    """

    kind: ClassVar[str]
    towers: ClassVar[int]
    tasks: ClassVar[tuple[str, ...]]
    default_losses: ClassVar[tuple[LossSpec, ...]]
    compose: ClassVar[Callable[[torch.Tensor], dict[str, torch.Tensor]]]

    def __init__(
        self,
        spec: FeatureSpec,
        embedding_dim: int,
        hidden: tuple[int, ...],
        dropout: float,
        loss_weights: Mapping[str, float] | None = None,
        sparse_embeddings: bool = False,
        interaction: str = "none",
    ) -> None:
        super().__init__()
        self.embedding = FeatureEmbedding(
            spec, embedding_dim, sparse=sparse_embeddings, interaction=interaction
        )
        self.heads = FusedTowers(self.towers, self.embedding.output_dim, hidden, dropout)
        weights = dict(loss_weights or {})
        unknown = sorted(set(weights) - {s.task for s in self.default_losses})
        if unknown:
            raise ValueError(
                f"loss_weights for {self.kind}: unknown task(s) {unknown}; "
                f"this model has losses on {[s.task for s in self.default_losses]}"
            )
        self.losses = tuple(
            LossSpec(s.task, s.label, weights.get(s.task, s.weight), s.where)
            for s in self.default_losses
        )

    def parameter_groups(self) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
        """(parameters with sparse gradients, all others), for choosing optimizers."""
        table = self.embedding.table.weight
        sparse = [table] if self.embedding.table.sparse else []
        return sparse, [p for p in self.parameters() if not any(p is s for s in sparse)]

    def forward(self, categorical: torch.Tensor, dense: torch.Tensor) -> dict[str, torch.Tensor]:
        """Task logits by name, each (B,), in float32 (also under bf16 autocast)."""
        shared = self.embedding(categorical, dense)  # (B, C * D + I + N), once for all heads
        head_logits = self.heads(shared).float()  # (B, K); composition in fp32 for accuracy
        return type(self).compose(head_logits)


class HM3(GraphNet):
    """HM^3: six heads y1..y6 on click, D-Micro, D-Macro and purchase (see `graph.compose_hm3`)."""

    kind = "hm3"
    towers = 6
    tasks = tasks_of("hm3")
    default_losses = (
        LossSpec("ctr", "click"),
        LossSpec("ct_micro", "d_micro"),
        LossSpec("ct_macro", "d_macro"),
        LossSpec("ctcvr", "buy"),
    )
    compose = staticmethod(graph.compose_hm3)


class ESM2(GraphNet):
    """ESM^2: four heads over click, D-Action (= D-Macro) and purchase."""

    kind = "esm2"
    towers = 4
    tasks = tasks_of("esm2")
    default_losses = (
        LossSpec("ctr", "click"),
        LossSpec("ct_macro", "d_macro"),
        LossSpec("ctcvr", "buy"),
    )
    compose = staticmethod(graph.compose_esm2)


class ESMM(GraphNet):
    """ESMM: pCTCVR = pCTR * pCVR over the entire impression space."""

    kind = "esmm"
    towers = 2
    tasks = tasks_of("esmm")
    default_losses = (LossSpec("ctr", "click"), LossSpec("ctcvr", "buy"))
    compose = staticmethod(graph.compose_esmm)


class NaiveCVR(GraphNet):
    """The biased baseline: one CVR tower trained on clicked impressions only."""

    kind = "naive"
    towers = 1
    tasks = tasks_of("naive")
    default_losses = (LossSpec("cvr", "buy", where="click"),)
    compose = staticmethod(graph.compose_naive)


MODEL_KINDS: dict[str, type[GraphNet]] = {cls.kind: cls for cls in (HM3, ESM2, ESMM, NaiveCVR)}


def build_model(
    kind: str,
    spec: FeatureSpec,
    embedding_dim: int,
    hidden: tuple[int, ...],
    dropout: float,
    loss_weights: Mapping[str, float] | None = None,
    sparse_embeddings: bool = False,
    interaction: str = "none",
) -> GraphNet:
    """A fresh model of the given kind.

    `sparse_embeddings` gives the embedding table sparse gradients (for training; see
    `model.train.trainer.make_optimizers`); the forward pass is the same either way. `interaction`
    is the shared layer's explicit pairwise interaction (`model.nn.embedding.INTERACTIONS`), the
    same for every kind.

    Raises:
        ValueError: On an unknown kind or interaction.
    """
    if kind not in MODEL_KINDS:
        raise ValueError(f"model kind must be one of {sorted(MODEL_KINDS)}, got {kind!r}")
    return MODEL_KINDS[kind](
        spec, embedding_dim, hidden, dropout, loss_weights, sparse_embeddings, interaction
    )
