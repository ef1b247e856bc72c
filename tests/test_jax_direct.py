"""JAX's ``Loss``-level short ways (``probloss._backends._jax_direct``) against the general path and float64.

``probloss.Poisson()`` and ``probloss.KLDivergence()`` on float32 JAX tracers take
the short way; a subclass of each (whose instances the short way leaves alone)
takes the general path, the per-sample losses of ``probloss._backends._jax``
reduced by ``Loss.__call__``. Both run in the same test: values equal bit for bit,
gradients too where the reduction's factors are powers of 2 (else within 2 ulps:
one rounding of their product against two), non-finite inputs, ``vmap``, second
derivatives and label gradients included; both against float64 formulas written
here. Every test sets JAX's float64 mode itself (the short ways are for
float32-only JAX) and restores it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest

jax = pytest.importorskip("jax")
jnp = pytest.importorskip("jax.numpy")

from conftest import jax_x64_mode  # noqa: E402

import probloss  # noqa: E402
from probloss._backends import _jax_direct, _jax_ffi  # noqa: E402

pytestmark = pytest.mark.skipif(not _jax_ffi.AVAILABLE, reason="the compiled kernel is not registered with XLA")

F32 = float(np.finfo(np.float32).eps)
EPS = float(np.float32(1e-7))  # Keras's epsilon as the float32 the kernels use
REDUCTIONS = ["sum_over_batch_size", "sum", "mean_with_sample_weight"]


class _GeneralPoisson(probloss.Poisson):
    """A subclass: the short way declines it (``type(loss) is Poisson`` fails), the general path runs."""


class _GeneralKL(probloss.KLDivergence):
    """A subclass: the short way declines it, the general path runs."""


def _poisson_data(shape: tuple[int, ...], seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.poisson(2.0, shape).astype(np.float32)
    p = rng.uniform(0.05, 6.0, shape).astype(np.float32)
    return y, p


def _kl_data(shape: tuple[int, ...], seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Random distributions along the last axis, with a 0 in some rows (clipped to ε: slope 1/2 or 0)."""
    rng = np.random.default_rng(seed)

    def dist() -> np.ndarray:
        e = rng.exponential(1.0, shape)
        return (e / e.sum(axis=-1, keepdims=True)).astype(np.float32)

    t, p = dist(), dist()
    flat_t, flat_p = t.reshape(-1, shape[-1]), p.reshape(-1, shape[-1])
    flat_t[::3, 0] = 0.0
    flat_p[1::3, -1] = 0.0
    return t, p


def _clip64(a: np.ndarray) -> np.ndarray:
    return np.clip(a.astype(np.float64), EPS, 1.0)


def _clip_slope(a: np.ndarray) -> np.ndarray:
    """JAX's derivative of ``clip(a, ε, 1)``: 1 inside, 1/2 at a bound, 0 outside."""
    return np.where((a > EPS) & (a < 1.0), 1.0, np.where((a == np.float32(EPS)) | (a == 1.0), 0.5, 0.0))


