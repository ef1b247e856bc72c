"""Accuracy to the last bits: every loss within 4 ulps of the exact result.

The exact result is the loss of the given (float32-representable) inputs computed
in mpmath at 120 bits with cancellation-free formulas written here (never calling
probloss): ``log1p``/``expm1`` forms for the logits paths, and on the probability
paths the exact value of Keras's clipped formula (probabilities clipped to the
dtype's ``[ε, 1-ε]``; categorical probabilities renormalised exactly first).

The sweep: logits on a log grid from 1e-6 to 1e4 of both signs (and 0), hard and
soft labels, 2 to 1000 classes with the label class the maximum (ties included)
and not; probabilities are the float32-rounded sigmoid/softmax of those logits
(0 and 1 included). Poisson rates on the same positive grid plus points next to
the zeros of ``p - y·log(p + ε)``; KL on single entries and on close and far
distributions. The error of a point is ``|probloss - exact| / ulp(exact)`` with
``ulp = np.spacing`` of the exact value rounded to the tested dtype. Points whose
exact result is not a normal number of that dtype (0, subnormal, overflow) are
skipped and counted in the report.

What is required (see docs/accuracy.md): <= 4 ulps for every loss and path in
float32. In float64, <= 4 ulps for the cross-entropies, <= 8 for the focal
losses, and for Poisson and KL 4 ulps plus the bound that float64 arithmetic can
promise where the terms cancel (4 · 2⁻⁵³ · the sum of the terms' magnitudes).
NumPy runs the full sweep; every backend of the ``backend`` fixture and
``jax.jit`` run a reduced one (JAX with float64 enabled); JAX without float64
(its default) runs it in a subprocess, with the limits of float32-only arithmetic.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any

import mpmath
import numpy as np
import pytest
from conftest import jax_x64_mode

import probloss

MAX_ULPS = 4.0
_MP_PREC = 120


def _mp(x: float) -> mpmath.mpf:
    return mpmath.mpf(float(x))  # exact: every float is an mpf


# ----------------------------------------------------------------- references
# Every function works on one sample (Python lists of floats) in mpmath.


def _softplus(x: mpmath.mpf) -> mpmath.mpf:
    return mpmath.log1p(mpmath.exp(x))


def _sigmoid(x: mpmath.mpf) -> mpmath.mpf:
    return 1 / (1 + mpmath.exp(-x))


def _clip(p: mpmath.mpf, lo: mpmath.mpf, hi: mpmath.mpf) -> mpmath.mpf:
    return min(max(p, lo), hi)


def _neg_log_softmax(z: list[mpmath.mpf]) -> list[mpmath.mpf]:
    """-log softmax(z)_j = (m - z_j) + log1p(sum of exp(z_i - m) without one maximal entry)."""
    k = max(range(len(z)), key=lambda i: z[i])
    m = z[k]
    rest = mpmath.fsum(mpmath.exp(zi - m) for i, zi in enumerate(z) if i != k)
    lse = mpmath.log1p(rest)
    return [(m - zj) + lse for zj in z]


def ref_binary(y: float, x: float, *, from_logits: bool, focal: bool, lo: float, hi: float) -> mpmath.mpf:
    """Binary CE, or binary focal CE (gamma=2, alpha=0.25, class balancing on)."""
    y, x = _mp(y), _mp(x)
    if from_logits:
        bce = y * _softplus(-x) + (1 - y) * _softplus(x)
        one_minus_pt = y * _sigmoid(-x) + (1 - y) * _sigmoid(x)
    else:
        p = _clip(x, _mp(lo), _mp(hi))
        bce = -(y * mpmath.log(p) + (1 - y) * mpmath.log1p(-p))
        one_minus_pt = y * (1 - x) + (1 - y) * x  # Keras: p_t from the unclipped probability
    if not focal:
        return bce
    return (y * mpmath.mpf(0.25) + (1 - y) * mpmath.mpf(0.75)) * one_minus_pt**2 * bce


def _categorical_terms(t: list[float], z: list[float], *, from_logits: bool, lo: float,
                       hi: float) -> tuple[list[mpmath.mpf], list[mpmath.mpf]]:
    """Return (-log p_j, 1 - p_j) per class, p renormalised and clipped on the probability path."""
    zs = [_mp(v) for v in z]
    if from_logits:
        nll = _neg_log_softmax(zs)
        return nll, [-mpmath.expm1(-v) for v in nll]
    total = mpmath.fsum(zs)
    ps = [_clip(v / total, _mp(lo), _mp(hi)) for v in zs]
    return [-mpmath.log(p) for p in ps], [1 - p for p in ps]


def ref_categorical(t: list[float], z: list[float], *, from_logits: bool, focal: bool, lo: float,
                    hi: float) -> mpmath.mpf:
    """Categorical CE, or categorical focal CE (gamma=2, alpha=0.25)."""
    nll, one_minus_p = _categorical_terms(t, z, from_logits=from_logits, lo=lo, hi=hi)
    terms = []
    for tj, nj, qj in zip(t, nll, one_minus_p, strict=True):
        if tj == 0:
            continue
        w = mpmath.mpf(0.25) * qj**2 if focal else 1
        terms.append(w * _mp(tj) * nj)
    return mpmath.fsum(terms)


def ref_poisson(y: list[float], p: list[float], *, eps: float) -> tuple[mpmath.mpf, mpmath.mpf]:
    """Return (mean(p - y·log(p + ε)), mean of the terms' magnitudes plus y).

    ``y`` is there because rounding ``p + ε`` once moves ``y·log(p + ε)`` by up to ``y·u``.
    """
    terms = [(_mp(pi), _mp(yi) * mpmath.log(_mp(pi) + _mp(eps)), _mp(yi)) for yi, pi in zip(y, p, strict=True)]
    n = len(terms)
    return (mpmath.fsum(a - b for a, b, _ in terms) / n,
            mpmath.fsum(abs(a) + abs(b) + c for a, b, c in terms) / n)


def ref_kl(t: list[float], p: list[float], *, eps: float) -> tuple[mpmath.mpf, mpmath.mpf]:
    """Return (sum(t'·log(t'/p')) with both clipped to [ε, 1], sum of the terms' magnitudes)."""
    lo, one = _mp(eps), mpmath.mpf(1)
    terms = [_clip(_mp(a), lo, one) * mpmath.log(_clip(_mp(a), lo, one) / _clip(_mp(b), lo, one))
             for a, b in zip(t, p, strict=True)]
    # Rounding (t - p)/p once moves each log by up to u, hence the t' in the magnitude.
    return mpmath.fsum(terms), mpmath.fsum(abs(v) + _clip(_mp(a), lo, one) for v, a in zip(terms, t, strict=True))


# ----------------------------------------------------------------- the sweep


def logit_grid(per_decade: int = 8) -> np.ndarray:
    """Logits ±[1e-6, 1e4] on a log grid, and 0, as float32."""
    g = np.logspace(-6, 4, 10 * per_decade + 1)
    return np.concatenate([-g[::-1], [0.0], g]).astype(np.float32)


def _sigmoid64(x: np.ndarray) -> np.ndarray:
    return np.exp(-np.logaddexp(0.0, -x.astype(np.float64)))


def _softmax64(z: np.ndarray) -> np.ndarray:
    z = z.astype(np.float64)
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


BINARY_LABELS = (0.0, 1.0, 0.1, 0.5, 0.9, 0.999)
CLASS_COUNTS = (2, 3, 10, 100, 1000)


@dataclasses.dataclass(frozen=True)
class Case:
    """One sweep case: a loss, a path, a label kind and the inputs (float32 values)."""

    name: str
    loss: str  # probloss function name
    kwargs: tuple[tuple[str, Any], ...]
    y_true: np.ndarray
    y_pred: np.ndarray
    reference: Callable[[np.ndarray, np.ndarray, Any], tuple[mpmath.mpf, mpmath.mpf | None]]
    cancelling: bool = False  # terms of mixed sign (Poisson, KL)

    def call(self, xp_true: Any, xp_pred: Any) -> Any:
        fn = getattr(probloss, self.loss)
        return fn(xp_true, xp_pred, validate="off", **dict(self.kwargs))

    def subset(self, step: int) -> Case:
        return dataclasses.replace(self, name=self.name, y_true=self.y_true[::step],
                                   y_pred=self.y_pred[::step])


def _binary_cases(loss: str, focal: bool) -> list[Case]:
    x = logit_grid()
    cases = []
    for from_logits in (True, False):
        pred = x if from_logits else _sigmoid64(x).astype(np.float32)
        for kind, labels in (("hard", (0.0, 1.0)), ("soft", BINARY_LABELS[2:])):
            yt = np.repeat(np.array(labels, np.float32), pred.size)[:, None]
            yp = np.tile(pred, len(labels))[:, None]

            def ref(t: np.ndarray, p: np.ndarray, eps: Any, fl: bool = from_logits) -> tuple[Any, None]:
                return ref_binary(t[0], p[0], from_logits=fl, focal=focal, lo=eps[0], hi=eps[1]), None

            kwargs: dict[str, Any] = {"from_logits": from_logits}
            if focal:
                kwargs.update(apply_class_balancing=True, alpha=0.25, gamma=2.0)
            path = "logits" if from_logits else "probs"
            cases.append(Case(f"{loss}-{path}-{kind}", loss, tuple(kwargs.items()), yt, yp, ref))
    return cases


@functools.cache
def _categorical_inputs(k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Logit rows with class 0 at ``v + max(others)`` for every grid ``v``; one-hot and soft labels."""
    rng = np.random.default_rng(k)
    v = logit_grid()
    if k >= 1000:
        v = v[::8]
    others = (2 * rng.standard_normal(k - 1)).astype(np.float32)
    z = np.empty((v.size, k), np.float32)
    z[:, 1:] = others
    z[:, 0] = v + others.max()
    hard = np.zeros_like(z)
    hard[:, 0] = 1
    soft = rng.dirichlet(np.ones(k), size=v.size).astype(np.float32)
    return z, hard, soft


def _categorical_cases(loss: str) -> list[Case]:
    focal = loss == "categorical_focal_crossentropy"
    sparse = loss == "sparse_categorical_crossentropy"
    cases = []
    for k in CLASS_COUNTS:
        z, hard, soft = _categorical_inputs(k)
        for from_logits in (True, False):
            pred = z if from_logits else _softmax64(z).astype(np.float32)
            for kind, labels in (("hard", hard), ("soft", soft)):
                if sparse and kind == "soft":
                    continue

                def ref(t: np.ndarray, p: np.ndarray, eps: Any, fl: bool = from_logits) -> tuple[Any, None]:
                    if sparse:
                        t = np.eye(p.size, dtype=np.float32)[int(t)]
                    return ref_categorical(list(t), list(p), from_logits=fl, focal=focal, lo=eps[0],
                                           hi=eps[1]), None

                yt = np.zeros(z.shape[0], np.int64) if sparse else labels
                kwargs: dict[str, Any] = {"from_logits": from_logits}
                if focal:
                    kwargs.update(alpha=0.25, gamma=2.0)
                path = "logits" if from_logits else "probs"
                cases.append(Case(f"{loss}-{path}-{kind}-K{k}", loss, tuple(kwargs.items()), yt, pred, ref))
    return cases


def _poisson_roots(y: float) -> list[float]:
    """Rates next to the zeros of p - y·log(p), where the loss cancels to nothing."""
    out: list[float] = []
    if y <= np.e:
        return out
    f = lambda p: p - y * mpmath.log(p)  # noqa: E731
    for lo, hi in ((1.0, float(y)), (float(y), 100.0 * y * np.log(y + 1))):
        root = float(mpmath.findroot(f, (lo, hi), solver="anderson"))
        r32 = np.float32(root)
        out += [float(np.float32(r32 + np.float32(i) * np.spacing(r32))) for i in range(-3, 4)]
    return out


def _poisson_cases() -> list[Case]:
    g = logit_grid()
    rates = np.concatenate([[0.0], g[g > 0]]).astype(np.float32)
    counts = (0.0, 0.5, 1.0, 3.0, 7.0, 100.0, 1e4)
    yt, yp = [], []
    for c in counts:
        pts = np.concatenate([rates, np.asarray(_poisson_roots(c), np.float32)])
        yp.append(pts)
        yt.append(np.full(pts.size, c, np.float32))
    single_t = np.concatenate(yt)[:, None]
    single_p = np.concatenate(yp)[:, None]
    rng = np.random.default_rng(5)
    rows_p = rng.gamma(2.0, 3.0, size=(300, 8)).astype(np.float32)
    rows_t = rng.poisson(rows_p * rng.uniform(0.5, 2.0, size=(300, 1))).astype(np.float32)

    def ref(t: np.ndarray, p: np.ndarray, eps: Any) -> tuple[Any, Any]:
        return ref_poisson(list(t), list(p), eps=eps[0])

    return [Case("poisson-single", "poisson", (), single_t, single_p, ref, cancelling=True),
            Case("poisson-rows8", "poisson", (), rows_t, rows_p, ref, cancelling=True)]


def _kl_cases() -> list[Case]:
    probs = np.concatenate([[0.0], _sigmoid64(logit_grid()), [1.0]]).astype(np.float32)
    tt, pp = np.meshgrid(probs[::3], probs[::3], indexing="ij")
    rng = np.random.default_rng(7)
    cases = [("single", tt.reshape(-1, 1), pp.reshape(-1, 1))]
    for k in (2, 10, 100):
        t = rng.dirichlet(np.ones(k), size=60)
        near = t * np.exp(rng.normal(scale=np.logspace(-6, 0, 60)[:, None], size=(60, k)))
        near /= near.sum(axis=-1, keepdims=True)
        far = rng.dirichlet(np.ones(k), size=60)
        cases.append((f"rows-K{k}", t.astype(np.float32), np.concatenate([near[:40], far[:20]]).astype(np.float32)))

    def ref(t: np.ndarray, p: np.ndarray, eps: Any) -> tuple[Any, Any]:
        return ref_kl(list(t), list(p), eps=eps[0])

    return [Case(f"kl_divergence-{n}", "kl_divergence", (), t, p, ref, cancelling=True) for n, t, p in cases]


@functools.cache
def all_cases() -> tuple[Case, ...]:
    """Every case of the sweep (the inputs only; exact values are computed lazily)."""
    cases = (_binary_cases("binary_crossentropy", False) + _binary_cases("binary_focal_crossentropy", True)
             + _categorical_cases("categorical_crossentropy")
             + _categorical_cases("sparse_categorical_crossentropy")
             + _categorical_cases("categorical_focal_crossentropy") + _poisson_cases() + _kl_cases())
    return tuple(cases)


def clip_bounds(dtype: str) -> tuple[float, float]:
    """Keras's clip bounds made in ``dtype``: (ε, 1 - ε) rounded to it."""
    eps = probloss.epsilon()
    return float(np.asarray(eps, dtype)), float(np.asarray(1.0 - eps, dtype))


@functools.cache
def exact_values(name: str, dtype: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Exact losses of case ``name`` as a double-double (hi, lo), and the terms' magnitudes."""
    case = next(c for c in all_cases() if c.name == name)
    bounds = clip_bounds(dtype)
    hi, lo, mag = [], [], []
    with mpmath.workprec(_MP_PREC):
        for t, p in zip(case.y_true, case.y_pred, strict=True):
            value, magnitude = case.reference(t, p, bounds)
            h = float(value)
            hi.append(h)
            lo.append(float(value - h))
            mag.append(float(magnitude) if magnitude is not None else abs(h))
    return np.array(hi), np.array(lo), np.array(mag)


@dataclasses.dataclass
class Report:
    """The result of one case: worst and median ulp error, points checked and skipped."""

    name: str
    worst: float
    median: float
    checked: int
    skipped: int
    zero_for_positive: int  # points where the result is 0 but the exact loss is > 0
    worst_at: int
    excess: float  # worst error beyond the cancellation bound, in ulps (cancelling cases only)


def ulp_errors(got: np.ndarray, name: str, dtype: str, *, indices: np.ndarray | None = None) -> Report:
    """Compare ``got`` (NumPy, any float dtype) with the exact values of case ``name``."""
    hi, lo, mag = exact_values(name, dtype)
    if indices is not None:
        hi, lo, mag = hi[indices], lo[indices], mag[indices]
    info = np.finfo(dtype)
    rounded = hi.astype(dtype)
    normal = np.isfinite(rounded) & (np.abs(hi) >= info.tiny)
    ulp = np.abs(np.spacing(rounded.astype(dtype))).astype(np.float64)
    got = np.asarray(got, np.float64).reshape(hi.shape)
    with np.errstate(invalid="ignore", over="ignore"):
        err = np.abs((got - hi) - lo) / np.where(normal, ulp, 1.0)
        # Float64 cannot promise better than its own rounding of the cancelling terms.
        excess = np.maximum(err - 4 * info.eps / 2 * mag / np.where(normal, ulp, 1.0), 0.0)
    err = np.where(np.isnan(got), np.inf, err)
    excess = np.where(np.isnan(got), np.inf, excess)
    zero_for_positive = int(np.sum((got == 0) & (hi > 0)))
    e, x = err[normal], excess[normal]
    if e.size == 0:
        return Report(name, 0.0, 0.0, 0, int(hi.size), zero_for_positive, -1, 0.0)
    return Report(name, float(e.max()), float(np.median(e)), int(e.size), int(hi.size - e.size),
                  zero_for_positive, int(np.flatnonzero(normal)[np.argmax(e)]), float(x.max()))


def run_numpy(case: Case, dtype: str) -> np.ndarray:
    """probloss on NumPy inputs of ``dtype`` (integer labels stay integer)."""
    yt = case.y_true if case.y_true.dtype.kind in "iu" else case.y_true.astype(dtype)
    return np.asarray(case.call(yt, case.y_pred.astype(dtype)))


# ----------------------------------------------------------------- the tests

CASE_NAMES = [c.name for c in all_cases()]
_REPORTS: list[Report] = []


# Float64 results where float64 arithmetic itself cannot promise 4 ulps
# (docs/accuracy.md): a focal loss multiplies four or five factors that each carry
# an ulp or two (measured worst 6.4). Poisson and KL are held to the cancellation
# bound instead (see ``ulp_errors``). Every float32 result is held to 4 ulps.
FLOAT64_LIMITS: dict[str, float] = {
    "categorical_focal_crossentropy": 8.0,
    "binary_focal_crossentropy": 8.0,
}


def limit_for(name: str, dtype: str) -> float:
    """The ulp bound a case is held to: 4, or its documented float64 limit."""
    if dtype == "float64":
        return next((v for k, v in FLOAT64_LIMITS.items() if name.startswith(k)), MAX_ULPS)
    return MAX_ULPS


def _check(report: Report, dtype: str, *, beyond_cancellation: bool = False, bound: float | None = None) -> None:
    """Assert the worst error (or, for cancelling terms, the error beyond their bound) is within bound."""
    _REPORTS.append(report)
    bound = limit_for(report.name, dtype) if bound is None else bound
    detail = (f"{report.name} [{dtype}]: worst {report.worst:.2f} ulp (median {report.median:.2f}) "
              f"at point {report.worst_at}; {report.checked} points checked, {report.skipped} skipped")
    if beyond_cancellation:
        assert report.excess <= bound, detail
    else:
        assert report.worst <= bound, detail
    assert report.checked > 0, detail


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name", CASE_NAMES)
def test_numpy_full_sweep(name: str, dtype: str) -> None:
    case = next(c for c in all_cases() if c.name == name)
    _check(ulp_errors(run_numpy(case, dtype), name, dtype), dtype,
           beyond_cancellation=case.cancelling and dtype == "float64")


# One case per loss and path for the other libraries (the generic kernels run there).
_BACKEND_CASES = [n for n in CASE_NAMES if ("K1000" not in n and "K100" not in n and "K3" not in n)]


@pytest.mark.parametrize("name", _BACKEND_CASES)
def test_backend_reduced_sweep(backend: Any, name: str) -> None:
    case = next(c for c in all_cases() if c.name == name)
    step = 3
    indices = np.arange(case.y_true.shape[0])[::step]
    sub = case.subset(step)
    yt = sub.y_true if sub.y_true.dtype.kind in "iu" else sub.y_true.astype(np.float32)
    got = sub.call(backend.asarray(yt), backend.asarray(sub.y_pred, "float32"))
    _check(ulp_errors(backend.to_numpy(got), name, "float32", indices=indices), "float32")


def test_jax_jit_reduced_sweep(jax_x64: None) -> None:
    """XLA keeps the error-free transformations (no reassociation) under ``jax.jit``, float64 enabled.

    Without float64 the focal losses have the float32-only limits (``FLOAT32_ONLY_LIMITS``).
    """
    jax = pytest.importorskip("jax")
    jnp = pytest.importorskip("jax.numpy")
    for name in _BACKEND_CASES:
        case = next(c for c in all_cases() if c.name == name)
        sub = case.subset(3)
        yt = sub.y_true if sub.y_true.dtype.kind in "iu" else sub.y_true.astype(np.float32)
        got = jax.jit(sub.call)(jnp.asarray(yt), jnp.asarray(sub.y_pred, dtype=jnp.float32))
        indices = np.arange(case.y_true.shape[0])[::3]
        _check(ulp_errors(np.asarray(got), name, "float32", indices=indices), "float32")


# JAX's default configuration has no float64: float32 inputs are computed in
# float32 throughout. Cross-entropies keep 4 ulps (their accuracy comes from
# error-free transformations, not a wider type); the focal losses lose the single
# final rounding (measured worst 8.4); Poisson and KL are held to what float32
# arithmetic can promise where terms cancel, as float64 is above.
FLOAT32_ONLY_LIMITS: dict[str, float] = {
    "binary_focal_crossentropy": 12.0,
    "categorical_focal_crossentropy": 12.0,
}

_FLOAT32_ONLY_SCRIPT = r"""
import json, sys
import numpy as np
import jax, jax.numpy as jnp
assert not jax.config.jax_enable_x64
sys.path.insert(0, sys.argv[1])
import test_accuracy as sweep
out = {}
for name in sweep._BACKEND_CASES:
    case = next(c for c in sweep.all_cases() if c.name == name)
    yt = case.y_true.astype(np.int32) if case.y_true.dtype.kind in "iu" else case.y_true
    got = case.call(jnp.asarray(yt), jnp.asarray(case.y_pred, dtype=jnp.float32))
    assert got.dtype == jnp.float32
    out[name] = np.asarray(got, np.float64).tolist()
print(json.dumps(out))
"""


def test_float32_only_library_sweep() -> None:
    """The reduced sweep on JAX with x64 off (its default), in a subprocess."""
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    pytest.importorskip("jax")
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    env.pop("JAX_ENABLE_X64", None)
    result = subprocess.run([sys.executable, "-c", _FLOAT32_ONLY_SCRIPT, str(Path(__file__).parent)],
                            capture_output=True, text=True, env=env, timeout=600, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    values = json.loads(result.stdout.strip().splitlines()[-1])
    assert set(values) == set(_BACKEND_CASES)
    for name, got in values.items():
        case = next(c for c in all_cases() if c.name == name)
        bound = next((v for k, v in FLOAT32_ONLY_LIMITS.items() if name.startswith(k)), MAX_ULPS)
        # Poisson and KL: held to the float32 cancellation bound, as float64 above.
        report = _float32_excess(got, name) if case.cancelling else ulp_errors(np.asarray(got), name, "float32")
        _check(report, "float32", beyond_cancellation=case.cancelling, bound=bound)


def _float32_excess(got: list[float], name: str) -> Report:
    """A report whose ``excess`` is the error beyond float32's cancellation bound (4·2⁻²⁴·Σ|terms|)."""
    hi, lo, mag = exact_values(name, "float32")
    rounded = hi.astype(np.float32)
    normal = np.isfinite(rounded) & (np.abs(hi) >= np.finfo(np.float32).tiny)
    ulp = np.where(normal, np.abs(np.spacing(rounded)).astype(np.float64), 1.0)
    err = np.abs((np.asarray(got) - hi) - lo) / ulp
    excess = np.maximum(err - 4 * np.finfo(np.float32).eps / 2 * mag / ulp, 0.0)
    e, x = err[normal], excess[normal]
    return Report(name, float(e.max()), float(np.median(e)), int(e.size), int(hi.size - e.size), 0,
                  int(np.flatnonzero(normal)[np.argmax(e)]), float(x.max()))


def test_skipped_points_are_few() -> None:
    """The sweep checks what it claims: most points have a normal exact result."""
    total = skipped = 0
    for case in all_cases():
        hi, _, _ = exact_values(case.name, "float32")
        normal = np.isfinite(hi.astype(np.float32)) & (np.abs(hi) >= np.finfo(np.float32).tiny)
        total += hi.size
        skipped += int(np.sum(~normal))
    assert total > 5000
    assert skipped < 0.1 * total, f"{skipped} of {total} points skipped"


# ----------------------------------------------------------------- gradients
# The gradient of the per-sample loss with respect to the logits, from the array
# library's autodiff of probloss's formulas, against mpmath at 200 bits with
# cancellation-free forms: sigmoid(x) - y as -1/(1 + e^x) (y = 1) or 1/(1 + e^-x)
# (y = 0); softmax - onehot with the dominant label's entry as -S'/(1 + S').

_GRAD_PREC = 200


def _exact_binary_grad(x: float, y: float) -> float:
    v = _mp(x)
    if y == 1:
        return float(-1 / (1 + mpmath.exp(v)))
    if y == 0:
        return float(1 / (1 + mpmath.exp(-v)))
    return float(1 / (1 + mpmath.exp(-v)) - _mp(y))


def _exact_softmax_grad(z: np.ndarray, label: int) -> np.ndarray:
    zs = [_mp(v) for v in z]
    top = max(range(len(zs)), key=lambda i: zs[i])
    e = [mpmath.exp(v - zs[top]) for v in zs]
    rest = mpmath.fsum(e[i] for i in range(len(zs)) if i != top)
    grad = [ei / (1 + rest) for ei in e]
    grad[label] = -rest / (1 + rest) if label == top else grad[label] - 1
    return np.array([float(g) for g in grad])


@functools.cache
def _gradient_cases() -> tuple[tuple[str, np.ndarray, np.ndarray, np.ndarray], ...]:
    """(kind, labels, float32 logits, exact float64 gradient) for BCE and softmax CE from logits."""
    cases = []
    with mpmath.workprec(_GRAD_PREC):
        x = logit_grid(per_decade=4)
        for y in (0.0, 1.0, 0.9):
            exact = np.array([_exact_binary_grad(float(v), y) for v in x])
            cases.append(("binary", np.full(x.size, y, np.float32), x, exact))
        for k in (2, 10, 100):
            z, _, _ = _categorical_inputs(k)  # the loss sweep's rows: gaps on a log grid, 8 a decade
            z = z if k <= 10 else z[::2]
            exact = np.stack([_exact_softmax_grad(row, 0) for row in z])
            cases.append(("softmax", np.zeros(z.shape[0], np.int64), z, exact))
    return tuple(cases)


def _grad_errors(got: np.ndarray, exact: np.ndarray, *, cancellation: float = 0.0) -> tuple[float, int]:
    """Worst ulp error over entries whose exact gradient is a normal float32, and their count.

    ``cancellation`` is an absolute error forgiven first: a soft label's
    ``sigmoid(x) - y`` is a difference of two numbers near ``y``, which float32
    inputs cannot resolve below ``y``'s own ulp (the label itself is rounded).
    """
    rounded = exact.astype(np.float32)
    normal = np.isfinite(rounded) & (np.abs(exact) >= np.finfo(np.float32).tiny)
    ulp = np.abs(np.spacing(rounded)).astype(np.float64)
    err = np.maximum(np.abs(got.astype(np.float64) - exact) - cancellation, 0.0)[normal] / ulp[normal]
    return float(err.max()), int(normal.sum())


def _summed_loss(kind: str, labels: Any, logits: Any) -> Any:
    """The sum of the per-sample losses (each sample's gradient is its own)."""
    if kind == "binary":
        values = probloss.binary_crossentropy(labels[:, None], logits[:, None], from_logits=True, validate="off")
    else:
        values = probloss.sparse_categorical_crossentropy(labels, logits, from_logits=True, validate="off")
    return values.sum()


# JAX's gradients are documented (docs/accuracy.md) with float64 enabled and without it.
_AUTODIFF = ["jax-x64", "jax-float32-only", "torch"]


def _autodiff_gradient(library: str, kind: str, labels: np.ndarray, logits: np.ndarray) -> np.ndarray:
    if library.startswith("jax"):
        jax = pytest.importorskip("jax")
        jnp = pytest.importorskip("jax.numpy")
        with jax_x64_mode(library == "jax-x64"):
            targets = jnp.asarray(labels)
            return np.asarray(jax.grad(functools.partial(_summed_loss, kind, targets))(jnp.asarray(logits)))
    torch = pytest.importorskip("torch")
    v = torch.tensor(logits, requires_grad=True)
    _summed_loss(kind, torch.tensor(labels), v).backward()
    return v.grad.numpy()


@pytest.mark.parametrize("library", _AUTODIFF)
def test_autodiff_gradients_keep_their_last_bits(library: str) -> None:
    """sigmoid(x) - y and softmax - onehot within 4 ulps, tiny ones included (no 1 - (1 - tiny))."""
    for kind, labels, logits, exact in _gradient_cases():
        got = _autodiff_gradient(library, kind, labels, logits)
        if kind == "binary":
            soft = labels[0] not in (0, 1)
            worst, checked = _grad_errors(got, exact, cancellation=2 * float(np.spacing(labels[0])) if soft else 0)
            assert checked > 50
            assert worst <= MAX_ULPS, f"{library} binary label={labels[0]}: {worst:.3g} ulps"
            continue
        # The label's entry, p - 1: as small as 1e-38 when the label dominates.
        worst, checked = _grad_errors(got[:, 0], exact[:, 0])
        assert checked > 20
        assert worst <= MAX_ULPS, f"{library} softmax label entry K={logits.shape[1]}: {worst:.3g} ulps"
        # The other entries, p_i. The maximum's p is formed by autodiff as 1 - (the
        # others' share) when it is not the label: an absolute error of ~2⁻²⁴ (up to
        # ~12 ulps of a p near 1/K), documented in docs/accuracy.md.
        worst, _ = _grad_errors(got[:, 1:], exact[:, 1:], cancellation=float(np.finfo(np.float32).eps))
        assert worst <= MAX_ULPS, f"{library} softmax other entries K={logits.shape[1]}: {worst:.3g} ulps"


@pytest.mark.parametrize("library", _AUTODIFF)
def test_autodiff_gradient_at_tied_maxima_is_softmax_minus_onehot(library: str) -> None:
    """Rows with two or three equal maximal logits, the label on a tied entry and off them."""
    logits = np.array([[2.0, 2.0, 0.0, -1.0], [2.0, 2.0, 0.0, -1.0], [0.5, 3.0, 3.0, 3.0], [1.0, 1.0, 1.0, 1.0]],
                      np.float32)
    labels = np.array([0, 3, 2, 1])
    got = _autodiff_gradient(library, "softmax", labels, logits)
    z = logits.astype(np.float64)
    want = np.exp(z - z.max(axis=1, keepdims=True))
    want /= want.sum(axis=1, keepdims=True)
    want[np.arange(4), labels] -= 1
    np.testing.assert_allclose(got, want, rtol=4 * np.finfo(np.float32).eps, atol=1e-7)
