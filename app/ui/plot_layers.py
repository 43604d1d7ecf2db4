"""The graph window's drawing items: one item per plot for all its paths' curves, one
for their newest points, one for the markers, and a time axis whose ticks are worked
out once for all plots.

Why not pyqtgraph's own items (benchmarks/bench_ui.py, docs/app.md): a PlotCurveItem
per path and metric and an InfiniteLine per marker and plot are a dozen to forty items,
each with Python bounds and paint methods that Qt calls on every repaint, and a curve's
change makes its ViewBox re-range and repaint the whole plot. Here each plot has three
items whatever the number of paths and markers; the curves and the markers are cached
as pixmaps (Qt's DeviceCoordinateCache), so a repaint that does not change them (the
newest points being drawn, a table cell) copies pixels instead of stroking every
curve, and moving the time axis by whole pixels keeps the markers' pixmap. Bounds are
worked out when the data or the scale change, not on every repaint.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QPointF, QRectF, Qt
from PySide6.QtGui import QColor, QFont, QFontMetricsF, QPainter, QPainterPath, QPen
from PySide6.QtWidgets import QGraphicsItem, QStyleOptionGraphicsItem, QWidget

from app.ui.decimate import FloatArray

PAD_PX = 2.0  # bounds reach this far past the points: a 1 px pen's pixels, and rounding
LABEL_AT = 0.92  # a marker's label sits this far up its line (0 = bottom, 1 = top)
LABEL_GAP_PX = 3.0  # between a marker line and its label, which sits left of it


def pixel_size(item: pg.GraphicsObject) -> tuple[float, float]:
    """One pixel of the item's ViewBox, in data units (x, y)."""
    vb = item.getViewBox()
    if not isinstance(vb, pg.ViewBox):  # not in a plot (yet)
        return 0.0, 0.0
    (x0, x1), (y0, y1) = vb.viewRange()
    return (x1 - x0) / max(vb.width(), 1.0), (y1 - y0) / max(vb.height(), 1.0)


def to_path(x: FloatArray, y: FloatArray) -> QPainterPath:
    """A polyline through the points, broken at each NaN."""
    if len(x) == 0:
        return QPainterPath()
    path: QPainterPath = pg.functions.arrayToQPath(x, y, connect="finite")
    return path


def finite_bounds(x: FloatArray, y: FloatArray) -> QRectF | None:
    """The data rectangle of the finite points, None when there are none."""
    finite = ~np.isnan(y)
    if not finite.any():
        return None
    xs, ys = x[finite], y[finite]
    x0, x1, y0, y1 = float(xs.min()), float(xs.max()), float(ys.min()), float(ys.max())
    return QRectF(x0, y0, x1 - x0, y1 - y0)


def unite(rects: Sequence[QRectF | None]) -> QRectF | None:
    out: QRectF | None = None
    for r in rects:
        if r is not None:
            # QRectF.united ignores an empty (zero-width) rectangle: unite by hand.
            out = r if out is None else QRectF(
                QPointF(min(out.left(), r.left()), min(out.top(), r.top())),
                QPointF(max(out.right(), r.right()), max(out.bottom(), r.bottom())),
            )
    return out


# The mixin's methods call the Qt item's; type-check them as if it were one.
if TYPE_CHECKING:
    _Item = QGraphicsItem
else:
    _Item = object


class _Padded(_Item):
    """Bounds that are the item's data plus a few pixels, worked out when the data or the
    pixel's size change (a pure scroll changes neither: the bounds, and a cached pixmap,
    stay). Mixed into a Qt item, before it."""

    _data: QRectF | None = None
    _pixel: tuple[float, float] = (0.0, 0.0)
    _rect: QRectF = QRectF()

    def set_pixel(self, pixel: tuple[float, float]) -> None:
        """One pixel of the view is now `pixel` (x, y) in data units."""
        if pixel != self._pixel:
            self.prepareGeometryChange()
            self._pixel = pixel
            self._rect = self._padded()

    def _set_data_rect(self, data: QRectF | None) -> None:
        self.prepareGeometryChange()
        self._data = data
        self._rect = self._padded()
        self.update()

    def _padded(self) -> QRectF:
        if self._data is None:
            return QRectF()
        px, py = self._pixel
        return self._data.adjusted(-PAD_PX * px, -PAD_PX * py, PAD_PX * px, PAD_PX * py)

    def boundingRect(self) -> QRectF:
        return self._rect


class _Layer(_Padded, pg.GraphicsObject):  # type: ignore[misc]
    """A padded item that follows its view's pixel size itself (pyqtgraph tells it when
    the view's transform changes): for the few items of a plot that are not chunks."""

    def viewTransformChanged(self) -> None:
        self.set_pixel(pixel_size(self))


