"""The pluggy core: built-ins, third-party plugins through entry points, blocking, clashes."""

from __future__ import annotations

import numpy as np
import pytest

import daclip_plugin
from daclip_plugin.errors import PluginError, UnknownNameError

INVERT_PLUGIN = """
    import numpy as np
    from daclip_plugin import Classifier, Restorer, hookimpl

    class Invert(Restorer):
        name = "{name}"
        description = "inverts the image"

        def restore(self, image, *, progress=None, should_stop=None, gain=1.0, **options):
            assert image.dtype == np.float32 and image.shape[-1] == 3
            if progress:
                progress(1, 1)
            return np.clip(gain * (1.0 - image), 0, 1)

    class Brightness(Classifier):
        name = "{name}-brightness"

        def classify(self, image, **options):
            bright = float(image.mean())
            return {{"dark": 1.0 - bright, "bright": bright}}

    @hookimpl
    def register_restorers(register):
        register(Invert())

    @hookimpl
    def register_classifiers(register):
        register(Brightness())
"""


def test_builtin_plugin_is_registered(fresh_plugins):
    pm = fresh_plugins.get_plugin_manager()
    assert pm.get_plugin("daclip_plugin.hooks.builtin") is not None


def test_entry_point_plugin_restores(install_plugin, fresh_plugins):
    install_plugin("inverter", INVERT_PLUGIN.format(name="invert"))
    fresh_plugins.reload_plugins()

    assert "invert" in daclip_plugin.list_restorers()
    assert "invert-brightness" in daclip_plugin.list_classifiers()
    assert fresh_plugins.restorers()["invert"].plugin == "inverter"

    image = np.array([[0, 255], [51, 102]], dtype=np.uint8)
    steps = []
    result = daclip_plugin.restore(image, restorer="invert", progress=lambda d, t: steps.append((d, t)))
    np.testing.assert_array_equal(result, 255 - image)
    assert result.dtype == np.uint8
    assert steps == [(1, 1)]
    # options reach the restorer
    half = daclip_plugin.restore(image.astype(np.float32) / 255, restorer="invert", gain=0.5)
    np.testing.assert_allclose(half, 0.5 * (1 - image / 255), atol=1e-6)

    scores = daclip_plugin.classify(np.full((4, 4, 3), 200, np.uint8), classifier="invert-brightness")
    assert list(scores) == ["bright", "dark"]  # most likely first
    assert scores["bright"] == pytest.approx(200 / 255)


@pytest.mark.parametrize("allowed, expected", [("", False), ("someone-else", False), ("inverter", True), (" inverter , x", True)])
def test_environment_variable_blocks_external_plugins(install_plugin, fresh_plugins, monkeypatch, allowed, expected):
    install_plugin("inverter", INVERT_PLUGIN.format(name="invert"))
    monkeypatch.setenv("DACLIP_PLUGINS", allowed)
    fresh_plugins.reload_plugins()
    assert ("invert" in daclip_plugin.list_restorers()) is expected
    # built-ins are never blocked
    assert fresh_plugins.get_plugin_manager().get_plugin("daclip_plugin.hooks.builtin") is not None


def test_same_name_from_two_plugins_keeps_one_and_warns(install_plugin, fresh_plugins):
    install_plugin("first", INVERT_PLUGIN.format(name="twin"))
    install_plugin("second", INVERT_PLUGIN.format(name="twin"))
    fresh_plugins.reload_plugins()
    with pytest.warns(
        RuntimeWarning, match="'twin' is registered twice, by plugin '(first|second)' and by plugin '(first|second)'"
    ):
        names = daclip_plugin.list_restorers()
    assert names.count("twin") == 1 and "daclip" in names


def test_a_plugin_cannot_take_a_built_in_name(install_plugin, fresh_plugins):
    install_plugin("impostor", INVERT_PLUGIN.format(name="daclip"))
    fresh_plugins.reload_plugins()
    with pytest.warns(RuntimeWarning, match="'daclip' is registered twice.*the one of 'daclip_plugin.hooks.builtin' is used"):
        restorer = daclip_plugin.get_restorer("daclip")
    assert type(restorer).__module__ == "daclip_plugin.hooks.builtin"


@pytest.mark.parametrize(
    "source, message",
    [
        ("import sys\nsys.exit(3)\n", "could not load plugin 'bad'.*SystemExit"),
        ("raise RuntimeError('boom')\n", "could not load plugin 'bad'.*boom"),
        (
            "from daclip_plugin import hookimpl\n@hookimpl\ndef register_restorers(register, extra):\n    pass\n",
            "could not load plugin 'bad'.*extra",
        ),
        (
            "from daclip_plugin import hookimpl\n@hookimpl\ndef register_restorers(register):\n    raise ValueError('hook')\n",
            "plugin 'bad' failed in register_restorers: ValueError: hook",
        ),
        (
            "from daclip_plugin import hookimpl\n@hookimpl\ndef register_restorers(register):\n    import sys; sys.exit(1)\n",
            "plugin 'bad' failed in register_restorers: SystemExit",
        ),
    ],
    ids=["sys.exit-at-import", "raises-at-import", "bad-hook-signature", "hook-raises", "hook-exits"],
)
def test_a_broken_plugin_is_skipped_with_one_warning(install_plugin, fresh_plugins, source, message):
    install_plugin("bad", source)
    install_plugin("inverter", INVERT_PLUGIN.format(name="invert"))
    with pytest.warns(RuntimeWarning, match=message):
        fresh_plugins.reload_plugins()
        names = daclip_plugin.list_restorers()
    assert {"daclip", "daclip-direct", "invert"} <= set(names)


