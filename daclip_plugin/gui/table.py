"""The widget's table of degradation probabilities: one row per degradation, one column per layer."""

from __future__ import annotations

from typing import Mapping

from magicgui.widgets import Container, Label, Table
from qtpy.QtCore import Qt
from qtpy.QtGui import QBrush, QColor, QFont
from qtpy.QtWidgets import QAbstractItemView, QHeaderView, QSizePolicy

from .runtime import shorten

_TOP_COLOUR = QColor(0, 150, 200, 130)
#: Rows shown at once (the rest scroll), and the longest column title before it is shortened.
VISIBLE_ROWS, TITLE_CHARS = 6, 15


def _short_titles(names: list[str]) -> list[str]:
    """Column titles: long layer names shortened in the middle (their ends tell them apart), made unique."""
    titles = [shorten(name, TITLE_CHARS) for name in names]
    return [title if titles.count(title) == 1 else f"{title} #{number + 1}" for number, title in enumerate(titles)]


class ProbabilityTable(Container):
    """Probabilities by layer, most likely first (for the last layer); each layer's top class highlighted.

    Columns fit their text (long layer names are shortened, in full in their tooltip) and
    scroll sideways when there are many layers; the most likely rows show, the rest scroll,
    so that the panel stays short.
    """

    def __init__(self) -> None:
        self._title = Label(value="<b>Degradation probabilities</b>")
        self._table = Table()
        super().__init__(widgets=[self._title, self._table], labels=False)
        self.margins = (0, 0, 0, 0)
        table = self._table.native
        table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        table.setSelectionMode(QAbstractItemView.SelectionMode.NoSelection)
        table.verticalHeader().setDefaultSectionSize(20)
        table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        table.horizontalHeader().setStretchLastSection(False)
        table.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAsNeeded)
        table.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAsNeeded)
        table.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self.visible = False

    @property
    def table(self):
        """The Qt table (for tests and screenshots)."""
        return self._table.native

    def show_probabilities(self, probabilities: Mapping[str, Mapping[str, float]]) -> None:
        """Show ``{layer name: {degradation: probability}}``; hidden when empty."""
        if not probabilities:
            self.visible = False
            return
        layers = list(probabilities)
        names = list(dict.fromkeys(name for scores in probabilities.values() for name in scores))
        last = probabilities[layers[-1]]
        names.sort(key=lambda name: last.get(name, 0.0), reverse=True)
        data = [[f"{100 * probabilities[layer].get(name, 0.0):.1f}%" for layer in layers] for name in names]
        self._table.value = {"data": data, "index": names, "columns": _short_titles(layers)}
        table = self.table
        for column, layer in enumerate(layers):
            table.horizontalHeaderItem(column).setToolTip(layer)
        bold = QFont(table.font())
        bold.setBold(True)
        for column, layer in enumerate(layers):
            scores = probabilities[layer]
            top = max(scores, key=scores.get) if scores else None
            for row, name in enumerate(names):
                item = table.item(row, column)
                if item is None:
                    continue
                item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
                if name == top:
                    item.setBackground(QBrush(_TOP_COLOUR))
                    item.setFont(bold)
        table.resizeColumnsToContents()
        for column in range(len(layers)):  # room for the bold top value, which the fit does not measure
            table.setColumnWidth(column, table.columnWidth(column) + 12)
        scrollbar = table.horizontalScrollBar().sizeHint().height()
        height = table.horizontalHeader().height() + sum(table.rowHeight(r) for r in range(min(len(names), VISIBLE_ROWS)))
        table.setFixedHeight(height + 2 * table.frameWidth() + scrollbar + 2)
        self.visible = True
