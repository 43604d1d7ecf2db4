"""The live path graph window: RTT, jitter, loss and score per path over the last
minutes, markers where traffic moved, and a table of the current figures.

Drawing costs what changed, not what the window shows (benchmarks/bench_ui.py,
docs/app.md has the figures):
- Each path's curve is its min/max per pixel column (app/ui/decimate.py), taken in a
  few samples at a time as snapshots come: at most about two points per pixel column
  however long the span, and nothing recomputed over it.
- The time axis moves in whole pixels. Over ten minutes a pixel is 0.7 s, so the view
  moves (a *full* redraw) when the newest sample has reached the right edge, about 1.5
  times a second, rather than with each of the 10 snapshots a second that would each
  move it by a fraction of a pixel. The view ends one pixel after the newest sample; in
  between, each snapshot's samples are drawn live as a *tail* (the points since the
  last full redraw, at the right edge of each plot), which repaints only that strip.
  A young history, whose scale changes with every snapshot, gets a full redraw with
  every snapshot, as smooth as before.
- A full redraw draws again only the newest stretch of the curves (a chunk of
  CHUNK_COLUMNS columns): the older chunks are cached pixmaps that a scroll keeps, and
  the plots' heights follow the curves in steps (plot_layers.steady_range), so a new
  extreme within a step changes no pixmap and no axis.
- A tail point outside its plot's height, a new path, a new marker or a resize redraws
  in full at once; a tail sample that lights no new pixel is not drawn.
- The table's cells are set only when their text or colour changes.
- Nothing is drawn while the window is hidden or minimized (the history keeps filling);
  showing it takes the backlog into the columns in one pass and draws it.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QEvent, Qt, QTimer
from PySide6.QtGui import QBrush, QColor, QFontMetrics, QPen, QShowEvent
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHeaderView,
    QLabel,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from app.core import present
from app.core.model import EngineSnapshot
from app.ui.decimate import Columns, FloatArray, column_width
from app.ui.history import METRICS, Marker, PathHistory, Series
from app.ui.icons import state_icon
from app.ui.plot_layers import (
    CurveChunk,
    HeightItem,
    LegendEntry,
    MarkerLayer,
    MarkerLine,
    TailLayer,
    TimeAxis,
)

PALETTE = ("#1e88e5", "#e53935", "#43a047", "#8e24aa", "#fb8c00", "#00897b", "#6d4c41")
TITLES = {"rtt": "RTT (ms)", "jitter": "Jitter (ms)", "loss": "Loss (%)", "score": "Score"}
CEILINGS = {"loss": 100.0, "score": 1.0}  # no room above what a metric can reach
TICK_TEXT_ROOM = "0000.0"  # the widest value label: an RTT of seconds, or a score's 0.25
MARKER_PENS = {
    "switch": ("#37474f", Qt.PenStyle.DashLine),
    "fail_closed": ("#c62828", Qt.PenStyle.SolidLine),
}
DOWN_BRUSH = QBrush(QColor("#ffebee"))
MIN_VIEW_S = 30.0
# Columns per cached chunk of curve: what a full redraw strokes again (about 45 s over
# ten minutes); smaller chunks mean more items to walk and pixmaps to copy on every
# repaint (32 and 128 cost about the same, benchmarks/bench_ui.py).
CHUNK_COLUMNS = 64
Z_CURVES, Z_TAILS, Z_MARKERS = 10, 11, 12


class PathCurves:
    """One path's drawing state: its columns, and how far they and the drawn curves
    have taken its series."""

    def __init__(self, index: int, pen: QPen) -> None:
        self.index = index
        self.pen = pen
        self.visible = True
        self.columns: Columns | None = None
        self.taken = 0  # samples of the series taken into the columns (Series.appended)
        self.drawn = 0  # ... drawn by the curves at the last full redraw
        self.last_key: int | None = None  # the newest column then: it may have grown since
        self.end: FloatArray = np.full((2, len(METRICS)), np.nan)  # the curves' last x, y
        # The height the tails span so far, per metric (NaN: nothing finite drawn yet).
        self.tail_lo: FloatArray = np.full(len(METRICS), np.nan)
        self.tail_hi: FloatArray = np.full(len(METRICS), np.nan)

    def take(self, series: Series, width_s: float | None = None) -> bool:
        """Take the series' new samples into the columns; with a new width (or a
        backlog the series no longer holds), start over from what it holds. True when
        it started over."""
        new = series.appended - self.taken
        fresh = False
        if width_s is not None and (self.columns is None or self.columns.width_s != width_s):
            self.columns = Columns(width_s, len(METRICS))
            new, fresh = len(series), True
        elif self.columns is None:
            return False
        elif new > len(series):
            self.columns = Columns(self.columns.width_s, len(METRICS))
            new, fresh = len(series), True
        if new > 0:
            self.columns.extend(series.times()[-new:], series.rows()[:, -new:])
        self.taken = series.appended
        return fresh


@dataclass
class PlotLayers:
    """A plot's drawing items (app/ui/plot_layers.py): its curves in chunks of columns
    (by chunk number: column key // CHUNK_COLUMNS), the tails, the markers, and the
    item its automatic height follows."""

    tails: TailLayer = field(default_factory=TailLayer)
    markers: MarkerLayer = field(default_factory=MarkerLayer)
    height: HeightItem = field(default_factory=HeightItem)
    chunks: dict[int, CurveChunk] = field(default_factory=dict)


@dataclass(frozen=True)
class DrawnCurve:
    """A path's curve on one plot, read as a pyqtgraph curve is (getData)."""

    window: PathGraphWindow
    name: str
    metric: str

    def getData(self) -> tuple[FloatArray, FloatArray]:
        return self.window.curve_points(self.name, self.metric)


class PathGraphWindow(QWidget):
    def __init__(self, history: PathHistory, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Braid — Paths")
        self.setWindowIcon(state_icon(None))
        self.resize(960, 760)
        self._history = history
        self._latest: EngineSnapshot | None = None
        # What the tests and the benchmark read: snapshots drawn (in full or as tails),
        # of those the full redraws, and the curve chunks and plots' tails drawn again.
        self.redraws = 0
        self.full_redraws = 0
        self.chunks_drawn = 0
        self.tails_drawn = 0
        self._right = -math.inf  # the time at the view's right edge: past it, redraw
        self._pixel_s = 0.0  # one pixel's time at the last full redraw
        self._stale = True  # the curves must be drawn again from their columns

        self._headline = QLabel("Disconnected")
        self._headline.setObjectName("headline")
        self._classes = QLabel("")
        self._classes.setObjectName("classes")
        self._classes.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)

        pg.setConfigOptions(antialias=False, background="w", foreground="#263238")
        self._plots_widget = pg.GraphicsLayoutWidget()
        self.plots: dict[str, pg.PlotItem] = {}
        self.layers: dict[str, PlotLayers] = {}
        ticks: dict[str, object] = {}
        for row, metric in enumerate(METRICS):
            axis = {"bottom": TimeAxis(ticks)}
            plot = self._plots_widget.addPlot(row=row, col=0, axisItems=axis)
            plot.setLabel("left", TITLES[metric])
            # The same room for every plot's value labels, whatever they read: pyqtgraph
            # sizes each left axis to its own labels, so the plots' time spans started at
            # different pixels, their linked ranges differed and the ticks could not be
            # shared (and a new label width, "5" to "100", moved the plot).
            left_axis = plot.getAxis("left")
            left_axis.setStyle(autoExpandTextSpace=False, tickTextWidth=QFontMetrics(
                left_axis.font()).horizontalAdvance(TICK_TEXT_ROOM))
            # No grid: pyqtgraph redraws grid lines with every frame, which tripled the
            # window's CPU (benchmarks/bench_ui.py).
            plot.setMouseEnabled(x=False, y=True)
            plot.setMenuEnabled(False)
            if row:
                plot.setXLink(self.plots[METRICS[0]])
            if row < len(METRICS) - 1:
                plot.getAxis("bottom").setStyle(showValues=False)
            for side in ("left", "bottom", "top", "right"):
                # The units are in the titles: no SI prefix to re-work out (and the label
                # to re-lay out) with every move of the axis, hidden axes included.
                plot.getAxis(side).enableAutoSIPrefix(False)
            layers = PlotLayers(height=HeightItem(CEILINGS.get(metric, math.inf)))
            plot.vb.addItem(layers.height)
            plot.vb.addItem(layers.tails, ignoreBounds=True)
            plot.vb.addItem(layers.markers, ignoreBounds=True)
            layers.tails.setZValue(Z_TAILS)
            layers.markers.setZValue(Z_MARKERS)
            self.plots[metric] = plot
            self.layers[metric] = layers
        self.plots["score"].setYRange(0.0, 1.0, padding=0.05)
        self.plots["loss"].setLimits(yMin=-1.0)
        # A resize moves each linked plot's range on its own (pyqtgraph lines the linked
        # views up by their geometry, one by one, against the first plot's range before
        # or after its own resize), so the plots would show different times until the
        # next snapshot: redraw once the resizes of this turn are done.
        self._resized = QTimer(self)
        self._resized.setSingleShot(True)
        self._resized.setInterval(0)
        self._resized.timeout.connect(self._redraw_if_shown)
        for plot in self.plots.values():
            plot.vb.sigResized.connect(self._mark_resized)
        for metric, plot in self.plots.items():
            # A new height (automatic, or the user's wheel) resizes a pixel: tell the chunks.
            plot.vb.sigYRangeChanged.connect(lambda *_, m=metric: self._set_chunk_pixels(m))
        self._legend = self.plots["rtt"].addLegend(offset=(10, 5))
        self.paths: dict[str, PathCurves] = {}
        self._markers: set[Marker] = set()
        self._marker_order: list[Marker] = []  # as the marker layers hold their lines

        self.table = QTableWidget(0, len(present.TABLE_COLUMNS))
        self.table.setHorizontalHeaderLabels(list(present.TABLE_COLUMNS))
        self.table.verticalHeader().setVisible(False)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.NoSelection)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Stretch)
        self._cells: list[list[str]] = []  # what the table shows, to skip unchanged cells
        self._row_down: list[bool] = []
        self._fit_table()

        layout = QVBoxLayout(self)
        layout.addWidget(self._headline)
        layout.addWidget(self._classes)
        layout.addWidget(self._plots_widget, stretch=1)
        layout.addWidget(self.table)

    # -- what is drawn (the tests read it) ---------------------------------------------
    def curve_points(self, name: str, metric: str) -> tuple[FloatArray, FloatArray]:
        """A path's curve as of the last full redraw: per pixel column its extremes, NaN
        where it breaks."""
        columns = self.paths[name].columns
        if columns is None:
            return np.empty(0), np.empty(0)
        return columns.curve(METRICS.index(metric))

    @property
    def curves(self) -> dict[str, dict[str, DrawnCurve]]:
        """Each path's curve per metric, as pyqtgraph's curves are read (getData)."""
        return {name: {m: DrawnCurve(self, name, m) for m in METRICS} for name in self.paths}

    def tail_samples(self, name: str) -> int:
        """The samples of a path drawn as its tail, since the last full redraw."""
        curves = self.paths[name]
        return curves.taken - curves.drawn

    @property
    def marker_lines(self) -> dict[Marker, list[MarkerLine]]:
        """Each marker drawn, with its line on every plot (top to bottom)."""
        per_plot = [layers.markers.lines for layers in self.layers.values()]
        return {marker: [lines[i] for lines in per_plot]
                for i, marker in enumerate(self._marker_order)}

    # -- updates ---------------------------------------------------------------------
    def show_snapshot(self, snapshot: EngineSnapshot) -> None:
        """Called for every snapshot (the history is fed elsewhere); draws only when
        the window can be seen."""
        self._latest = snapshot
        if not self.on_screen():
            return
        self.redraws += 1
        self._show_figures(snapshot)
        if self._full_redraw_due() or not self._draw_tails():
            self._draw_full()

    def on_screen(self) -> bool:
        """Shown and not minimized: a minimized window is hidden to its user too."""
        return self.isVisible() and not self.isMinimized()

    def showEvent(self, event: QShowEvent) -> None:
        super().showEvent(event)
        self.redraw()

    def changeEvent(self, event: QEvent) -> None:
        super().changeEvent(event)
        if event.type() is QEvent.Type.WindowStateChange and self.on_screen():
            self.redraw()  # restored from minimized: catch up at once

    def redraw(self) -> None:
        """Draw everything now, in full."""
        self.redraws += 1
        self._stale = True
        self._draw_full()
        if self._latest is not None:
            self._show_figures(self._latest)

    def _mark_resized(self) -> None:
        self._stale = True
        self._resized.start()

    def _redraw_if_shown(self) -> None:
        if self.on_screen():
            self.redraw()

    def _full_redraw_due(self) -> bool:
        history = self._history
        return (
            self._stale
            or history.latest_t > self._right
            or len(history.names()) != len(self.paths)
            or set(history.markers()) != self._markers
        )

    def _view(self, now: float) -> tuple[float, float, float]:
        """The time range to show and one pixel's time: the whole history up to the
        span (a young connection fills the width), ending one pixel after `now`. Over
        the full span the range's width and the pixel stay exactly the same from one
        redraw to the next, so that moving it is a pure scroll (cached pixmaps keep)."""
        history = self._history
        width = max(self.plots[METRICS[0]].vb.width(), 2.0)
        first = history.earliest_t()
        held = 0.0 if first is None else now - first
        # The width that puts the oldest sample at the left edge and the newest one a
        # pixel from the right one: held = view * (width - 1) / width.
        view = min(history.span_s, max(MIN_VIEW_S, held * width / (width - 1)))
        pixel_s = view / width
        right = now + pixel_s
        return right - view, right, pixel_s

    def _draw_full(self) -> None:
        self.full_redraws += 1
        history = self._history
        now = history.latest_t or time.time()
        left, right, pixel_s = self._view(now)
        width_s = column_width(pixel_s)
        self._pixel_s = pixel_s
        # Chunks from this one on have new columns (or new samples in old ones).
        first_changed: float = math.inf
        span: tuple[int, int] | None = None
        for index, name in enumerate(history.names()):
            curves = self.paths.get(name) or self._add_path(name, index)
            if curves.take(history.series(name), width_s):
                self._stale = True
            assert curves.columns is not None
            curves.columns.trim(left - width_s)
            keys = curves.columns.keys()
            if keys is None:
                continue
            first_changed = min(first_changed, keys[0] if curves.last_key is None
                                else curves.last_key)
            span = keys if span is None else (min(span[0], keys[0]), max(span[1], keys[1]))
            curves.last_key = keys[1]
        if self._stale:
            first_changed = -math.inf
        for metric in METRICS:
            self._draw_chunks(metric, span, first_changed)
        for curves in self.paths.values():
            curves.drawn = curves.taken
            curves.tail_lo[:] = curves.tail_hi[:] = curves.end[1]
        self._sync_markers()
        self.plots[METRICS[0]].setXRange(left, right, padding=0)
        for plot in self.plots.values():
            # Apply the new ranges now rather than when Qt starts painting: a transform
            # that changes during the paint makes Qt paint the whole plot a second time.
            plot.vb.prepareForPaint()
        self._right = right
        self._stale = False

    def _draw_chunks(self, metric: str, span: tuple[int, int] | None,
                     first_changed: float) -> None:
        """Bring a plot's chunks up to date: drop those left of the columns, draw
        those from `first_changed` (a column key) on, follow their height."""
        layers = self.layers[metric]
        layers.tails.clear()
        m = METRICS.index(metric)
        wanted = range(0) if span is None else range(span[0] // CHUNK_COLUMNS,
                                                     span[1] // CHUNK_COLUMNS + 1)
        for number in [n for n in layers.chunks if n not in wanted]:
            self.plots[metric].vb.removeItem(layers.chunks.pop(number))
        for number in wanted:
            chunk = layers.chunks.get(number)
            if chunk is not None and (number + 1) * CHUNK_COLUMNS <= first_changed:
                continue
            if chunk is None:
                chunk = layers.chunks[number] = CurveChunk()
                self.plots[metric].vb.addItem(chunk, ignoreBounds=True)
                chunk.setZValue(Z_CURVES)
            keys = (number * CHUNK_COLUMNS, (number + 1) * CHUNK_COLUMNS - 1)
            drawn = []
            for curves in self.paths.values():
                if curves.columns is None:
                    continue
                x, y = curves.columns.curve(m, keys, lead_in=True)
                if number == wanted[-1]:
                    curves.end[:, m] = (x[-1], y[-1]) if len(x) else (np.nan, np.nan)
                if curves.visible:
                    drawn.append((curves.pen, x, y))
            chunk.set_curves(drawn)
            self.chunks_drawn += 1
        if not wanted:
            for curves in self.paths.values():
                curves.end[:, m] = np.nan
        extents = [curves.columns.extent(m) for curves in self.paths.values()
                   if curves.visible and curves.columns is not None]
        found = [e for e in extents if e is not None]
        layers.height.follow((min(lo for lo, _ in found), max(hi for _, hi in found))
                             if found else None)
        self._set_chunk_pixels(metric)

    def _set_chunk_pixels(self, metric: str) -> None:
        """Give a plot's chunks its pixel size, for their bounds (plot_layers._Padded)."""
        vb = self.plots[metric].vb
        (y0, y1) = vb.viewRange()[1]
        pixel = (self._pixel_s, (y1 - y0) / max(vb.height(), 1.0))
        for chunk in self.layers[metric].chunks.values():
            chunk.set_pixel(pixel)

    def _draw_tails(self) -> bool:
        """Draw each curve's samples since the last full redraw, where they reach a
        pixel the curve has not drawn yet; False (drawing nothing) when one falls outside
        its plot's automatic height, so that it needs a full redraw.

        A tail is at most a pixel or two wide, so a sample within the height it already
        spans (to half a pixel) lights no new pixel and is not drawn now; a gap is
        not either (it only shows once the curve resumes, or at the next full redraw)."""
        history = self._history
        view: dict[str, tuple[float, float, float, bool]] = {}
        for metric, plot in self.plots.items():
            vb = plot.vb
            y0, y1 = vb.viewRange()[1]
            view[metric] = (y0, y1, 0.5 * (y1 - y0) / max(vb.height(), 1.0),
                            vb.autoRangeEnabled()[1] is not False)
        todo: dict[str, list[tuple[int, QPen, list[float], list[float]]]] = {}
        for name, curves in self.paths.items():
            series = history.series(name)
            curves.take(series)
            new = min(curves.taken - curves.drawn, len(series))
            if new <= 0 or not curves.visible:
                continue
            rows = series.rows()[:, -new:].tolist()
            for m, metric in enumerate(METRICS):
                ys = rows[m]
                finite = [v for v in ys if v == v]  # not NaN
                if not finite:
                    continue
                y0, y1, half, auto = view[metric]
                low, high = min(finite), max(finite)
                if auto and (low < y0 or high > y1):
                    return False
                lo, hi = curves.tail_lo[m], curves.tail_hi[m]
                if lo - half <= low and high <= hi + half:  # False while lo, hi are NaN
                    continue
                curves.tail_lo[m] = low if lo != lo else min(lo, low)
                curves.tail_hi[m] = high if hi != hi else max(hi, high)
                x0, y_end = curves.end[:, m].tolist()
                todo.setdefault(metric, []).append((
                    curves.index, curves.pen, [x0, *series.times()[-new:].tolist()],
                    [y_end, *ys]))
        for metric, tails in todo.items():
            self.layers[metric].tails.set_tails(tails)
            self.tails_drawn += 1
        return True

    def _add_path(self, name: str, index: int) -> PathCurves:
        pen = pg.mkPen(PALETTE[index % len(PALETTE)], width=1)
        curves = PathCurves(index, pen)
        self.paths[name] = curves

        def toggle(visible: bool) -> None:  # a click on the path's legend entry
            curves.visible = visible
            self.redraw()

        self._legend.addItem(LegendEntry(pen, toggle), name)
        self._stale = True
        return curves

    def _sync_markers(self) -> None:
        markers = self._history.markers()
        wanted = set(markers)
        if wanted == self._markers:
            return
        self._markers = wanted
        self._marker_order = markers
        for metric, layers in self.layers.items():
            lines = []
            for marker in markers:
                colour, style = MARKER_PENS.get(marker.kind, MARKER_PENS["switch"])
                pen = pg.mkPen(colour, width=1.5, style=style)
                lines.append(MarkerLine(marker.t, pen, marker.label if metric == "rtt" else None))
            layers.markers.set_lines(lines)

    def _show_figures(self, snapshot: EngineSnapshot) -> None:
        headline = f"<b>{present.headline(snapshot)}</b>"
        if self._headline.text() != headline:
            self._headline.setText(headline)
        lines = present.class_lines(snapshot)
        classes = "Classes — " + " · ".join(lines) if lines else ""
        copies = present.copies_line(snapshot)  # why copies are on, or off, in full here
        classes += f"\n{copies}" if copies and classes else ""
        if self._classes.text() != classes:
            self._classes.setText(classes)
        if self.table.rowCount() != len(snapshot.paths):
            self.table.setRowCount(len(snapshot.paths))
            self._fit_table()
        rows = len(snapshot.paths)
        del self._cells[rows:], self._row_down[rows:]
        for row, path in enumerate(snapshot.paths):
            if row == len(self._cells):
                self._cells.append([""] * len(present.TABLE_COLUMNS))
                self._row_down.append(False)
                for col in range(len(present.TABLE_COLUMNS)):
                    self.table.setItem(row, col, QTableWidgetItem())
            shown = self._cells[row]
            for col, text in enumerate(present.path_row(path)):
                if shown[col] != text:
                    self._item(row, col).setText(text)
                    shown[col] = text
            down = not path.up
            if self._row_down[row] != down:
                self._row_down[row] = down
                brush = DOWN_BRUSH if down else QBrush()
                for col in range(len(present.TABLE_COLUMNS)):
                    self._item(row, col).setBackground(brush)

    def _item(self, row: int, col: int) -> QTableWidgetItem:
        item = self.table.item(row, col)
        assert item is not None
        return item

    def _fit_table(self) -> None:
        """As tall as its rows (at least one): the plots get the rest."""
        table = self.table
        rows = max(table.rowCount(), 1)
        table.setFixedHeight(
            table.horizontalHeader().sizeHint().height()
            + rows * table.verticalHeader().defaultSectionSize()
            + 2 * table.frameWidth()
        )

    def table_rows(self) -> list[list[str]]:
        """What the table shows, row by row."""
        rows = []
        for r in range(self.table.rowCount()):
            cells = (self.table.item(r, c) for c in range(self.table.columnCount()))
            rows.append([c.text() if c is not None else "" for c in cells])
        return rows
