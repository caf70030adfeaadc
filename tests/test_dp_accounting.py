"""dp-sgd's noise multiplier checked against accountants that are not Opacus's.

Issue 32 item 7: with Opacus's ``gdp`` accountant, dp-sgd's sigma under-noised (at q = 1/6, 120
steps, delta 1e-5 the targets epsilon 1 / 4 / 8 / 16 were realized as 1.02 / 4.25 / 8.64 / 16.32)
and the run reported epsilon with the same approximation. dp-sgd 3 calibrates with PRV (or RDP),
refuses ``gdp``, and reports the realized epsilon with PRV. These tests check the sigma it gives,
at the sampling rate and step count of the published DP profiles, against two references:

1. ``pld_epsilon_bounds`` below, a small independent privacy-loss-distribution (PLD) accountant for
   the Poisson-subsampled Gaussian mechanism (Koskela, Jälkö & Honkela 2020; Meiser & Mohammadi
   2018). One step of sensitivity 1 and noise sigma has, in the *remove* direction, the privacy
   loss ``L(x) = log(1 - q + q exp((2x - 1) / (2 sigma^2)))`` with
   ``x ~ (1 - q) N(0, sigma^2) + q N(1, sigma^2)``, and in the *add* direction ``-L(x)`` with
   ``x ~ N(0, sigma^2)``; both CDFs are closed forms in ``Phi``. The loss is put on a grid of step
   h, rounding up (pessimistic: an upper bound on epsilon; the mass past the truncation point goes
   to +infinity) or down (optimistic: a lower bound), composed ``steps`` times by FFT, and
   ``delta(eps) = E[(1 - e^(eps - L))_+]`` is inverted exactly between grid points. The two
   roundings bracket the true epsilon within ``steps * h``; h is chosen so that the bracket is
   0.5 % of the target wide.
2. ``DP_ACCOUNTING_SIGMA``: the sigma reaching each target under Google's ``dp_accounting`` 0.6.0
   (``PLDAccountant(value_discretization_interval=1e-4)``, add-or-remove neighbours,
   ``PoissonSampledDpEvent(q, GaussianDpEvent(sigma))`` composed ``steps`` times), found by
   bisection to 2e-5 relative; computed once for this test (the library is not a dependency).

Tolerances (delta = 1e-5):

- sigma is never below the ``dp_accounting`` sigma (0.1 % slack for that accountant's own
  discretization) and at most 2 % above it: Opacus's calibration stops within 0.01 below the
  target in PRV's epsilon, and PRV reports an upper bound up to 0.01 above its estimate; at the
  profiles' rates PRV's sigma is 0.07-1.4 % above, GDP's 1-4.8 % below, RDP's 5-9 % above;
- the realized epsilon of sigma under the independent PLD cannot be shown above the target (the
  bracket's lower end is <= target) and is not more than 0.03 below it (the upper end is
  >= target - 0.03);
- the add direction never exceeds the remove direction here, so PRV's one-direction accounting
  is the add-or-remove epsilon;
- the epsilon dp-sgd reports (Opacus's PRV) lies in the bracket, up to PRV's ``eps_error`` 0.01.
"""

from __future__ import annotations

import functools
import json
import math
import warnings
from pathlib import Path

import numpy as np
import pytest
from scipy import fft as sp_fft
from scipy.special import ndtr, ndtri

pytest.importorskip("opacus")

from coreset_bench.plugins.training.dp_sgd import epsilon_spent, noise_multiplier_for, realized_epsilon  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DELTA = 1e-5
#: (sample rate, steps) of the published DP profiles: privacy/quick-dp@2 (cnn-small on ~670
#: members, batch 128: q = 1/6, 20 epochs) and memorization/quick-dp@1 (mlp on ~300 members: q = 1/3)
PROFILES = {"privacy/quick-dp@2": (1 / 6, 120), "memorization/quick-dp@1": (1 / 3, 60)}
TARGETS = (1.0, 4.0, 8.0, 16.0)
#: sigma reaching each target epsilon under dp_accounting's PLD accountant (see the docstring)
DP_ACCOUNTING_SIGMA = {
    (1 / 6, 120): {1.0: 6.97146, 4.0: 2.19198, 8.0: 1.34951, 16.0: 0.89966},
    (1 / 3, 60): {1.0: 9.79655, 4.0: 2.98453, 8.0: 1.75804, 16.0: 1.10310},
}
SIGMA_SLACK_BELOW = 1e-3
SIGMA_ABOVE = 0.02
EPS_BELOW = 0.03
BRACKET = 0.005  # width of the independent PLD bracket, relative to the target


