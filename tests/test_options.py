"""Options declared once as data: checks, conditions, routing, and what reads them (API, CLI)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import daclip_plugin
from daclip_plugin import cli, options
from daclip_plugin.errors import InvalidOptionError, UnknownNameError
from daclip_plugin.options import Option, OptionSet

SET = OptionSet((
    Option("mode", str, "fast", "how", choices=("fast", "slow")),
    Option("steps", int, 5, "calls", minimum=1, maximum=50, when={"mode": ("slow",)}),
    Option("seed", int, 0, "seed", nullable=True, minimum=0),
    Option("gain", float, 1.0, "gain", minimum=0.0),
    Option("verbose", bool, False, "talk"),
    Option("weights", Path, None, "file", nullable=True),
    Option("prompts", list, None, "words", nullable=True),
))


@pytest.mark.parametrize(
    "given, expected",
    [
        ({"mode": "slow", "steps": 7}, {"mode": "slow", "steps": 7}),
        ({"seed": None, "gain": 2}, {"seed": None, "gain": 2.0}),
        ({"seed": np.int64(3), "verbose": True}, {"seed": 3, "verbose": True}),
        ({"verbose": np.bool_(True), "gain": np.float32(0.5)}, {"verbose": True, "gain": 0.5}),
        ({"weights": "w.pt", "prompts": ("a", "b")}, {"weights": Path("w.pt"), "prompts": ["a", "b"]}),
    ],
)
def test_values_are_checked_and_converted(given, expected):
    checked = SET.check("restorer 'x'", given)
    assert checked == expected
    assert type(checked.get("seed") or 0) is int and type(checked.get("gain", 1.0)) is float


@pytest.mark.parametrize(
    "given, message",
    [
        ({"mode": "medium"}, "option 'mode' of restorer 'x' must be one of 'fast', 'slow'; got 'medium'"),
        ({"seed": 1.5}, "'seed' .* an integer \\(>= 0\\) or None; got 1.5"),
        ({"seed": "abc"}, "'seed'.*got 'abc'"),
        ({"seed": True}, "'seed'"),
        ({"seed": -1}, "'seed'"),
        ({"gain": float("nan")}, "'gain'"),
        ({"gain": 10**400}, "'gain' .* a number"),
        ({"verbose": 1}, "'verbose' .* True or False"),
        ({"weights": 123}, "'weights' .* a file path"),
        ({"weights": ""}, "'weights'"),
        ({"prompts": "noisy"}, "'prompts' .* a list of distinct, non-empty strings"),
        ({"prompts": []}, "'prompts'"),
        ({"prompts": ["a", "a"]}, "'prompts'"),
        ({"prompts": ["a", " "]}, "'prompts'"),
        ({"mode": "slow", "steps": 51}, "'steps' .* <= 50"),
        ({"steps": 3}, "option 'steps' of restorer 'x' applies only with mode='slow' \\(here mode='fast'\\)"),
    ],
)
def test_bad_values_name_the_option_and_what_it_accepts(given, message):
    with pytest.raises(InvalidOptionError, match=message):
        SET.check("restorer 'x'", given)


def test_unknown_options_list_what_is_taken():
    with pytest.raises(UnknownNameError, match="restorer 'x' does not take option\\(s\\) colour; it takes: mode, steps, seed"):
        SET.check("restorer 'x'", {"colour": "red"})


def test_resolve_fills_defaults_and_applicable_follows_conditions():
    assert SET.resolve("x", {"mode": "slow"})["steps"] == 5
    settings = {"mode": "fast", "steps": 9, "seed": 2, "other": 1}
    assert SET.applicable(settings) == {"mode": "fast", "seed": 2}
    assert SET.applicable({**settings, "mode": "slow"}) == {"mode": "slow", "steps": 9, "seed": 2}


def test_undeclared_components_are_read_from_their_signature():
    class Plain:
        def restore(self, image, *, progress=None, should_stop=None, amount=1.0):
            return image

    class Open:
        def restore(self, image, *, progress=None, **options):
            return image

    plain, open_ = options.of(Plain()), options.of(Open())
    assert not plain.declared and plain.names() == ["amount"] and plain.get("amount").default == 1.0
    assert plain.check("r", {"amount": "anything"}) == {"amount": "anything"}  # not checked
    with pytest.raises(UnknownNameError):
        plain.check("r", {"gain": 1})
    assert open_.open and open_.check("r", {"gain": 1}) == {"gain": 1}
    assert open_.applicable({"gain": 1}) == {}  # settings reach only what a signature names


def test_route_shares_options_and_refuses_what_nobody_takes():
    restorer = OptionSet((Option("model"), Option("seed", int, 0)))
    classifier = OptionSet((Option("model"), Option("prompts", list, None, nullable=True)))
    assert options.route({"model": "m", "seed": 1}, ("r", restorer), ("c", classifier)) == [
        {"model": "m", "seed": 1}, {"model": "m"},
    ]
    assert options.route({"seed": 1}, ("r", restorer), ("c", None)) == [{"seed": 1}, {}]
    with pytest.raises(UnknownNameError, match="no component takes option\\(s\\) gain \\(r takes: model, seed; c takes"):
        options.route({"gain": 2}, ("r", restorer), ("c", classifier))


DECLARING_PLUGIN = """
    from daclip_plugin import Restorer, hookimpl
    from daclip_plugin.options import Option

    SEEN = []

    class Brighten(Restorer):
        name = "brighten"
        options = (Option("amount", float, 0.1, "how much brighter", minimum=0.0, maximum=1.0),
                   Option("clip", bool, True, "clip to [0, 1]"))

        def restore(self, image, *, progress=None, should_stop=None, **given):
            o = self.resolve_options(given)
            SEEN.append(o)
            out = image + o["amount"]
            return out.clip(0, 1) if o["clip"] else out

    @hookimpl
    def register_restorers(register):
        register(Brighten())
