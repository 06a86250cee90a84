"""What a person does with the panel, each in a fresh napari process under the virtual X server:
open it (no freeze), start a run, close the panel with its X, quit napari (no crash)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

pytest.importorskip("napari")

# A restorer doing real torch work in its thread: a process that exits while such a thread
# still runs aborts ("terminate called without an active exception").
TORCH_RESTORER = """
    import sys, time, types
    import numpy as np
    import napari
    from qtpy.QtCore import QTimer
    from daclip_plugin import Cancelled, Restorer, hookimpl, plugins

    SEEN = {"steps": 0, "stopped": False}

    class Busy(Restorer):
        name = "busy"

        def restore(self, image, *, progress=None, should_stop=None, **options):
            import torch
            a = torch.rand(300, 300)
            try:
                for k in range(1, 100_000):
                    if should_stop is not None and should_stop():
                        raise Cancelled("stopped")
                    for _ in range(10):
                        a = (a @ a).clamp(-1, 1)
                    SEEN["steps"] = k
                    if progress is not None:
                        progress(k, 100_000)  # raises Cancelled once the run is asked to stop
            finally:
                SEEN["stopped"] = True
            return image

    plugin = types.ModuleType("busy_plugin")
    plugin.register_restorers = hookimpl(lambda register: register(Busy()))
    plugins.get_plugin_manager().register(plugin, name="busy_plugin")
"""


def _run_script(body: str, tmp_path) -> subprocess.CompletedProcess:
    script = tmp_path / "scenario.py"
    script.write_text(textwrap.dedent(TORCH_RESTORER) + textwrap.dedent(body))
    env = {**os.environ, "DACLIP_CONFIG_DIR": str(tmp_path / "config")}
    return subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=240, env=env)


@pytest.mark.slow
@pytest.mark.parametrize("close_panel_first", [True, False], ids=["close-panel-then-quit", "quit-mid-run"])
def test_quitting_napari_mid_run_exits_cleanly(tmp_path, close_panel_first):
    result = _run_script(
        f"""
        import torch  # loaded, as it is once a model has run
        viewer = napari.Viewer()
        viewer.add_image(np.zeros((32, 32), np.uint8), name="image")
        dock, widget = viewer.window.add_plugin_dock_widget("daclip-plugin", "Classify and restore")
        widget._restorer.value = "busy"
        state = {{}}

        def start():
            widget.restore()
            state["running"] = widget.running
            poll.start(50)

        def when_busy():
            if SEEN["steps"] < 3:
                return
            poll.stop()
            state["steps_at_close"] = SEEN["steps"]
            if {close_panel_first}:
                dock.title.close_button.click()  # the panel's X
            QTimer.singleShot(1000, quit_napari)

        def quit_napari():
            state["stopped_before_quit"] = SEEN["stopped"]
            viewer.close()

        poll = QTimer()
        poll.timeout.connect(when_busy)
        QTimer.singleShot(500, start)
        napari.run()
        state["steps"] = SEEN["steps"]
        state["stopped"] = SEEN["stopped"]
        print("STATE", json.dumps(state), flush=True)
        """.replace("json.dumps", "__import__('json').dumps"),
        tmp_path,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    state = json.loads(result.stdout.split("STATE", 1)[1])
    assert state["running"] and state["steps_at_close"] >= 3
    assert state["stopped"]  # the run was stopped, not cut off by the exit
    assert state["stopped_before_quit"] is close_panel_first  # closing the panel alone stops it


@pytest.mark.slow
def test_opening_the_panel_does_not_freeze_napari(tmp_path):
    result = _run_script(
        """
        import time
        viewer = napari.Viewer()
        ticks, marks = [], {}

        def tick():
            ticks.append(time.perf_counter())

        timer = QTimer()
        timer.timeout.connect(tick)
        timer.start(20)

        def open_panel():
            marks["open"] = time.perf_counter()
            viewer.window.add_plugin_dock_widget("daclip-plugin", "Classify and restore")
            marks["opened"] = time.perf_counter()

        QTimer.singleShot(1500, open_panel)
        QTimer.singleShot(4000, viewer.close)
        napari.run()
        window = [t for t in ticks if marks["open"] - 0.5 <= t <= marks["opened"] + 1.5]
        gaps = [b - a for a, b in zip(window, window[1:])]
        print("STATE", __import__("json").dumps({"longest": max(gaps), "torch": "torch" in sys.modules}), flush=True)
        """,
        tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    state = json.loads(result.stdout.split("STATE", 1)[1])
    assert not state["torch"]  # listing devices and models loads no engine
    assert state["longest"] < 0.5, state