class CurveChunk(_Padded, QGraphicsItem):
    """Every path's curve of one plot over one stretch of columns, cached as a pixmap.
    The plot's curves are a row of these: when the time axis moves by a pixel only the
    newest chunk changes and is drawn again; the others keep their pixmaps (a scroll is
    a translation, which Qt's cache survives) until their data leave the view. A plain
    Qt item: the window sets its pixel size (set_pixel) for all chunks of a plot, since
    pyqtgraph's per-item view tracking, for dozens of chunks, cost more than drawing."""

    def __init__(self) -> None:
        super().__init__()
        self.setCacheMode(QGraphicsItem.CacheMode.DeviceCoordinateCache)
        self._curves: list[tuple[QPen, QPainterPath]] = []

    def set_curves(self, curves: Sequence[tuple[QPen, FloatArray, FloatArray]]) -> None:
        self._curves = [(pen, to_path(x, y)) for pen, x, y in curves]
        self._set_data_rect(unite([finite_bounds(x, y) for _, x, y in curves]))

    def paint(self, painter: QPainter, option: QStyleOptionGraphicsItem,
              widget: QWidget | None = None) -> None:
        for pen, path in self._curves:
            painter.setPen(pen)
            painter.drawPath(path)


def nice_step(span: float) -> float:
    """The 1, 2 or 5 times a power of ten nearest above span / 8."""
    raw = max(span, 1e-9) / 8
    power = 10.0 ** math.floor(math.log10(raw))
    return next(m * power for m in (1.0, 2.0, 5.0, 10.0) if m * power >= raw)


def steady_range(lo: float, hi: float, current: tuple[float, float] | None,
                 ceiling: float = math.inf) -> tuple[float, float]:
    """The height a plot's automatic range follows for data from lo to hi: the current
    one while it holds the data and they fill at least 40 % of it, else the data rounded
    out to a step (an eighth of their span, 1-2-5) with one step of room on each side,
    but not below 0 for data that are not, nor above `ceiling` (100 for a percentage).
    A steady height keeps the axis labels and the curves' cached pixmaps: a new extreme
    within a step redraws nothing."""
    if current is not None:
        c_lo, c_hi = current
        if c_lo <= lo and hi <= c_hi and (hi - lo) >= 0.4 * (c_hi - c_lo):
            return current
    span = hi - lo if hi > lo else max(abs(hi), 1.0)
    step = nice_step(span)
    q_lo = math.floor(lo / step) * step - step
    if lo >= 0:
        q_lo = max(q_lo, 0.0)
    q_hi = math.ceil(hi / step) * step + step
    return q_lo, max(min(q_hi, ceiling), hi)


class HeightItem(pg.GraphicsObject):  # type: ignore[misc]
    """Draws nothing: the one item whose bounds a plot's automatic height follows (the
    curve chunks are added without bounds), reporting steady_range of the curves."""

    def __init__(self, ceiling: float = math.inf) -> None:
        super().__init__()
        self.setFlag(QGraphicsItem.GraphicsItemFlag.ItemHasNoContents)
        self.ceiling = ceiling
        self.range: tuple[float, float] | None = None

    def follow(self, extent: tuple[float, float] | None) -> None:
        """The curves now span `extent` (lowest, highest; None: nothing finite)."""
        new = None if extent is None else steady_range(*extent, self.range, self.ceiling)
        if new != self.range:
            self.range = new
            self.informViewBoundsChanged()

    def dataBounds(self, ax: int, frac: float = 1.0,
                   orthoRange: Any = None) -> tuple[float | None, float | None]:
        if ax != 1 or self.range is None:
            return None, None
        return self.range

    def boundingRect(self) -> QRectF:
        return QRectF()

    def paint(self, painter: QPainter, option: QStyleOptionGraphicsItem,
              widget: QWidget | None = None) -> None:
        pass


class TailLayer(_Layer):
    """Every path's newest points of one plot, since the curves were last drawn: a few
    pixels wide at the right edge, so redrawing it repaints only that strip."""

    def __init__(self) -> None:
        super().__init__()
        self._tails: dict[int, tuple[QPen, QPainterPath, QRectF | None]] = {}

    def set_tails(self, tails: Sequence[tuple[int, QPen, list[float], list[float]]]) -> None:
        """Replace these paths' tails (keyed by path; x, y with NaN for a break),
        keeping the others'."""
        for key, pen, x, y in tails:
            self._tails[key] = (pen, *_short_path(x, y))
        self._set_data_rect(unite([bounds for _, _, bounds in self._tails.values()]))

    def clear(self) -> None:
        if self._tails:
            self._tails.clear()
            self._set_data_rect(None)

    def paint(self, painter: QPainter, option: QStyleOptionGraphicsItem,
              widget: QWidget | None = None) -> None:
        for pen, path, _ in self._tails.values():
            painter.setPen(pen)
            painter.drawPath(path)


