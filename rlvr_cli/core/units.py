"""How figures are printed: bytes and fractions, one convention everywhere."""

from __future__ import annotations


def human_bytes(n: float | None) -> str:
    """A byte count in binary units: `0 B`, `512 B`, `1.5 KiB`, `3.2 MiB`, ... up to TiB; `-` for None."""
    if n is None:
        return "-"
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def percent(fraction: float | None) -> str:
    """A fraction in [0, 1] as a percentage with enough digits for tiny ones: `0%`, `20.0%`, `0.25%`,
    `0.0012%`; `-` for None."""
    if fraction is None:
        return "-"
    pct = 100 * fraction
    if pct == 0:
        return "0%"
    return f"{pct:.1f}%" if abs(pct) >= 1 else f"{pct:.2f}%" if abs(pct) >= 0.01 else f"{pct:.2g}%"
