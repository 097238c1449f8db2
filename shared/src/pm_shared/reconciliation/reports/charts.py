"""Horizontal bar charts as inline SVG, drawn here so the report page needs no script and no library.

The SVG is markup to put straight into an HTML page: every label and figure is escaped here, the
colours come from the page's CSS (classes `chart`, `bar`, `label`, `figure`, `chart-title`), and the
geometry is integer arithmetic on the values (bars are proportional to the largest one).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

WIDTH = 720
LABEL_WIDTH = 220
BAR_MAX = 330
ROW = 24
BAR_HEIGHT = 16
TOP = 30
LABEL_CHARS = 30
"""A longer label is cut (with an ellipsis) on the chart; its whole text is the bar's tooltip."""


@dataclass(frozen=True)
class Bar:
    label: str
    value: int
    """What the bar's length is proportional to (an amount in minor units, a count); below 0 counts as 0."""
    figure: str
    """The value as people read it, written after the bar (`1,234.56 THB`, `12`)."""


def bar_chart(title: str, bars: Sequence[Bar]) -> str:
    """An SVG bar chart of `bars`, in the order given, under `title`; "" when there are no bars."""
    if not bars:
        return ""
    largest = max(max(bar.value, 0) for bar in bars)
    height = TOP + ROW * len(bars) + 6
    parts = [
        f'<svg class="chart" role="img" width="{WIDTH}" height="{height}" '
        f'viewBox="0 0 {WIDTH} {height}" aria-label="{_e(title)}">',
        f"<title>{_e(title)}</title>",
        f'<text class="chart-title" x="0" y="18">{_e(title)}</text>',
    ]
    for n, bar in enumerate(bars):
        parts.append(_bar(TOP + n * ROW, bar, largest))
    parts.append("</svg>")
    return "\n".join(parts)


def _bar(y: int, bar: Bar, largest: int) -> str:
    value = max(bar.value, 0)
    # Integer scaling; a value above zero always shows at least a sliver.
    length = value * BAR_MAX // largest if largest else 0
    if value and not length:
        length = 1
    label = bar.label if len(bar.label) <= LABEL_CHARS else bar.label[: LABEL_CHARS - 1] + "…"
    text_y = y + BAR_HEIGHT - 4
    return (
        f"<g><title>{_e(bar.label)}: {_e(bar.figure)}</title>"
        f'<text class="label" x="{LABEL_WIDTH - 8}" y="{text_y}" text-anchor="end">{_e(label)}</text>'
        f'<rect class="bar" x="{LABEL_WIDTH}" y="{y}" width="{length}" height="{BAR_HEIGHT}"></rect>'
        f'<text class="figure" x="{LABEL_WIDTH + length + 6}" y="{text_y}">{_e(bar.figure)}</text></g>'
    )


def _e(text: str) -> str:
    return escape(text, quote=True)
