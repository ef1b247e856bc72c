"""JAX's ``Loss``-level short way (``probloss._backends._jax_direct``) against the general path and float64.

``probloss.Poisson()`` on float32 JAX tracers takes the short way; a subclass of it
(whose instances the short way leaves alone) takes the general path, the per-sample
losses of ``probloss._backends._jax`` reduced by ``Loss.__call__``. Both run in the
same test: values equal bit for bit, gradients too where the reduction's factors
are powers of 2 (else within 2 ulps: one rounding of their product against two),
non-finite inputs, ``vmap``, second derivatives and label gradients included; both
against a float64 formula written here. Every test sets JAX's float64 mode itself
(the short way is for float32-only JAX) and restores it.
"""

from __future__ import annotations

from collections.abc import Iterator
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


@pytest.fixture(autouse=True)
def _float32_jax() -> Iterator[None]:
    with jax_x64_mode(False):
        yield


@pytest.fixture
def short_way_calls(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Count the calls (traced or eager) that take the short way."""
    calls: list[int] = []
    original = _jax_direct._poisson_reduced
    monkeypatch.setattr(_jax_direct, "_poisson_reduced", lambda *a: calls.append(1) or original(*a))
    return calls


def _data(shape: tuple[int, ...], seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.poisson(2.0, shape).astype(np.float32)
    p = rng.uniform(0.05, 6.0, shape).astype(np.float32)
    return y, p


def _value_and_grad(loss: Any, y: Any, p: Any) -> tuple[np.ndarray, np.ndarray]:
    value, grad = jax.jit(jax.value_and_grad(lambda q, t: loss(t, q)))(jnp.asarray(p), jnp.asarray(y))
    return np.asarray(value), np.asarray(grad)


def _float64_reference(y: np.ndarray, p: np.ndarray, reduction: str) -> tuple[float, np.ndarray]:
    """Keras's ``mean(p - y·log(p + ε))`` per sample, reduced, and its gradient, in float64."""
    y64, p64 = y.astype(np.float64), p.astype(np.float64)
    rows = np.mean(p64 - y64 * np.log(p64 + EPS), axis=-1)
    factor = 1.0 if reduction == "sum" else 1.0 / rows.size
    grad = ((p64 - y64) + EPS) / (p64 + EPS) / p.shape[-1] * factor
    return float(np.sum(rows) * factor), grad


def _ulps(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.abs(a.astype(np.float64) - b.astype(np.float64)) / np.spacing(np.abs(b.astype(np.float32)))


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("shape", [(64, 32), (4, 8, 16), (7, 5), (3, 6, 10)])
def test_value_and_gradient_match_the_general_path(shape, reduction, short_way_calls):
    y, p = _data(shape, seed=sum(shape))
    value, grad = _value_and_grad(probloss.Poisson(reduction=reduction), y, p)
    assert short_way_calls, "the short way was not taken"
    general_value, general_grad = _value_and_grad(_GeneralPoisson(reduction=reduction), y, p)
    assert value.tobytes() == general_value.tobytes()
    factors = [shape[-1], 1 if reduction == "sum" else int(np.prod(shape[:-1]))]
    if all(f & (f - 1) == 0 for f in factors):  # powers of 2: the same roundings
        np.testing.assert_array_equal(grad, general_grad)
    else:
        assert _ulps(grad, general_grad).max() <= 2
    want_value, want_grad = _float64_reference(y, p, reduction)
    assert abs(float(value) - want_value) <= 4 * F32 * abs(want_value)
    assert _ulps(grad, want_grad).max() <= 4


def test_non_finite_rows_match_the_general_path(short_way_calls):
    y, p = _data((8, 6), seed=3)
    cases = {"inf rate": (2, 1, "p", np.inf), "nan rate": (3, 0, "p", np.nan), "negative rate": (4, 2, "p", -1.0),
             "rate -eps": (5, 5, "p", -EPS), "inf count": (6, 3, "y", np.inf), "nan count": (7, 4, "y", np.nan)}
    for name, (row, col, which, bad) in cases.items():
        yy, pp = y.copy(), p.copy()
        (pp if which == "p" else yy)[row, col] = bad
        value, grad = _value_and_grad(probloss.Poisson(), yy, pp)
        general_value, general_grad = _value_and_grad(_GeneralPoisson(), yy, pp)
        np.testing.assert_array_equal(value, general_value, err_msg=name)
        np.testing.assert_array_equal(grad, general_grad, err_msg=name)
        assert not np.isfinite(value), name  # the bad entry reaches the value (NaN, or inf at p = -ε)
        others = np.ones(y.shape[0], bool)
        others[row] = False
        assert np.isfinite(grad[others]).all(), name  # and no other row's gradient
    assert short_way_calls


def test_other_calls_take_the_general_path(short_way_calls):
    y, p = _data((8, 4), seed=5)
    jy, jp = jnp.asarray(y), jnp.asarray(p)
    jax.jit(probloss.Poisson(reduction="none"))(jy, jp)
    jax.jit(lambda t, q: probloss.Poisson()(t, q, sample_weight=jnp.ones(8)))(jy, jp)
    jax.jit(probloss.Poisson(log_input=True))(jy, jp)
    jax.jit(probloss.Poisson(dtype="float32"))(jy, jp)  # an explicit dtype
    jax.jit(probloss.Poisson())(jy.astype(jnp.int32), jp)
    jax.jit(probloss.Poisson())(jy[:, 0], jp[:, 0])  # rank 1
    with probloss.fast_paths(False):
        jax.jit(probloss.Poisson())(jy, jp)
    assert short_way_calls == []


def test_eager_arrays_keep_the_data_checks(short_way_calls):
    y, p = _data((4, 3), seed=6)
    p[1, 2] = -0.5
    with pytest.raises(ValueError, match="y_pred"):
        probloss.Poisson()(jnp.asarray(y), jnp.asarray(p))
    assert short_way_calls == []
    unchecked = probloss.Poisson(validate="off")(jnp.asarray(y), jnp.asarray(p))  # no checks: the short way
    assert short_way_calls
    with probloss.fast_paths(False):
        generic = probloss.Poisson(validate="off")(jnp.asarray(y), jnp.asarray(p))
    np.testing.assert_array_equal(np.isnan(unchecked), np.isnan(generic))


def test_float64_jax_takes_the_general_path(short_way_calls):
    y, p = _data((8, 4), seed=7)
    with jax_x64_mode(True):
        assert _jax_direct.poisson_loss_direct(probloss.Poisson(), jnp.asarray(y), jnp.asarray(p)) is None
        jax.jit(jax.grad(lambda q: probloss.Poisson()(jnp.asarray(y), q)))(jnp.asarray(p))
    assert short_way_calls == []


def test_vmap_matches_the_general_path(short_way_calls):
    y, p = _data((5, 6, 8), seed=8)

    def batched(loss: Any) -> tuple[np.ndarray, np.ndarray]:
        out = jax.jit(jax.vmap(jax.value_and_grad(lambda q, t: loss(t, q))))(jnp.asarray(p), jnp.asarray(y))
        return np.asarray(out[0]), np.asarray(out[1])

    value, grad = batched(probloss.Poisson())
    assert short_way_calls
    general_value, general_grad = batched(_GeneralPoisson())
    np.testing.assert_array_equal(value, general_value)
    np.testing.assert_array_equal(grad, general_grad)
    for i in range(5):
        want_value, want_grad = _float64_reference(y[i], p[i], "sum_over_batch_size")
        assert abs(float(value[i]) - want_value) <= 4 * F32 * abs(want_value)
        assert _ulps(grad[i], want_grad).max() <= 4


def test_second_derivatives_and_label_gradients(short_way_calls):
    y, p = _data((4, 3), seed=9)
    jy, jp = jnp.asarray(y), jnp.asarray(p)

    def hessian(loss: Any) -> np.ndarray:
        return np.asarray(jax.jit(jax.hessian(lambda q: loss(jy, q)))(jp))

    got, general = hessian(probloss.Poisson()), hessian(_GeneralPoisson())
    assert short_way_calls
    # d²/dp² of mean(p - y·log(p + ε)): y/(p + ε)² on the diagonal, over cols·rows
    want = np.zeros(got.shape)
    rows, cols = y.shape
    for r in range(rows):
        for c in range(cols):
            want[r, c, r, c] = float(y[r, c]) / (float(p[r, c]) + EPS) ** 2 / (rows * cols)
    # autodiff of the slope's quotient forms 1/(p + ε) - (p - y + ε)/(p + ε)², whose terms cancel
    # for y = 0: an absolute error of a few eps of either term
    atol = 8 * F32 * float(np.max(1.0 / (p.astype(np.float64) + EPS))) / (rows * cols)
    np.testing.assert_allclose(got, want, rtol=8 * F32, atol=atol)
    np.testing.assert_allclose(got, general, rtol=4 * F32, atol=atol)

    def label_grad(loss: Any) -> np.ndarray:
        return np.asarray(jax.jit(jax.grad(lambda t: loss(t, jp)))(jy))

    got, general = label_grad(probloss.Poisson()), label_grad(_GeneralPoisson())
    want = -np.log(p.astype(np.float64) + EPS) / y.size
    np.testing.assert_allclose(got, want, rtol=4 * F32, atol=0)
    np.testing.assert_array_equal(got, general)


def test_forward_mode_matches_the_general_path():
    y, p = _data((6, 5), seed=10)
    jy, jp = jnp.asarray(y), jnp.asarray(p)
    direction = jnp.asarray(np.random.default_rng(11).standard_normal((6, 5)).astype(np.float32))

    def jvp(loss: Any) -> tuple[float, float]:
        value, tangent = jax.jit(lambda q, d: jax.jvp(lambda u: loss(jy, u), (q,), (d,)))(jp, direction)
        return float(value), float(tangent)

    got, general = jvp(probloss.Poisson()), jvp(_GeneralPoisson())
    assert got[0] == general[0]
    assert abs(got[1] - general[1]) <= 8 * F32 * float(jnp.sum(jnp.abs(direction)))


@pytest.mark.parametrize("threads", [1, 2, 3])
@pytest.mark.parametrize("divisor", [16.0, 16.0 * 48, 3.0 * 16])
def test_kernel_float32_gradient_formula(threads, divisor):
    """The kernel's float32 gradient mode (params ``(ε, 1)``) is ``((p - y) + ε)/(p + ε)·scale`` in float32.

    Rows of every kind of block: ordinary ones and ones holding inf, NaN, negative
    or ``-ε`` rates (the kernel's other loop), tiny and huge rates, ``y ≈ p``.
    """
    from probloss import _native

    rng = np.random.default_rng(12)
    y = rng.poisson(2.0, (48, 16)).astype(np.float32)
    p = rng.uniform(0.1, 5.0, (48, 16)).astype(np.float32)
    p[5, 3], p[9, 7], p[11, 0], p[13, 4] = np.inf, np.nan, -EPS, -1.0
    y[17, 2], y[19, 1] = np.inf, np.nan
    p[21] = rng.uniform(1e-30, 1e-6, 16)
    p[23] = rng.uniform(1e20, 1e30, 16)
    y[25] = p[25] * np.float32(1.0000001)
    out, grad = np.empty(48, np.float32), np.empty((48, 16), np.float32)
    plain_out, plain_grad = np.empty(48, np.float32), np.empty((48, 16), np.float32)
    kind = _native.binary.KIND_POISSON
    _native.binary.row_losses(kind, y, p, out, divisor, threads, grad, (EPS, 1.0))
    _native.binary.row_losses(kind, y, p, plain_out, divisor, threads, plain_grad, (EPS,))
    np.testing.assert_array_equal(out, plain_out)  # the loss does not depend on the gradient's mode
    with np.errstate(all="ignore"):
        e = np.float32(EPS)
        want = (((p - y) + e) / (p + e)) * np.float32(1.0 / divisor)
        want64 = 1.0 - y.astype(np.float64) / (p.astype(np.float64) + EPS)
    finite = np.isfinite(out)  # other rows' gradients are the caller's to recompute
    assert finite.sum() >= 40
    np.testing.assert_array_equal(grad[finite], want[finite])
    np.testing.assert_array_equal(plain_grad[finite], (want64 * (1.0 / divisor)).astype(np.float32)[finite])
