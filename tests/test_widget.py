"""The napari widget: layers in, worker threads with progress and cancel, layers written back.

Fake restorers (see ``FAKE_PLUGIN`` in test_stacks.py) are installed through a real entry
point; one test runs a tiny random DA-CLIP model registered as a named model.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("napari")
pytest.importorskip("pytestqt")

from napari.utils.notifications import notification_manager  # noqa: E402
from test_stacks import FAKE_PLUGIN  # noqa: E402

from daclip_plugin import DaclipError, __version__  # noqa: E402
from daclip_plugin.widget import RESULT_SUFFIX, DaclipWidget, classify_layer, restore_layer  # noqa: E402

WIDGET = "Classify and restore"
TIMEOUT = 20_000


@pytest.fixture
def fake(install_plugin, fresh_plugins):
    install_plugin("fakeplug", FAKE_PLUGIN)
    fresh_plugins.reload_plugins()
    import fakeplug_mod

    fakeplug_mod.CALLS.clear()
    return fakeplug_mod


@pytest.fixture
def open_widget(make_napari_viewer, fake):
    """``open_widget(viewer=None)`` -> (viewer, widget), opened through the plugin's manifest."""

    def open_(viewer=None, restorer="steps"):
        viewer = viewer if viewer is not None else make_napari_viewer()
        _, widget = viewer.window.add_plugin_dock_widget("daclip-plugin", WIDGET)
        assert isinstance(widget, DaclipWidget)
        if restorer is not None:
            widget._restorer.value = restorer
        widget._steps.value = 4  # the fake "steps" restorer names a steps option: the Steps control reaches it
        return viewer, widget

    return open_


def run(qtbot, widget, action="restore", timeout=TIMEOUT):
    """Press a button and wait (processing events) until its worker has finished."""
    button = {"restore": widget._restore_button, "classify": widget._classify_button, "download": widget._download}[action]
    assert button.enabled
    button.native.click()
    qtbot.waitUntil(lambda: not widget.running, timeout=timeout)


def new_notifications(since: int):
    return [str(record.message) for record in notification_manager.records[since:]]


def test_layer_list_follows_the_viewer_and_controls_follow_the_restorer(open_widget):
    viewer, widget = open_widget()
    assert widget._layers.choices == ()
    image = viewer.add_image(np.zeros((8, 8), np.uint8), name="image")
    viewer.add_labels(np.zeros((8, 8), np.uint8), name="labels")
    viewer.add_shapes(name="shapes")
    viewer.add_image(np.zeros((8, 8), bool), name="mask")  # complex images napari cannot even show
    assert [layer.name for layer in widget._layers.choices] == ["image"]
    assert widget._layers.value == [image]  # the first image is selected for you
    image.name = "renamed"
    assert widget._layers._widget._mgui_get_choices()[0][0] == "renamed"
    viewer.layers.remove(image)
    assert widget._layers.choices == ()

    assert {"daclip", "steps", "slow", "broken"} <= set(widget._restorer.choices)
    assert "cpu" in widget._device.choices and "auto" in widget._device.choices
    assert not widget._cancel_button.enabled and not widget._restore_button.enabled  # nothing selected
    # controls a restorer (and its classifier) does not take are greyed out
    widget._restorer.value = "steps"  # seed and steps; its classifier takes a device
    assert widget._seed.enabled and widget._device.enabled and widget._steps.enabled
    assert not widget._model.enabled and not widget._sampler.enabled
    widget._restorer.value = "silent"  # nothing; Classify uses the daclip classifier (model, device)
    assert not widget._seed.enabled and not widget._sampler.enabled and widget._model.enabled
    assert widget._seed.tooltip.startswith("random seed") and "not used by restorer 'silent'" in widget._seed.tooltip
    widget._restorer.value = "daclip"
    # the sampler menu is the restorer's declaration; Steps applies to the samplers that take it
    assert widget._sampler.choices == ("posterior", "sde", "mars")
    assert widget._model.enabled and widget._sampler.enabled and widget._device.enabled
    widget._sampler.value = "posterior"
    assert not widget._steps.enabled
    assert widget.restorer_options().keys() == {"model", "sampler", "seed", "device", "memory_budget", "precision"}
    assert widget.restorer_options()["precision"] == "fp32" and widget._precision.enabled
    # the memory budget: "auto" (the option's default) or MiB
    assert widget._memory.enabled and widget.restorer_options()["memory_budget"] is None
    widget._memory.value = 512
    assert widget.restorer_options()["memory_budget"] == 512
    widget._sampler.value = "mars"
    widget._steps.value = 10
    assert widget._steps.enabled and widget._steps.tooltip.startswith("network calls")
    assert widget.restorer_options() == {**widget.restorer_options(), "sampler": "mars", "steps": 10}
    assert widget.restorer_options().keys() == {"model", "sampler", "steps", "seed", "device", "memory_budget", "precision"}
    widget._restorer.value = "daclip-direct"
    assert not widget._sampler.enabled and not widget._steps.enabled and widget._memory.enabled
    widget._precision.value = "bf16"
    assert widget._precision.enabled and widget.restorer_options()["precision"] == "bf16"
    widget._restorer.value = "steps"
    assert not widget._memory.enabled and not widget._precision.enabled
    widget._restorer.value = "daclip"
    labels = dict((value, label) for label, value in widget._model._widget._mgui_get_choices())
    assert "universal-ir" in labels and "not downloaded" in labels["universal-ir"]
    # choosing a model switches to the restorer it is meant for, if it names one
    widget._model.value = "universal-ir"
    assert widget._restorer.value == "daclip"
    widget._model.value = "tiny"
    assert widget._restorer.value == "daclip-direct"


