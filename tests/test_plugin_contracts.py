"""What a plugin can and cannot do to the others, and the caller's side of the API contract."""

from __future__ import annotations

import importlib.metadata
import threading
import warnings

import numpy as np
import pytest

import daclip_plugin
from daclip_plugin import cli, weights
from daclip_plugin.cli_flags import given
from daclip_plugin.errors import Cancelled, DaclipError, InvalidImageError, InvalidOptionError, PluginError

CLASHING_OPTIONS_PLUGIN = """
    from daclip_plugin import Restorer, hookimpl
    from daclip_plugin.options import Option

    class Clashing(Restorer):
        name = "a-first"  # sorts before every built-in restorer
        options = (
            Option("steps", float, 5.0, "my steps"),
            Option("tile_size", int, 64, "my tiles"),
            Option("images", str, "x", "my images"),
            Option("run", int, 1, "my run"),
            Option("option_names", str, "y", "mine too"),
        )

        def restore(self, image, *, progress=None, should_stop=None, **options):
            return image

    @hookimpl
    def register_restorers(register):
        register(Clashing())
"""


def test_a_plugins_option_declarations_leave_the_built_in_flags_alone(install_plugin, fresh_plugins, capsys):
    install_plugin("clash", CLASHING_OPTIONS_PLUGIN)
    fresh_plugins.reload_plugins()
    argv = ["restore", "in.png", "--model", "tiny", "--restorer", "daclip", "--sampler", "mars", "--steps", "2",
            "--tile-size", "none"]
    args = cli.build_parser().parse_args(argv)
    assert args.images == ["in.png"] and args.run is cli.cmd_restore
    assert given(args) == {"model": "tiny", "sampler": "mars", "steps": 2, "tile_size": None}  # none: given as None
    assert isinstance(given(args)["steps"], int)
    assert given(cli.build_parser().parse_args(["restore", "in.png", "--seed", "none"])) == {"seed": None}  # fresh noise
    # the plugin's own options keep their flags, apart from the command's names
    args = cli.build_parser().parse_args(["restore", "in.png", "--restorer", "a-first", "--steps", "2.5", "--images", "z",
                                          "--run", "3"])
    assert args.images == ["in.png"] and given(args) == {"steps": 2.5, "images": "z", "run": 3}
    with pytest.raises(SystemExit):
        cli.build_parser().parse_args(["restore", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert "--steps STEPS network calls" in help_text and "my steps" not in help_text


MALFORMED_PLUGIN = """
    from daclip_plugin import Restorer, hookimpl
    from daclip_plugin.options import Option

    class Malformed(Restorer):
        name = "malformed"
        options = {declaration}
        def restore(self, image, **options):
            return image

    class Fine(Restorer):
        name = "fine"
        def restore(self, image, **options):
            return image

    @hookimpl
    def register_restorers(register):
        register(Malformed())
        register(Fine())
"""


@pytest.mark.parametrize(
    "declaration, trouble",
    [
        ("Option('gain', float, 1.0)", "declares its options as Option"),
        ("('gain',)", "not daclip_plugin.options.Option objects"),
        ("(Option('gain', float, 1.0), Option('gain', int, 2))", "repeated, reserved or not identifiers \\(gain\\)"),
        ("(Option('estimate', float, 1.0),)", "repeated, reserved or not identifiers \\(estimate\\)"),
        ("(Option('my-gain', float, 1.0),)", "not identifiers"),
        ("(Option('value_range', str, 'x'),)", "repeated, reserved or not identifiers \\(value_range\\)"),
    ],
    ids=["not-a-tuple", "not-options", "repeated", "reserved", "not-an-identifier", "an-api-argument"],
)
def test_a_malformed_option_declaration_skips_that_component_only(install_plugin, fresh_plugins, capsys, declaration,
                                                                    trouble):
    install_plugin("malformed", MALFORMED_PLUGIN.format(declaration=declaration))
    fresh_plugins.reload_plugins()
    with pytest.warns(RuntimeWarning, match=f"plugin 'malformed'.*registered <Malformed 'malformed'>, which .*{trouble}"):
        names = daclip_plugin.list_restorers()
    assert "malformed" not in names and {"fine", "daclip", "daclip-direct"} <= set(names)
    assert cli.main(["plugins"]) == 0  # (warned once already)
    assert "fine" in capsys.readouterr().out


def test_components_without_their_method_are_skipped(install_plugin, fresh_plugins):
    install_plugin("hollow", """
        from daclip_plugin import hookimpl

        class Hollow:
            name = "hollow"

        @hookimpl
        def register_restorers(register):
            register(Hollow())

        @hookimpl
        def register_classifiers(register):
            register(Hollow())
        """)
    fresh_plugins.reload_plugins()
    with pytest.warns(RuntimeWarning, match="which has no restore or iter_restore method"):
        assert "hollow" not in daclip_plugin.list_restorers()
    with pytest.warns(RuntimeWarning, match="which has no classify method"):
        assert "hollow" not in daclip_plugin.list_classifiers()


def test_a_model_that_is_not_a_model_spec_is_skipped_and_the_others_work(install_plugin, fresh_plugins):
    install_plugin("notamodel", """
        import types
        from daclip_plugin import hookimpl

        @hookimpl
        def register_models(register):
            register(types.SimpleNamespace(name="ns-model"))
        """)
    fresh_plugins.reload_plugins()
    with pytest.warns(RuntimeWarning, match="plugin 'notamodel'.*which is a SimpleNamespace, not a daclip_plugin.weights"):
        names = [spec.name for spec in weights.list_models()]
    assert "tiny" in names and "ns-model" not in names
    assert daclip_plugin.api.preferred_restorer("tiny") == "daclip-direct"


def test_of_two_plugins_with_one_name_the_one_loaded_first_wins(install_plugin, fresh_plugins):
    install_plugin("first", TWIN.format(tag="first"))
    install_plugin("second", TWIN.format(tag="second"))
    fresh_plugins.reload_plugins()
    order = [ep.name for ep in importlib.metadata.entry_points(group="daclip_plugin") if ep.name in ("first", "second")]
    with pytest.warns(RuntimeWarning, match=f"the one of {order[0]!r} is used"):
        kept = fresh_plugins.restorers()["twin"]
    assert kept.plugin == order[0] and kept.component.tag == order[0]


TWIN = """
    from daclip_plugin import Restorer, hookimpl

    class Twin(Restorer):
        name = "twin"
        tag = "{tag}"
        def restore(self, image, **options):
            return image

    @hookimpl
    def register_restorers(register):
        register(Twin())
"""

COUNTING_PLUGIN = """
    import threading, time
    from daclip_plugin import Restorer, hookimpl

    CALLS = []

    class Counted(Restorer):
        name = "counted"
        def restore(self, image, **options):
            return image

    @hookimpl
    def register_restorers(register):
        CALLS.append(threading.current_thread().name)
        time.sleep(0.2)  # a slow plugin: other threads ask meanwhile
        register(Counted())
"""


def test_plugins_are_discovered_once_whichever_threads_ask(install_plugin, fresh_plugins):
    install_plugin("counting", COUNTING_PLUGIN)
    fresh_plugins.reload_plugins()
    start, found = threading.Barrier(4), []

    def ask():
        start.wait()
        found.append(daclip_plugin.get_restorer("counted"))

    threads = [threading.Thread(target=ask) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    import counting_mod

    assert len(counting_mod.CALLS) == 1 and len(found) == 4 and all(item is found[0] for item in found)


GENERATOR_PLUGIN = """
    from daclip_plugin import Restorer, Step, hookimpl

    class Steps(Restorer):
        name = "steps"
        def iter_restore(self, image, **options):
            for done in range(1, 4):
                yield Step(done, 3)
            return image

    class Callbacks(Restorer):
        name = "callbacks"
        def restore(self, image, *, progress=None, should_stop=None, **options):
            if should_stop is not None and should_stop():
                raise RuntimeError("stopped")
            if progress is not None:
                progress(1, 1)
            return image

    @hookimpl
    def register_restorers(register):
        register(Steps())
        register(Callbacks())
"""


def test_iter_restore_stops_a_generator_restorer_when_asked(install_plugin, fresh_plugins):
    install_plugin("gen", GENERATOR_PLUGIN)
    fresh_plugins.reload_plugins()
    image = np.zeros((8, 8, 3), np.uint8)
    asked = []
    work = daclip_plugin.iter_restore(image, "steps", should_stop=lambda: len(asked) >= 2)
    with pytest.raises(Cancelled, match="after 2 of 3 steps"):
        for step in work:
            asked.append(step)
    assert len(asked) == 2
    assert list(daclip_plugin.iter_restore(image, "steps", should_stop=lambda: False))[-1].done == 3


def test_the_callers_own_callback_errors_are_not_blamed_on_the_plugin(install_plugin, fresh_plugins):
    install_plugin("gen", GENERATOR_PLUGIN)
    fresh_plugins.reload_plugins()
    image = np.zeros((8, 8, 3), np.uint8)
    for restorer in ("steps", "callbacks"):
        with pytest.raises(ZeroDivisionError):
            daclip_plugin.restore(image, restorer, progress=lambda done, total: 1 / 0)
        with pytest.raises(ZeroDivisionError):
            daclip_plugin.restore(image, restorer, should_stop=lambda: 1 / 0)
        with pytest.raises(ZeroDivisionError):
            list(daclip_plugin.iter_restore(image, restorer, should_stop=lambda: 1 / 0))


def test_an_estimate_is_checked_before_it_reaches_the_restorer(install_plugin, fresh_plugins):
    install_plugin("gen", GENERATOR_PLUGIN)
    fresh_plugins.reload_plugins()
    image = np.zeros((8, 8, 3), np.uint8)
    with pytest.raises(InvalidOptionError, match="estimate must be a daclip_plugin.interfaces.Estimate.*got 'bad'"):
        daclip_plugin.restore(image, model="tiny", estimate="bad")
    estimate = daclip_plugin.interfaces.Estimate({"noisy": 1.0})
    with pytest.raises(InvalidOptionError, match="restorer 'steps' takes no estimate"):
        daclip_plugin.restore(image, "steps", estimate=estimate)


@pytest.mark.parametrize("model", [["tiny"], 3, b"tiny"])
def test_a_model_that_is_not_a_name_is_an_option_error(model):
    image = np.zeros((8, 8, 3), np.uint8)
    for call in (daclip_plugin.restore, daclip_plugin.iter_restore, daclip_plugin.api.estimate):
        with pytest.raises(InvalidOptionError, match="option 'model' must be text"):
            call(image, model=model)


@pytest.mark.parametrize("restorer", ["daclip", "daclip-direct"])
def test_built_in_generators_check_device_and_precision_when_made(restorer):
    image = np.zeros((16, 16, 3), np.uint8)
    with pytest.raises(DaclipError, match="precision 'fp16' needs"):
        daclip_plugin.iter_restore(image, restorer, model="tiny", device="cpu", precision="fp16")


def test_an_image_too_large_for_memory_is_a_clear_error():
    huge = np.broadcast_to(np.float32(0.5), (10**6, 10**6, 3))  # 11 TiB as float RGB, a few bytes as a view
    with pytest.raises(InvalidImageError, match=r"too large for this machine's memory \(its float RGB copy alone takes"):
        daclip_plugin.restore(huge, model="tiny")


def test_a_folder_given_as_a_checkpoint_is_named_as_such(tmp_path):
    with pytest.raises(DaclipError, match="a folder, not a file"):
        daclip_plugin.restore(np.zeros((16, 16, 3), np.uint8), model="tiny", daclip_path=tmp_path)


def test_a_plugin_failure_is_still_blamed_on_the_plugin(install_plugin, fresh_plugins):
    install_plugin("gen", GENERATOR_PLUGIN.replace("progress(1, 1)", "progress(1 / 0, 1)"))
    fresh_plugins.reload_plugins()
    with pytest.raises(PluginError, match="restorer 'callbacks' \\(plugin 'gen'\\) failed: ZeroDivisionError"):
        daclip_plugin.restore(np.zeros((8, 8, 3), np.uint8), "callbacks", progress=lambda done, total: None)


def test_the_cli_shows_a_plugins_registration_warning_as_one_line(install_plugin, fresh_plugins, capsys):
    install_plugin("malformed", MALFORMED_PLUGIN.format(declaration='"gain"'))
    fresh_plugins.reload_plugins()
    with warnings.catch_warnings():
        warnings.simplefilter("default")
        assert cli.main(["plugins"]) == 0
    [line] = capsys.readouterr().err.splitlines()
    assert line.startswith("daclip: warning: daclip-plugin: plugin 'malformed'") and "it is skipped" in line
