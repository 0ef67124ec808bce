"""How a number is written wherever genbench shows one (table renders, the README's generated numbers)."""

from __future__ import annotations

import math
from typing import Any


def fmt(v: Any) -> str:
    """Integers as integers, two decimals from 10 up, three significant digits below; nothing for NaN."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return ""
    if isinstance(v, float):
        if math.isinf(v):
            return "∞" if v > 0 else "−∞"
        if v == int(v) and abs(v) < 1e6:
            return str(int(v))
        return f"{v:.2f}" if abs(v) >= 10 else f"{v:.3g}"
    return str(v)
