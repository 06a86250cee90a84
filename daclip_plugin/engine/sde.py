"""IR-SDE: the mean-reverting SDE of DA-CLIP and its two reverse samplers.

The forward process ``dx = theta_t (mu - x) dt + sigma_t dW`` pulls a clean image ``x_0``
towards the degraded image ``mu``; at ``t = T`` the state is ``mu`` plus Gaussian noise of
standard deviation ``max_sigma``.  Restoration runs the process backwards from
``x_T = mu + max_sigma * z`` with a network that predicts the noise of ``x_t``.

Timesteps are integers ``0..T`` (index ``t`` of every schedule array); a sampler takes
``T`` steps, from ``t = T`` down to ``t = 1``, each producing the state at ``t - 1``.

The schedule is computed in ``float32``, exactly as the official implementation does, and so
are the per-step scalar coefficients; this reproduces the official samplers to about 1e-7.

Samplers are generators (registered by name in :mod:`daclip_plugin.engine.samplers`) with one
signature; each yields a :class:`~daclip_plugin.steps.Step` after every network call and
returns the final state::

    sampler(noise_fn, mu, schedule, *, x_T=None, generator=None, draws=None) -> Steps[Tensor]

``noise_fn(x, t)`` predicts the noise of state ``x`` at timestep ``t`` (here the Python ints
``T`` down to 1; :mod:`daclip_plugin.engine.mars` passes floats); ``mu`` is the condition (the
low-quality image).  The start is ``x_T`` if given, else
``mu + max_sigma * z_0``.  Standard-normal draws are taken in order of use (``z_0`` first,
unless ``x_T`` is given; then ``z_k`` for step ``k = 1..T``, from ``t = T - k + 1`` to
``t - 1``) from the iterable ``draws`` if given (tensors or arrays shaped like ``mu``), else
from ``generator`` (torch's global generator when None; it must live on ``mu``'s device).
Samplers run without autograd, in ``mu``'s dtype and device, and never clamp their output.
:func:`sample_posterior` and :func:`sample_reverse_sde` run them to the end with callbacks
(``progress(done, T)`` after each step, ``should_stop()`` polled before each one; see
:func:`daclip_plugin.steps.drive`).
"""

from __future__ import annotations

import functools
import math
from typing import Callable, Iterable, Mapping, Optional

import torch
from torch import Tensor

from ..steps import Step, Steps, with_callbacks

#: Predicts the noise of the state ``x`` at timestep ``t`` (an int here, a float for MaRS).
NoiseFn = Callable[[Tensor, float], Tensor]

_SCHEDULE_NAMES = {
    "cosine": "cosine",
    "linear": "linear",
    "constant": "constant",
    "const": "constant",
}
_COSINE_OFFSET = 0.008


def _cosine_thetas(T: int) -> Tensor:
    """``1 - abar`` of the improved-DDPM cosine curve over ``T + 2`` steps, both ends cut."""
    n = T + 2
    x = torch.linspace(0, n, n + 1, dtype=torch.float32)
    abar = torch.cos(((x / n) + _COSINE_OFFSET) / (1 + _COSINE_OFFSET) * math.pi * 0.5) ** 2
    abar = abar / abar[0]
    return 1 - abar[1:-1]


def _linear_thetas(T: int) -> Tensor:
    """The DDPM linear beta range, rescaled to ``T + 1`` steps."""
    scale = 1000 / (T + 1)
    return torch.linspace(scale * 0.0001, scale * 0.02, T + 1, dtype=torch.float32)


def _constant_thetas(T: int) -> Tensor:
    return torch.ones(T + 1, dtype=torch.float32)


_THETA_BUILDERS = {
    "cosine": _cosine_thetas,
    "linear": _linear_thetas,
    "constant": _constant_thetas,
}