def test_restore_adds_a_layer_with_the_source_geometry_and_settings(open_widget, qtbot):
    viewer, widget = open_widget()
    data = np.random.default_rng(0).integers(0, 65535, (12, 10), dtype=np.uint16)
    source = viewer.add_image(
        data, name="noisy", scale=(0.5, 0.25), translate=(3, 4), rotate=30, units=("um", "um"),
        metadata={"origin": {"microscope": "A"}}, colormap="magma", contrast_limits=(100, 60000),
    )
    before = (data.copy(), {"origin": {"microscope": "A"}})
    widget._layers.value = [source]
    widget._seed.value = 7
    run(qtbot, widget)

    result = viewer.layers["noisy" + RESULT_SUFFIX]
    # the contrast limits are what maps to [0, 1] (the default intensity choice), and back
    np.testing.assert_array_equal(result.data, 60100 - np.clip(data, 100, 60000))
    assert result.data.dtype == np.uint16
    np.testing.assert_allclose(result.scale, source.scale)
    np.testing.assert_allclose(result.translate, source.translate)
    np.testing.assert_allclose(result.rotate, source.rotate)
    assert result.units == source.units and result.colormap.name == "magma"
    assert tuple(result.contrast_limits) == (100, 60000)
    record = result.metadata["daclip"]
    assert record["restorer"] == "steps" and record["seed"] == 7 and record["version"] == __version__
    assert record["model"] is None and record["source"] == "noisy" and record["classifier"] == "steps"
    assert len(record["probabilities"]) == 10  # the restorer's own classifier ran too
    assert result.metadata["origin"] == {"microscope": "A"}
    assert fake_calls(widget)[-1]["seed"] == 7
    # the source is untouched, data and metadata
    np.testing.assert_array_equal(source.data, before[0])
    assert source.metadata == before[1]
    # progress went to the end, in the widget and the status line
    assert widget._progress.value == widget._progress.max == 4
    assert "done" in widget._status.value
    assert widget.probabilities["noisy"] == record["probabilities"]

    # running again replaces the previous result instead of adding a layer
    widget._seed.value = -1  # "random": no seed
    run(qtbot, widget)
    assert [layer.name for layer in viewer.layers] == ["noisy", "noisy" + RESULT_SUFFIX]
    assert viewer.layers["noisy" + RESULT_SUFFIX] is result and result.metadata["daclip"]["seed"] is None


def fake_calls(widget):
    import fakeplug_mod

    return fakeplug_mod.CALLS


