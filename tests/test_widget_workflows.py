"""The napari panel and console as a person uses them: defaults, intensity ranges, stacks
steered as one, settings kept, refusals that say why, the README's console lines."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("napari")
pytest.importorskip("pytestqt")

from qtpy.QtGui import QFontMetrics  # noqa: E402
from test_widget import TIMEOUT, run  # noqa: E402

import daclip_plugin  # noqa: E402
from daclip_plugin import api, cli, stacks
from daclip_plugin.engine import pipeline  # noqa: E402
from daclip_plugin.errors import DaclipError, InvalidImageError  # noqa: E402
from daclip_plugin.widget import RESULT_SUFFIX, classify_layer, restore_layer, start_restore  # noqa: E402

WIDGET = "Classify and restore"
README = Path(__file__).resolve().parents[1] / "README.md"


@pytest.fixture
def offline(monkeypatch, tmp_path):
    """Only the embedded model can be found (no network, an empty Hugging Face cache)."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.delenv("DACLIP_WEIGHTS_DIR", raising=False)


def open_panel(viewer):
    _, widget = viewer.window.add_plugin_dock_widget("daclip-plugin", WIDGET)
    return widget


@pytest.fixture
def steps_panel(make_napari_viewer, install_plugin, fresh_plugins):
    """``steps_panel(show=False)``: a viewer and its panel, restoring with the test plugin's ``steps`` restorer."""
    from test_stacks import FAKE_PLUGIN

    install_plugin("fakeplug", FAKE_PLUGIN)
    fresh_plugins.reload_plugins()

    def make(show: bool = False):
        viewer = make_napari_viewer(show=show)
        widget = open_panel(viewer)
        widget._restorer.value = "steps"
        return viewer, widget

    return make


def photo(size=32, seed=0, scale=1.0):
    rng = np.random.default_rng(seed)
    return np.clip(rng.integers(0, 255, (size, size, 3)) * scale, 0, 255).astype(np.uint8)


def test_the_models_own_restorer_is_chosen_everywhere(make_napari_viewer, offline, tmp_path, capsys):
    viewer = make_napari_viewer()
    widget = open_panel(viewer)
    # nothing downloaded: the embedded model is selected at start, with its one-pass restorer
    assert widget._model.value == "tiny" and widget._restorer.value == "daclip-direct"
    widget._model.value = "universal-ir"  # its files do not fit daclip-direct: back to IR-SDE
    assert widget._restorer.value == "daclip"
    widget._model.value = "tiny"
    assert widget._restorer.value == "daclip-direct"

    image = photo()
    layer = viewer.add_image(image, name="photo", rgb=True)
    expected = daclip_plugin.restore(image, restorer="daclip-direct", model="tiny", device="cpu")
    # the Python API, the console and the command line pick the same restorer
    np.testing.assert_array_equal(daclip_plugin.restore(image, model="tiny", device="cpu"), expected)
    result = restore_layer(viewer, layer, model="tiny", device="cpu")
    assert result.metadata["daclip"]["restorer"] == "daclip-direct"
    np.testing.assert_array_equal(result.data, expected)
    from PIL import Image

    Image.fromarray(image).save(tmp_path / "in.png")
    assert cli.main(["restore", str(tmp_path / "in.png"), "-o", str(tmp_path / "out.png"), "--model", "tiny",
                     "--device", "cpu", "-q", "--no-classify"]) == 0
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "out.png")), expected)
    assert api.preferred_restorer("tiny") == "daclip-direct" and api.preferred_restorer(None) == "daclip"


def test_readme_console_lines_run_as_written(make_napari_viewer, offline, qtbot):
    viewer = make_napari_viewer()
    viewer.open_sample("daclip-plugin", "noisy")
    block = re.search(r"From napari's console.*?```python\n(.*?)```", README.read_text(), re.S).group(1)
    namespace = {"viewer": viewer}
    exec(compile(block, "README", "exec"), namespace)  # noqa: S102 (the README's own lines)
    worker = namespace["worker"]
    assert worker is not None and "noisy (DA-CLIP sample) [restored]" not in viewer.layers  # it did not block
    qtbot.waitUntil(lambda: "noisy (DA-CLIP sample) [restored]" in viewer.layers, timeout=60_000)
    record = viewer.layers["noisy (DA-CLIP sample) [restored]"].metadata["daclip"]
    assert record["restorer"] == "daclip-direct" and max(record["probabilities"], key=record["probabilities"].get) == "noisy"
    scores = classify_layer(viewer, viewer.layers["noisy (DA-CLIP sample)"], model="tiny")
    assert max(scores, key=scores.get) == "noisy"


