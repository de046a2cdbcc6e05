"""Builder of hand-made tiny impression and event logs, written with the real contracts."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from model.data import schema
from model.data.labels import LabelConfig, LabelReport, build_labels

# 2026-10-01T00:00:00Z in microseconds: tiny logs give times as seconds after it.
T0_US = 1_790_812_800_000_000


def _nullable(contract: pa.Schema) -> pa.Schema:
    # Tiny logs may hold nulls the contract forbids: that is what quarantine is for.
    return pa.schema([f.with_nullable(True) for f in contract])


def _us(seconds: float | None) -> int | None:
    return None if seconds is None else T0_US + round(seconds * 1_000_000)


@dataclass
class Built:
    """Outputs of one build over tiny logs, keyed for easy assertions."""

    report: LabelReport
    labels: dict[str, dict[str, Any]]
    quarantine: list[dict[str, Any]]
    out: Path

    def reason(self, record_id: str) -> str:
        """The quarantine reason of the row with this impression_id or event_id."""
        hits = [
            q["reason"] for q in self.quarantine if record_id in (q["impression_id"], q["event_id"])
        ]
        assert len(hits) == 1, f"{record_id}: quarantined {len(hits)} times ({hits})"
        return hits[0]

    def label(self, impression_id: str) -> tuple[int, int, int, int]:
        row = self.labels[impression_id]
        return row["click"], row["d_micro"], row["d_macro"], row["buy"]


@dataclass
class TinyLogs:
    """Builder of tiny impression and event logs written to Parquet with the real contracts."""

    root: Path
    impressions: list[dict[str, Any]] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)

    def imp(
        self,
        impression_id: str | None,
        user: int | None,
        item: int | None,
        seconds: float | None,
        position: int = 1,
    ) -> TinyLogs:
        self.impressions.append(
            {
                "impression_id": impression_id,
                "user_id": user,
                "item_id": item,
                "ts": _us(seconds),
                "position": position,
                "scene": "home",
                "device": "ios",
            }
        )
        return self

    def ev(
        self,
        event_id: str | None,
        user: int | None,
        item: int | None,
        seconds: float | None,
        event_type: str | None = "click",
        component: str | None = None,
    ) -> TinyLogs:
        self.events.append(
            {
                "event_id": event_id,
                "user_id": user,
                "item_id": item,
                "ts": _us(seconds),
                "event_type": event_type,
                "component": component,
            }
        )
        return self

    def write(self) -> tuple[Path, Path]:
        self.root.mkdir(parents=True, exist_ok=True)
        imp = self.root / "impressions.parquet"
        ev = self.root / "events.parquet"
        pq.write_table(pa.Table.from_pylist(self.impressions, _nullable(schema.IMPRESSIONS)), imp)
        pq.write_table(pa.Table.from_pylist(self.events, _nullable(schema.EVENTS)), ev)
        return imp, ev

    def build(self, config: LabelConfig | None = None) -> Built:
        imp, ev = self.write()
        out = self.root / "labels"
        report = build_labels(imp, ev, out, config or LabelConfig(), threads=1)
        labels = pq.read_table(out / "labels.parquet").to_pylist()
        quarantine = pq.read_table(out / "quarantine.parquet").to_pylist()
        return Built(report, {r["impression_id"]: r for r in labels}, quarantine, out)
