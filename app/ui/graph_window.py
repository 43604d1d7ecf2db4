"""The live path graph window: RTT, jitter, loss and score per path over the last
minutes, markers where traffic moved, and a table of the current figures.

Curves are created once per path and updated with setData; downsampling and
clip-to-view keep ten minutes of three paths cheap, and nothing is redrawn while
the window is hidden or minimized (the history keeps filling; showing the window draws it).
"""

from __future__ import annotations

import time

import pyqtgraph as pg
from PySide6.QtCore import QEvent, Qt
from PySide6.QtGui import QBrush, QColor, QShowEvent
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
from app.ui.history import METRICS, Marker, PathHistory
from app.ui.icons import state_icon

PALETTE = ("#1e88e5", "#e53935", "#43a047", "#8e24aa", "#fb8c00", "#00897b", "#6d4c41")
TITLES = {"rtt": "RTT (ms)", "jitter": "Jitter (ms)", "loss": "Loss (%)", "score": "Score"}
MARKER_PENS = {
    "switch": ("#37474f", Qt.PenStyle.DashLine),
    "fail_closed": ("#c62828", Qt.PenStyle.SolidLine),
}
DOWN_BRUSH = QBrush(QColor("#ffebee"))
MIN_VIEW_S = 30.0


class PathGraphWindow(QWidget):
    def __init__(self, history: PathHistory, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Braid — Paths")
        self.setWindowIcon(state_icon(None))
        self.resize(960, 760)
        self._history = history
        self._latest: EngineSnapshot | None = None
        self.redraws = 0  # how often the plots were drawn: the tests and benchmark read it

        self._headline = QLabel("Disconnected")
        self._headline.setObjectName("headline")
        self._classes = QLabel("")
        self._classes.setObjectName("classes")
        self._classes.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)

        pg.setConfigOptions(antialias=False, background="w", foreground="#263238")
        self._plots_widget = pg.GraphicsLayoutWidget()
        self.plots: dict[str, pg.PlotItem] = {}
        for row, metric in enumerate(METRICS):
            axis = {"bottom": pg.DateAxisItem(orientation="bottom")}
            plot = self._plots_widget.addPlot(row=row, col=0, axisItems=axis)
            plot.setLabel("left", TITLES[metric])
            # No grid: pyqtgraph redraws grid lines with every frame, which tripled the
            # window's CPU (benchmarks/bench_ui.py).
            plot.setMouseEnabled(x=False, y=True)
            plot.setMenuEnabled(False)
            if row:
                plot.setXLink(self.plots[METRICS[0]])
            if row < len(METRICS) - 1:
                plot.getAxis("bottom").setStyle(showValues=False)
            self.plots[metric] = plot
        self.plots["score"].setYRange(0.0, 1.0, padding=0.05)
        self.plots["loss"].setLimits(yMin=-1.0)
        self._legend = self.plots["rtt"].addLegend(offset=(10, 5))
        self.curves: dict[str, dict[str, pg.PlotDataItem]] = {}
        self.marker_lines: dict[Marker, list[pg.InfiniteLine]] = {}

        self.table = QTableWidget(0, len(present.TABLE_COLUMNS))
        self.table.setHorizontalHeaderLabels(list(present.TABLE_COLUMNS))
        self.table.verticalHeader().setVisible(False)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.NoSelection)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Stretch)
        self._fit_table()

        layout = QVBoxLayout(self)
        layout.addWidget(self._headline)
        layout.addWidget(self._classes)
        layout.addWidget(self._plots_widget, stretch=1)
        layout.addWidget(self.table)

    # -- updates ---------------------------------------------------------------------
    def show_snapshot(self, snapshot: EngineSnapshot) -> None:
        """Called for every snapshot (the history is fed elsewhere); draws only when
        the window can be seen."""
        self._latest = snapshot
        if self.on_screen():
            self.redraw()

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
        self.redraws += 1
        history = self._history
        now = history.latest_t or time.time()
        for index, name in enumerate(history.names()):
            curves = self.curves.get(name) or self._add_curves(name, index)
            series = history.series(name)
            t = series.times()
            for metric, curve in curves.items():
                curve.setData(t, series.values(metric), connect="finite")
        self._sync_markers()
        # Show the whole history, up to the span: a young connection fills the width.
        first = history.earliest_t()
        left = now - history.span_s
        if first is not None:
            left = max(left, min(first, now - MIN_VIEW_S))
        self.plots[METRICS[0]].setXRange(left, now, padding=0)
        if self._latest is not None:
            self._show_figures(self._latest)

    def _add_curves(self, name: str, index: int) -> dict[str, pg.PlotDataItem]:
        pen = pg.mkPen(PALETTE[index % len(PALETTE)], width=1)
        curves = {}
        for metric, plot in self.plots.items():
            curve = plot.plot(pen=pen, name=name if metric == "rtt" else None)
            curve.setDownsampling(auto=True, method="peak")
            curve.setClipToView(True)
            curves[metric] = curve
        self.curves[name] = curves
        return curves

    def _sync_markers(self) -> None:
        wanted = set(self._history.markers())
        for marker in [m for m in self.marker_lines if m not in wanted]:
            for plot, line in zip(self.plots.values(), self.marker_lines.pop(marker), strict=True):
                plot.removeItem(line)
        for marker in wanted - set(self.marker_lines):
            colour, style = MARKER_PENS.get(marker.kind, MARKER_PENS["switch"])
            lines = []
            for metric, plot in self.plots.items():
                line = pg.InfiniteLine(
                    pos=marker.t, angle=90, movable=False,
                    pen=pg.mkPen(colour, width=1.5, style=style),
                    label=marker.label if metric == "rtt" else None,
                    # Right of the line would run off the plot: the newest switch is at the
                    # right edge.
                    labelOpts={"position": 0.92, "color": colour, "anchors": [(1, 0), (1, 0)]},
                )
                plot.addItem(line, ignoreBounds=True)
                lines.append(line)
            self.marker_lines[marker] = lines

    def _show_figures(self, snapshot: EngineSnapshot) -> None:
        self._headline.setText(f"<b>{present.headline(snapshot)}</b>")
        lines = present.class_lines(snapshot)
        self._classes.setText("Classes — " + " · ".join(lines) if lines else "")
        if self.table.rowCount() != len(snapshot.paths):
            self.table.setRowCount(len(snapshot.paths))
            self._fit_table()
        for row, path in enumerate(snapshot.paths):
            brush = DOWN_BRUSH if not path.up else QBrush()
            for col, text in enumerate(present.path_row(path)):
                item = self.table.item(row, col)
                if item is None:
                    item = QTableWidgetItem()
                    self.table.setItem(row, col, item)
                if item.text() != text:
                    item.setText(text)
                item.setBackground(brush)

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
