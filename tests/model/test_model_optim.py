"""LazyAdam: SparseAdam's update without the coalesce, on the gradients nn.Embedding produces."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from model.train.optim import LazyAdam


def _embedding_pair(rows: int = 50, dim: int = 4) -> tuple[nn.Embedding, nn.Embedding]:
    torch.manual_seed(0)
    a = nn.Embedding(rows, dim, sparse=True)
    b = nn.Embedding(rows, dim, sparse=True)
    b.load_state_dict(a.state_dict())
    return a, b


def test_lazy_adam_matches_sparse_adam_on_repeated_uncoalesced_rows():
    ours, ref = _embedding_pair()
    opt_ours = LazyAdam(ours.parameters(), lr=0.05)
    opt_ref = torch.optim.SparseAdam(ref.parameters(), lr=0.05)
    gen = torch.Generator().manual_seed(1)
    untouched = torch.arange(40, 50)  # never looked up: must keep their initial values
    start = ref.weight.detach()[untouched].clone()
    for _ in range(25):
        ids = torch.randint(0, 40, (64,), generator=gen)  # many duplicates per batch
        target = torch.randn(64, 4, generator=gen)
        for emb, opt in ((ours, opt_ours), (ref, opt_ref)):
            opt.zero_grad(set_to_none=True)
            ((emb(ids) - target) ** 2).sum().backward()
            assert not emb.weight.grad.is_coalesced()
            opt.step()
    torch.testing.assert_close(ours.weight, ref.weight, rtol=1e-5, atol=1e-6)
    for key in ("exp_avg", "exp_avg_sq"):
        torch.testing.assert_close(
            opt_ours.state[ours.weight][key], opt_ref.state[ref.weight][key], rtol=1e-5, atol=1e-7
        )
    assert opt_ours.state[ours.weight]["step"] == 25
    assert torch.equal(ours.weight.detach()[untouched], start)


def test_lazy_adam_accepts_coalesced_gradients_and_round_trips_its_state():
    ours, ref = _embedding_pair()
    opt = LazyAdam(ours.parameters(), lr=0.1)
    ids = torch.tensor([3, 3, 7])
    ours(ids).sum().backward()
    ours.weight.grad = ours.weight.grad.coalesce()
    opt.step()
    moved = (ours.weight - ref.weight).abs().sum(1) > 0
    assert moved.nonzero().flatten().tolist() == [3, 7]

    restored = LazyAdam(ref.parameters(), lr=0.1)
    restored.load_state_dict(opt.state_dict())
    assert restored.state[ref.weight]["step"] == 1
    torch.testing.assert_close(
        restored.state[ref.weight]["exp_avg"], opt.state[ours.weight]["exp_avg"]
    )


def test_row_scale_multiplies_each_rows_step():
    # A linear loss has a constant gradient, so both optimizers keep identical moments and each
    # row's displacement after any number of steps is exactly its multiplier times the plain one.
    ours, ref = _embedding_pair(rows=6)
    scale = torch.tensor([0.0, 0.5, 1.0, 2.0, 10.0, 1.0])
    opt_ours = LazyAdam(ours.parameters(), lr=0.01, row_scale=scale)
    opt_ref = LazyAdam(ref.parameters(), lr=0.01)
    start = ref.weight.detach().clone()
    ids = torch.tensor([0, 1, 1, 2, 3, 4])  # row 5 never looked up
    coef = torch.randn(6, 4, generator=torch.Generator().manual_seed(2))
    for _ in range(5):
        for emb, opt in ((ours, opt_ours), (ref, opt_ref)):
            opt.zero_grad(set_to_none=True)
            (emb(ids) * coef).sum().backward()
            opt.step()
    moved_ref = ref.weight.detach() - start
    torch.testing.assert_close(ours.weight.detach() - start, moved_ref * scale[:, None])
    assert moved_ref[:5].abs().min() > 0 and torch.equal(moved_ref[5], torch.zeros(4))
    with pytest.raises(ValueError, match="row_scale"):
        LazyAdam(ours.parameters(), row_scale=torch.tensor([1.0, -1.0]))


def test_lazy_adam_refuses_dense_gradients_and_bad_settings():
    param = nn.Parameter(torch.zeros(3, 2))
    param.grad = torch.ones(3, 2)
    with pytest.raises(RuntimeError, match="sparse gradients"):
        LazyAdam([param]).step()
    with pytest.raises(ValueError, match="betas"):
        LazyAdam([param], betas=(0.9, 1.0))
    with pytest.raises(ValueError, match="lr"):
        LazyAdam([param], lr=-1.0)
