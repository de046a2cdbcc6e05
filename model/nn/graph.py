"""Parameter-free composition of head outputs along the behavior graph, in log space.

Every probability is carried as a pair `(log p, log(1 - p))`, built from head logits with
`logsigmoid`. Products and two-way mixtures have exact, stable forms in this representation::

    p = a * b           log p = log a + log b
                        log(1 - p) = logaddexp(log(1 - a), log a + log(1 - b))
    p = a*b + (1-a)*c   log p = logaddexp(log a + log b, log(1 - a) + log c)
                        log(1 - p) = logaddexp(log a + log(1 - b), log(1 - a) + log(1 - c))

so a composed probability never leaves [0, 1], never needs clamping, and its logit
`log p - log(1 - p)` feeds `binary_cross_entropy_with_logits` without a division or a log of 0,
even when a head saturates. `sigmoid(logit)` recovers p exactly.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F


class LogProb(NamedTuple):
    """A probability p as (log p, log(1 - p))."""

    log_p: torch.Tensor
    log_q: torch.Tensor

    @classmethod
    def from_logit(cls, logit: torch.Tensor) -> LogProb:
        """sigmoid(logit) in log form."""
        return cls(F.logsigmoid(logit), F.logsigmoid(-logit))

    def logit(self) -> torch.Tensor:
        """log(p / (1 - p))."""
        return self.log_p - self.log_q


def product(a: LogProb, b: LogProb) -> LogProb:
    """Probability of a path of two hops: p = a * b."""
    return LogProb(a.log_p + b.log_p, torch.logaddexp(a.log_q, a.log_p + b.log_q))


def mixture(gate: LogProb, if_yes: LogProb, if_no: LogProb) -> LogProb:
    """Two branches that rejoin: p = gate * if_yes + (1 - gate) * if_no."""
    return LogProb(
        torch.logaddexp(gate.log_p + if_yes.log_p, gate.log_q + if_no.log_p),
        torch.logaddexp(gate.log_p + if_yes.log_q, gate.log_q + if_no.log_q),
    )


def compose_hm3(logits: torch.Tensor) -> dict[str, torch.Tensor]:
    """HM^3: six head logits (B, 6) -> task logits, by the conditional probability rule.

    With y1..y6 the heads of Wen et al. (SIGIR 2021)::

        pCTR   = y1                      pCTMi = y1 * y2
        q      = y2 * y3 + (1 - y2) * y4 pCTMa = y1 * q
        pCVR   = q * y5 + (1 - q) * y6   pCTCVR = y1 * pCVR
    """
    y = [LogProb.from_logit(logits[:, i]) for i in range(6)]
    q = mixture(y[1], y[2], y[3])
    cvr = mixture(q, y[4], y[5])
    return {
        "ctr": y[0].logit(),
        "ct_micro": product(y[0], y[1]).logit(),
        "ct_macro": product(y[0], q).logit(),
        "cvr": cvr.logit(),
        "ctcvr": product(y[0], cvr).logit(),
    }


def compose_esm2(logits: torch.Tensor) -> dict[str, torch.Tensor]:
    """ESM^2: four head logits (B, 4) -> task logits (Wen et al., SIGIR 2020).

    pCTR = y1, pCTAVR = y1 * y2, pCVR = y2 * y3 + (1 - y2) * y4, pCTCVR = y1 * pCVR
    (y2 = p(D-Action | click), D-Action = our D-Macro, so pCTAVR is the `ct_macro` task).
    """
    y = [LogProb.from_logit(logits[:, i]) for i in range(4)]
    cvr = mixture(y[1], y[2], y[3])
    return {
        "ctr": y[0].logit(),
        "ct_macro": product(y[0], y[1]).logit(),
        "cvr": cvr.logit(),
        "ctcvr": product(y[0], cvr).logit(),
    }


def compose_esmm(logits: torch.Tensor) -> dict[str, torch.Tensor]:
    """ESMM: two head logits (B, 2) -> pCTR = y1, pCVR = y2, pCTCVR = y1 * y2 (Ma et al. 2018)."""
    ctr, cvr = LogProb.from_logit(logits[:, 0]), LogProb.from_logit(logits[:, 1])
    return {"ctr": ctr.logit(), "cvr": cvr.logit(), "ctcvr": product(ctr, cvr).logit()}


def compose_naive(logits: torch.Tensor) -> dict[str, torch.Tensor]:
    """Naive CVR: one head, trained on clicked impressions only."""
    return {"cvr": logits[:, 0]}
