"""Take the README's screenshot of the panel: the noisy sample classified and restored with `tiny`.

Needs a display (or a virtual one):

    xvfb-run -a .venv/bin/python scripts/screenshot_widget.py docs/widget.png
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("DACLIP_CONFIG_DIR", tempfile.mkdtemp())  # leave the user's saved settings alone

import napari  # noqa: E402
from qtpy.QtCore import QTimer  # noqa: E402
from qtpy.QtWidgets import QApplication  # noqa: E402


def main(target: Path) -> None:
    viewer = napari.Viewer()
    viewer.window.resize(1400, 900)
    viewer.open_sample("daclip-plugin", "noisy")
    _, widget = viewer.window.add_plugin_dock_widget("daclip-plugin", "Classify and restore")
    widget._model.value = "tiny"
    widget._device.value = "cpu"
    steps = iter(("classify", "restore", "shoot"))

    def next_step(*_):
        step = next(steps)
        if step == "shoot":
            viewer.layers.selection.active = viewer.layers[-1]
            QApplication.processEvents()
            target.parent.mkdir(parents=True, exist_ok=True)
            viewer.screenshot(str(target), canvas_only=False, flash=False)
            print(f"wrote {target}")
            viewer.close()
            return
        worker = getattr(widget, step)()
        worker.finished.connect(lambda: QTimer.singleShot(500, next_step))

    QTimer.singleShot(1000, next_step)
    napari.run()


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "docs/widget.png"))