"""


def test_a_plugin_declares_its_options_and_gets_checks_and_cli_flags(install_plugin, fresh_plugins, tmp_path, capsys):
    from PIL import Image

    install_plugin("brightener", DECLARING_PLUGIN)
    fresh_plugins.reload_plugins()
    image = np.full((4, 4, 3), 0.5, np.float32)
    np.testing.assert_allclose(daclip_plugin.restore(image, restorer="brighten", amount=0.25), 0.75)
    with pytest.raises(InvalidOptionError, match="option 'amount' of restorer 'brighten' must be a number"):
        daclip_plugin.restore(image, restorer="brighten", amount="lots")

    parser = cli.build_parser()
    assert "--amount" in parser.format_help() or "--amount" in _subcommand_help(parser, "restore")
    source = tmp_path / "in.png"
    Image.fromarray(np.full((4, 4, 3), 100, np.uint8)).save(source)
    target = tmp_path / "out.png"
    assert cli.main(["restore", str(source), "-o", str(target), "--restorer", "brighten", "--amount", "0.5",
                     "--no-clip", "--no-classify", "-q"]) == 0
    import brightener_mod

    assert brightener_mod.SEEN[-1] == {"amount": 0.5, "clip": False}
    assert abs(int(np.asarray(Image.open(target)).min()) - 227.5) <= 0.5  # 100 + 0.5 * 255
    assert cli.main(["restore", str(source), "-o", str(target), "--restorer", "brighten", "--amount", "2",
                     "--no-classify", "-q", "--overwrite"]) == 2
    assert "option 'amount' of restorer 'brighten' must be a number (>= 0, <= 1); got 2.0" in capsys.readouterr().err


def _subcommand_help(parser, name: str) -> str:
    import contextlib
    import io

    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit):
        parser.parse_args([name, "--help"])
    return out.getvalue()