class IRSDESchedule:
    """The IR-SDE coefficients ``theta_t``, ``sigma_t`` and their closed-form consequences.

    ``max_sigma`` is given in 0..255 units and divided by 255 (like the official code, a
    value below 1 is taken as already divided).  ``dt`` is chosen so that
    ``exp(-thetas_cumsum[T] * dt) == eps``: at ``t = T`` only ``eps`` of ``x_0 - mu`` is left.

    Attributes ``thetas``, ``sigmas``, ``thetas_cumsum`` and ``sigma_bars`` are ``float32``
    CPU tensors of shape ``(T + 1,)`` indexed by timestep; ``dt`` is a float (a ``float32``
    value).  Methods taking images work on any device and dtype, and take the condition
    ``mu`` explicitly.
    """

    def __init__(
        self,
        max_sigma: float = 50.0,
        T: int = 100,
        schedule: str = "cosine",
        eps: float = 0.005,
    ) -> None:
        kind = _SCHEDULE_NAMES.get(str(schedule).strip().lower())
        if kind is None:
            raise ValueError(f"unknown IR-SDE schedule {schedule!r}; choose cosine, linear or constant")
        if isinstance(T, bool) or int(T) != T or T < 1:
            raise ValueError(f"T must be a positive integer, got {T!r}")
        if not max_sigma > 0:
            raise ValueError(f"max_sigma must be positive, got {max_sigma!r}")
        if not 0 < eps < 1:
            raise ValueError(f"eps must lie in (0, 1), got {eps!r}")

        self.T = int(T)
        self.schedule = kind
        self.eps = float(eps)
        self.max_sigma = max_sigma / 255 if max_sigma >= 1 else float(max_sigma)

        var_scale = self.max_sigma**2
        self.thetas = _THETA_BUILDERS[kind](self.T)
        self.sigmas = torch.sqrt(var_scale * 2 * self.thetas)
        # theta_0 belongs to no step: the cumulative sum starts from zero at t = 0.
        self.thetas_cumsum = torch.cumsum(self.thetas, dim=0) - self.thetas[0]
        self._dt = -1 / self.thetas_cumsum[-1] * math.log(self.eps)
        self.dt = self._dt.item()
        self.sigma_bars = torch.sqrt(var_scale * (1 - torch.exp(-2 * self.thetas_cumsum * self._dt)))

    @classmethod
    def from_config(cls, config: Mapping) -> "IRSDESchedule":
        """Build from an ``sde`` options dict (``max_sigma``, ``T``, ``schedule``, ``eps``).

        The official ``sampling_mode`` key is accepted and ignored (samplers are chosen by
        name, see :mod:`daclip_plugin.engine.samplers`); any other unknown key is an error.
        """
        known = {"max_sigma", "T", "schedule", "eps"}
        unknown = set(config) - known - {"sampling_mode"}
        if unknown:
            raise ValueError(f"unknown IR-SDE option(s): {', '.join(sorted(unknown))}")
        return cls(**{key: config[key] for key in known if key in config})

    def __repr__(self) -> str:
        return f"IRSDESchedule(max_sigma={self.max_sigma * 255:g}/255, T={self.T}, schedule={self.schedule!r}, eps={self.eps:g})"

    # -- float32 scalar coefficients -------------------------------------------------------

    def _check_t(self, t: int) -> None:
        if not 1 <= t <= self.T:
            raise ValueError(f"timestep must lie in 1..{self.T}, got {t}")

    def _decay(self, t: int, factor: float = 1.0) -> Tensor:
        """``exp(-factor * thetas_cumsum[t] * dt)`` as a float32 scalar tensor."""
        return torch.exp(-factor * self.thetas_cumsum[t] * self._dt)

    def _step_decay(self, t: int, factor: float = 1.0) -> Tensor:
        """``exp(-factor * thetas[t] * dt)``: the decay of the single step ``t -> t - 1``."""
        return torch.exp(-factor * self.thetas[t] * self._dt)

    def sigma_bar(self, t: int) -> float:
        """Standard deviation of ``x_t`` given ``x_0``."""
        return self.sigma_bars[t].item()

    def posterior_coefficients(self, t: int) -> tuple[float, float]:
        """``(a, b)`` such that :meth:`posterior_mean` is ``a (x_t - mu) + b (x_0 - mu) + mu``."""
        self._check_t(t)
        step, total, previous = self._step_decay(t), self._decay(t), self._decay(t - 1)
        a = step * (1 - previous**2) / (1 - total**2)
        b = previous * (1 - step**2) / (1 - total**2)
        return a.item(), b.item()

    def posterior_std(self, t: int) -> float:
        """Standard deviation of ``x_{t-1}`` given ``x_t`` and ``x_0`` (0 at ``t = 1``)."""
        self._check_t(t)
        step, total = self._step_decay(t, 2), self._decay(t, 2)
        previous = self._decay(t - 1, 2)
        variance = (1 - step) * (1 - previous) / (1 - total)
        return (torch.sqrt(variance) * self.max_sigma).item()

    # -- closed forms ----------------------------------------------------------------------

    def mu_bar(self, x0: Tensor, mu: Tensor, t: int) -> Tensor:
        """Mean of ``x_t`` given ``x_0``: ``mu + (x0 - mu) * exp(-thetas_cumsum[t] * dt)``."""
        return mu + (x0 - mu) * self._decay(t).item()

    def true_noise(self, x: Tensor, x0: Tensor, mu: Tensor, t: int) -> Tensor:
        """The standard-normal noise that turns ``x0`` into ``x`` at timestep ``t``."""
        return (x - self.mu_bar(x0, mu, t)) / self.sigma_bar(t)

    def x0_from_noise(self, x: Tensor, noise: Tensor, mu: Tensor, t: int) -> Tensor:
        """The clean image implied by state ``x`` and its predicted ``noise`` at ``t``."""
        growth = torch.exp(self.thetas_cumsum[t] * self._dt).item()
        return (x - mu - self.sigma_bar(t) * noise) * growth + mu

    def score_from_noise(self, noise: Tensor, t: int) -> Tensor:
        """The score ``grad log p(x_t)`` implied by the predicted noise."""
        return -noise / self.sigma_bar(t)

    def posterior_mean(self, x: Tensor, x0: Tensor, mu: Tensor, t: int) -> Tensor:
        """The optimal reverse step: mean of ``x_{t-1}`` given ``x_t = x`` and ``x_0``."""
        a, b = self.posterior_coefficients(t)
        return a * (x - mu) + b * (x0 - mu) + mu

    def reverse_drift(self, x: Tensor, score: Tensor, mu: Tensor, t: int) -> Tensor:
        """Euler increment ``(theta_t (mu - x) - sigma_t^2 score) dt`` of the reverse SDE."""
        theta, sigma2 = self.thetas[t].item(), (self.sigmas[t] ** 2).item()
        return (theta * (mu - x) - sigma2 * score) * self.dt

    def diffusion(self, t: int) -> float:
        """``sigma_t``: the reverse SDE adds ``sigma_t * sqrt(dt) * z`` at step ``t``."""
        return self.sigmas[t].item()

    # -- one reverse step ------------------------------------------------------------------

    def posterior_step(self, x: Tensor, noise: Tensor, mu: Tensor, t: int, z: Tensor) -> Tensor:
        """Draw ``x_{t-1}`` from the posterior given ``x_t`` and the ``x_0`` the noise implies."""
        x0 = self.x0_from_noise(x, noise, mu, t)
        return self.posterior_mean(x, x0, mu, t) + self.posterior_std(t) * z

    def reverse_sde_step(self, x: Tensor, noise: Tensor, mu: Tensor, t: int, z: Tensor) -> Tensor:
        """One Euler-Maruyama step of the reverse SDE from ``t`` to ``t - 1``."""
        self._check_t(t)
        drift = self.reverse_drift(x, self.score_from_noise(noise, t), mu, t)
        return x - drift - self.diffusion(t) * (z * math.sqrt(self.dt))


    # -- batches with one timestep per sample (training) ----------------------------------

    @staticmethod
    def _per_sample(values: Tensor, t: Tensor) -> Tensor:
        """``values[t]`` for a ``(B,)`` tensor of timesteps, shaped to broadcast over ``(B, C, H, W)``."""
        return values.to(t.device)[t].view(-1, 1, 1, 1)

    @functools.cached_property
    def _posterior_table(self) -> tuple[Tensor, Tensor]:
        """:meth:`posterior_coefficients` of every timestep as float32 tensors (index 0 unused)."""
        a, b = zip((0.0, 0.0), *(self.posterior_coefficients(t) for t in range(1, self.T + 1)))
        return torch.tensor(a, dtype=torch.float32), torch.tensor(b, dtype=torch.float32)

    def add_noise(self, x0: Tensor, mu: Tensor, noise: Tensor, t: Tensor) -> Tensor:
        """Forward process for a batch: ``x_t = mu + (x0 - mu) exp(-thetas_cumsum[t] dt) + sigma_bar[t] noise``.

        ``t`` holds one timestep per sample (like diffusers' ``add_noise``).
        """
        decay = torch.exp(-self.thetas_cumsum * self.dt)
        return mu + (x0 - mu) * self._per_sample(decay, t) + self._per_sample(self.sigma_bars, t) * noise

    def reverse_mean(self, x: Tensor, noise: Tensor, mu: Tensor, t: Tensor) -> Tensor:
        """Mean of the reverse-SDE step from ``x_t`` given the predicted ``noise``, one timestep per sample."""
        score = -noise / self._per_sample(self.sigma_bars, t)
        theta, sigma2 = self._per_sample(self.thetas, t), self._per_sample(self.sigmas**2, t)
        return x - (theta * (mu - x) - sigma2 * score) * self.dt

    def optimal_reverse_mean(self, x: Tensor, x0: Tensor, mu: Tensor, t: Tensor) -> Tensor:
        """:meth:`posterior_mean` for a batch, one timestep per sample: the target of training."""
        a, b = self._posterior_table
        return self._per_sample(a, t) * (x - mu) + self._per_sample(b, t) * (x0 - mu) + mu


