"""Readable cell labels: black or white text, whichever contrasts more with the cell's colour.

Both renderers (plotly for the page, matplotlib for the PNGs) colour a heatmap cell from a
colour scale and print its value on it. A fixed text colour, or a brightness threshold on the
scale's position, leaves mid-range cells (viridis teal, cividis grey) with white text at a contrast
below 4:1. Choosing by WCAG 2 relative luminance keeps every label at the contrast ratio of at
least 4.58:1 that one of black or white always reaches.
"""

from __future__ import annotations

from collections.abc import Sequence

BLACK = (0.0, 0.0, 0.0)
WHITE = (1.0, 1.0, 1.0)


def relative_luminance(rgb: Sequence[float]) -> float:
    """WCAG 2 relative luminance of an sRGB colour with components in [0, 1].

    Examples
    --------
    >>> relative_luminance((1, 1, 1)), relative_luminance((0, 0, 0))
    (1.0, 0.0)
    """

    def linear(c: float) -> float:
        return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4

    r, g, b = (linear(float(c)) for c in rgb[:3])
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def contrast_ratio(a: Sequence[float], b: Sequence[float]) -> float:
    """WCAG 2 contrast ratio of two colours, from 1 (same) to 21 (black on white).

    Examples
    --------
    >>> round(contrast_ratio(BLACK, WHITE), 1)
    21.0
    """
    la, lb = sorted((relative_luminance(a), relative_luminance(b)), reverse=True)
    return (la + 0.05) / (lb + 0.05)


def label_color(background: Sequence[float]) -> str:
    """``"black"`` or ``"white"``: the text colour with more contrast on ``background``.

    Examples
    --------
    >>> label_color((0.13, 0.57, 0.55))  # viridis teal, where a brightness rule picks white
    'black'
    >>> label_color((0.27, 0.0, 0.33))
    'white'
    """
    black = contrast_ratio(background, BLACK)
    return "black" if black >= contrast_ratio(background, WHITE) else "white"


__all__ = ["BLACK", "WHITE", "contrast_ratio", "label_color", "relative_luminance"]