def test_two_layers_rgba_and_float_at_once(open_widget, qtbot):
    viewer, widget = open_widget()
    rgba = np.random.default_rng(1).integers(0, 255, (8, 9, 4), dtype=np.uint8)
    gray = np.random.default_rng(2).random((8, 9)).astype(np.float32) * 0.5
    a = viewer.add_image(rgba, name="rgba", rgb=True)
    b = viewer.add_image(gray, name="gray")
    widget._layers.value = [a, b]
    seen = []
    original = widget._on_yielded
    widget._on_yielded = lambda item: (seen.append(item), original(item))  # connected at the next run
    run(qtbot, widget)
    out_a, out_b = viewer.layers["rgba" + RESULT_SUFFIX], viewer.layers["gray" + RESULT_SUFFIX]
    assert out_a.rgb and out_a.data.shape == rgba.shape and out_a.data.dtype == np.uint8
    np.testing.assert_array_equal(out_a.data[..., :3], 255 - rgba[..., :3])
    np.testing.assert_array_equal(out_a.data[..., 3], rgba[..., 3])  # alpha passes through
    assert out_b.data.dtype == np.float32
    low, high = b.contrast_limits
    np.testing.assert_allclose(out_b.data, low + high - gray, atol=1e-6)
    # every step of both layers was reported, and described with its layer
    progress = [item for item in seen if item[0] == "progress"]
    assert [(number, event.step) for _, number, event in progress] == [(n, k) for n in (0, 1) for k in range(5)]
    assert [item[1] for item in seen if item[0] == "done"] == [0, 1]
    assert "(layer 2/2): step 4/4" in widget.last_run.describe(progress[-1])[2]


def test_stacks_current_slice_all_slices_dask_and_multiscale(open_widget, qtbot):
    dask = pytest.importorskip("dask.array")
    viewer, widget = open_widget()
    data = np.random.default_rng(3).integers(0, 255, (4, 8, 10), dtype=np.uint8)
    source = viewer.add_image(dask.from_array(data, chunks=(1, 8, 10)), name="stack", scale=(2, 1, 1), translate=(10, 0, 0),
                              contrast_limits=(0, 255))
    widget._layers.value = [source]
    assert widget._slices.enabled
    viewer.dims.set_point(0, 10 + 2 * 2)  # world z of slice 2
    widget._slices.value = "current"
    run(qtbot, widget)
    result = viewer.layers["stack" + RESULT_SUFFIX]
    assert result.data.shape == (1, 8, 10)
    np.testing.assert_array_equal(result.data[0], 255 - data[2])
    np.testing.assert_allclose(result.translate, (14, 0, 0))  # placed at its slice
    assert result.metadata["daclip"]["slices"] == "current" and result.metadata["daclip"]["offset"] == [2]

    widget._slices.value = "all"
    run(qtbot, widget)
    assert viewer.layers["stack" + RESULT_SUFFIX] is result and len(viewer.layers) == 2
    assert isinstance(result.data, np.ndarray) and result.data.shape == data.shape
    np.testing.assert_array_equal(result.data, 255 - data)
    np.testing.assert_allclose(result.translate, (10, 0, 0))
    assert len(fake_calls(widget)) == 1 + 4

    # a multiscale layer is restored at full resolution
    pyramid = [np.full((16, 16), 200, np.uint8), np.full((8, 8), 200, np.uint8)]
    multi = viewer.add_image(pyramid, name="pyramid", multiscale=True)
    widget._layers.value = [multi]
    run(qtbot, widget)
    restored = viewer.layers["pyramid" + RESULT_SUFFIX]
    assert not restored.multiscale and restored.data.shape == (16, 16) and (restored.data == 55).all()


def test_cancel_stops_within_a_step_and_adds_nothing(open_widget, fake, qtbot):
    viewer, widget = open_widget(restorer="slow")
    widget._steps.value = 400  # of 10 ms each
    viewer.add_image(np.zeros((8, 8), np.uint8), name="image")
    widget._layers.value = list(widget._layers.choices)
    widget._restore_button.native.click()
    assert widget.running and widget._cancel_button.enabled
    assert not widget._restore_button.enabled and not widget._classify_button.enabled
    # the GUI keeps processing events while the worker runs
    qtbot.waitUntil(lambda: bool(fake.CALLS) and fake.CALLS[-1]["done"] >= 5 and widget._progress.value >= 5, timeout=TIMEOUT)
    widget._cancel_button.native.click()
    at_cancel = fake.CALLS[-1]["done"]
    assert not widget._cancel_button.enabled  # pressed once
    started = time.perf_counter()
    qtbot.waitUntil(lambda: not widget.running, timeout=5000)
    assert time.perf_counter() - started < 2
    assert fake.CALLS[-1]["done"] - at_cancel <= 1  # within one step
    assert [layer.name for layer in viewer.layers] == ["image"]  # nothing partial
    assert "cancelled" in widget._status.value
    assert widget._restore_button.enabled and not widget._cancel_button.enabled
    qtbot.waitUntil(lambda: not any(t.name.startswith("daclip-") for t in threading.enumerate()), timeout=5000)
    # the widget works again afterwards
    widget._restorer.value = "steps"
    run(qtbot, widget)
    assert "image" + RESULT_SUFFIX in viewer.layers
    # closing the widget mid-run stops the work, quietly
    widget._restorer.value = "slow"
    widget._restore_button.native.click()
    qtbot.waitUntil(lambda: fake.CALLS[-1]["done"] >= 2, timeout=TIMEOUT)
    viewer.window.remove_dock_widget(widget.native)
    widget.native.deleteLater()
    qtbot.waitUntil(lambda: not any(t.name.startswith("daclip-") for t in threading.enumerate()), timeout=5000)
    assert fake.CALLS[-1]["done"] < 100
    qtbot.wait(50)