def test_start_restore_can_be_cancelled_and_adds_nothing(make_napari_viewer, offline, qtbot):
    viewer = make_napari_viewer()
    layer = viewer.add_image(photo(48), name="photo", rgb=True)
    worker = start_restore(viewer, layer, restorer="daclip", model="tiny", device="cpu")
    worker.quit()
    qtbot.waitUntil(lambda: not worker.is_running, timeout=TIMEOUT)
    qtbot.wait(200)
    assert [item.name for item in viewer.layers] == ["photo"]


def test_12_bit_data_in_uint16_is_read_in_its_shown_range(make_napari_viewer, install_plugin, fresh_plugins, qtbot):
    from test_stacks import FAKE_PLUGIN

    install_plugin("fakeplug", FAKE_PLUGIN)
    fresh_plugins.reload_plugins()
    viewer = make_napari_viewer()
    data = np.random.default_rng(0).integers(2000, 4096, (12, 16), dtype=np.uint16)  # a bright 12-bit image
    layer = viewer.add_image(data, name="cells", contrast_limits=(0, 4095))
    # classified in the range it is shown in, it is bright; read against 0..65535, it looks dark
    shown = classify_layer(viewer, layer, "steps")
    assert max(shown, key=shown.get) == "hazy"
    full = classify_layer(viewer, layer, "steps", intensity="dtype")
    assert max(full, key=full.get) == "low-light"
    result = restore_layer(viewer, layer, restorer="steps", steps=1)
    np.testing.assert_array_equal(result.data, 4095 - data)  # inverted within 0..4095, not 0..65535
    assert tuple(result.contrast_limits) == (0, 4095) and result.metadata["daclip"]["value_range"] == [0, 4095]
    widget = open_panel(viewer)
    widget._restorer.value = "steps"
    widget._intensity.value = "dtype"
    widget._layers.value = [layer]
    run(qtbot, widget)
    np.testing.assert_array_equal(result.data, 65535 - data)
    assert tuple(result.contrast_limits) == (float(result.data.min()), float(result.data.max()))  # not a white square


def _count_daclip_passes(monkeypatch) -> list:
    passes = []
    original = pipeline.ConditionedModel.estimate
    monkeypatch.setattr(pipeline.ConditionedModel, "estimate", lambda self, rgb: (passes.append(1), original(self, rgb))[1])
    return passes


def test_a_stack_is_steered_by_one_estimate_and_daclip_runs_once_per_slice(make_napari_viewer, offline, monkeypatch):
    viewer = make_napari_viewer()
    stack = np.stack([photo(32, seed=1, scale=s) for s in (1.0, 0.8, 0.6, 0.4)])
    layer = viewer.add_image(stack, name="timelapse", rgb=True)
    passes = _count_daclip_passes(monkeypatch)
    result = restore_layer(viewer, layer, model="tiny", device="cpu")  # all slices, steered by their mean
    record = result.metadata["daclip"]
    assert record["conditioning"] == "mean" and len(passes) == 4  # one DA-CLIP pass per slice, not two
    steering = list(record["slice_probabilities"].values())
    assert len(steering) == 4 and all(item == steering[0] for item in steering)
    passes.clear()
    each = restore_layer(viewer, layer, model="tiny", device="cpu", conditioning="each").metadata["daclip"]
    assert len(passes) == 4 and len({str(v) for v in each["slice_probabilities"].values()}) == 4
    passes.clear()
    viewer.dims.set_point(0, 2)
    current = restore_layer(viewer, layer, model="tiny", device="cpu", conditioning="current").metadata["daclip"]
    assert len(passes) == 1 and current["conditioning"] == "current" and current["reference"] == [2]
    assert all(v == each["slice_probabilities"]["[2]"] for v in current["slice_probabilities"].values())


def test_bad_values_anywhere_in_a_stack_are_refused_before_any_work(install_plugin, fresh_plugins):
    from test_stacks import FAKE_PLUGIN

    install_plugin("fakeplug", FAKE_PLUGIN)
    fresh_plugins.reload_plugins()
    import fakeplug_mod

    fakeplug_mod.CALLS.clear()
    data = np.random.default_rng(0).random((3, 8, 8)).astype(np.float32)
    data[2, 4, 4] = np.nan
    with pytest.raises(InvalidImageError, match=r"slice \(2,\) has NaN"):
        stacks.restore_stack(data, "steps")
    assert fakeplug_mod.CALLS == []  # no slice was restored first