def _step_grid(sigma: float, q: float, h: float, direction: str, tail: float) -> tuple[int, np.ndarray]:
    """First grid index and the CDF of one step's privacy loss at the grid points ``k h``."""
    s2 = sigma * sigma
    x_tail = sigma * -float(ndtri(tail))  # P(N(0, sigma^2) > x_tail) = tail
    floor = math.log1p(-q) if q < 1 else -math.inf  # inf over x of L(x)
    if direction == "remove":  # L > log(1 - q); both tails are truncated (q < 1: the lower one is empty)
        lo = max(floor, math.log1p(-q + q * math.exp((-2 * x_tail - 1) / (2 * s2))))
        hi = math.log1p(-q + q * math.exp(min((2 * x_tail + 1) / (2 * s2), 700.0)))
    else:  # L <= -log(1 - q); the lower tail is truncated
        if q >= 1:
            raise ValueError("the add direction needs q < 1")
        lo = -math.log1p(-q + q * math.exp(min((2 * x_tail - 1) / (2 * s2), 700.0)))
        hi = -floor
    k0 = math.floor(lo / h)
    grid = (k0 + np.arange(math.ceil(hi / h) - k0 + 1)) * h
    if direction == "remove":
        cdf = np.zeros_like(grid)
        ok = grid > floor
        x = s2 * np.log((np.expm1(grid[ok]) + q) / q) + 0.5  # L(x) = grid
        cdf[ok] = (1 - q) * ndtr(x / sigma) + q * ndtr((x - 1) / sigma)
    else:
        cdf = np.ones_like(grid)
        ok = grid < -floor
        x = s2 * np.log((np.expm1(-grid[ok]) + q) / q) + 0.5  # -L(x) = grid, L decreasing in x
        cdf[ok] = ndtr(-x / sigma)
    return k0, cdf


def _epsilon(p: np.ndarray, k0: int, h: float, inf_mass: float, steps: int, delta: float) -> float:
    """epsilon(delta) of ``steps`` compositions of the loss pmf ``p`` on grid ``(k0 + i) h``."""
    size = steps * (len(p) - 1) + 1
    nfft = sp_fft.next_fast_len(size, real=True)
    comp = sp_fft.irfft(sp_fft.rfft(p, nfft) ** steps, nfft)[:size]
    # epsilon >= 0 only needs the losses above 0 (and the grid point just below)
    start = max(0, -steps * k0 - 1)
    comp = np.maximum(comp[start:], 0.0)
    loss = (steps * k0 + start + np.arange(len(comp))) * h
    d_inf = -math.expm1(steps * math.log1p(-inf_mass)) if inf_mass < 1 else 1.0
    # delta(eps) = sum_{l > eps} p_l - e^eps sum_{l > eps} p_l e^-l + d_inf: suffix sums from the top
    s1 = np.cumsum(comp[::-1])[::-1]
    s2 = np.cumsum((comp * np.exp(-loss))[::-1])[::-1]
    at = np.append(s1[1:] - np.exp(np.minimum(loss[:-1], 700.0)) * s2[1:], 0.0) + d_inf  # delta(loss[i])
    i = int(np.searchsorted(-at, -delta))  # first grid point with delta <= target delta
    if i == 0:
        return max(float(loss[0]), 0.0)
    # on (loss[i-1], loss[i]] the losses above eps are j >= i: s1[i] - e^eps s2[i] + d_inf = delta
    eps = math.log((s1[i] + d_inf - delta) / s2[i]) if s2[i] > 0 else float(loss[i])
    return max(min(max(eps, float(loss[i - 1])), float(loss[i])), 0.0)