class Draws:
    """Standard-normal draws shaped like ``like``: from an iterable, or else from a generator."""

    def __init__(
        self,
        like: Tensor,
        generator: Optional[torch.Generator],
        draws: Optional[Iterable],
    ) -> None:
        if generator is not None and draws is not None:
            raise ValueError("pass either generator or draws, not both")
        self._like = like
        self._generator = generator
        self._draws = None if draws is None else iter(draws)
        self._used = 0

    def next(self) -> Tensor:
        like = self._like
        if self._draws is None:
            return torch.randn(like.shape, generator=self._generator, device=like.device, dtype=like.dtype)
        try:
            draw = next(self._draws)
        except StopIteration:
            raise ValueError(f"draws ran out after {self._used} draws") from None
        draw = torch.as_tensor(draw, dtype=like.dtype, device=like.device)
        if draw.shape != like.shape:
            raise ValueError(f"draw {self._used} has shape {tuple(draw.shape)}, expected {tuple(like.shape)}")
        self._used += 1
        return draw


def check_condition(mu: Tensor) -> None:
    if not isinstance(mu, Tensor) or not mu.is_floating_point():
        raise TypeError("mu must be a floating-point torch.Tensor")


def initial_state(
    mu: Tensor,
    schedule: IRSDESchedule,
    *,
    generator: Optional[torch.Generator] = None,
    draw=None,
) -> Tensor:
    """``x_T = mu + max_sigma * z``, with ``z`` given as ``draw`` or drawn from ``generator``."""
    check_condition(mu)
    z = Draws(mu, generator, None if draw is None else [draw]).next()
    return mu + z * schedule.max_sigma


