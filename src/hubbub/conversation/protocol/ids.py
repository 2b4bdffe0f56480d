"""Prefixed, time-ordered ids (UUIDv7 layout): ``sess_…``, ``conv_…``, ``tinp_…`` and so on.

Time-ordered ids keep store indexes append-mostly and make logs sortable by creation.
"""

from __future__ import annotations

import os
import time
from typing import Final, Literal

IdPrefix = Literal["sess_", "conv_", "tinp_", "tout_", "chnk_", "evnt_"]

_VERSION: Final = 0x7
_VARIANT: Final = 0b10


def new_id(prefix: IdPrefix) -> str:
    """48 bits of Unix milliseconds, version 7, 74 random bits; hex without dashes."""
    millis = time.time_ns() // 1_000_000
    rand = int.from_bytes(os.urandom(10), "big")
    value = (millis & (2**48 - 1)) << 80
    value |= _VERSION << 76
    value |= ((rand >> 62) & 0xFFF) << 64
    value |= _VARIANT << 62
    value |= rand & (2**62 - 1)
    return f"{prefix}{value:032x}"
