"""Every attribution and quarantine rule on hand-made tiny logs."""

from __future__ import annotations

import random

import pyarrow.parquet as pq
import pytest
from tiny_logs import TinyLogs

from model.data.labels import LabelConfig

HOUR, DAY = 3600, 86_400
US = 1e-6  # one microsecond, in seconds


def test_click_window_edges(logs: TinyLogs) -> None:
    logs.imp("i_edge", 1, 10, 0).ev("e_edge", 1, 10, HOUR)  # exactly at the window end: in
    logs.imp("i_late", 2, 10, 0).ev("e_late", 2, 10, HOUR + US)  # one microsecond later: out
    logs.imp("i_same", 3, 10, 0).ev("e_same", 3, 10, 0)  # same timestamp as the impression: in
    built = logs.build()
    assert built.label("i_edge") == (1, 0, 0, 0)
    assert built.label("i_same") == (1, 0, 0, 0)
    assert built.label("i_late") == (0, 0, 0, 0)
    assert built.reason("e_late") == "impression_outside_window"


def test_click_goes_to_latest_earlier_impression(logs: TinyLogs) -> None:
    logs.imp("i_old", 1, 10, 0).imp("i_new", 1, 10, 100).imp("i_after", 1, 10, 300)
    logs.imp("i_other_item", 1, 11, 150)
    logs.ev("e_click", 1, 10, 200)
    built = logs.build()
    assert built.label("i_new") == (1, 0, 0, 0)
    assert [built.label(i)[0] for i in ("i_old", "i_after", "i_other_item")] == [0, 0, 0]


def test_same_timestamp_impressions_tie_to_smallest_id(logs: TinyLogs) -> None:
    logs.imp("i_b", 1, 10, 0, position=1).imp("i_a", 1, 10, 0, position=2)
    logs.ev("e_click", 1, 10, 5).ev("e_buy", 1, 10, 50, "purchase")
    built = logs.build()
    assert built.label("i_a") == (1, 0, 0, 1)
    assert built.label("i_b") == (0, 0, 0, 0)


def test_click_before_any_impression_and_never_shown(logs: TinyLogs) -> None:
    logs.imp("i0", 5, 5, 0)  # opens the time range
    logs.imp("i1", 1, 10, 100).ev("e_early", 1, 10, 50)  # the pair is only shown later
    logs.ev("e_unseen", 1, 99, 200)  # the pair is never shown
    built = logs.build()
    assert built.reason("e_early") == "click_without_impression"
    assert built.reason("e_unseen") == "never_shown"
    assert built.label("i1") == (0, 0, 0, 0)


@pytest.mark.parametrize(
    ("event_type", "component", "window", "expected"),
    [
        ("micro", "reviews", 1800, (1, 1, 0, 0)),
        ("micro", "share", 1800, (1, 0, 0, 0)),  # O-Micro component
        ("cart", None, DAY, (1, 0, 1, 0)),
        ("favorite", None, DAY, (1, 0, 1, 0)),
        ("purchase", None, 3 * DAY, (1, 0, 0, 1)),
    ],
)
def test_post_click_window_edges(
    logs: TinyLogs, event_type: str, component: str | None, window: int, expected: tuple
) -> None:
    logs.imp("i_in", 1, 10, 0).ev("c_in", 1, 10, 10)
    logs.ev("e_in", 1, 10, 10 + window, event_type, component)
    logs.imp("i_out", 2, 10, 0).ev("c_out", 2, 10, 10)
    logs.ev("e_out", 2, 10, 10 + window + US, event_type, component)
    # Keeps the event range wide enough that e_out is judged by its window, not the range.
    logs.imp("i_last", 3, 10, 5 * DAY)
    built = logs.build()
    assert built.label("i_in") == expected
    assert built.label("i_out") == (1, 0, 0, 0)
    assert built.reason("e_out") == "click_outside_window"


def test_event_goes_to_latest_click_and_its_impression(logs: TinyLogs) -> None:
    logs.imp("i1", 1, 10, 0).ev("c1", 1, 10, 10)
    logs.imp("i2", 1, 10, 600).ev("c2", 1, 10, 610)
    logs.ev("e_cart", 1, 10, 700, "cart").ev("e_micro", 1, 10, 300, "micro", "qa")
    built = logs.build()
    assert built.label("i1") == (1, 1, 0, 0)
    assert built.label("i2") == (1, 0, 1, 0)


def test_events_without_a_usable_click(logs: TinyLogs) -> None:
    logs.imp("i_dropped", 1, 10, 0).ev("e_buy", 1, 10, 500, "purchase")  # click never logged
    # The click is too late for its impression, so the purchase hangs off an unattributed click.
    logs.imp("i_stale", 2, 10, 0).ev("c_stale", 2, 10, 2 * HOUR)
    logs.ev("e_buy2", 2, 10, 3 * HOUR, "purchase")
    built = logs.build()
    assert built.reason("e_buy") == "no_click"
    assert built.label("i_dropped") == (0, 0, 0, 0)
    assert built.reason("c_stale") == "impression_outside_window"
    assert built.reason("e_buy2") == "click_unattributed"