@functools.lru_cache(maxsize=64)
def pld_epsilon_bounds(sigma: float, q: float, steps: int, delta: float, h: float, direction: str = "remove", tail: float = 1e-13, lower: bool = True) -> tuple[float, float]:
    """(lower, upper) bound on epsilon(delta) of ``steps`` Poisson-subsampled Gaussian steps
    (sensitivity 1, noise ``sigma``, rate ``q``) in one neighbouring direction; ``lower=False``
    skips the lower bound (returned as nan)."""
    k0, cdf = _step_grid(sigma, q, h, direction, tail)
    mass = np.diff(cdf, prepend=0.0)  # mass of (grid[i-1], grid[i]]
    top = 1.0 - float(cdf[-1])
    up = _epsilon(mass, k0, h, top, steps, delta)  # each interval at its right end, the tail at +inf
    if not lower:
        return math.nan, up
    down = np.append(mass[1:], top)  # each interval at its left end, the tail at the last point
    down[0] += mass[0]
    return _epsilon(down, k0, h, 0.0, steps, delta), up


def _check_sigma(sigma: float, q: float, steps: int, target: float, reported: float | None = None) -> tuple[float, float]:
    """The checks of the module docstring for one sigma (``reported``: the epsilon dp-sgd reported
    for it, else PRV's computed now); returns the PLD bracket."""
    ref = DP_ACCOUNTING_SIGMA[(q, steps)][target]
    assert ref * (1 - SIGMA_SLACK_BELOW) <= sigma <= ref * (1 + SIGMA_ABOVE), (sigma, ref)
    h = BRACKET * target / steps
    lo, hi = pld_epsilon_bounds(sigma, q, steps, DELTA, h)
    assert hi - lo <= BRACKET * target * 1.01
    assert lo <= target, f"sigma {sigma} realizes epsilon in [{lo:.4f}, {hi:.4f}] > target {target}"
    assert hi >= target - EPS_BELOW, f"sigma {sigma} over-noises: epsilon in [{lo:.4f}, {hi:.4f}] for target {target}"
    _, add_hi = pld_epsilon_bounds(sigma, q, steps, DELTA, h, "add", lower=False)
    assert add_hi <= lo  # the remove direction dominates
    reported = epsilon_spent(sigma, q, steps, DELTA) if reported is None else reported
    assert lo - 1e-3 <= reported <= hi + 0.011
    return lo, hi


def test_independent_pld_agrees_with_dp_accounting():
    """The PLD bracket of each dp_accounting sigma contains its target (up to dp_accounting's
    pessimistic discretization, below 0.015), so the two references agree."""
    for (q, steps), sigmas in DP_ACCOUNTING_SIGMA.items():
        for target, sigma in sigmas.items():
            lo, hi = pld_epsilon_bounds(sigma, q, steps, DELTA, BRACKET * target / steps)
            assert lo <= target <= hi + 0.015, (q, target, lo, hi)


def test_independent_pld_is_exact_without_subsampling():
    """q = 1: the Gaussian mechanism composed T times is Gaussian with mu = sqrt(T) / sigma, whose
    delta(eps) is Balle & Wang's closed form (2018); the bracket must contain its epsilon."""
    sigma, steps = 4.0, 16
    mu = math.sqrt(steps) / sigma

    def delta_of(eps: float) -> float:
        return float(ndtr(-eps / mu + mu / 2) - math.exp(eps) * ndtr(-eps / mu - mu / 2))

    a, b = 0.0, 50.0
    for _ in range(100):
        m = (a + b) / 2
        a, b = (m, b) if delta_of(m) > DELTA else (a, m)
    lo, hi = pld_epsilon_bounds(sigma, 1.0, steps, DELTA, 1e-3)
    assert lo <= b <= hi and hi - lo <= steps * 1e-3 * 1.01


def _cases() -> list:
    out = []
    for profile, (q, steps) in PROFILES.items():
        for target in TARGETS:
            # Opacus's PRV calibration costs 0.5 s (epsilon 1) to 2-4 s of CPU per target: the
            # epsilon-1 cases run by default, the rest with the slow tests
            marks = () if target == 1.0 else (pytest.mark.slow,)
            out.append(pytest.param(q, steps, target, id=f"{profile}-eps{target:g}", marks=marks))
    return out


@pytest.mark.parametrize("q,steps,target", _cases())
def test_dp_sgd_sigma_against_independent_accountants(q, steps, target):
    sigma = noise_multiplier_for(target, DELTA, q, steps)
    _check_sigma(sigma, q, steps, target)


