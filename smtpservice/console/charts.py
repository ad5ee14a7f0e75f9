"""Line charts drawn as SVG on the server (``templates/includes/chart.html``): no script, no CDN, strict CSP.

A chart is a few series of numbers over the same points in time; this module turns them into the
coordinates the template draws, with a legend that names each series.
"""
from dataclasses import dataclass

from django.utils import formats, timezone
from django.utils.translation import gettext as _

from smtpservice.store.traffic import REASON_LABELS, ServerTraffic

WIDTH, HEIGHT = 360, 200
LEFT, RIGHT, TOP, BOTTOM = 30, 14, 10, 66
PALETTE = ("#198754", "#dc3545", "#fd7e14", "#6f42c1", "#0dcaf0", "#6c757d", "#d63384", "#ffc107", "#20c997")
LEGEND_ROW = 16
LEGEND_COLUMN = 165
LEGEND_COLUMNS = 2
AXIS_TIME = "H:i"
"""Hours on the axis as a 24-hour clock in both languages: short enough for four labels side by side."""


@dataclass(frozen=True)
class Series:
    label: str
    color: str
    points: str
    """``x,y x,y …`` for the polyline."""
    total: int
    legend_x: int
    legend_y: int

    @property
    def text_x(self) -> int:
        return self.legend_x + 14

    @property
    def text_y(self) -> int:
        return self.legend_y + 9


@dataclass(frozen=True)
class Chart:
    slug: str
    title: str
    series: tuple
    maximum: int
    ticks: tuple
    """``(x, label)`` of the times shown under the axis."""
    width: int = WIDTH
    height: int = HEIGHT
    left: int = LEFT
    plot_bottom: int = HEIGHT - BOTTOM
    plot_right: int = WIDTH - RIGHT
    tick_y: int = HEIGHT - BOTTOM + 14
    top: int = TOP

    @property
    def description(self) -> str:
        return "; ".join(f"{series.label}: {series.total}" for series in self.series)


def line_chart(slug: str, title: str, moments: list, named_values: list, summed: bool = True) -> Chart:
    """A chart of ``named_values`` (``[(label, [value per moment])]``) over ``moments``.

    The legend shows each series' total when ``summed`` (counts per hour), else its last value (a depth).
    """
    maximum = max([1] + [value for _label, values in named_values for value in values])
    span = max(len(moments) - 1, 1)
    plot_width, plot_height = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def x(index):
        return LEFT + round(plot_width * index / span, 1)

    def y(value):
        return TOP + round(plot_height * (1 - value / maximum), 1)

    series = []
    for number, (label, values) in enumerate(named_values):
        total = sum(values) if summed else (values[-1] if values else 0)
        series.append(Series(
            label=str(label), color=PALETTE[number % len(PALETTE)],
            points=" ".join(f"{x(index)},{y(value)}" for index, value in enumerate(values)), total=total,
            legend_x=8 + (number % LEGEND_COLUMNS) * LEGEND_COLUMN,
            legend_y=HEIGHT - BOTTOM + 22 + (number // LEGEND_COLUMNS) * LEGEND_ROW,
        ))
    step = max(len(moments) // 4, 1)
    ticks = tuple(
        (x(index), formats.date_format(timezone.localtime(moment), AXIS_TIME))
        for index, moment in enumerate(moments) if index % step == 0
    )
    return Chart(slug, title, tuple(series), maximum, ticks)


def traffic_chart(numbers: ServerTraffic) -> Chart:
    """Accepted messages and refusals by reason, hour by hour, over the last 24 hours."""
    reasons = [reason for reason in REASON_LABELS if any(counts.refused.get(reason) for _hour, counts in numbers.hours)]
    named = [(_("accepted"), [counts.accepted for _hour, counts in numbers.hours])]
    named += [
        (_("refused: %(reason)s") % {"reason": REASON_LABELS[reason]}, [counts.refused.get(reason, 0) for _hour, counts in numbers.hours])
        for reason in reasons
    ]
    return line_chart("traffic", _("Mail over the last 24 hours, per hour"), [hour for hour, _counts in numbers.hours], named)


def queue_chart(numbers: ServerTraffic) -> Chart:
    return line_chart(
        "queue", _("Outbound queue depth"), [moment for moment, _depth in numbers.queue_hours],
        [(_("recipients waiting"), [depth for _moment, depth in numbers.queue_hours])], summed=False,
    )


def auth_chart(numbers: ServerTraffic) -> Chart:
    return line_chart(
        "auth", _("AUTH failures per hour"), [hour for hour, _counts in numbers.hours],
        [(_("AUTH failures"), [counts.auth_failures for _hour, counts in numbers.hours])],
    )


def charts(numbers: ServerTraffic) -> tuple:
    return (traffic_chart(numbers), queue_chart(numbers), auth_chart(numbers))
