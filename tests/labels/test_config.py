"""LabelConfig: defaults from the paper, JSON round trip, bad values named."""

from __future__ import annotations

import json

import pytest

from model.data import schema
from model.data.labels import LabelConfig


def test_defaults_match_the_paper_and_round_trip_through_json() -> None:
    cfg = LabelConfig()
    assert set(cfg.d_macro_events) == {"cart", "favorite"}
    assert cfg.d_micro_components == schema.D_MICRO_COMPONENTS
    assert (cfg.click_window_s, cfg.micro_window_s) == (3600, 1800)
    assert (cfg.macro_window_s, cfg.purchase_window_s) == (86_400, 259_200)
    assert LabelConfig.from_json(json.dumps(cfg.to_dict())) == cfg
    assert LabelConfig.from_json("") == cfg


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"click_window_s": 0}, "click_window_s must be a positive integer"),
        ({"purchase_window_s": 1.5}, "purchase_window_s must be a positive integer"),
        ({"micro_window_s": True}, "micro_window_s must be a positive integer"),
        ({"d_macro_events": ["cart", "share"]}, r"d_macro_events \['share'\] are not in"),
        ({"d_micro_components": []}, "d_micro_components must name at least one"),
        ({"d_micro_components": "qa"}, "d_micro_components must be a list"),
        ({"macro_events": ["cart", "cart"]}, "macro_events has repeated entries"),
        ({"macro_events": ["click"], "d_macro_events": ["click"]}, "must be distinct"),
        ({"click_event": ""}, "click_event must be a non-empty string"),
        ({"earliest_ts": "last tuesday"}, "earliest_ts must be an ISO 8601 time"),
        ({"click_windw_s": 60}, r"unknown label config key\(s\) \['click_windw_s'\]"),
    ],
)
def test_bad_values_name_the_field(overrides: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        LabelConfig.from_dict(overrides)


def test_bad_json_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="not valid JSON"):
        LabelConfig.from_json("{purchase_window_s: 1}")
    with pytest.raises(ValueError, match="must be a JSON object"):
        LabelConfig.from_json("[1, 2]")
