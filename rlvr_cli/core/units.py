"""How figures are printed: bytes and fractions, one convention everywhere.

Bytes are in decimal SI units (1 kB = 1e3, 1 MB = 1e6, 1 GB = 1e9, 1 TB = 1e12 bytes), as the standard
training-memory figures are quoted (70B parameters with AdamW in fp32: 16 B/param = 1,120 GB).
"""

from __future__ import annotations

#: Decimal units above bytes, with the size of one. GB runs up to 9,999 GB so the standard figures read as
#: published (1,120 GB, not 1.12 TB); TB starts at 10 TB.
_UNITS = (("TB", 1e12, 1e13), ("GB", 1e9, 1e9), ("MB", 1e6, 1e6), ("kB", 1e3, 1e3))


def human_bytes(n: float | None) -> str:
    """A byte count in decimal SI units with three significant figures and the unit after one space:
    `0 B`, `512 B`, `3.20 MB`, `13.6 GB`, `1,120 GB`, `12.0 TB`; `-` for None.

    Args:
        n: bytes (int or float; negative counts keep their sign), or None when unknown.

    Returns:
        The figure: bytes below 1 kB as a whole number; otherwise kB, MB, GB (up to 9,999 GB) or TB (from
        10 TB), with 2 decimals below 10, 1 below 100, none (thousands separated by commas) from 100.
    """
    if n is None:
        return "-"
    for unit, scale, start in _UNITS:
        if abs(n) >= start:
            value = n / scale
            digits = 0 if abs(round(value, 1)) >= 100 else 1 if abs(round(value, 2)) >= 10 else 2
            return f"{value:,.{digits}f} {unit}"
    return f"{n:.0f} B"


def percent(fraction: float | None) -> str:
    """A fraction in [0, 1] as a percentage with enough digits for tiny ones: `0%`, `20.0%`, `0.25%`,
    `0.0012%`; `-` for None."""
    if fraction is None:
        return "-"
    pct = 100 * fraction
    if pct == 0:
        return "0%"
    return f"{pct:.1f}%" if abs(pct) >= 1 else f"{pct:.2f}%" if abs(pct) >= 0.01 else f"{pct:.2g}%"