def _poisson_reference(y: np.ndarray, p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Keras's per-sample ``mean(p - y·log(p + ε))`` and its gradient, in float64."""
    y64, p64 = y.astype(np.float64), p.astype(np.float64)
    rows = np.mean(p64 - y64 * np.log(p64 + EPS), axis=-1)
    return rows, ((p64 - y64) + EPS) / (p64 + EPS) / p.shape[-1]


def _kl_reference(t: np.ndarray, p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Keras's per-sample ``sum(t·log(t/p))`` of both clipped to [ε, 1], and its gradient, in float64."""
    tc, pc = _clip64(t), _clip64(p)
    return np.sum(tc * np.log(tc / pc), axis=-1), -(tc / pc) * _clip_slope(p)


@dataclasses.dataclass(frozen=True)
class Spec:
    """One loss with a short way: its classes, data and float64 formulas."""

    name: str
    loss: type
    general: type
    data: Callable[[tuple[int, ...], int], tuple[np.ndarray, np.ndarray]]
    reference: Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]
    mean: bool  # a row is a mean over the last axis (its 1/cols a factor of the gradient)


POISSON = Spec("poisson", probloss.Poisson, _GeneralPoisson, _poisson_data, _poisson_reference, True)
KL = Spec("kl", probloss.KLDivergence, _GeneralKL, _kl_data, _kl_reference, False)
SPECS = [pytest.param(POISSON, id="poisson"), pytest.param(KL, id="kl")]


@pytest.fixture(autouse=True)
def _float32_jax() -> Iterator[None]:
    with jax_x64_mode(False):
        yield


@pytest.fixture
def short_way_calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The kernels of the calls (traced or eager) that take a short way."""
    calls: list[str] = []
    original = _jax_direct._reduced
    monkeypatch.setattr(_jax_direct, "_reduced", lambda t, p, spec, *a: calls.append(spec.kind)
                        or original(t, p, spec, *a))
    return calls


def _value_and_grad(loss: Any, y: Any, p: Any) -> tuple[np.ndarray, np.ndarray]:
    value, grad = jax.jit(jax.value_and_grad(lambda q, t: loss(t, q)))(jnp.asarray(p), jnp.asarray(y))
    return np.asarray(value), np.asarray(grad)


def _reduced_reference(spec: Spec, y: np.ndarray, p: np.ndarray, reduction: str) -> tuple[float, np.ndarray]:
    rows, grad = spec.reference(y, p)
    factor = 1.0 if reduction == "sum" else 1.0 / rows.size
    return float(np.sum(rows) * factor), grad * factor


def _ulps(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.abs(a.astype(np.float64) - b.astype(np.float64)) / np.spacing(np.abs(b.astype(np.float32)))


def _kind(spec: Spec) -> str:
    return "KIND_POISSON" if spec is POISSON else "KIND_KL"


@pytest.mark.parametrize("spec", SPECS)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("shape", [(64, 32), (4, 8, 16), (7, 5), (3, 6, 10)])
def test_value_and_gradient_match_the_general_path(spec, shape, reduction, short_way_calls):
    y, p = spec.data(shape, sum(shape))
    value, grad = _value_and_grad(spec.loss(reduction=reduction), y, p)
    assert short_way_calls == [_kind(spec)], "the short way was not taken"
    general_value, general_grad = _value_and_grad(spec.general(reduction=reduction), y, p)
    assert value.tobytes() == general_value.tobytes()
    factors = [shape[-1] if spec.mean else 1, 1 if reduction == "sum" else int(np.prod(shape[:-1]))]
    if all(f & (f - 1) == 0 for f in factors):  # powers of 2: the same roundings
        np.testing.assert_array_equal(grad, general_grad)
    else:
        assert _ulps(grad, general_grad).max() <= 2
    want_value, want_grad = _reduced_reference(spec, y, p, reduction)
    assert abs(float(value) - want_value) <= 4 * F32 * abs(want_value)
    assert _ulps(grad, want_grad).max() <= 4


# (row, column, "y" or "p", value); the value is NaN, or inf at p = -ε, where it says so
_BAD_ENTRIES = {
    "poisson": {"inf rate": (2, 1, "p", np.inf), "nan rate": (3, 0, "p", np.nan), "negative rate": (4, 2, "p", -1.0),
                "rate -eps": (5, 5, "p", -EPS), "inf count": (6, 3, "y", np.inf), "nan count": (7, 4, "y", np.nan)},
    "kl": {"nan p": (3, 0, "p", np.nan), "nan t": (7, 4, "y", np.nan)},
}
# entries the clip takes to a bound: the value stays finite
_CLIPPED_ENTRIES = {
    "poisson": {},
    "kl": {"inf p": (2, 1, "p", np.inf), "negative p": (4, 2, "p", -1.0), "p above 1": (5, 5, "p", 1.5),
           "inf t": (6, 3, "y", np.inf), "-inf t": (1, 1, "y", -np.inf)},
}


@pytest.mark.parametrize("spec", SPECS)
def test_non_finite_rows_match_the_general_path(spec, short_way_calls):
    y, p = spec.data((8, 6), 3)
    for finite, cases in ((False, _BAD_ENTRIES[spec.name]), (True, _CLIPPED_ENTRIES[spec.name])):
        for name, (row, col, which, bad) in cases.items():
            yy, pp = y.copy(), p.copy()
            (pp if which == "p" else yy)[row, col] = bad
            value, grad = _value_and_grad(spec.loss(), yy, pp)
            general_value, general_grad = _value_and_grad(spec.general(), yy, pp)
            np.testing.assert_array_equal(value, general_value, err_msg=name)
            np.testing.assert_array_equal(grad, general_grad, err_msg=name)
            assert np.isfinite(value) == finite, name  # a bad entry reaches the value
            others = np.ones(y.shape[0], bool)
            others[row] = False
            assert np.isfinite(grad[others]).all(), name  # and no other row's gradient
            if finite:
                want_value, want_grad = _reduced_reference(spec, yy, pp, "sum_over_batch_size")
                assert abs(float(value) - want_value) <= 4 * F32 * abs(want_value), name
                assert _ulps(grad, want_grad).max() <= 4, name
    assert short_way_calls


def test_other_calls_take_the_general_path(short_way_calls):
    y, p = _poisson_data((8, 4), 5)
    jy, jp = jnp.asarray(y), jnp.asarray(p)
    for loss_class in (probloss.Poisson, probloss.KLDivergence):
        jax.jit(loss_class(reduction="none"))(jy, jp)
        jax.jit(lambda t, q, c=loss_class: c()(t, q, sample_weight=jnp.ones(8)))(jy, jp)
        jax.jit(loss_class(log_input=True))(jy, jp)
        jax.jit(loss_class(dtype="float32"))(jy, jp)  # an explicit dtype
        jax.jit(loss_class())(jy[:, 0], jp[:, 0])  # rank 1
        with probloss.fast_paths(False):
            jax.jit(loss_class())(jy, jp)
    jax.jit(probloss.Poisson())(jy.astype(jnp.int32), jp)
    jax.jit(probloss.KLDivergence(log_target=True))(jy, jp)
    assert short_way_calls == []


@pytest.mark.parametrize("spec", SPECS)
def test_eager_arrays_keep_the_data_checks(spec, short_way_calls):
    y, p = spec.data((4, 3), 6)
    p[1, 2] = -0.5
    with pytest.raises(ValueError, match="y_pred"):
        spec.loss()(jnp.asarray(y), jnp.asarray(p))
    assert short_way_calls == []
    unchecked = spec.loss(validate="off")(jnp.asarray(y), jnp.asarray(p))  # no checks: the short way
    assert short_way_calls
    with probloss.fast_paths(False):
        generic = spec.loss(validate="off")(jnp.asarray(y), jnp.asarray(p))
    np.testing.assert_array_equal(np.isnan(unchecked), np.isnan(generic))
    if spec is KL:  # the clip makes p = -0.5 an ordinary ε
        np.testing.assert_allclose(float(unchecked), float(generic), rtol=4 * F32)


@pytest.mark.parametrize("spec", SPECS)
def test_float64_jax_takes_the_general_path(spec, short_way_calls):
    y, p = spec.data((8, 4), 7)
    direct = {"poisson": _jax_direct.poisson_loss_direct, "kl": _jax_direct.kl_divergence_loss_direct}[spec.name]
    with jax_x64_mode(True):
        assert direct(spec.loss(), jnp.asarray(y), jnp.asarray(p)) is None
        jax.jit(jax.grad(lambda q: spec.loss()(jnp.asarray(y), q)))(jnp.asarray(p))
    assert short_way_calls == []


@pytest.mark.parametrize("spec", SPECS)
def test_vmap_matches_the_general_path(spec, short_way_calls):
    y, p = spec.data((5, 6, 8), 8)

    def batched(loss: Any) -> tuple[np.ndarray, np.ndarray]:
        out = jax.jit(jax.vmap(jax.value_and_grad(lambda q, t: loss(t, q))))(jnp.asarray(p), jnp.asarray(y))
        return np.asarray(out[0]), np.asarray(out[1])

    value, grad = batched(spec.loss())
    assert short_way_calls
    general_value, general_grad = batched(spec.general())
    np.testing.assert_array_equal(value, general_value)
    np.testing.assert_array_equal(grad, general_grad)
    for i in range(5):
        want_value, want_grad = _reduced_reference(spec, y[i], p[i], "sum_over_batch_size")
        assert abs(float(value[i]) - want_value) <= 4 * F32 * abs(want_value)
        assert _ulps(grad[i], want_grad).max() <= 4


def _hessian_diagonal(spec: Spec, y: np.ndarray, p: np.ndarray) -> np.ndarray:
    """d²/dp² of the mean loss (a diagonal): Poisson y/(p + ε)²/cols, KL t/p² inside the clip; over rows."""
    y64, p64 = y.astype(np.float64), p.astype(np.float64)
    if spec is POISSON:
        return y64 / (p64 + EPS) ** 2 / y.size
    return _clip64(y) / p64**2 * _clip_slope(p) / y.shape[0]


@pytest.mark.parametrize("spec", SPECS)
def test_second_derivatives_and_label_gradients(spec, short_way_calls):
    y, p = spec.data((4, 3), 9)
    if spec is KL:
        y, p = np.maximum(y, np.float32(0.01)), np.maximum(p, np.float32(0.01))  # inside the clip
    jy, jp = jnp.asarray(y), jnp.asarray(p)

    def hessian(loss: Any) -> np.ndarray:
        return np.asarray(jax.jit(jax.hessian(lambda q: loss(jy, q)))(jp))

    got, general = hessian(spec.loss()), hessian(spec.general())
    assert short_way_calls
    rows, cols = y.shape
    want = np.zeros(got.shape)
    diagonal = _hessian_diagonal(spec, y, p)
    for r in range(rows):
        for c in range(cols):
            want[r, c, r, c] = diagonal[r, c]
    # Poisson: autodiff of the slope's quotient forms 1/(p + ε) - (p - y + ε)/(p + ε)², whose terms
    # cancel for y = 0: an absolute error of a few eps of either term
    atol = 8 * F32 * float(np.max(1.0 / (p.astype(np.float64) + EPS))) / (rows * cols) if spec is POISSON else 0.0
    np.testing.assert_allclose(got, want, rtol=8 * F32, atol=atol)
    np.testing.assert_allclose(got, general, rtol=4 * F32, atol=atol)

    def label_grad(loss: Any) -> np.ndarray:
        return np.asarray(jax.jit(jax.grad(lambda t: loss(t, jp)))(jy))

    got, general = label_grad(spec.loss()), label_grad(spec.general())
    if spec is POISSON:
        want = -np.log(p.astype(np.float64) + EPS) / y.size
    else:  # d/dt t·log(t/p) = log(t/p) + 1, a row's sum over rows
        want = (np.log(_clip64(y) / _clip64(p)) + 1.0) / rows
    np.testing.assert_allclose(got, want, rtol=4 * F32, atol=4 * F32 / rows)
    np.testing.assert_array_equal(got, general)


@pytest.mark.parametrize("spec", SPECS)
def test_forward_mode_matches_the_general_path(spec):
    y, p = spec.data((6, 5), 10)
    jy, jp = jnp.asarray(y), jnp.asarray(p)
    direction = jnp.asarray(np.random.default_rng(11).standard_normal((6, 5)).astype(np.float32))

    def jvp(loss: Any) -> tuple[float, float]:
        value, tangent = jax.jit(lambda q, d: jax.jvp(lambda u: loss(jy, u), (q,), (d,)))(jp, direction)
        return float(value), float(tangent)

    got, general = jvp(spec.loss()), jvp(spec.general())
    assert got[0] == general[0]
    _, slope = spec.reference(y, p)
    scale = float(np.sum(np.abs(slope) * np.abs(np.asarray(direction)))) / y.shape[0]
    assert abs(got[1] - general[1]) <= 8 * F32 * scale


def _odd_blocks(rng: np.random.Generator, y: np.ndarray, p: np.ndarray) -> None:
    """Rows of every kind of block: inf, NaN, negative and -ε entries, tiny and huge ones, y ≈ p."""
    p[5, 3], p[9, 7], p[11, 0], p[13, 4] = np.inf, np.nan, -EPS, -1.0
    y[17, 2], y[19, 1] = np.inf, np.nan
    p[21] = rng.uniform(1e-30, 1e-6, p.shape[1])
    p[23] = rng.uniform(1e20, 1e30, p.shape[1])
    y[25] = p[25] * np.float32(1.0000001)


@pytest.mark.parametrize("threads", [1, 2, 3])
@pytest.mark.parametrize("divisor", [16.0, 16.0 * 48, 3.0 * 16])
def test_kernel_poisson_float32_mode(threads, divisor):
    """The kernel's Poisson float32 mode (params ``(ε, 1)``): JAX's float32 gradient formula, rows within 1 ulp.

    Gradient ``((p - y) + ε)/(p + ε)·scale`` in float32 arithmetic; values within
    float32's cancellation bound of the float64 formula everywhere (rows near the
    zeros of ``p - y·log(p + ε)`` included) and within an ulp where the row does
    not cancel; the float64 mode (``(ε,)``) within half an ulp and its gradient
    ``1 - y/(p + ε)`` rounded once.
    """
    from probloss import _native

    rng = np.random.default_rng(12)
    y = rng.poisson(2.0, (48, 16)).astype(np.float32)
    p = rng.uniform(0.1, 5.0, (48, 16)).astype(np.float32)
    _odd_blocks(rng, y, p)
    y[30], p[30] = np.float32(np.e), np.float32(np.e)  # terms p - y·log p that cancel to ~1e-7 of p
    y[31] = 1000.0
    p[31] = np.float32(1.0) + rng.integers(1, 8, 16).astype(np.float32) * np.float32(2**-13)
    out, grad = np.empty(48, np.float32), np.empty((48, 16), np.float32)
    wide_out, wide_grad = np.empty(48, np.float32), np.empty((48, 16), np.float32)
    kind = _native.binary.KIND_POISSON
    _native.binary.row_losses(kind, y, p, out, divisor, threads, grad, (EPS, 1.0))
    _native.binary.row_losses(kind, y, p, wide_out, divisor, threads, wide_grad, (EPS,))
    with np.errstate(all="ignore"):
        e = np.float32(EPS)
        want_grad = (((p - y) + e) / (p + e)) * np.float32(1.0 / divisor)
        want64_grad = 1.0 - y.astype(np.float64) / (p.astype(np.float64) + EPS)
        y64, p64 = y.astype(np.float64), p.astype(np.float64)
        terms = p64 - y64 * np.log(p64 + EPS)
        magnitude = np.sum(np.abs(p64) + np.abs(y64 * np.log(p64 + EPS)) + y64, axis=-1)
        log_part = np.sum(np.abs(y64 * np.log(p64 + EPS)), axis=-1)
    finite = np.isfinite(out)  # other rows' gradients are the caller's to recompute
    assert finite.sum() >= 40
    np.testing.assert_array_equal(np.isfinite(wide_out), finite)
    np.testing.assert_array_equal(grad[finite], want_grad[finite])
    np.testing.assert_array_equal(wide_grad[finite], (want64_grad * (1.0 / divisor)).astype(np.float32)[finite])
    want, magnitude = np.sum(terms, axis=-1)[finite] / divisor, magnitude[finite] / divisor
    spacing = np.spacing(np.abs(want).astype(np.float32)).astype(np.float64)
    err = np.abs(out[finite].astype(np.float64) - want)
    assert np.all(err <= 4 * spacing + 4 * F32 / 2 * magnitude)  # the documented bound
    # the analysis (binary_impl.h): each y·log(p + ε) within 2⁻²⁴ of itself, the row rounded once
    assert np.all(err <= 0.5 * spacing + F32 / 2 * log_part[finite] / divisor)
    assert np.mean(out[finite] == want.astype(np.float32)) >= 0.75  # most rows correctly rounded
    assert np.max(np.abs(wide_out[finite].astype(np.float64) - want) / spacing) <= 0.5 + 1e-3


@pytest.mark.parametrize("threads", [1, 2, 3])
@pytest.mark.parametrize("divisor", [1.0, 48.0, 3.0])
def test_kernel_kl_float32_mode(threads, divisor):
    """The kernel's KL float32 mode (params ``(ε, 1)``): JAX's float32 gradient formula, terms within an ulp.

    Gradient ``(-(t/p)·slope)·scale`` of the clipped inputs in float32 arithmetic,
    every entry; values within float32's cancellation bound of the float64 sums
    (and the float64 mode's values, ``(ε,)``, within that bound too), for random
    distributions, rows that nearly cancel (``t ≈ p``), clipped and NaN entries.
    """
    from probloss import _native

    rng = np.random.default_rng(13)
    t, p = _kl_data((48, 256), 13)
    p[30] = t[30] * np.float32(1.0 + 1e-6)  # a row of nearly equal distributions: terms that cancel
    p[31] = np.nextafter(t[31], np.float32(1.0))
    _odd_blocks(rng, t, p)
    out, grad = np.empty(48, np.float32), np.empty(t.shape, np.float32)
    wide_out = np.empty(48, np.float32)
    kind = _native.binary.KIND_KL
    _native.binary.row_losses(kind, t, p, out, divisor, threads, grad, (EPS, 1.0))
    _native.binary.row_losses(kind, t, p, wide_out, divisor, threads, None, (EPS,))
    tf, pf = np.clip(t, np.float32(EPS), np.float32(1.0)), np.clip(p, np.float32(EPS), np.float32(1.0))
    with np.errstate(all="ignore"):
        want_grad = (-(tf / pf) * _clip_slope(p).astype(np.float32)) * np.float32(1.0 / divisor)
    np.testing.assert_array_equal(grad, want_grad)
    tc, pc = tf.astype(np.float64), pf.astype(np.float64)
    terms = tc * np.log(tc / pc)
    want = np.sum(terms, axis=-1) / divisor
    magnitude = np.sum(np.abs(terms) + tc, axis=-1) / divisor
    finite = np.isfinite(want)
    np.testing.assert_array_equal(np.isnan(out), ~finite)
    for got in (out, wide_out):
        err = np.abs(got[finite].astype(np.float64) - want[finite])
        assert np.all(err <= 4 * np.spacing(np.abs(want[finite]).astype(np.float32)) + 4 * F32 / 2 * magnitude[finite])
    ordinary = finite & (np.abs(want) > 1e-3)  # rows without cancellation: a few ulps of the result
    assert ordinary.sum() >= 30
    assert _ulps(out[ordinary], want[ordinary]).max() <= 2