def test_errors_become_notifications(open_widget, qtbot):
    viewer, widget = open_widget(restorer="broken")
    since = len(notification_manager.records)
    widget.restore()  # nothing selected
    assert any("select at least one image layer" in m for m in new_notifications(since))
    viewer.add_image(np.zeros((8, 8), np.uint8), name="image")
    widget._layers.value = list(widget._layers.choices)
    run(qtbot, widget)
    messages = new_notifications(since)
    assert ("DA-CLIP: restore failed on layer 'image': restorer 'broken' (plugin 'fakeplug') failed: "
            "ValueError: the flux capacitor is broken") in messages
    assert [layer.name for layer in viewer.layers] == ["image"]
    assert "failed" in widget._status.value and widget._restore_button.enabled
    # a missing model is caught before any work, with what to do
    widget._restorer.value = "daclip"
    widget._model.value = "universal-ir"
    assert widget._download.enabled
    assert widget.restore() is None
    assert any("press Download" in m for m in new_notifications(since))


def test_classify_shows_probabilities_and_changes_no_layer(open_widget, qtbot):
    viewer, widget = open_widget()
    dark = viewer.add_image(np.full((8, 8), 20, np.uint8), name="dark", metadata={"k": 1})
    bright = viewer.add_image(np.full((8, 8), 230, np.uint8), name="bright")
    widget._layers.value = [dark, bright]
    run(qtbot, widget, "classify")
    assert len(viewer.layers) == 2 and dark.metadata == {"k": 1} and bright.metadata == {}
    assert max(widget.probabilities["dark"], key=widget.probabilities["dark"].get) == "low-light"
    assert max(widget.probabilities["bright"], key=widget.probabilities["bright"].get) == "hazy"
    table = widget._table.table
    assert not table.isHidden() and table.rowCount() == 10 and table.columnCount() == 2
    headers = [table.horizontalHeaderItem(c).text() for c in range(2)]
    rows = [table.verticalHeaderItem(r).text() for r in range(10)]
    top_dark = table.item(rows.index("low-light"), headers.index("dark"))
    assert top_dark.font().bold() and not table.item(rows.index("hazy"), headers.index("dark")).font().bold()
    assert top_dark.text().endswith("%")


def test_console_functions(open_widget, qtbot):
    viewer, widget = open_widget()
    viewer.add_image(np.full((8, 9), 100, np.uint8), name="noisy")
    layer = restore_layer(viewer, "noisy", restorer="steps", steps=2, intensity="dtype")
    assert layer.name == "noisy [restored]" and (layer.data == 155).all()
    assert layer.metadata["daclip"]["options"] == {"steps": 2}
    assert restore_layer(viewer, viewer.layers["noisy"], restorer="steps") is layer  # replaced, not added
    scores = classify_layer(viewer, "noisy", "steps")
    assert len(scores) == 10 and list(scores.values()) == sorted(scores.values(), reverse=True)
    viewer.add_labels(np.zeros((8, 9), np.uint8), name="labels")
    with pytest.raises(DaclipError, match="labels layer"):
        restore_layer(viewer, "labels", restorer="steps")
    with pytest.raises(DaclipError, match="no layer named 'nope'"):
        restore_layer(viewer, "nope", restorer="steps")


TINY_MODEL_PLUGIN = """
    from daclip_plugin.hookspecs import hookimpl
    from daclip_plugin.weights import ModelSpec, WeightFile

    FIELDS = {sde}

    @hookimpl
    def register_models(register):
        register(ModelSpec(
            name="test-tiny",
            description="tiny random DA-CLIP for tests",
            daclip=WeightFile.hub("tester/tiny", "tiny-daclip.pt"),
            unet=WeightFile.hub("tester/tiny", "tiny-unet.pth"),
            **FIELDS,
        ))
"""


