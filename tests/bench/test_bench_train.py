"""bench/train.py: the torch-rechub HM^3 peer, the tower FLOP count, and a tiny run of the bench."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from model.data.encoding import FeatureInfo, FeatureSpec
from model.nn import graph
from model.nn.heads import FusedTowers
from model.nn.nets import build_model

ROOT = Path(__file__).resolve().parents[2]


def _load(name: str):  # noqa: ANN202 (a module)
    spec = importlib.util.spec_from_file_location(f"bench_{name}", ROOT / "bench" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[f"bench_{name}"] = module
    spec.loader.exec_module(module)
    return module


flops = _load("flops")
rechub_hm3 = _load("rechub_hm3")


def test_peer_composes_the_same_four_outputs_as_ours() -> None:
    logits = torch.randn(64, 6, generator=torch.Generator().manual_seed(0)) * 3
    peer = rechub_hm3.compose(torch.sigmoid(logits))
    ours = graph.compose_hm3(logits)
    assert rechub_hm3.TASKS == ("ctr", "ct_micro", "ct_macro", "ctcvr")
    for i, task in enumerate(rechub_hm3.TASKS):
        torch.testing.assert_close(peer[:, i], torch.sigmoid(ours[task]), atol=1e-6, rtol=1e-5)
    # Its loss pairs each output with the label of our HM3's loss on that task.
    ours_losses = {s.task: s.label for s in build_model("hm3", _spec(), 4, (8,), 0.0).losses}
    assert dict(zip(rechub_hm3.TASKS, rechub_hm3.LABELS, strict=True)) == ours_losses


def test_peer_computes_our_hm3_with_its_weights() -> None:
    """Same embedding sizes, towers and composition: ours loaded with the peer's weights agrees.

    Its BatchNorm is at its initial statistics in eval mode (a scale of ~1 - 5e-6).
    """
    torch.manual_seed(0)
    spec = _spec()
    peer = rechub_hm3.build([f.size for f in spec.categorical], spec.names, 4, (8, 5))
    ours = build_model("hm3", spec, 4, (8, 5), 0.0)
    ours.load_state_dict(rechub_hm3.ours_state_dict(peer), strict=False)
    for layer in peer.towers[2].mlp:  # non-zero biases, so a misplaced bias shows
        if isinstance(layer, nn.Linear):
            assert layer.bias.abs().sum() > 0
    peer.eval()
    ours.eval()
    cat = torch.stack([torch.randint(0, f.size, (32,)) for f in spec.categorical], dim=1)
    with torch.no_grad():
        got = peer({f.name: cat[:, j] for j, f in enumerate(spec.categorical)})
        want = ours(cat, torch.zeros(32, 0))
    for i, task in enumerate(rechub_hm3.TASKS):
        torch.testing.assert_close(got[:, i], torch.sigmoid(want[task]), atol=1e-4, rtol=1e-4)


def test_flops_per_sample_of_a_tiny_tower_by_hand() -> None:
    # Two fused towers 5 -> 3 -> 1: per tower 6 * (5*3 + 3*1) = 108 FLOPs per sample.
    fused = FusedTowers(2, 5, (3,), 0.0)
    assert flops.gemm_shapes(fused) == {(5, 3): 2, (3, 1): 2}
    assert flops.flops_per_sample(flops.gemm_shapes(fused)) == 216
    linear = nn.Sequential(nn.Linear(5, 3), nn.ReLU(), nn.Linear(3, 1))
    assert flops.flops_per_sample(flops.gemm_shapes(linear)) == 108
    # The peer (3 features x dim 2 = 6 inputs, towers 6 -> 4 -> 1) equals ours at the same sizes;
    # its BatchNorm and embeddings add no GEMM.
    spec = _spec()
    peer = rechub_hm3.build([f.size for f in spec.categorical], spec.names, 2, (4,))
    ours = build_model("hm3", spec, 2, (4,), 0.0)
    assert flops.gemm_shapes(peer) == flops.gemm_shapes(ours) == {(6, 4): 6, (4, 1): 6}
    assert flops.flops_per_sample(flops.gemm_shapes(peer)) == 6 * 6 * (6 * 4 + 4 * 1)


def test_peak_times_the_three_training_gemms_of_each_shape() -> None:
    assert flops.gemms(7, (5, 3)) == {
        "forward": (7, 5, 3),
        "grad_input": (7, 3, 5),
        "grad_weight": (5, 7, 3),
    }
    rates = flops.measure_peak([(5, 3)], 7, torch.device("cpu"), seconds=0.01)
    assert set(rates) == {"peak", "5x3 forward", "5x3 grad_input", "5x3 grad_weight"}
    assert rates["peak"] == max(v for k, v in rates.items() if k != "peak") > 0


@pytest.mark.timeout(600)
def test_tiny_bench_run_has_the_rechub_hm3_peer_in_both_tables(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    cmd = [sys.executable, str(ROOT / "bench" / "train.py"), "--rows", "3000"]
    cmd += ["--batch-size", "200", "--steps", "2", "--repeats", "1", "--dim", "4"]
    cmd += ["--hidden", "16", "8", "--threads", "1", "--work-dir", str(tmp_path / "w")]
    cmd += ["--json", str(out)]
    printed = subprocess.run(cmd, check=True, capture_output=True, text=True, cwd=ROOT).stdout
    report = json.loads(out.read_text())
    for table in ("model_step", "end_to_end"):
        rows = {r["model"]: r for r in report[table]}
        assert list(rows) == ["rechub-esmm", "ours-esmm", "rechub-hm3", "ours-hm3"]
        assert rows["ours-hm3"]["peer"] == "rechub-hm3"
        assert rows["rechub-hm3"]["ratio"] == 1.0
        assert rows["rechub-hm3"]["samples_per_s"] > 0
    step = {r["model"]: r for r in report["model_step"]}
    # 10 features x dim 4 = 40 inputs, six towers 40 -> 16 -> 8 -> 1, for the peer and for ours.
    hm3_flops = 6 * 6 * (40 * 16 + 16 * 8 + 8 * 1)
    assert step["rechub-hm3"]["flops_per_sample"] == step["ours-hm3"]["flops_per_sample"]
    assert step["ours-hm3"]["flops_per_sample"] == hm3_flops
    assert 0 < step["ours-hm3"]["peak_share"]
    assert "| rechub-hm3 |" in printed
    assert "% of GEMM peak" in printed
    assert "ours-hm3 >= 2x rechub-hm3:" in printed


def _spec() -> FeatureSpec:
    return FeatureSpec(
        tuple(FeatureInfo(n, "categorical", size=s) for n, s in (("a", 11), ("b", 7), ("c", 5)))
    )