def test_gdp_sigma_fails_the_same_checks_and_is_refused():
    """The sigma of Opacus's GDP calibration at privacy/quick-dp@2's rate is below the reference
    and realizes more than its target under the independent PLD (the issue's 1.02 / 4.25 / 8.64 /
    16.32): the checks above catch it, and dp-sgd refuses the accountant."""
    from opacus.accountants.utils import get_noise_multiplier

    from coreset_bench import registry as plugins

    q, steps = PROFILES["privacy/quick-dp@2"]
    realized = []
    for target in TARGETS:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            sigma = get_noise_multiplier(target_epsilon=target, target_delta=DELTA, sample_rate=q, steps=steps, accountant="gdp")
        assert sigma < DP_ACCOUNTING_SIGMA[(q, steps)][target] * (1 - SIGMA_SLACK_BELOW)
        lo, hi = pld_epsilon_bounds(sigma, q, steps, DELTA, BRACKET * target / steps)
        assert lo > target
        realized.append((lo + hi) / 2)
    assert [round(e, 2) for e in realized] == pytest.approx([1.02, 4.25, 8.64, 16.32], abs=0.015)
    with pytest.raises(AssertionError), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _check_sigma(get_noise_multiplier(target_epsilon=4.0, target_delta=DELTA, sample_rate=q, steps=steps, accountant="gdp"), q, steps, 4.0)
    with pytest.raises(ValueError, match="'gdp' is refused.*use 'prv'"):
        noise_multiplier_for(4.0, DELTA, q, steps, "gdp")
    dp = plugins.method("dp-sgd")
    with pytest.raises(ValueError, match="parameter 'accountant': 'gdp' is refused"):
        dp.with_params(accountant="gdp")


def _published_dp_cells() -> list[tuple[str, dict]]:
    out = []
    for profile in PROFILES:
        track, name = profile.split("/")
        for path in sorted((ROOT / "results" / "entries" / track / name).glob("*.json")):
            for cell in json.loads(path.read_text())["cells"]:
                for m in cell["info"].get("target_models", []):
                    if m.get("private"):
                        out.append((profile, m))
    return out


def test_published_dp_runs_realized_their_targets():
    """The sigma of every DP target in the published privacy/quick-dp@2 and memorization/quick-dp@1
    entries (PRV calibration, dp-sgd 2) passes the checks at epsilon 1, 4 and 16 (the profiles'
    grid; 64 is outside the reference table) and its stored epsilon is PRV's."""
    cells = _published_dp_cells()
    assert {p for p, _ in cells} == set(PROFILES)
    checked = {}
    for profile, m in cells:
        q, steps = PROFILES[profile]
        assert m["accountant"] == "prv" and m["sample_rate"] == pytest.approx(q) and int(m["steps"]) == steps
        target = float(m["target_epsilon"])
        if target in TARGETS and (profile, target) not in checked:
            checked[(profile, target)] = _check_sigma(float(m["noise_multiplier"]), q, steps, target, reported=float(m["epsilon"]))
        assert realized_epsilon(m) == m["epsilon"]
    assert len(checked) == 6


def test_realized_epsilon_is_prv_whatever_the_calibrator():
    """An RDP-calibrated run reports PRV's epsilon (below the target) and RDP's own bound apart; a
    run stored by dp-sgd 2 with its RDP epsilon is re-accounted with PRV."""
    q, steps = 1 / 3, 60
    sigma = noise_multiplier_for(1.0, DELTA, q, steps, "rdp")
    prv = epsilon_spent(sigma, q, steps, DELTA)
    rdp = epsilon_spent(sigma, q, steps, DELTA, "rdp")
    assert rdp == pytest.approx(1.0, abs=0.011) and prv < 0.93
    lo, hi = pld_epsilon_bounds(sigma, q, steps, DELTA, BRACKET / steps)
    assert lo - 1e-3 <= prv <= hi + 0.011
    old = {"accountant": "rdp", "epsilon": rdp, "noise_multiplier": sigma, "sample_rate": q, "steps": float(steps), "delta": DELTA, "private": 1.0}
    assert realized_epsilon(old) == prv
    assert realized_epsilon({**old, "accountant": "prv", "epsilon": 0.5}) == 0.5
    assert realized_epsilon({"accountant": "none", "noise_multiplier": 0.0, "private": 0.0}) is None
