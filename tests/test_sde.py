"""Tests of the IR-SDE schedule and samplers (fast: analytic noise predictors only)."""

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from daclip_plugin.engine import mars, samplers, sde
from daclip_plugin.engine.sde import IRSDESchedule, initial_state, sample_posterior, sample_reverse_sde
from daclip_plugin.errors import Cancelled

KINDS = ["cosine", "linear", "constant"]
BOTH = [sample_posterior, sample_reverse_sde]


def image(seed, shape=(1, 3, 8, 8), dtype=torch.float32):
    return torch.rand(shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def smooth_noise_fn(mu):
    """A cheap, nonlinear, time-dependent stand-in for the network."""
    return lambda x, t: 0.3 * torch.tanh(2 * (x - mu)) + 0.01 * t * torch.sin(x)


# -- schedule ------------------------------------------------------------------------------


@settings(max_examples=40, deadline=None)
@given(
    kind=st.sampled_from(KINDS),
    T=st.integers(1, 300),
    max_sigma=st.floats(1, 255),
    eps=st.floats(1e-4, 0.5),
)
def test_schedule_properties(kind, T, max_sigma, eps):
    s = IRSDESchedule(max_sigma=max_sigma, T=T, schedule=kind, eps=eps)
    sigma = max_sigma / 255
    assert s.max_sigma == pytest.approx(sigma)
    for name in ["thetas", "sigmas", "thetas_cumsum", "sigma_bars"]:
        array = getattr(s, name)
        assert array.shape == (T + 1,) and array.dtype == torch.float32
        assert torch.isfinite(array).all()
    assert (s.thetas > 0).all()
    assert s.thetas_cumsum[0] == 0 and s.sigma_bars[0] == 0
    assert (s.thetas_cumsum.diff() > 0).all()
    assert (s.sigma_bars.diff() >= 0).all()
    torch.testing.assert_close(s.sigmas**2, 2 * sigma**2 * s.thetas, rtol=1e-5, atol=0)
    # dt is chosen so that exactly eps of x0 - mu survives at t = T ...
    assert math.exp(-s.thetas_cumsum[T].item() * s.dt) == pytest.approx(eps, rel=1e-4)
    # ... hence sigma_bar(T)^2 = max_sigma^2 (1 - eps^2).
    assert s.sigma_bar(T) == pytest.approx(sigma * math.sqrt(1 - eps**2), rel=1e-5)


def test_schedule_matches_closed_forms_in_float64():
    T, eps, sigma = 100, 0.005, 50 / 255
    n = T + 2
    abar = [math.cos((i / n + 0.008) / 1.008 * math.pi / 2) ** 2 for i in range(n + 1)]
    thetas = np.array([1 - a / abar[0] for a in abar[1:-1]])
    cumsum = np.cumsum(thetas) - thetas[0]
    dt = -math.log(eps) / cumsum[-1]
    s = IRSDESchedule(50, T, "cosine", eps)
    np.testing.assert_allclose(s.thetas.numpy(), thetas, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(s.thetas_cumsum.numpy(), cumsum, rtol=1e-5, atol=1e-6)
    assert s.dt == pytest.approx(dt, rel=1e-6)
    np.testing.assert_allclose(
        s.sigma_bars.numpy(), sigma * np.sqrt(1 - np.exp(-2 * cumsum * dt)), rtol=1e-5
    )
    linear = IRSDESchedule(50, T, "linear", eps).thetas.numpy()
    np.testing.assert_allclose(linear, np.linspace(0.1, 20, T + 1) / (T + 1), rtol=1e-5)
    assert (IRSDESchedule(50, T, "constant", eps).thetas == 1).all()


def test_schedule_names_units_and_config():
    reference = IRSDESchedule(50, 20, "constant", 0.01)
    for spelling in ["const", "Constant", " constant "]:
        same = IRSDESchedule(50, 20, spelling, 0.01)
        assert torch.equal(same.sigma_bars, reference.sigma_bars)
    assert IRSDESchedule(50 / 255, 20, "const", 0.01).max_sigma == reference.max_sigma
    config = {"max_sigma": 50, "T": 20, "schedule": "constant", "eps": 0.01}
    built = IRSDESchedule.from_config({**config, "sampling_mode": "posterior"})
    assert torch.equal(built.sigma_bars, reference.sigma_bars) and built.dt == reference.dt
    with pytest.raises(ValueError, match="unknown IR-SDE option"):
        IRSDESchedule.from_config({**config, "maxsigma": 50})
    bad_options = [
        dict(schedule="quadratic"), dict(T=0), dict(T=2.5), dict(eps=1.0), dict(max_sigma=0)
    ]
    for bad in bad_options:
        with pytest.raises(ValueError):
            IRSDESchedule(**bad)


def test_posterior_step_is_the_gaussian_posterior():
    """Mean and std of x_{t-1} | x_t, x_0 agree with the product of the two Gaussians."""
    s = IRSDESchedule(50, 30, "cosine", 0.005)
    sigma2 = s.max_sigma**2
    for t in [2, 15, 30]:
        step = math.exp(-s.thetas[t].item() * s.dt)
        prior = math.exp(-s.thetas_cumsum[t - 1].item() * s.dt)
        prior_var = sigma2 * (1 - prior**2)  # x_{t-1} | x_0
        step_var = sigma2 * (1 - step**2)  # x_t | x_{t-1}
        precision = 1 / prior_var + step**2 / step_var
        a, b = s.posterior_coefficients(t)
        assert a == pytest.approx(step / step_var / precision, rel=1e-5)
        assert b == pytest.approx(prior / prior_var / precision, rel=1e-5)
        assert s.posterior_std(t) == pytest.approx(math.sqrt(1 / precision), rel=1e-5)
    assert s.posterior_coefficients(1) == pytest.approx((0.0, 1.0))
    assert s.posterior_std(1) == 0


# -- samplers ------------------------------------------------------------------------------


def reference_posterior(noise_fn, mu, draws, T, eps, max_sigma):
    """Posterior sampler in float64, written from the Gaussian-product form of the posterior."""
    n = T + 2
    abar = [math.cos((i / n + 0.008) / 1.008 * math.pi / 2) ** 2 for i in range(n + 1)]
    thetas = [1 - a / abar[0] for a in abar[1:-1]]
    cumsum = [sum(thetas[1 : t + 1]) for t in range(T + 1)]
    dt = -math.log(eps) / cumsum[T]
    sigma2 = (max_sigma / 255) ** 2
    mu = mu.double()
    x = mu + math.sqrt(sigma2) * draws[0].double()
    for k, t in enumerate(range(T, 0, -1), start=1):
        decay = math.exp(-cumsum[t] * dt)
        sigma_bar = math.sqrt(sigma2 * (1 - decay**2))
        x0 = mu + (x - mu - sigma_bar * noise_fn(x, t)) / decay
        step, prior = math.exp(-thetas[t] * dt), math.exp(-cumsum[t - 1] * dt)
        prior_var, step_var = sigma2 * (1 - prior**2), sigma2 * (1 - step**2)
        if t == 1:
            x = x0
            continue
        precision = 1 / prior_var + step**2 / step_var
        mean = (prior * (x0 - mu) / prior_var + step * (x - mu) / step_var) / precision
        x = mu + mean + math.sqrt(1 / precision) * draws[k].double()
    return x


def reference_reverse_sde(noise_fn, mu, draws, T, eps, max_sigma):
    """Euler-Maruyama of dx = [theta (mu - x) - sigma^2 score] dt + sigma dW backwards, float64."""
    s = IRSDESchedule(max_sigma, T, "cosine", eps)  # schedule already checked in float64 above
    thetas, sigmas = s.thetas.double().tolist(), s.sigmas.double().tolist()
    sigma_bars, dt = s.sigma_bars.double().tolist(), s.dt
    mu = mu.double()
    x = mu + (max_sigma / 255) * draws[0].double()
    for k, t in enumerate(range(T, 0, -1), start=1):
        score = -noise_fn(x, t) / sigma_bars[t]
        x = x - (thetas[t] * (mu - x) - sigmas[t] ** 2 * score) * dt
        x = x - sigmas[t] * math.sqrt(dt) * draws[k].double()
    return x


@pytest.mark.parametrize(
    "sampler, reference",
    [(sample_posterior, reference_posterior), (sample_reverse_sde, reference_reverse_sde)],
)
def test_explicit_draws_match_float64_reference(sampler, reference):
    T, eps, max_sigma = 6, 0.005, 50
    mu = image(0)
    draws = torch.randn((T + 1, *mu.shape), generator=torch.Generator().manual_seed(1))
    noise_fn = smooth_noise_fn(mu)
    s = IRSDESchedule(max_sigma, T, "cosine", eps)
    out = sampler(noise_fn, mu, s, draws=draws)
    assert out.dtype == torch.float32
    expected = reference(smooth_noise_fn(mu.double()), mu, draws, T, eps, max_sigma)
    # Relative: a crude predictor lets x0 estimates grow to ~1/eps, so outputs are large.
    torch.testing.assert_close(out.double(), expected, rtol=1e-5, atol=1e-6)
    # Iterating numpy arrays works the same; x_T given means only the step draws are used.
    assert torch.equal(sampler(noise_fn, mu, s, draws=list(draws.numpy())), out)
    x_T = initial_state(mu, s, draw=draws[0])
    assert torch.equal(x_T, mu + (max_sigma / 255) * draws[0])
    assert torch.equal(sampler(noise_fn, mu, s, x_T=x_T, draws=iter(draws[1:])), out)


@pytest.mark.parametrize("sampler", BOTH)
def test_generator_determinism(sampler):
    mu = image(2)
    s = IRSDESchedule(50, 10, "cosine", 0.005)
    noise_fn = smooth_noise_fn(mu)

    def run(seed):
        return sampler(noise_fn, mu, s, generator=torch.Generator().manual_seed(seed))

    first = run(7)
    assert torch.equal(first, run(7))
    assert not torch.allclose(first, run(8))
    assert torch.equal(
        initial_state(mu, s, generator=torch.Generator().manual_seed(3)),
        initial_state(mu, s, generator=torch.Generator().manual_seed(3)),
    )


@pytest.mark.parametrize("sampler", BOTH)
def test_bad_randomness_arguments(sampler):
    mu = image(3)
    s = IRSDESchedule(50, 5, "cosine", 0.005)
    noise_fn = smooth_noise_fn(mu)
    draws = torch.randn((s.T + 1, *mu.shape))
    with pytest.raises(ValueError, match="either"):
        sampler(noise_fn, mu, s, generator=torch.Generator(), draws=draws)
    with pytest.raises(ValueError, match="ran out after 5"):
        sampler(noise_fn, mu, s, draws=draws[:5])
    with pytest.raises(ValueError, match="shape"):
        sampler(noise_fn, mu, s, draws=draws[:, :, :2])


@pytest.mark.parametrize("sampler", BOTH)
def test_progress_called_after_every_step(sampler):
    mu = image(4)
    s = IRSDESchedule(50, 12, "linear", 0.01)
    calls, timesteps = [], []

    def noise_fn(x, t):
        assert type(t) is int
        timesteps.append(t)
        return torch.zeros_like(x)

    generator = torch.Generator().manual_seed(0)
    sampler(noise_fn, mu, s, generator=generator, progress=lambda *a: calls.append(a))
    assert calls == [(k, s.T) for k in range(1, s.T + 1)]
    assert timesteps == list(range(s.T, 0, -1))


@pytest.mark.parametrize("sampler", BOTH)
@pytest.mark.parametrize("k", [0, 1, 4])
def test_should_stop_cancels_within_one_step(sampler, k):
    mu = image(5)
    s = IRSDESchedule(50, 10, "cosine", 0.005)
    calls, progress = [], []

    def noise_fn(x, t):
        calls.append(t)
        return torch.zeros_like(x)

    with pytest.raises(Cancelled):
        sampler(
            noise_fn, mu, s,
            generator=torch.Generator().manual_seed(0),
            progress=lambda done, total: progress.append(done),
            should_stop=lambda: len(calls) >= k,
        )
    assert len(calls) == k
    assert progress == list(range(1, k + 1))


def oracle_run(sampler, T, seed):
    """Sample with the exact noise of a known clean image; return it, the output and the
    standardised noise seen at every timestep."""
    g = torch.Generator().manual_seed(seed)
    mu, gt = torch.rand((1, 3, 64, 64), generator=g), torch.rand((1, 3, 64, 64), generator=g)
    s = IRSDESchedule(50, T, "cosine", 0.005)
    seen = {}

    def oracle(x, t):
        seen[t] = s.true_noise(x, gt, mu, t)
        return seen[t]

    out = sampler(oracle, mu, s, generator=g)
    return gt, out, seen


def test_posterior_with_oracle_noise_recovers_the_clean_image():
    gt, out, seen = oracle_run(sample_posterior, T=100, seed=11)
    torch.testing.assert_close(out, gt, rtol=0, atol=1e-4)
    # Each state is distributed as the forward process says: x_t ~ N(mu_bar(gt, t), sigma_bar^2).
    for t in [100, 70, 40, 10, 2]:
        assert abs(seen[t].mean().item()) < 0.05
        assert seen[t].std().item() == pytest.approx(1, abs=0.05)


def test_reverse_sde_with_oracle_noise_approaches_the_clean_image():
    gt, out, seen = oracle_run(sample_reverse_sde, T=100, seed=12)
    start_error = (seen[100] * IRSDESchedule(50, 100).sigma_bar(100)).abs().mean().item()
    assert (out - gt).abs().mean().item() < 0.1 * start_error
    # Euler-Maruyama is close to the forward marginals where its steps are fine (it
    # overestimates the spread near t = 0, where theta_t dt grows).
    for t in [90, 70, 40]:
        assert abs(seen[t].mean().item()) < 0.05
        assert seen[t].std().item() == pytest.approx(1, abs=0.06)


def test_sampler_registry_and_dtype():
    loaded = {name: entry.load() for name, entry in samplers.SAMPLERS.items()}
    assert loaded == {"posterior": sde.iter_posterior, "sde": sde.iter_reverse_sde, "mars": mars.iter_mars}
    assert samplers.DEFAULT_SAMPLER == "posterior"
    mu = image(6, dtype=torch.float64)
    s = IRSDESchedule(50, 4)
    out = sample_posterior(smooth_noise_fn(mu), mu, s, generator=torch.Generator().manual_seed(0))
    assert out.dtype == torch.float64
    with pytest.raises(TypeError):
        sample_posterior(smooth_noise_fn(mu), mu.to(torch.uint8), s)
