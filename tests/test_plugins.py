"""The pluggy core: built-ins, third-party plugins through entry points, blocking, clashes."""

from __future__ import annotations

import numpy as np
import pytest

import daclip_plugin
from daclip_plugin.errors import DuplicateNameError, UnknownNameError

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


def test_same_name_from_two_plugins_is_a_clear_error(install_plugin, fresh_plugins):
    install_plugin("first", INVERT_PLUGIN.format(name="twin"))
    install_plugin("second", INVERT_PLUGIN.format(name="twin"))
    fresh_plugins.reload_plugins()
    with pytest.raises(DuplicateNameError) as info:
        daclip_plugin.list_restorers()
    message = str(info.value)
    assert "'twin'" in message and "'first'" in message and "'second'" in message


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
    with pytest.raises(TypeError, match="'nameless'.*without a name"):
        daclip_plugin.list_restorers()


def test_invalid_restorer_output_is_caught(install_plugin, fresh_plugins):
    install_plugin(
        "sloppy",
        """
        import numpy as np
        from daclip_plugin import Restorer, hookimpl

        class Sloppy(Restorer):
            name = "sloppy"
            def restore(self, image, **options):
                return np.full(image.shape, np.nan, np.float32)

        @hookimpl
        def register_restorers(register):
            register(Sloppy())
        """,
    )
    fresh_plugins.reload_plugins()
    with pytest.raises(daclip_plugin.DaclipError, match="'sloppy' returned an invalid result"):
        daclip_plugin.restore(np.zeros((4, 4, 3), np.uint8), restorer="sloppy")


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
