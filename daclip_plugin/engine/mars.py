"""MaRS: training-free sampling of the IR-SDE in 5-20 network calls instead of 100.

MaRS (Li et al., "MaRS: A Fast Sampler for Mean Reverting Diffusion based on ODE and SDE
Solvers", ICLR 2025) solves the reverse SDE of the mean-reverting diffusion, or its
probability-flow ODE, semi-analytically in the half log-SNR ``lambda = log(alpha / sigma)``:
the linear part exactly, the network's prediction as a polynomial (order 1-3) through its
last calls, as DPM-Solver++ does for ordinary diffusion. It runs the released noise-predicting
UNets as they are.

Its schedule (:class:`MarsSchedule`) is the IR-SDE's with one difference: theta_0 stays in
the cumulative sum (the official IR-SDE subtracts it), so ``sigma_0 > 0`` and ``lambda`` is
finite at ``t = 0``. ``alpha``, ``sigma`` and ``lambda`` at fractional timesteps are linear
interpolations of their values at ``0..T``; the network is called with those fractional
timesteps (a Python float ``t``). Coefficients are computed in float32, as the reference
implementation does, which reproduces its outputs to about 1e-6.

:func:`iter_mars` (a sampler generator) takes the samplers' common arguments (see
:mod:`daclip_plugin.engine.sde`) and the options of
:data:`~daclip_plugin.engine.samplers.MARS_OPTIONS`; its steps count network calls.
:func:`sample_mars` runs it to the end with callbacks.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable, Optional

import torch
from torch import Tensor

from ..errors import DaclipError, InvalidOptionError
from ..steps import Step, Steps, with_callbacks
from .samplers import MARS_OPTIONS, MARS_SOLVER_ORDERS
from .sde import Draws, IRSDESchedule, NoiseFn, check_condition


@dataclass(frozen=True)
class MarsOptions:
    """MaRS's settings (declared, with their defaults, in :data:`~daclip_plugin.engine.samplers.MARS_OPTIONS`)."""

    steps: int
    solver: str
    order: int
    time_schedule: str
    parameterization: str
    fit_target: str
    lambda_min: float
    rho: float
    timestep_offset: int
    thresholding: bool
    threshold_ratio: float
    threshold_max: float
    denoise_last: bool

    @classmethod
    def from_options(cls, **options) -> "MarsOptions":
        """Validated options over the defaults; refuses an order the solver lacks or fewer steps than the order."""
        settings = cls(**MARS_OPTIONS.resolve("sampler 'mars'", options))
        orders = MARS_SOLVER_ORDERS[settings.solver]
        if settings.order not in orders:
            raise InvalidOptionError(
                f"the {settings.solver} solver of MaRS takes order {' or '.join(map(str, orders))}, not {settings.order}"
            )
        if settings.steps < settings.order:
            raise InvalidOptionError(
                f"MaRS of order {settings.order} needs at least {settings.order} steps, got {settings.steps}"
            )
        return settings


def interpolate(x: Tensor, xp: Tensor, yp: Tensor) -> Tensor:
    """Piecewise-linear ``y(x)`` through the points ``(xp, yp)`` (``xp`` increasing).

    Extended linearly beyond both ends; an ``x`` on a keypoint uses the segment to its left.
    """
    j = (torch.searchsorted(xp, x) - 1).clamp(0, xp.numel() - 2)
    x0, x1, y0, y1 = xp[j], xp[j + 1], yp[j], yp[j + 1]
    return y0 + (x - x0) * (y1 - y0) / (x1 - x0)