Update = Callable[[IRSDESchedule, Tensor, Tensor, Tensor, int, Tensor], Tensor]


@torch.no_grad()
def _iter_sample(
    update: Update,
    noise_fn: NoiseFn,
    mu: Tensor,
    schedule: IRSDESchedule,
    x_T: Optional[Tensor],
    generator: Optional[torch.Generator],
    draws: Optional[Iterable],
) -> Steps[Tensor]:
    check_condition(mu)
    source = Draws(mu, generator, draws)
    if x_T is None:
        x = initial_state(mu, schedule, draw=source.next())
    elif x_T.shape != mu.shape:
        raise ValueError(f"x_T has shape {tuple(x_T.shape)}, mu has {tuple(mu.shape)}")
    else:
        x = x_T.to(dtype=mu.dtype, device=mu.device)
    total = schedule.T
    for done, t in enumerate(range(total, 0, -1)):
        x = update(schedule, x, noise_fn(x, t), mu, t, source.next())
        yield Step(done + 1, total)
    return x


def iter_posterior(
    noise_fn: NoiseFn,
    mu: Tensor,
    schedule: IRSDESchedule,
    *,
    x_T: Optional[Tensor] = None,
    generator: Optional[torch.Generator] = None,
    draws: Optional[Iterable] = None,
) -> Steps[Tensor]:
    """Restore by sampling the exact Gaussian posterior of each ``x_{t-1}`` (official default).

    See the module docstring for the arguments.
    """
    return _iter_sample(IRSDESchedule.posterior_step, noise_fn, mu, schedule, x_T, generator, draws)


def iter_reverse_sde(
    noise_fn: NoiseFn,
    mu: Tensor,
    schedule: IRSDESchedule,
    *,
    x_T: Optional[Tensor] = None,
    generator: Optional[torch.Generator] = None,
    draws: Optional[Iterable] = None,
) -> Steps[Tensor]:
    """Restore by Euler-Maruyama integration of the reverse SDE (the paper-era sampler).

    See the module docstring for the arguments.
    """
    return _iter_sample(IRSDESchedule.reverse_sde_step, noise_fn, mu, schedule, x_T, generator, draws)


sample_posterior = with_callbacks(iter_posterior, "sample_posterior")
sample_reverse_sde = with_callbacks(iter_reverse_sde, "sample_reverse_sde")
