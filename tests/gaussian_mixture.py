"""A restoration problem whose exact noise predictor is known: samplers' accuracy without weights.

Every pixel's clean value ``x0`` is drawn from one 1-D mixture of Gaussians; ``mu`` is a fixed
degraded image. Under the IR-SDE forward process, ``x_t`` given ``x0`` is Gaussian with mean
``mu + (x0 - mu) alpha_t`` and standard deviation ``sigma_t`` (the official schedule:
``alpha_t = exp(-thetas_cumsum[t] dt)``, ``sigma_t = sigma_bars[t]``; linear in between
integer timesteps, as MaRS evaluates it). The marginal of ``x_t`` is then a mixture too, and
the noise predictor a perfectly trained network would learn, ``E[noise | x_t]``, has a closed
form. A sampler driven by it should return values distributed as the mixture; the
1-D Wasserstein distance between its output (pooled over pixels) and the mixture measures
how far its discretisation is from the exact reverse process.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from scipy.special import ndtr

from daclip_plugin.engine.mars import interpolate
from daclip_plugin.engine.sde import IRSDESchedule

WEIGHTS = (0.3, 0.45, 0.25)
MEANS = (0.15, 0.5, 0.82)
STDS = (0.04, 0.09, 0.03)


@dataclass
class MixtureProblem:
    """The degraded image ``mu`` (float64) and the exact noise predictor for ``schedule``."""

    schedule: IRSDESchedule
    mu: torch.Tensor

    @classmethod
    def build(cls, size: int = 64, schedule: IRSDESchedule | None = None) -> "MixtureProblem":
        yy, xx = torch.meshgrid(
            torch.linspace(0, 1, size, dtype=torch.float64), torch.linspace(0, 1, size, dtype=torch.float64), indexing="ij"
        )
        channels = [0.3 + 0.4 * xx, 0.5 + 0.2 * torch.sin(6 * yy), 0.7 - 0.4 * xx * yy]
        return cls(schedule or IRSDESchedule(), torch.stack(channels)[None])

    def _alpha_sigma(self, t: float) -> tuple[float, float]:
        alphas = torch.exp(-self.schedule.thetas_cumsum.double() * self.schedule.dt)
        grid = torch.arange(self.schedule.T + 1, dtype=torch.float64)
        at = torch.tensor([float(t)], dtype=torch.float64)
        alpha = interpolate(at, grid, alphas)[0].item()
        sigma = interpolate(at, grid, self.schedule.sigma_bars.double())[0].item()
        return alpha, sigma

    def noise_fn(self, x: torch.Tensor, t: float) -> torch.Tensor:
        """``E[noise | x_t = x]`` under the forward process (exact, float64)."""
        alpha, sigma = self._alpha_sigma(t)
        mu = self.mu.to(x)
        log_r, clean = [], []
        for w, m, s in zip(WEIGHTS, MEANS, STDS):
            mean = mu + (m - mu) * alpha
            var = (s * alpha) ** 2 + sigma**2
            log_r.append(math.log(w) - 0.5 * math.log(var) - (x - mean) ** 2 / (2 * var))
            clean.append(m + s**2 * alpha / var * (x - mean))  # E[x0 | x_t, component]
        r = torch.softmax(torch.stack(log_r), dim=0)
        expected_x0 = (r * torch.stack(clean)).sum(dim=0)
        return (x - mu - (expected_x0 - mu) * alpha) / sigma


def mixture_quantiles(count: int) -> np.ndarray:
    """The mixture's quantiles at ``(i + 0.5) / count``, ``i = 0..count-1``."""
    grid = np.linspace(-0.5, 1.5, 200_001)
    cdf = sum(w * ndtr((grid - m) / s) for w, m, s in zip(WEIGHTS, MEANS, STDS))
    return np.interp((np.arange(count) + 0.5) / count, cdf, grid)


def wasserstein_to_mixture(samples: torch.Tensor) -> float:
    """1-D Wasserstein distance between the pooled ``samples`` and the mixture."""
    values = np.sort(samples.detach().cpu().double().numpy().ravel())
    return float(np.mean(np.abs(values - mixture_quantiles(values.size))))