class MarsSchedule:
    """``alpha_t``, ``sigma_t`` and ``lambda_t`` of MaRS at the integer timesteps ``0..T``.

    ``x_t`` given ``x_0`` has mean ``mu + (x_0 - mu) alpha_t`` and standard deviation
    ``sigma_t``; all arrays are ``float32`` CPU tensors of shape ``(T + 1,)``.
    """

    def __init__(self, sde: IRSDESchedule) -> None:
        self.T = sde.T
        self.max_sigma = sde.max_sigma
        cumsum = torch.cumsum(sde.thetas, dim=0)  # theta_0 included, unlike the IR-SDE
        dt = -1 / cumsum[-1] * math.log(sde.eps)
        self.t = torch.linspace(0, sde.T, sde.T + 1, dtype=torch.float32)
        self.alpha = torch.exp(-cumsum * dt)
        self.sigma = torch.sqrt(self.max_sigma**2 * (1 - torch.exp(-2 * cumsum * dt)))
        self.lam = torch.log(self.alpha) - torch.log(self.sigma)

    def at(self, timesteps: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``(alpha, sigma, lambda)`` at (possibly fractional) ``timesteps``."""
        return tuple(interpolate(timesteps, self.t, values) for values in (self.alpha, self.sigma, self.lam))

    def timesteps(self, options: MarsOptions) -> Tensor:
        """The ``float32`` timesteps of a run, from high to low: one more than the network calls."""
        n, T, rho = options.steps + 1, self.T, options.rho
        clipped = int(torch.searchsorted(self.lam.flip(0), options.lambda_min))
        top = T - clipped
        schedule = options.time_schedule
        if schedule == "linspace":
            timesteps = torch.linspace(0, top, n, dtype=torch.float32).flip(0)
        elif schedule == "leading":
            timesteps = (torch.arange(0, n, dtype=torch.float32) * (top // n)).flip(0) + options.timestep_offset
        elif schedule == "trailing":
            timesteps = torch.arange(top, 0, -T / n, dtype=torch.float32)
        elif schedule == "karras-n":
            karras_sigma = self.sigma / self.alpha
            low, high = karras_sigma.min().item(), karras_sigma.max().item()
            ramp = torch.linspace(0, 1, n, dtype=torch.float32)
            sigmas = (high ** (1 / rho) + ramp * (low ** (1 / rho) - high ** (1 / rho))) ** rho
            timesteps = interpolate(sigmas, karras_sigma, self.t)
        elif schedule == "karras-t":
            ramp = torch.linspace(0, 1, n, dtype=torch.float32)
            timesteps = (T ** (1 / rho) + ramp * (1.0 ** (1 / rho) - T ** (1 / rho))) ** rho
        else:  # linear-lambda
            low, high = max(self.lam.min().item(), options.lambda_min), self.lam.max().item()
            lambdas = torch.linspace(low, high, n, dtype=torch.float32)
            timesteps = interpolate(lambdas, self.lam.flip(0), self.t.flip(0))
        if timesteps.numel() < 2 or not bool((timesteps[1:] < timesteps[:-1]).all()):
            raise InvalidOptionError(
                f"the {schedule!r} schedule with {options.steps} steps gives repeated timesteps "
                f"({timesteps.tolist()}); take fewer steps or another time schedule"
            )
        return timesteps


def _dynamic_threshold(x: Tensor, ratio: float, largest: float) -> Tensor:
    """Clamp each image to ``[-s, s]`` and divide by ``s``: ``s`` is the ``ratio`` quantile of |x|, in [1, largest]."""
    flat = x.float().reshape(x.shape[0], -1).abs()
    if flat.shape[1] <= 2**24:  # torch.quantile's limit
        s = torch.quantile(flat, ratio, dim=1)
    else:
        position = ratio * (flat.shape[1] - 1)
        below = flat.kthvalue(math.floor(position) + 1, dim=1).values
        above = flat.kthvalue(math.ceil(position) + 1, dim=1).values
        s = torch.lerp(below, above, position - math.floor(position))
    s = s.clamp(min=1, max=largest).reshape(-1, *([1] * (x.dim() - 1)))
    return (torch.clamp(x.float(), -s, s) / s).to(x.dtype)


class _Solver:
    """One MaRS run's coefficients and its buffer of the latest predictions (newest first)."""

    def __init__(self, schedule: MarsSchedule, options: MarsOptions, mu: Tensor) -> None:
        self.options = options
        self.timesteps = schedule.timesteps(options)
        self.alphas, self.sigmas, self.lambdas = schedule.at(self.timesteps)
        self.max_sigma = schedule.max_sigma
        self.mu = mu
        self.buffer: list[Optional[Tensor]] = [None] * options.order

    def prediction(self, output: Tensor, x: Tensor, i: int, parameterization: Optional[str] = None) -> Tensor:
        """The network's ``output`` at state ``x`` (timestep index ``i``) as a data or noise prediction.

        ``parameterization`` defaults to the solver's own.
        """
        a, s, mu, target = self.alphas[i], self.sigmas[i], self.mu, self.options.fit_target
        if (parameterization or self.options.parameterization) == "data":
            if target == "noise":  # (x - s * output) / a - (1 - a) / a * mu, with one new tensor
                value = output.mul(-s).add_(x).div_(a).add_(mu, alpha=-((1 - a) / a).item())
            elif target == "data":
                value = output
            else:
                value = a * x - s / self.max_sigma * output + (1 - a) * mu
        elif target == "noise":
            value = output
        elif target == "data":
            value = (x - mu - (output - mu) * a) / s
        else:
            value = (output * a + (x - mu) * s / self.max_sigma) / self.max_sigma
        if self.options.thresholding:
            value = _dynamic_threshold(value, self.options.threshold_ratio, self.options.threshold_max)
        return value

    def push(self, prediction: Tensor) -> None:
        self.buffer = [prediction] + self.buffer[:-1]

    def forget_oldest(self) -> None:
        """Before a network call: the oldest prediction will not be needed again (it leaves on the next push)."""
        self.buffer[-1] = None

    def _differences(self, i: int, order: int) -> tuple[Tensor, Optional[Tensor], Tensor]:
        """``h``, and the first (and second) divided differences of the predictions."""
        q, lam = self.buffer, self.lambdas
        h = lam[i] - lam[i - 1]
        if order == 1:
            return h, None, None
        r = (lam[i - 1] - lam[i - 2]) / h
        d1 = torch.sub(q[0], q[1]).div_(r)
        if order == 2:
            return h, d1, None
        r_prev = (lam[i - 2] - lam[i - 3]) / h
        d1_prev = (q[1] - q[2]) / r_prev
        return h, d1 + (d1 - d1_prev) * r / (r + r_prev), (d1 - d1_prev) / (r + r_prev)

    def step(self, x: Tensor, i: int, order: int, draw: Optional[Tensor]) -> Tensor:
        """From ``x`` at ``timesteps[i - 1]`` to ``timesteps[i]``, with the prediction just pushed."""
        a, s, a_prev, s_prev, mu = self.alphas[i], self.sigmas[i], self.alphas[i - 1], self.sigmas[i - 1], self.mu
        q0 = self.buffer[0]
        h, d1, d2 = self._differences(i, order)
        data = self.options.parameterization == "data"
        if self.options.solver == "ode" and data:  # the default: in place, few full-size temporaries
            phi1 = torch.exp(-h) - 1
            phi2 = phi1 / h + 1
            if order == 1:
                terms = q0 * phi1
            else:  # phi1 * q0 - phi2 * d1, in d1's own (fresh) memory
                terms = d1.mul_(-phi2).add_(q0, alpha=phi1.item())
            if order == 3:
                terms.add_(d2, alpha=(phi2 / h - 0.5).item())
            out = x.mul_(s / s_prev)  # x is the sampler's own state, replaced by the result
            out.add_(terms, alpha=-a.item())
            del terms
            return out.add_(mu, alpha=(1 - s / s_prev + s / s_prev * a_prev - a).item())
        if self.options.solver == "ode":
            phi1 = torch.exp(h) - 1
            phi2 = phi1 / h - 1
            terms = phi1 * q0 if order == 1 else phi1 * q0 + phi2 * d1
            if order == 3:
                terms = terms + (phi2 / h - 0.5) * d2
            return a / a_prev * x - s * terms + mu * (1 - a / a_prev)
        if data:
            phi1 = 1 - torch.exp(-2 * h)
            out = s / s_prev * torch.exp(-h) * x + a * phi1 * q0
            if order == 2:
                out = out + a * (1 - phi1 / 2 / h) * d1
            out = out + s * torch.sqrt(phi1) * draw
            return out + mu * (1 - a / a_prev * torch.exp(-2 * h) - a * phi1)
        phi1 = torch.exp(h) - 1
        out = a / a_prev * x - 2 * s * phi1 * q0
        if order == 2:
            out = out - 2 * s * (phi1 / h - 1) * d1
        out = out + s * torch.sqrt(torch.exp(2 * h) - 1) * draw
        return out + mu * (1 - a / a_prev)


def mars_calls(schedule: IRSDESchedule, **options) -> list[float]:
    """The timesteps at which a MaRS run with ``options`` calls the network, in order."""
    timesteps = MarsSchedule(schedule).timesteps(MarsOptions.from_options(**options)).tolist()
    return timesteps[:-1]


def iter_mars(
    noise_fn: NoiseFn,
    mu: Tensor,
    schedule: IRSDESchedule,
    *,
    x_T: Optional[Tensor] = None,
    generator: Optional[torch.Generator] = None,
    draws: Optional[Iterable] = None,
    **options,
) -> Steps[Tensor]:
    """Restore with MaRS in ``steps`` network calls (``options``: see :data:`~daclip_plugin.engine.samplers.MARS_OPTIONS`).

    Draws (see :mod:`daclip_plugin.engine.sde`): ``z_0`` for ``x_T`` unless given, then one per step
    for the SDE solver, none for the ODE solver. ``noise_fn`` receives float timesteps.
    The options are checked at once, before any work.
    """
    settings = MarsOptions.from_options(**options)
    check_condition(mu)
    if x_T is not None and x_T.shape != mu.shape:
        raise ValueError(f"x_T has shape {tuple(x_T.shape)}, mu has {tuple(mu.shape)}")
    return _iter_mars(noise_fn, mu, schedule, x_T, Draws(mu, generator, draws), settings)


@torch.no_grad()
def _iter_mars(
    noise_fn: NoiseFn, mu: Tensor, schedule: IRSDESchedule, x_T: Optional[Tensor], source: Draws, settings: MarsOptions
) -> Steps[Tensor]:
    if x_T is None:
        x = mu + source.next() * schedule.max_sigma
    else:
        x = x_T.to(dtype=mu.dtype, device=mu.device, copy=True)  # the solver updates its state in place
    solver = _Solver(MarsSchedule(schedule), settings, mu)
    calls = solver.timesteps.numel() - 1

    def order_at(i: int) -> int:
        """The first steps lack earlier calls; short runs also lower the order towards the end."""
        if i < settings.order:
            return i
        return min(settings.order, calls - i) if calls < 10 and i < calls else settings.order

    for i in range(1, calls + 1):
        solver.forget_oldest()
        time = solver.timesteps[i - 1].item()
        if i == calls and settings.denoise_last:
            x = solver.prediction(noise_fn(x, time), x, i - 1, "data")
        else:  # the network's output lives only until it is turned into a prediction
            solver.push(solver.prediction(noise_fn(x, time), x, i - 1))
            x = solver.step(x, i, order_at(i), source.next() if settings.solver == "sde" else None)
        if bool(torch.isnan(x).any()):
            raise DaclipError(f"MaRS sampling diverged (NaN) at step {i} of {calls}; try more steps or order 1")
        yield Step(i, calls)
    return x


sample_mars = with_callbacks(iter_mars, "sample_mars")