def test_settings_are_kept_when_the_panel_is_closed_and_reopened(make_napari_viewer, offline):
    viewer = make_napari_viewer()
    widget = open_panel(viewer)
    widget._restorer.value = "daclip"
    widget._sampler.value = "mars"
    widget._steps.value = 12
    widget._seed.value = 5
    widget._device.value = "cpu"
    widget._memory.value = 1024
    widget._intensity.value = "data"
    widget._follow.value = True
    viewer.window.remove_dock_widget(widget.native)  # the panel's X
    assert widget._closed
    again = open_panel(make_napari_viewer())  # a new panel, as in a new session
    assert again is not widget
    values = (again._restorer.value, again._sampler.value, again._steps.value, again._seed.value,
              again._device.value, again._memory.value, again._intensity.value, again._follow.value)
    assert values == ("daclip", "mars", 12, 5, "cpu", 1024, "data", True)


def test_a_refused_run_says_why_in_the_status_line(make_napari_viewer, offline, qtbot):
    viewer = make_napari_viewer()
    widget = open_panel(viewer)
    assert widget._restorer.value == "daclip-direct", widget._restorer.choices
    viewer.add_image(photo(), name="photo", rgb=True)
    run(qtbot, widget)
    assert "done" in widget._status.value
    widget._model.value = "universal-ir"  # not downloaded
    assert widget.restore() is None
    assert "'universal-ir' is not on this computer" in widget._status.value
    viewer.add_image(np.zeros((3, 3), np.uint8), name="speck")
    widget._layers.value = [viewer.layers["speck"]]
    assert widget.restore() is None and "needs at least 8 x 8 px" in widget._status.value


def test_the_probability_table_shows_ten_layers_in_full(steps_panel, qtbot):
    viewer, widget = steps_panel(show=True)
    layers = [viewer.add_image(np.full((8, 8), 10 * k, np.uint8), name=f"layer {k}") for k in range(10)]
    widget._layers.value = layers
    run(qtbot, widget, "classify")
    table = widget._table.table
    metrics = QFontMetrics(table.font())
    for column in range(table.columnCount()):
        for row in range(table.rowCount()):
            text = table.item(row, column).text()
            assert "..." not in text and metrics.horizontalAdvance(text) <= table.columnWidth(column)


def test_the_layer_list_can_follow_napari_selection(make_napari_viewer):
    viewer = make_napari_viewer()
    first = viewer.add_image(np.zeros((8, 8), np.uint8), name="first")
    second = viewer.add_image(np.zeros((8, 8), np.uint8), name="second")
    widget = open_panel(viewer)
    viewer.layers.selection.active = first
    assert widget._layers.value == [second] or widget._layers.value == [first]
    widget._follow.value = True
    viewer.layers.selection.active = second
    assert widget._layers.value == [second]
    viewer.layers.selection.active = first
    assert widget._layers.value == [first]
    widget._follow.value = False
    viewer.layers.selection.active = second
    assert widget._layers.value == [first]


def test_small_images_are_refused_with_a_clear_message(make_napari_viewer):
    viewer = make_napari_viewer()
    viewer.add_image(np.zeros((3, 3), np.uint8), name="speck")
    with pytest.raises(DaclipError, match="3 x 3 px; it needs at least 8 x 8 px"):
        restore_layer(viewer, "speck", model="tiny")
    with pytest.raises(InvalidImageError, match="needs at least 8 x 8 px"):
        daclip_plugin.restore(np.zeros((3, 3), np.uint8), model="tiny", device="cpu")
    assert RESULT_SUFFIX  # nothing was written


def test_the_panel_is_compact(make_napari_viewer):
    viewer = make_napari_viewer(show=True)
    viewer.add_image(np.zeros((8, 8), np.uint8), name="image")
    widget = open_panel(viewer)
    widget._model.value = "universal-ir-mix"  # the longest entry must not widen the panel
    assert widget.native.minimumSizeHint().width() <= 340


def test_a_users_layer_with_the_results_name_is_never_replaced(make_napari_viewer, offline):
    viewer = make_napari_viewer()
    viewer.add_image(photo(), name="cells", rgb=True)
    notes = viewer.add_labels(np.ones((32, 32), np.uint8), name="cells [restored]")
    first = restore_layer(viewer, "cells", model="tiny")
    assert first.name == "cells [restored] (2)" and viewer.layers["cells [restored]"] is notes
    again = restore_layer(viewer, "cells", model="tiny")  # an earlier result is updated in place
    assert again is first and len(viewer.layers) == 3
    np.testing.assert_array_equal(notes.data, 1)


