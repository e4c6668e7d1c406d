"""Latency distributions: service times and lognormal network delays.

Everything is in seconds. Two families cover the latency model in DESIGN.md:

* :class:`ServiceTime` describes how long a replica works on one request. Workload
  profiles only give a mean and a coefficient of variation (CV), so the class picks a
  shape from those two numbers (``kind="auto"``): CV 0 is a constant, CV 1 is the
  memoryless exponential that M/M/c theory assumes, anything else is a lognormal,
  which is what measured service times usually look like (right-skewed, positive).
* :class:`LogNormal` describes one-way link latency. Links are specified by their
  p50 and p99, and a lognormal is the two-parameter positive family that fits two
  percentiles exactly and composes well by moment matching (see ``network.py``).

The module-level ``lognormal_*`` functions are the vectorised forms used on whole
(site x site) matrices; they accept the degenerate cases that appear there:
``sigma == 0`` is the constant ``exp(mu)``, ``mu == -inf`` is the constant zero (a
request served where it originates) and ``mu == +inf`` is "never" (unreachable).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, overload

import numpy as np
import numpy.typing as npt
from scipy import special

FloatArray = npt.NDArray[np.float64]
ServiceKind = Literal["auto", "deterministic", "exponential", "lognormal", "gamma"]
ResolvedKind = Literal["deterministic", "exponential", "lognormal", "gamma"]

#: Standard-normal 99th percentile: the z of a link's p99 relative to its p50.
Z99 = float(special.ndtri(0.99))


def _as_float_array(x: npt.ArrayLike) -> FloatArray:
    return np.asarray(x, dtype=np.float64)


def check_probabilities(q: npt.ArrayLike, name: str = "q") -> FloatArray:
    """Return ``q`` as an array after checking every value lies in [0, 1]."""
    arr = _as_float_array(q)
    if not np.all((arr >= 0.0) & (arr <= 1.0)):
        raise ValueError(f"{name} must be probabilities in [0, 1], got {q!r}")
    return arr


def lognormal_cdf(x: npt.ArrayLike, mu: npt.ArrayLike, sigma: npt.ArrayLike) -> FloatArray:
    """P(X <= x) for lognormal X, elementwise and broadcasting.

    ``sigma == 0`` is the constant ``exp(mu)`` (a step), which also covers the zero
    constant (``mu=-inf``) and the unreachable "infinite" constant (``mu=+inf``).
    """
    xa, mua, sa = np.broadcast_arrays(
        _as_float_array(x), _as_float_array(mu), _as_float_array(sigma)
    )
    with np.errstate(divide="ignore", invalid="ignore"):
        log_x = np.log(np.maximum(xa, 0.0))
        smooth = special.ndtr((log_x - mua) / sa)
        step = (log_x >= mua).astype(np.float64)
    return np.asarray(np.where(sa > 0.0, smooth, step), dtype=np.float64)


def lognormal_quantile(q: npt.ArrayLike, mu: npt.ArrayLike, sigma: npt.ArrayLike) -> FloatArray:
    """Inverse CDF of a lognormal, elementwise and broadcasting (degenerate cases as above)."""
    qa, mua, sa = np.broadcast_arrays(
        check_probabilities(q), _as_float_array(mu), _as_float_array(sigma)
    )
    with np.errstate(invalid="ignore", over="ignore"):
        smooth = np.exp(mua + sa * special.ndtri(qa))
    return np.asarray(np.where(sa > 0.0, smooth, np.exp(mua)), dtype=np.float64)


def lognormal_moments(mu: npt.ArrayLike, sigma: npt.ArrayLike) -> tuple[FloatArray, FloatArray]:
    """Mean and variance of lognormals with parameters ``mu``, ``sigma`` (elementwise)."""
    mua, sa = np.broadcast_arrays(_as_float_array(mu), _as_float_array(sigma))
    s2 = sa * sa
    mean = np.exp(mua + 0.5 * s2)
    with np.errstate(invalid="ignore"):
        var = np.where(s2 > 0.0, np.expm1(s2) * mean * mean, 0.0)
    return mean, np.asarray(var, dtype=np.float64)


def lognormal_from_moments(
    mean: npt.ArrayLike, var: npt.ArrayLike
) -> tuple[FloatArray, FloatArray]:
    """Lognormal ``(mu, sigma)`` with the given mean and variance (elementwise).

    A zero mean gives the zero constant (``mu=-inf, sigma=0``); an infinite mean gives
    ``mu=+inf, sigma=0``. This is the inverse of :func:`lognormal_moments` and the
    heart of Fenton–Wilkinson composition.
    """
    ma, va = np.broadcast_arrays(_as_float_array(mean), _as_float_array(var))
    with np.errstate(divide="ignore", invalid="ignore"):
        s2 = np.log1p(va / (ma * ma))
        s2 = np.where((ma > 0.0) & np.isfinite(ma), s2, 0.0)
        mu = np.log(ma) - 0.5 * s2
    return np.asarray(mu, dtype=np.float64), np.sqrt(s2)


@dataclass(frozen=True)
class LogNormal:
    """A lognormal latency: ``log(X) ~ Normal(mu, sigma**2)`` (X in seconds).

    ``sigma == 0`` is allowed and means the constant ``exp(mu)``; ``mu == -inf`` with
    ``sigma == 0`` is the constant zero (no network hop at all).
    """

    mu: float
    sigma: float

    def __post_init__(self) -> None:
        if math.isnan(self.mu) or self.mu == math.inf:
            raise ValueError(f"LogNormal mu must be a finite number or -inf, got {self.mu}")
        if not (math.isfinite(self.sigma) and self.sigma >= 0.0):
            raise ValueError(f"LogNormal sigma must be finite and >= 0, got {self.sigma}")
        if self.sigma > 0.0 and not math.isfinite(self.mu):
            raise ValueError("LogNormal with mu=-inf must have sigma=0 (the zero constant)")

    @classmethod
    def from_p50_p99(cls, p50: float, p99: float) -> LogNormal:
        """Fit the lognormal whose median and 99th percentile are ``p50`` and ``p99``.

        This is how links are specified; ``p99 == p50`` gives a constant delay.
        """
        if not (math.isfinite(p50) and p50 > 0.0):
            raise ValueError(f"p50 must be a positive finite latency in seconds, got {p50}")
        if not (math.isfinite(p99) and p99 >= p50):
            raise ValueError(f"p99 must be finite and >= p50 ({p50}), got {p99}")
        return cls(math.log(p50), (math.log(p99) - math.log(p50)) / Z99)

    @classmethod
    def from_mean_cv(cls, mean: float, cv: float) -> LogNormal:
        """The lognormal with the given mean and coefficient of variation."""
        if not (math.isfinite(mean) and mean > 0.0):
            raise ValueError(f"mean must be positive and finite, got {mean}")
        if not (math.isfinite(cv) and cv >= 0.0):
            raise ValueError(f"cv must be finite and >= 0, got {cv}")
        return cls.from_moments(mean, (cv * mean) ** 2)

    @classmethod
    def from_moments(cls, mean: float, var: float) -> LogNormal:
        """The lognormal with the given mean (>= 0) and variance (>= 0)."""
        if not (math.isfinite(mean) and mean >= 0.0 and math.isfinite(var) and var >= 0.0):
            raise ValueError(f"need finite mean >= 0 and var >= 0, got mean={mean}, var={var}")
        mu, sigma = lognormal_from_moments(mean, var)
        return cls(float(mu), float(sigma))

    @classmethod
    def constant(cls, value: float) -> LogNormal:
        """A degenerate lognormal that is always ``value`` (>= 0) seconds."""
        if not (math.isfinite(value) and value >= 0.0):
            raise ValueError(f"constant latency must be finite and >= 0, got {value}")
        return cls(math.log(value) if value > 0.0 else -math.inf, 0.0)

    @property
    def is_constant(self) -> bool:
        """True when the latency does not vary (``sigma == 0``)."""
        return self.sigma == 0.0

    @property
    def median(self) -> float:
        return math.exp(self.mu)

    @property
    def mean(self) -> float:
        return math.exp(self.mu + 0.5 * self.sigma**2)

    @property
    def var(self) -> float:
        return math.expm1(self.sigma**2) * self.mean**2

    @property
    def std(self) -> float:
        return math.sqrt(self.var)

    @overload
    def quantile(self, q: float) -> float: ...
    @overload
    def quantile(self, q: FloatArray) -> FloatArray: ...
    def quantile(self, q: float | FloatArray) -> float | FloatArray:
        """Inverse CDF; a float for a float, an array for an array."""
        out = lognormal_quantile(q, self.mu, self.sigma)
        return out if isinstance(q, np.ndarray) else float(out)

    @overload
    def cdf(self, x: float) -> float: ...
    @overload
    def cdf(self, x: FloatArray) -> FloatArray: ...
    def cdf(self, x: float | FloatArray) -> float | FloatArray:
        """P(X <= x); a float for a float, an array for an array."""
        out = lognormal_cdf(x, self.mu, self.sigma)
        return out if isinstance(x, np.ndarray) else float(out)

    def sample(self, rng: np.random.Generator, n: int) -> FloatArray:
        """``n`` independent draws."""
        if self.sigma == 0.0:
            return np.full(n, self.median)
        return rng.lognormal(self.mu, self.sigma, n)


_KINDS: tuple[ServiceKind, ...] = ("auto", "deterministic", "exponential", "lognormal", "gamma")


@dataclass(frozen=True)
class ServiceTime:
    """How long a replica spends on one request: mean (seconds) and CV.

    ``kind="auto"`` picks the shape from the CV (0 → deterministic, 1 → exponential,
    otherwise lognormal). An explicit kind must agree with the CV (a deterministic time
    has CV 0, an exponential one CV 1); lognormal or gamma with CV 0 are constants.
    """

    mean: float
    cv: float
    kind: ServiceKind = "auto"

    def __post_init__(self) -> None:
        if not (math.isfinite(self.mean) and self.mean > 0.0):
            raise ValueError(f"service time mean must be positive and finite, got {self.mean}")
        if not (math.isfinite(self.cv) and self.cv >= 0.0):
            raise ValueError(f"service time cv must be finite and >= 0, got {self.cv}")
        if self.kind not in _KINDS:
            raise ValueError(f"service time kind must be one of {_KINDS}, got {self.kind!r}")
        if self.kind == "deterministic" and self.cv != 0.0:
            raise ValueError(f"a deterministic service time has cv 0, got cv={self.cv}")
        if self.kind == "exponential" and self.cv != 1.0:
            raise ValueError(f"an exponential service time has cv 1, got cv={self.cv}")

    @property
    def resolved_kind(self) -> ResolvedKind:
        """The concrete shape used for sampling and percentiles."""
        if self.cv == 0.0:
            return "deterministic"
        if self.kind == "auto":
            return "exponential" if self.cv == 1.0 else "lognormal"
        return self.kind

    @property
    def scv(self) -> float:
        """Squared coefficient of variation, the ``cs²`` of queueing formulas."""
        return self.cv * self.cv

    @property
    def rate(self) -> float:
        """Requests per second one busy server completes (``mu = 1/mean``)."""
        return 1.0 / self.mean

    def second_moment(self) -> float:
        """E[S²] = mean²(1 + cv²), the quantity Pollaczek–Khinchine needs."""
        return self.mean * self.mean * (1.0 + self.scv)

    def as_lognormal(self) -> LogNormal:
        """The lognormal with this mean and CV (used for the ``lognormal`` shape)."""
        return LogNormal.from_mean_cv(self.mean, self.cv)

    def _gamma_shape_scale(self) -> tuple[float, float]:
        return 1.0 / self.scv, self.mean * self.scv

    @overload
    def quantile(self, q: float) -> float: ...
    @overload
    def quantile(self, q: FloatArray) -> FloatArray: ...
    def quantile(self, q: float | FloatArray) -> float | FloatArray:
        """Inverse CDF; a float for a float, an array for an array."""
        qa = check_probabilities(q)
        kind = self.resolved_kind
        if kind == "deterministic":
            out = np.full_like(qa, self.mean)
        elif kind == "exponential":
            with np.errstate(divide="ignore"):
                out = -self.mean * np.log1p(-qa)
        elif kind == "lognormal":
            ln = self.as_lognormal()
            out = lognormal_quantile(qa, ln.mu, ln.sigma)
        else:
            shape, scale = self._gamma_shape_scale()
            out = scale * special.gammaincinv(shape, qa)
        return out if isinstance(q, np.ndarray) else float(out)

    @overload
    def cdf(self, x: float) -> float: ...
    @overload
    def cdf(self, x: FloatArray) -> FloatArray: ...
    def cdf(self, x: float | FloatArray) -> float | FloatArray:
        """P(S <= x); a float for a float, an array for an array."""
        xa = np.maximum(_as_float_array(x), 0.0)
        kind = self.resolved_kind
        if kind == "deterministic":
            out = (xa >= self.mean).astype(np.float64)
        elif kind == "exponential":
            out = -np.expm1(-xa / self.mean)
        elif kind == "lognormal":
            ln = self.as_lognormal()
            out = lognormal_cdf(xa, ln.mu, ln.sigma)
        else:
            shape, scale = self._gamma_shape_scale()
            out = special.gammainc(shape, xa / scale)
        return out if isinstance(x, np.ndarray) else float(out)

    def sample(self, rng: np.random.Generator, n: int) -> FloatArray:
        """``n`` independent draws."""
        kind = self.resolved_kind
        if kind == "deterministic":
            return np.full(n, self.mean)
        if kind == "exponential":
            return rng.exponential(self.mean, n)
        if kind == "lognormal":
            return self.as_lognormal().sample(rng, n)
        shape, scale = self._gamma_shape_scale()
        return rng.gamma(shape, scale, n)
