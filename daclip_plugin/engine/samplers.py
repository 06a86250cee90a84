"""The IR-SDE samplers by name, with the options each takes: adding a sampler is one entry here.

Declarations only: the sampling functions (in :mod:`daclip_plugin.engine.sde` and
:mod:`daclip_plugin.engine.mars`) are imported on first use, so the command line, menus and option
checks read this registry without loading torch.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, replace
from typing import Callable

from ..errors import UnknownNameError
from ..options import Option, OptionSet

#: The orders each MaRS solver supports.
MARS_SOLVER_ORDERS = {"ode": (1, 2, 3), "sde": (1, 2)}
#: Where MaRS's steps fall (Table 2 of Lin et al. 2023; karras-n spaces Karras' sigma evenly
#: in sigma^(1/rho), karras-t the timesteps, linear-lambda the half log-SNR).
MARS_TIME_SCHEDULES = ("linspace", "leading", "trailing", "karras-n", "karras-t", "linear-lambda")

#: Every setting of MaRS; the defaults are those its authors use with DA-CLIP. The first
#: four are the ones the ``daclip`` restorer (and so the CLI and the widget) offers.
MARS_OPTIONS = OptionSet((
    Option("steps", int, 20, "network calls, one per step (10-20 match the 100-step posterior sampler)",
           minimum=1, maximum=1000),
    Option("solver", str, "ode", "ode: deterministic probability-flow ODE; sde: one fresh draw per step",
           choices=tuple(MARS_SOLVER_ORDERS)),
    Option("order", int, 2, "solver order: 1-3 with the ode solver, 1-2 with the sde solver", choices=(1, 2, 3)),
    Option("time_schedule", str, "linspace", "where the steps fall", choices=MARS_TIME_SCHEDULES),
    Option("parameterization", str, "data", "what the solver extrapolates: the clean image or the noise",
           choices=("data", "noise")),
    Option("fit_target", str, "noise", "what the network predicts (the released UNets: noise)",
           choices=("noise", "data", "velocity")),
    Option("lambda_min", float, -5.0, "no step below this half log-SNR (keeps the cosine schedule stable)"),
    Option("rho", float, 7.0, "exponent of the karras schedules", minimum=1.0),
    Option("timestep_offset", int, 0, "added to every 'leading' timestep"),
    Option("thresholding", bool, False, "dynamic thresholding of each prediction (Imagen)"),
    Option("threshold_ratio", float, 0.995, "thresholding's quantile of |prediction|", minimum=0.0, maximum=1.0),
    Option("threshold_max", float, 1.5, "thresholding's largest scale", minimum=1.0),
    Option("denoise_last", bool, False, "the last network call predicts the clean image directly"),
))


@dataclass(frozen=True)
class Sampler:
    """A registered sampler: ``function`` is ``"module:name"``, imported by :meth:`load`.

    The function takes ``(noise_fn, mu, schedule, *, x_T, generator, draws, **options)`` and
    returns a generator of steps, one per network call, that returns the final state (see
    :mod:`daclip_plugin.engine.sde`); ``options`` lists the options a restorer offers for it.
    """

    name: str
    summary: str
    function: str
    options: tuple[Option, ...] = ()

    def load(self) -> Callable:
        module, attribute = self.function.split(":")
        return getattr(importlib.import_module(module), attribute)


SAMPLERS: dict[str, Sampler] = {
    sampler.name: sampler
    for sampler in (
        Sampler("posterior", "the official sampler: exact posterior steps, T (100) network calls",
                "daclip_plugin.engine.sde:iter_posterior"),
        Sampler("sde", "Euler-Maruyama steps of the reverse SDE, T (100) network calls",
                "daclip_plugin.engine.sde:iter_reverse_sde"),
        Sampler("mars", "MaRS fast sampler: 'steps' network calls (default 20)",
                "daclip_plugin.engine.mars:iter_mars", MARS_OPTIONS.options[:4]),
    )
}
DEFAULT_SAMPLER = "posterior"


def get(name: str) -> Sampler:
    """The sampler registered as ``name``."""
    if name not in SAMPLERS:
        raise UnknownNameError(f"unknown sampler {name!r}; available: {', '.join(SAMPLERS)}")
    return SAMPLERS[name]


def sampling_options() -> tuple[Option, ...]:
    """The ``sampler`` option and every sampler's own ones, each applying only with its samplers."""
    summaries = "; ".join(f"{sampler.name}: {sampler.summary}" for sampler in SAMPLERS.values())
    chosen = Option("sampler", str, DEFAULT_SAMPLER, summaries, choices=tuple(SAMPLERS))
    users: dict[str, list[str]] = {}
    first: dict[str, Option] = {}
    for sampler in SAMPLERS.values():
        for option in sampler.options:
            users.setdefault(option.name, []).append(sampler.name)
            first.setdefault(option.name, option)
    own = tuple(replace(option, when={"sampler": tuple(users[name])}) for name, option in first.items())
    return (chosen, *own)


def options_for(values: dict) -> dict:
    """The options among ``values`` that go to the chosen ``values["sampler"]``."""
    names = {option.name for option in get(values["sampler"]).options}
    return {name: value for name, value in values.items() if name in names}