def test_a_failure_names_the_layer_that_failed(steps_panel, qtbot):
    viewer, widget = steps_panel()
    good = viewer.add_image(np.full((8, 8), 0.5, np.float32), name="good")
    broken = np.full((8, 8), 0.5, np.float32)
    broken[2, 2] = np.inf
    bad = viewer.add_image(broken, name="bad", contrast_limits=(0, 1))
    widget._layers.value = [good, bad]
    run(qtbot, widget)
    assert widget._status.value.startswith("Restoring failed on layer 'bad': the image has NaN or infinite")
    assert "good [restored]" in viewer.layers


def test_the_probability_table_stays_short_and_shortens_long_names(steps_panel, qtbot):
    viewer, widget = steps_panel(show=True)
    name = "a very long layer name from a microscope file, channel 2 - GFP.tif"
    widget._layers.value = [viewer.add_image(np.full((8, 8), 10, np.uint8), name=name)]
    before = widget.native.minimumSizeHint().height()
    run(qtbot, widget, "classify")
    table = widget._table.table
    assert table.rowCount() == 10 and table.height() < table.horizontalHeader().height() + 8 * table.rowHeight(0) + 40
    assert widget.native.minimumSizeHint().height() - before < 250
    header = table.horizontalHeaderItem(0)
    assert len(header.text()) <= 15 and header.text().endswith("GFP.tif") and header.toolTip() == name


def test_current_slice_is_refused_when_another_plane_is_shown(make_napari_viewer):
    viewer = make_napari_viewer()
    viewer.add_image(np.zeros((6, 16, 20), np.uint8), name="stack")
    viewer.dims.order = (1, 0, 2)
    with pytest.raises(DaclipError, match="shows axes \\(0, 2\\): show axes \\(1, 2\\) in 2D, or restore all slices"):
        restore_layer(viewer, "stack", model="tiny", slices="current")
    viewer.dims.order = (0, 1, 2)
    viewer.dims.ndisplay = 3
    with pytest.raises(DaclipError, match="the viewer shows a 3D view"):
        restore_layer(viewer, "stack", model="tiny", slices="current")


def test_the_progress_bar_does_not_fall_back_to_busy_between_slices():
    from daclip_plugin.gui.jobs import Run, Task
    from daclip_plugin.gui.layers import LayerJob
    from daclip_plugin.stacks import StackProgress

    class Layer:
        name = "stack"

    job = LayerJob(layer=Layer(), data=np.zeros((4, 8, 8)), rgb=False, index=None)
    run = Run(Task.RESTORE, [job])
    assert run.describe(("progress", 0, StackProgress("estimate", (0,), 0, 4, 0, 0)))[:2] == (0, 0)  # nothing known yet
    assert run.describe(("progress", 0, StackProgress("restore", (0,), 0, 4, 4, 4)))[:2] == (4, 16)
    done, total, text = run.describe(("progress", 0, StackProgress("estimate", (1,), 1, 4, 0, 0)))
    assert (done, total) == (4, 16) and "estimating, slice 2/4" in text


def test_the_table_follows_renamed_and_removed_layers(steps_panel, qtbot):
    viewer, widget = steps_panel()
    cells = viewer.add_image(np.full((8, 8), 10, np.uint8), name="cells")
    tissue = viewer.add_image(np.full((8, 8), 200, np.uint8), name="tissue")
    widget._layers.value = [cells, tissue]
    run(qtbot, widget, "classify")
    cells.name = "cells_day2"
    viewer.layers.remove(tissue)
    assert list(widget.probabilities) == ["cells_day2"]
    table = widget._table.table
    assert table.columnCount() == 1 and table.horizontalHeaderItem(0).toolTip() == "cells_day2"


def test_a_long_layer_name_does_not_widen_the_panel(steps_panel, qtbot):
    viewer, widget = steps_panel(show=True)
    name = "acquisition_2024_03_12_sampleA_region3_channel_GFP_deconvolved_maxproj.ome.tif"
    widget._layers.value = [viewer.add_image(np.full((4, 8, 8), 10, np.uint8), name=name)]
    before = widget.native.minimumSizeHint().width()
    widget._slices.value = "all"
    run(qtbot, widget)
    assert widget.native.minimumSizeHint().width() <= before
    status = widget.last_run.describe(("progress", 0, stacks.StackProgress("restore", (1,), 1, 4, 1, 2)))[2]
    assert "\u2026" in status and name not in status


def test_steering_by_the_shown_slice_is_refused_when_another_plane_is_shown(make_napari_viewer):
    viewer = make_napari_viewer()
    viewer.add_image(np.zeros((6, 16, 20), np.uint8), name="stack")
    viewer.dims.order = (1, 0, 2)
    with pytest.raises(DaclipError, match="the shown slice is a plane of its last two axes"):
        restore_layer(viewer, "stack", model="tiny", slices="all", conditioning="current")