def _short_path(xs: list[float], ys: list[float]) -> tuple[QPainterPath, QRectF | None]:
    """A polyline through a few points (NaN breaks it) and the finite points' bounds:
    for a handful of points, a loop is cheaper than numpy's set-up."""
    path = QPainterPath()
    down = False
    x0 = y0 = math.inf
    x1 = y1 = -math.inf
    for x, y in zip(xs, ys, strict=True):
        if y != y:  # NaN
            down = False
            continue
        if down:
            path.lineTo(x, y)
        else:
            path.moveTo(x, y)
            down = True
        x0, x1, y0, y1 = min(x0, x), max(x1, x), min(y0, y), max(y1, y)
    if x0 > x1:
        return path, None
    return path, QRectF(QPointF(x0, y0), QPointF(x1, y1))


@dataclass(frozen=True)
class MarkerLine:
    t: float
    pen: QPen
    label: str | None


class MarkerLayer(_Layer):
    """Vertical lines across one plot at the markers' times, with their labels (left
    of the line, near the top), cached as a pixmap: scrolling keeps it."""

    def __init__(self) -> None:
        super().__init__()
        self.setCacheMode(QGraphicsItem.CacheMode.DeviceCoordinateCache)
        self.lines: list[MarkerLine] = []
        self._font = QFont()
        self._label_px = 0.0
        self._height: tuple[float, float] | None = None

    def set_lines(self, lines: Sequence[MarkerLine]) -> None:
        self.lines = list(lines)
        metrics = QFontMetricsF(self._font)
        self._label_px = max((metrics.horizontalAdvance(m.label) for m in self.lines if m.label),
                             default=0.0) + LABEL_GAP_PX
        self._set_data_rect(self._lines_rect())

    def _lines_rect(self) -> QRectF | None:
        vb = self.getViewBox()
        if not self.lines or not isinstance(vb, pg.ViewBox):
            return None
        y0, y1 = vb.viewRange()[1]
        self._height = (y0, y1)
        ts = [m.t for m in self.lines]
        left = min(ts) - (self._label_px * self._pixel[0] if any(m.label for m in self.lines)
                          else 0.0)
        return QRectF(QPointF(left, y0), QPointF(max(ts), y1))

    def viewTransformChanged(self) -> None:
        pixel = pixel_size(self)
        vb = self.getViewBox()
        height = tuple(vb.viewRange()[1]) if isinstance(vb, pg.ViewBox) else None
        if pixel != self._pixel or height != self._height:
            self._pixel = pixel
            # The lines span the plot's height: a new height redraws them.
            self._set_data_rect(self._lines_rect())

    def paint(self, painter: QPainter, option: QStyleOptionGraphicsItem,
              widget: QWidget | None = None) -> None:
        if self._height is None:
            return
        y0, y1 = self._height
        for m in self.lines:
            painter.setPen(m.pen)
            painter.drawLine(QPointF(m.t, y0), QPointF(m.t, y1))
        labelled = [m for m in self.lines if m.label]
        if not labelled:
            return
        # Text in device pixels, not data units: map the anchor, then draw unscaled.
        to_device = painter.transform()
        painter.save()
        painter.resetTransform()
        painter.setFont(self._font)
        height = QFontMetricsF(self._font).height()
        for m in labelled:
            anchor = to_device.map(QPointF(m.t, y0 + LABEL_AT * (y1 - y0)))
            box = QRectF(anchor.x() - self._label_px, anchor.y(), self._label_px - LABEL_GAP_PX,
                         height)
            painter.setPen(QColor(m.pen.color()))
            painter.drawText(box, int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignTop),
                             m.label or "")
        painter.restore()


class TimeAxis(pg.DateAxisItem):  # type: ignore[misc]
    """A date axis that shares its tick times with the other plots' axes: they all show
    the same range, and working the ticks out is most of what an axis costs to draw."""

    def __init__(self, shared: dict[str, Any], **kwargs: Any) -> None:
        super().__init__(orientation="bottom", **kwargs)
        self._shared = shared

    def tickValues(self, minVal: float, maxVal: float, size: float) -> Any:
        if self.style["showValues"]:
            # Its labels' format follows the zoom level this call sets: work it out.
            values = super().tickValues(minVal, maxVal, size)
            self._shared.update(key=(minVal, maxVal), values=values)
            return values
        if self._shared.get("key") != (minVal, maxVal):
            self._shared.update(key=(minVal, maxVal),
                                values=super().tickValues(minVal, maxVal, size))
        return self._shared["values"]


@dataclass
class LegendEntry:
    """What pyqtgraph's legend needs of a curve (its pen, whether it is shown), for a
    path drawn inside the shared layers; a click on the legend hides or shows it."""

    pen: QPen
    on_toggle: Callable[[bool], None]
    visible: bool = True
    opts: dict[str, Any] = field(init=False)

    def __post_init__(self) -> None:
        self.opts = {"pen": self.pen, "antialias": False, "fillLevel": None, "symbol": None}

    def isVisible(self) -> bool:
        return self.visible

    def setVisible(self, visible: bool) -> None:
        self.visible = visible
        self.on_toggle(visible)