def test_tiny_daclip_model_download_classify_restore_and_reuse(
    open_widget, install_plugin, fresh_plugins, tmp_path, monkeypatch, qtbot
):
    from engine_helpers import TINY_SDE, tiny_models

    from daclip_plugin import weights
    from daclip_plugin.weights import checkpoints

    fields = {"sde": TINY_SDE} if "sde" in weights.ModelSpec.__dataclass_fields__ else {}
    install_plugin("tinymodel", TINY_MODEL_PLUGIN.format(sde=repr(fields)))
    fresh_plugins.reload_plugins()
    store, folder = tmp_path / "store", tmp_path / "weights"
    store.mkdir()
    folder.mkdir()
    daclip, unet = tiny_models()
    checkpoints.save_daclip(daclip, store / "tiny-daclip.pt")
    checkpoints.save_unet(unet, store / "tiny-unet.pth")
    monkeypatch.setenv("DACLIP_WEIGHTS_DIR", str(folder))

    def fake_download(name, *, progress=None, should_stop=None, **_):
        files = sorted(store.iterdir())
        total = sum(f.stat().st_size for f in files)
        done = 0
        for f in files:
            (folder / f.name).write_bytes(f.read_bytes())
            done += f.stat().st_size
            progress(done, total)
        return weights.resolve(name)

    monkeypatch.setattr(weights, "download", fake_download)
    loads = []
    for loader in ("load_daclip", "load_unet"):
        original = getattr(checkpoints, loader)
        monkeypatch.setattr(checkpoints, loader, lambda *a, _o=original, _n=loader, **k: (loads.append(_n), _o(*a, **k))[1])

    viewer, widget = open_widget(restorer="daclip")
    source = viewer.add_image(np.random.default_rng(4).integers(0, 255, (16, 16, 3), dtype=np.uint8), name="photo", rgb=True)
    widget._layers.value = [source]
    widget._model.value = "test-tiny"
    widget._device.value = "cpu"
    assert "not downloaded" in dict((v, k) for k, v in widget._model._widget._mgui_get_choices())["test-tiny"]
    since = len(notification_manager.records)
    run(qtbot, widget, "download")
    assert any("'test-tiny' is ready" in m for m in new_notifications(since))
    assert "ready" in dict((v, k) for k, v in widget._model._widget._mgui_get_choices())["test-tiny"]
    assert widget._model.value == "test-tiny" and not widget._download.enabled

    run(qtbot, widget, "classify")
    scores = widget.probabilities["photo"]
    assert len(scores) == 10 and "noisy" in scores and sum(scores.values()) == pytest.approx(1, abs=1e-4)
    run(qtbot, widget)
    result = viewer.layers["photo" + RESULT_SUFFIX]
    assert result.data.shape == (16, 16, 3) and result.data.dtype == np.uint8 and result.rgb
    record = result.metadata["daclip"]
    assert (record["model"], record["sampler"], record["seed"], record["device"]) == ("test-tiny", "posterior", 0, "cpu")
    assert len(record["probabilities"]) == 10
    first = result.data.copy()
    run(qtbot, widget)  # same seed: same result, and the models are not loaded again
    np.testing.assert_array_equal(result.data, first)
    assert sorted(loads) == ["load_daclip", "load_unet"], loads


def test_screenshot_of_the_widget(make_napari_viewer, open_widget, qtbot, tmp_path):
    viewer, widget = open_widget(make_napari_viewer(show=True))
    viewer.window.resize(1280, 860)
    rng = np.random.default_rng(5)
    noisy = viewer.add_image(np.clip(np.linspace(0, 1, 64)[None] + rng.normal(0, 0.2, (3, 64, 64)), 0, 1), name="noisy")
    photo = viewer.add_image(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8), name="photo", rgb=True)
    widget._layers.value = [noisy, photo]
    run(qtbot, widget, "classify")
    widget._layers.value = [noisy]
    qtbot.wait(100)
    image = viewer.screenshot(canvas_only=False, flash=False)
    from PIL import Image as PILImage

    for path in (tmp_path / "widget.png", Path("/tmp/widget_screenshot.png")):
        try:
            PILImage.fromarray(image).save(path)
        except OSError:
            pass
    assert image.ndim == 3 and image.shape[0] > 300 and image.shape[1] > 500
    colours = np.unique(image[..., :3].reshape(-1, 3), axis=0)
    assert len(colours) > 50
    assert (tmp_path / "widget.png").stat().st_size > 10_000