def test_unknown_name_lists_the_available_ones(install_plugin, fresh_plugins):
    install_plugin("inverter", INVERT_PLUGIN.format(name="invert"))
    fresh_plugins.reload_plugins()
    with pytest.raises(UnknownNameError, match=r"unknown restorer 'nope'; available: .*invert"):
        daclip_plugin.restore(np.zeros((4, 4)), restorer="nope")
    with pytest.raises(UnknownNameError, match=r"unknown classifier 'nope'; available: .*invert-brightness"):
        daclip_plugin.classify(np.zeros((4, 4)), classifier="nope")


def test_broken_plugin_warns_and_others_still_load(install_plugin, fresh_plugins):
    install_plugin("broken", "raise ImportError('missing dependency xyz')\n")
    install_plugin("inverter", INVERT_PLUGIN.format(name="invert"))
    with pytest.warns(RuntimeWarning, match="could not load plugin 'broken'.*xyz"):
        fresh_plugins.reload_plugins()
    assert "invert" in daclip_plugin.list_restorers()


def test_component_without_name_is_rejected(install_plugin, fresh_plugins):
    install_plugin(
        "nameless",
        """
        from daclip_plugin import Restorer, hookimpl

        @hookimpl
        def register_restorers(register):
            register(Restorer())
        """,
    )
    fresh_plugins.reload_plugins()
    with pytest.warns(RuntimeWarning, match="'nameless'.*without a name; it is skipped"):
        assert "daclip" in daclip_plugin.list_restorers()


BAD_RESULTS_PLUGIN = """
    import numpy as np
    from daclip_plugin import Classifier, Restorer, hookimpl

    RESULTS = {
        "nan": lambda image: np.full(image.shape, np.nan, np.float32),
        "bytes": lambda image: (image * 255).astype(np.uint8),
        "as-0-255": lambda image: image * 255,
        "shape": lambda image: image[1:],
        "list": lambda image: image.tolist(),
        "raises": lambda image: 1 / 0,
    }
    SCORES = {
        "nan-score": {"noisy": float("nan")},
        "negative": {"noisy": -3.0, "hazy": 4.0},
        "text": {"noisy": "high"},
        "a-list": ["noisy"],
        "empty": {},
    }

    class Bad(Restorer):
        def __init__(self, name):
            self.name = name

        def restore(self, image, **options):
            return RESULTS[self.name](image)

    class BadClassifier(Classifier):
        def __init__(self, name):
            self.name = name

        def classify(self, image, **options):
            return SCORES[self.name]

    @hookimpl
    def register_restorers(register):
        for name in RESULTS:
            register(Bad(name))

    @hookimpl
    def register_classifiers(register):
        for name in SCORES:
            register(BadClassifier(name))
"""


@pytest.mark.parametrize(
    "name, message",
    [
        ("nan", "returned NaN or infinite values"),
        ("bytes", "returned uint8 values; expected floats in \\[0, 1\\]"),
        ("as-0-255", "returned values in 100..100; expected floats in \\[0, 1\\]"),
        ("shape", "returned shape \\(7, 8, 3\\); expected a float array of shape \\(8, 8, 3\\)"),
        ("list", "returned list"),
        ("raises", "failed: ZeroDivisionError"),
    ],
)
def test_a_restorers_result_is_checked_and_the_plugin_named(install_plugin, fresh_plugins, name, message):
    install_plugin("sloppy", BAD_RESULTS_PLUGIN)
    fresh_plugins.reload_plugins()
    with pytest.raises(PluginError, match=f"restorer {name!r} \\(plugin 'sloppy'\\) {message}"):
        daclip_plugin.restore(np.full((8, 8, 3), 100, np.uint8), restorer=name)


@pytest.mark.parametrize("name", ["nan-score", "negative", "text", "a-list", "empty"])
def test_a_classifiers_result_is_checked_and_the_plugin_named(install_plugin, fresh_plugins, name):
    install_plugin("sloppy", BAD_RESULTS_PLUGIN)
    fresh_plugins.reload_plugins()
    with pytest.raises(PluginError, match=f"classifier {name!r} \\(plugin 'sloppy'\\) returned"):
        daclip_plugin.classify(np.full((8, 8, 3), 100, np.uint8), classifier=name)


def test_options_a_component_does_not_take_are_named(install_plugin, fresh_plugins):
    install_plugin(
        "strict",
        """
        from daclip_plugin import Restorer, hookimpl

        class Strict(Restorer):
            name = "strict"
            def restore(self, image, *, progress=None, should_stop=None, strength=1.0):
                return image

        @hookimpl
        def register_restorers(register):
            register(Strict())
        """,
    )
    fresh_plugins.reload_plugins()
    image = np.zeros((4, 4, 3), np.uint8)
    daclip_plugin.restore(image, restorer="strict", strength=2.0)
    with pytest.raises(UnknownNameError, match=r"restorer 'strict' does not take option\(s\) sampler, seed; it takes: strength"):
        daclip_plugin.restore(image, restorer="strict", seed=1, sampler="sde")
