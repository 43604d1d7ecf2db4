"""The Settings dialog: a profile's costs per gateway, score weights, how eagerly each
class moves between paths (margin, dwell, hold-down), LAN access, always on, copies
for realtime and the bulk threshold (docs/profiles.md, [settings]).

The fields are text as typed; saving goes through app/core/profiles/edit.py, which
checks them with the same rules as an import and writes the profile through the profile
store. A value that is wrong is refused with the message that names its field, and
nothing is saved. The engine reads a profile when it connects: a change applies from the
next connect.
"""

from __future__ import annotations

from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QVBoxLayout,
    QWidget,
)

from app.core.errors import BraidError
from app.core.profiles.edit import (
    STEERED,
    TUNING_FIELDS,
    WEIGHT_FIELDS,
    SettingsForm,
    form_of,
    save_form,
)
from app.core.profiles.model import COPIES_MODES
from app.core.profiles.store import ProfileStore
from app.ui.icons import state_icon

TUNING_TITLES = {"margin": "margin (score)", "dwell_s": "for (s)",
                 "hold_down_s": "hold-down (s)", "unusable_dwell_s": "when lossy, after (s)"}
ERROR_STYLE = "color: #c62828"
SAVED_STYLE = "color: #1b5e20"


class SettingsDialog(QDialog):
    def __init__(self, store: ProfileStore, profile: str | None = None,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.store = store
        self.setWindowTitle("Braid — Settings")
        self.setWindowIcon(state_icon(None))
        self.profile_combo = QComboBox()
        self.profile_combo.currentTextChanged.connect(self.load)
        self.costs: dict[str, QLineEdit] = {}
        self.weights = {n: QLineEdit() for n in WEIGHT_FIELDS}
        self.tuning = {cls: {n: QLineEdit() for n in TUNING_FIELDS} for cls in STEERED}
        self.lan_access = QCheckBox("LAN access: the local network (printer, NAS, router) "
                                    "stays reachable while connected")
        self.always_on = QCheckBox("Always on: the tunnels and the kill switch stay when "
                                   "the app quits or crashes, until you disconnect")
        self.copies = QComboBox()
        self.copies.addItems(list(COPIES_MODES))
        self.copies.setToolTip("realtime over two paths at once: auto (when the paths "
                               "converge and it is needed), always, or off")
        self.bulk_after = QLineEdit()
        self.bulk_after.setToolTip("a flow that has moved this many megabytes becomes bulk")
        self.message = QLabel("")
        self.message.setWordWrap(True)

        top = QHBoxLayout()
        top.addWidget(QLabel("Profile:"))
        top.addWidget(self.profile_combo, stretch=1)
        self.cost_box = QGroupBox("Cost per gateway (relative, ≥ 0: a cheaper path scores "
                                  "better)")
        self.cost_form = QFormLayout(self.cost_box)
        weight_box = QGroupBox("Score weights (each ≥ 0; a path over 5 % loss scores 0)")
        weight_row = QHBoxLayout(weight_box)
        for name, edit in self.weights.items():
            weight_row.addWidget(QLabel(name))
            weight_row.addWidget(edit)
        tuning_box = QGroupBox("Moving between paths: a better path must lead by the margin "
                               "for a while; after a move, a hold-down")
        grid = QGridLayout(tuning_box)
        for col, name in enumerate(TUNING_FIELDS, start=1):
            grid.addWidget(QLabel(TUNING_TITLES.get(name, name)), 0, col)
        for row, cls in enumerate(STEERED, start=1):
            grid.addWidget(QLabel(cls), row, 0)
            for col, name in enumerate(TUNING_FIELDS, start=1):
                grid.addWidget(self.tuning[cls][name], row, col)
        conn_box = QGroupBox("Connection")
        conn = QFormLayout(conn_box)
        conn.addRow(self.lan_access)
        conn.addRow(self.always_on)
        conn.addRow("Copies for realtime:", self.copies)
        conn.addRow("Bulk after (MB):", self.bulk_after)
        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Save
                                        | QDialogButtonBox.StandardButton.Close)
        self.buttons.accepted.connect(self.save)
        self.buttons.rejected.connect(self.reject)

        layout = QVBoxLayout(self)
        layout.addLayout(top)
        layout.addWidget(self.cost_box)
        layout.addWidget(weight_box)
        layout.addWidget(tuning_box)
        layout.addWidget(conn_box)
        layout.addWidget(QLabel("Saved to the profile; the engine reads it when it "
                                "connects, so a change applies from the next connect."))
        layout.addWidget(self.message)
        layout.addWidget(self.buttons)
        self.refresh_profiles(profile)

    @property
    def profile(self) -> str:
        return self.profile_combo.currentText()

    def refresh_profiles(self, chosen: str | None = None) -> None:
        """List the profiles again (one may have been imported since), keeping ``chosen``
        (or the one shown) if it is still there."""
        keep = chosen or self.profile
        try:
            names = self.store.names()
        except BraidError as exc:
            names = []
            self._say(f"{exc.what} ({exc.fix})", ERROR_STYLE)
        self.profile_combo.blockSignals(True)
        self.profile_combo.clear()
        self.profile_combo.addItems(names)
        if keep in names:
            self.profile_combo.setCurrentText(keep)
        self.profile_combo.blockSignals(False)
        if not names:
            self._say("No profiles yet: import one with `braid import FILE.conf`",
                      ERROR_STYLE)
        self.buttons.button(QDialogButtonBox.StandardButton.Save).setEnabled(bool(names))
        if names:
            self.load(self.profile)

    def load(self, name: str) -> None:
        """Show profile ``name`` as it is saved."""
        if not name:
            return
        try:
            form = form_of(self.store.load(name))
        except BraidError as exc:
            self._say(f"{exc.what} ({exc.fix})", ERROR_STYLE)
            return
        self.show_form(form)
        self._say("", "")

    def show_form(self, form: SettingsForm) -> None:
        while self.cost_form.rowCount():
            self.cost_form.removeRow(0)
        self.costs = {}
        for gw, text in form.costs.items():
            edit = QLineEdit(text)
            self.costs[gw] = edit
            self.cost_form.addRow(gw, edit)
        for name, edit in self.weights.items():
            edit.setText(form.weights.get(name, ""))
        for cls, edits in self.tuning.items():
            for name, edit in edits.items():
                edit.setText(form.tuning.get(cls, {}).get(name, ""))
        self.lan_access.setChecked(form.lan_access)
        self.always_on.setChecked(form.always_on)
        self.copies.setCurrentText(form.copies)
        self.bulk_after.setText(form.bulk_after_mb)

    def form(self) -> SettingsForm:
        """What the fields say now."""
        return SettingsForm(
            costs={gw: e.text() for gw, e in self.costs.items()},
            weights={n: e.text() for n, e in self.weights.items()},
            tuning={cls: {n: e.text() for n, e in edits.items()}
                    for cls, edits in self.tuning.items()},
            lan_access=self.lan_access.isChecked(), always_on=self.always_on.isChecked(),
            copies=self.copies.currentText(), bulk_after_mb=self.bulk_after.text())

    def save(self) -> bool:
        """Save the fields to the profile; a wrong one says which and saves nothing."""
        try:
            saved = save_form(self.store, self.profile, self.form())
        except BraidError as exc:
            self._say(f"Not saved: {exc.what}\nWhat to do: {exc.fix}", ERROR_STYLE)
            return False
        self.show_form(form_of(saved))  # as stored: normalised numbers
        self._say(f"Saved to {self.store.path(saved.name)}.", SAVED_STYLE)
        return True

    def _say(self, text: str, style: str) -> None:
        self.message.setText(text)
        self.message.setStyleSheet(style)
