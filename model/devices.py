"""The one spelling of a torch device that training and serving accept, checked without torch."""

from __future__ import annotations

import re

DEVICE_NAMES = "cpu, auto, cuda or cuda:N"
_DEVICE = re.compile(r"cpu|auto|cuda(:\d+)?")


def check_device_name(name: str) -> str:
    """Return `name` if it is `cpu`, `auto` (cuda if present), `cuda` or `cuda:N`.

    Raises:
        ValueError: Naming the accepted spellings.
    """
    if not isinstance(name, str) or not _DEVICE.fullmatch(name):
        raise ValueError(f"device must be {DEVICE_NAMES}, got {name!r}")
    return name