def test_row_level_problems_are_quarantined(logs: TinyLogs) -> None:
    logs.imp("i1", 1, 10, 0).imp("i1", 1, 10, 5)  # duplicate impression id: the first is kept
    logs.imp(None, 1, 11, 0).imp("i_nouser", None, 11, 0).imp("i_nots", 1, 12, None)
    logs.imp("i_1970", 1, 13, -56 * 365 * DAY)
    logs.ev("c1", 1, 10, 10).ev("c1", 1, 10, 10)  # a retried upload
    logs.ev(None, 1, 10, 20, "micro", "qa").ev("e_noitem", 1, None, 20, "cart")
    logs.ev("e_nots", 1, 10, None, "cart").ev("e_type", 1, 10, 30, "wishlist")
    logs.ev("e_notype", 1, 10, 30, None).ev("e_nocomp", 1, 10, 40, "micro", None)
    logs.ev("e_1970", 1, 10, -56 * 365 * DAY, "purchase").ev("e_future", 1, 10, 30 * DAY, "cart")
    built = logs.build()
    assert built.label("i1") == (1, 0, 0, 0)
    assert built.labels["i1"]["ts"].timestamp() == 1_790_812_800  # the first copy, at t = 0
    reasons = sorted((q["table"], q["reason"]) for q in built.quarantine)
    assert reasons == sorted(
        [("impressions", "duplicate")]
        + [("impressions", "null_field")] * 3
        + [("impressions", "ts_out_of_range")]
        + [("events", "duplicate")]
        + [("events", "null_field")] * 3
        + [("events", "unknown_event_type")] * 2
        + [("events", "missing_component")]
        + [("events", "ts_out_of_range")] * 2
    )
    assert built.reason("e_type") == "unknown_event_type"
    assert built.reason("e_1970") == built.reason("e_future") == "ts_out_of_range"
    # Quarantine rows point back at their input row.
    events = pq.read_table(built.out.parent / "events.parquet").to_pylist()
    for q in built.quarantine:
        if q["table"] == "events":
            assert q["file"].endswith("events.parquet")
            assert events[q["row_number"]]["event_id"] == q["event_id"]
    assert built.report.accounting["impressions"] == {
        "input": 6,
        "used": 1,
        "quarantined": 5,
        "balanced": True,
    }
    assert built.report.accounting["events"] == {
        "input": 10,
        "used": 1,
        "quarantined": 9,
        "balanced": True,
    }


def test_out_of_order_rows_give_the_same_labels(logs: TinyLogs) -> None:
    rng = random.Random(3)
    for user in range(30):
        t = user * 1000
        logs.imp(f"i{user}", user, 7, t).ev(f"c{user}", user, 7, t + 20)
        logs.ev(f"m{user}", user, 7, t + 40, "micro", rng.choice(["qa", "share"]))
        if user % 3 == 0:
            logs.ev(f"b{user}", user, 7, t + 900, "purchase")
    ordered = logs.build()
    rng.shuffle(logs.impressions)
    rng.shuffle(logs.events)
    shuffled = logs.build()
    assert shuffled.labels == ordered.labels
    assert sum(r["buy"] for r in ordered.labels.values()) == 10


def test_paths_and_graph_implications(logs: TinyLogs) -> None:
    logs.imp("i_none", 1, 1, 0)
    logs.imp("i_click", 2, 1, 0).ev("c2", 2, 1, 1)
    logs.imp("i_full", 3, 1, 0).ev("c3", 3, 1, 1).ev("m3", 3, 1, 2, "micro", "chat")
    logs.ev("k3", 3, 1, 3, "cart").ev("b3", 3, 1, 4, "purchase")
    logs.imp("i_omicro_buy", 4, 1, 0).ev("c4", 4, 1, 1).ev("b4", 4, 1, 4, "purchase")
    built = logs.build()
    assert {i: r["path"] for i, r in built.labels.items()} == {
        "i_none": "impression",
        "i_click": "impression>click>o_micro>o_macro",
        "i_full": "impression>click>d_micro>d_macro>buy",
        "i_omicro_buy": "impression>click>o_micro>o_macro>buy",
    }
    report = built.report
    assert report.nodes == {
        "impression": 4,
        "click": 3,
        "d_micro": 1,
        "o_micro": 2,
        "d_macro": 1,
        "o_macro": 2,
        "buy": 2,
    }
    assert report.edges["impression>click"] == {"count": 3, "rate": 0.75}
    assert report.edges["o_macro>buy"] == {"count": 1, "rate": 0.5}
    assert report.edges["d_micro>o_macro"] == {"count": 0, "rate": 0.0}


def test_configured_node_sets_and_windows(logs: TinyLogs) -> None:
    logs.imp("i1", 1, 10, 0).ev("c1", 1, 10, 10).ev("f1", 1, 10, 20, "favorite")
    logs.ev("m1", 1, 10, 30, "micro", "share").ev("b1", 1, 10, 5 * DAY, "purchase")
    logs.imp("i_last", 9, 10, 6 * DAY)
    config = LabelConfig(
        d_macro_events=("cart",),
        d_micro_components=("share",),
        purchase_window_s=7 * DAY,
    )
    built = logs.build(config)
    assert built.label("i1") == (1, 1, 0, 1)
    assert built.labels["i1"]["path"] == "impression>click>d_micro>o_macro>buy"
    assert built.report.config["purchase_window_s"] == 7 * DAY


def test_no_valid_impressions_quarantines_every_event(logs: TinyLogs) -> None:
    logs.imp("i1", None, 10, 0).ev("c1", 1, 10, 10)
    built = logs.build()
    assert built.labels == {}
    assert built.reason("c1") == "ts_out_of_range"
    accounting = built.report.accounting
    assert [(accounting[t]["used"], accounting[t]["quarantined"]) for t in accounting] == [
        (0, 1),
        (0, 1),
    ]
    assert built.report.edges["impression>click"]["rate"] is None
