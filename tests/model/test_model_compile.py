"""TrainConfig.compile_towers: torch.compile of the fused towers, and its fallback."""

from __future__ import annotations

import logging

import pytest
import torch
from model_helpers import fast_config
from safetensors.torch import load_file
from torch._dynamo.utils import counters

from model.data.encoding import FeatureInfo, FeatureSpec
from model.nn.nets import build_model
from model.train.trainer import TrainConfig, compile_towers, train

SPEC = FeatureSpec((FeatureInfo("user_id", "categorical", size=50),))


def test_compiled_towers_train_the_same_model_as_eager(tiny_table, tmp_path, caplog):
    """Same artifact names (compiled in place), and the same training up to float rounding."""
    caplog.set_level(logging.INFO, logger="model.train.trainer")
    torch._dynamo.reset()
    counters.clear()
    eager = train(tiny_table, tmp_path / "eager", fast_config(model_kind="hm3", epochs=1))
    compiled = train(
        tiny_table,
        tmp_path / "compiled",
        fast_config(model_kind="hm3", epochs=1, compile_towers=True),
    )
    assert "towers compiled with torch.compile" in caplog.text
    assert counters["stats"]["unique_graphs"] >= 1  # TorchInductor really compiled the towers
    we = load_file(str(tmp_path / "eager" / "model.safetensors"))
    wc = load_file(str(tmp_path / "compiled" / "model.safetensors"))
    assert sorted(we) == sorted(wc)
    assert all(torch.allclose(we[k], wc[k], atol=1e-3) for k in we)
    assert compiled.history[0]["train_loss"] == pytest.approx(
        eager.history[0]["train_loss"], rel=1e-4
    )


def test_without_a_cxx_compiler_the_towers_stay_eager(monkeypatch, caplog):
    monkeypatch.setenv("CXX", "no-such-compiler-hm3")
    net = build_model("hm3", SPEC, 4, (8,), 0.0)
    with caplog.at_level(logging.WARNING, logger="model.train.trainer"):
        assert compile_towers(net, torch.device("cpu")) is False
    assert "no C++ compiler 'no-such-compiler-hm3'" in caplog.text
    assert net.heads._compiled_call_impl is None  # what Module.compile would have set


def test_compile_towers_must_be_a_bool():
    with pytest.raises(ValueError, match="compile_towers must be true or false, got 'yes'"):
        TrainConfig(compile_towers="yes")
