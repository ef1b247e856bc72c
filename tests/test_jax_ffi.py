"""JAX's compiled CPU paths (XLA FFI calls of the C kernels, ``probloss._backends._jax_ffi``).

On CPU the JAX fast paths of sparse and categorical cross-entropy from logits,
categorical and binary cross-entropy from probabilities compute the loss and its
gradient with the compiled kernels, and so does binary focal cross-entropy from
logits under differentiation in its logits (its loss alone is an XLA formula);
Poisson computes its loss with them (its gradient is an XLA formula). Checked here against the XLA formulas those
paths use on other platforms (the ``formula`` half of each pair, run directly),
against the generic kernel through the public API (every option: sample
weights, ``ignore_class``, label smoothing, reductions, axis, non-finite inputs,
both JAX modes, ``jit``, ``vmap``) and against float64 formulas, and for
forward-mode and second derivatives (the derivative of the pair is the
formula's).
"""

from __future__ import annotations

import functools
import zlib
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from tests.conftest import jax_x64_mode, library

F32 = float(np.finfo(np.float32).eps)


@pytest.fixture
def jx() -> Any:
    library("jax")
    import jax

    from probloss._backends import _jax_ffi

    if not _jax_ffi.AVAILABLE:
        pytest.skip("the compiled kernels are not registered as XLA FFI targets (extension built without jaxlib)")
    return jax


def _rng(*key: Any) -> np.random.Generator:
    # crc32, not hash(): str hashes change with PYTHONHASHSEED (pytest-randomly sets it per run)
    return np.random.default_rng(zlib.crc32(repr(key).encode()))


def _close(fast: Any, ref: Any, *, rtol: float, atol: float = 0.0) -> None:
    np.testing.assert_allclose(np.asarray(fast, np.float64), np.asarray(ref, np.float64), rtol=rtol, atol=atol,
                               equal_nan=True)


def _data(kind: str, rng: np.random.Generator, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    if kind == "sparse":
        return rng.integers(0, shape[1], shape[0]).astype(np.int32), (4 * rng.normal(size=shape)).astype(np.float32)
    if kind == "dense":
        u = rng.uniform(0.05, 1.0, shape)
        return (u / u.sum(1, keepdims=True)).astype(np.float32), (4 * rng.normal(size=shape)).astype(np.float32)
    if kind == "bce":
        return rng.uniform(0, 1, shape).astype(np.float32), rng.uniform(1e-4, 1 - 1e-4, shape).astype(np.float32)
    if kind == "cce_probs":
        return _probability_rows(rng, shape)
    if kind == "focal":  # soft and hard labels; logits of every size, past the kernel's ordinary range too
        y = rng.uniform(0, 1, shape)
        y[::3] = np.round(y[::3])
        x = 4 * rng.normal(size=shape)
        x.flat[::17] *= 60.0
        if x.size > 40:
            x.flat[7], x.flat[11] = 800.0, -750.0  # |x| > 700: the kernel's general loop
        return y.astype(np.float32), x.astype(np.float32)
    return rng.poisson(2.0, shape).astype(np.float32), rng.uniform(0.0, 4.0, shape).astype(np.float32)


def _probability_rows(rng: np.random.Generator, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Soft and one-hot labels; softmax rows (some unnormalised), zeros, a dominant class and clipped entries."""
    z = 3 * rng.normal(size=shape)
    y = np.exp(z - z.max(1, keepdims=True))
    y /= y.sum(1, keepdims=True)
    y[1::4] *= 7.5  # not normalised: Keras divides by the sum
    t = rng.dirichlet(np.ones(shape[1]), shape[0])
    t[0::3] = np.eye(shape[1])[rng.integers(0, shape[1], len(t[0::3]))]
    if shape[0] >= 8 and shape[1] >= 4:
        y[2, :] = 1e-9
        y[2, 3] = 1.0  # a dominant class, -log p about rest/m = 3e-8 (clipped at -log(1-ε))
        y[3, :] = 1e-6
        y[3, 0] = 1.0  # p = 0.99997: its loss and slope from the rest, not from 1 - p
        y[5, 1] = 0.0  # a zero probability under a positive label: clipped at ε, slope 0
        y[6, 2] = 1e-12  # below ε after normalising: clipped
        t[2], t[3] = np.eye(shape[1])[3], np.eye(shape[1])[0]
        t[5, 1] = 0.5
    return t.astype(np.float32), y.astype(np.float32)


def _cce_probs_float64(t: np.ndarray, y: np.ndarray, eps: float = 1e-7) -> tuple[np.ndarray, np.ndarray]:
    """Keras's ``sum t·-log(clip(y/sum(y), ε, 1-ε))`` and its slope in float64 (bounds made in float32).

    Slope ``M/S - w_k/y_k``, ``w = t`` where the clip passes, ``M = sum(w)``; at a
    maximum above half the sum, ``(M - w_a)/S - w_a·rest/(m·S)`` and ``-log p = log1p(rest/m)``,
    ``rest`` summed without it (no cancellation).
    """
    t64, y64 = t.astype(np.float64), y.astype(np.float64)
    lo, hi = float(np.float32(eps)), float(np.float32(1.0 - eps))
    total = y64.sum(1, keepdims=True)
    p = y64 / total
    nll = -np.log(np.clip(p, lo, hi))
    w = t64 * ((p > lo) & (p < hi))
    big_m = w.sum(1, keepdims=True)
    grad = big_m / total - np.divide(w, y64, out=np.zeros_like(w), where=w != 0)
    for r in range(len(y64)):
        a = int(np.argmax(y64[r]))
        if 2 * y64[r, a] > total[r, 0]:
            rest = np.delete(y64[r], a).sum()
            nll[r, a] = np.clip(np.log1p(rest / y64[r, a]), -np.log(hi), -np.log(lo))
            grad[r, a] = ((big_m[r, 0] - w[r, a]) - w[r, a] * rest / y64[r, a]) / total[r, 0]
    return (t64 * nll).sum(1), grad


def _pair(kind: str) -> tuple[Callable[..., Any], Callable[..., Any]]:
    """The path's ``(compiled pair, XLA formula)``, both ``(labels, x) -> (loss, grad)``, classes last."""
    from probloss._backends import _jax, _jax_ffi

    if kind == "sparse":
        return _jax._sparse_pair, _jax._sparse_formula
    if kind == "dense":
        return _jax._dense_pair, _jax._dense_formula
    if kind == "cce_probs":
        formula = functools.partial(_jax._cce_probs_formula, epsilon=1e-7)
        return _jax_ffi.choose(formula, functools.partial(_jax._cce_probs_kernel, 1e-7)), formula
    if kind == "focal":
        return _focal_pair(_jax._FocalOptions(2.0, None, -1))
    binary = _jax._native_kinds()
    formula = functools.partial(_jax._bce_probs_formula, epsilon=1e-7)
    kernel = functools.partial(_jax._binary_kernel, binary.KIND_BCE_PROBS, _jax._bce_probs_params(1e-7))
    return _jax_ffi.choose(formula, kernel), formula


def _focal_pair(options: Any) -> tuple[Callable[..., Any], Callable[..., Any]]:
    """Binary focal CE from logits: the compiled pair of its JVP rule and its XLA formula."""
    from probloss._backends import _jax, _jax_ffi

    formula = functools.partial(_jax._focal_rows_formula, options)
    return _jax_ffi.choose(formula, functools.partial(_jax._focal_rows_kernel, options)), formula


@pytest.mark.parametrize("x64", [False, True], ids=["float32-only", "x64"])
@pytest.mark.parametrize("kind", ["sparse", "dense", "bce", "cce_probs", "focal"])
def test_kernel_pair_equals_its_formula(jx: Any, kind: str, x64: bool) -> None:
    """Values and gradients of the compiled kernels against the XLA formula, non-finite rows included."""
    jnp = jx.numpy
    with jax_x64_mode(x64):
        labels, x = _data(kind, _rng(kind, "pair"), (40, 33))
        if kind in ("sparse", "dense"):
            x[3, 5], x[7, :] = np.nan, -np.inf  # a NaN row and a row without a finite logit: the formula's rows
            x[9, 2], x[11, 4] = np.inf, -np.inf
            x[13, :] = x[13, 0]  # ties
        elif kind == "cce_probs":  # the kernel leaves these rows to the formula (the generic kernel)
            x[8, 5], x[9, 1], x[10, :], x[11, 2] = np.nan, -0.25, 0.0, np.inf
            labels[12, 4] = np.nan
        elif kind == "focal":
            x[3, 5], labels[6, 1], x[8, 2], x[9, 0] = np.nan, np.nan, np.inf, -np.inf
        else:
            x[3, 5], labels[6, 1] = np.nan, np.nan
        pair, formula = _pair(kind)
        fast = jx.jit(pair)(jnp.asarray(labels), jnp.asarray(x))
        ref = jx.jit(formula)(jnp.asarray(labels), jnp.asarray(x))
        if kind == "cce_probs":  # the generic kernel's float32 autodiff: a few ulps of the terms' size
            scale = np.abs(np.asarray(ref[1]))
            _close(fast[0], ref[0], rtol=8 * F32)
            _close(fast[1], ref[1], rtol=32 * F32, atol=32 * F32 * float(np.nanmax(scale)))
            good = np.r_[0:8, 13:40]  # against float64: the kernel's loss and slope within 4 ulps
            want_loss, want_grad = _cce_probs_float64(labels[good], x[good])
            _close(np.asarray(fast[0])[good], want_loss, rtol=4 * F32)
            _close(np.asarray(fast[1])[good], want_grad, rtol=4 * F32, atol=1e-30)
            return
        # the formula runs in float32 there (the kernel in float64): a few ulps of each factor of the terms
        tolerance = 8 * F32 if x64 or kind not in ("bce", "focal") else 64 * F32
        _close(fast[0], ref[0], rtol=tolerance, atol=F32)
        scale = float(np.nanmax(np.abs(np.asarray(ref[1]))))
        _close(fast[1], ref[1], rtol=tolerance, atol=2 * F32 * scale)


def _public(kind: str, **options: Any) -> Callable[..., Any]:
    import probloss

    if kind == "sparse":
        return functools.partial(probloss.sparse_categorical_crossentropy, from_logits=True, **options)
    if kind == "dense":
        return functools.partial(probloss.categorical_crossentropy, from_logits=True, **options)
    if kind == "bce":
        return functools.partial(probloss.binary_crossentropy, from_logits=False, **options)
    if kind == "cce_probs":
        return functools.partial(probloss.categorical_crossentropy, from_logits=False, **options)
    if kind == "focal":
        return functools.partial(probloss.binary_focal_crossentropy, from_logits=True, **options)
    return functools.partial(probloss.poisson, **options)


def _loss_class(kind: str, reduction: str, **options: Any) -> Any:
    import probloss

    if kind == "sparse":
        return probloss.SparseCategoricalCrossentropy(from_logits=True, reduction=reduction, **options)
    if kind == "dense":
        return probloss.CategoricalCrossentropy(from_logits=True, reduction=reduction, **options)
    if kind == "bce":
        return probloss.BinaryCrossentropy(from_logits=False, reduction=reduction, **options)
    if kind == "cce_probs":
        return probloss.CategoricalCrossentropy(from_logits=False, reduction=reduction, **options)
    if kind == "focal":
        return probloss.BinaryFocalCrossentropy(from_logits=True, reduction=reduction, **options)
    return probloss.Poisson(reduction=reduction, **options)


_OPTIONS = [("sparse", {}), ("sparse", {"ignore_class": 2}), ("sparse", {"axis": 0}),
            ("dense", {}), ("dense", {"label_smoothing": 0.1}), ("dense", {"axis": 0}),
            ("bce", {}), ("bce", {"label_smoothing": 0.1, "axis": 0}), ("poisson", {}),
            ("cce_probs", {}), ("cce_probs", {"label_smoothing": 0.1}), ("cce_probs", {"axis": 0}),
            ("focal", {}), ("focal", {"apply_class_balancing": True, "alpha": 0.3, "gamma": 1.0}),
            ("focal", {"gamma": 0.0, "label_smoothing": 0.1}), ("focal", {"gamma": 3.5, "axis": 0})]


@pytest.mark.parametrize("x64", [False, True], ids=["float32-only", "x64"])
@pytest.mark.parametrize(("kind", "options"), _OPTIONS, ids=[f"{k}-{o}" for k, o in _OPTIONS])
def test_public_losses_equal_generic_kernel(jx: Any, kind: str, options: dict[str, Any], x64: bool) -> None:
    """``jit(value_and_grad)`` of the Loss classes (sample weights, reductions) and ``vmap(grad)``, fast vs generic."""
    import probloss

    jnp = jx.numpy
    with jax_x64_mode(x64):
        rng = _rng(kind, str(options), "public")
        labels, x = _data(kind, rng, (12, 9))
        if options.get("axis") == 0 and kind == "sparse":
            labels = labels[:9] % 12
        samples = 9 if options.get("axis") == 0 else 12
        weights = jnp.asarray(rng.uniform(0.0, 2.0, samples).astype(np.float32))
        t, p = jnp.asarray(labels), jnp.asarray(x)
        # the generic kernel in float32 (BCE, focal): the looser one
        tolerance = 16 * F32 if kind not in ("bce", "focal") or x64 else 128 * F32

        def both(make: Callable[[], Callable[..., Any]]) -> tuple[Any, Any]:
            fast = make()(t, p)
            with probloss.fast_paths(False):
                generic = make()(t, p)  # traced again: jit caches per function object
            return fast, generic

        for reduction in ("none", "sum", "sum_over_batch_size"):
            loss = _loss_class(kind, reduction, **options)

            def step(loss: Any = loss) -> Callable[..., Any]:
                return jx.jit(jx.value_and_grad(
                    lambda t, p: jnp.sum(loss(t, p, sample_weight=weights)), argnums=1))

            fast, generic = both(step)
            _close(fast[0], generic[0], rtol=tolerance)
            scale = float(np.max(np.abs(np.asarray(generic[1]))))
            _close(fast[1], generic[1], rtol=tolerance, atol=4 * F32 * scale)
        per_sample = _public(kind, **options)

        def batched() -> Callable[..., Any]:
            grad = jx.grad(lambda t, p: jnp.sum(per_sample(t, p, validate="off")), argnums=1)
            return lambda t, p: jx.vmap(grad, in_axes=(None, 0))(t, jnp.stack([p, p * 0.5 if kind != "bce" else p]))

        fast, generic = both(batched)
        scale = float(np.max(np.abs(np.asarray(generic))))
        _close(fast, generic, rtol=tolerance, atol=4 * F32 * scale)


@pytest.mark.parametrize("kind", ["sparse", "dense", "bce", "poisson", "cce_probs", "focal"])
def test_forward_mode_and_hessian_equal_generic_kernel(jx: Any, kind: str) -> None:
    """``jax.jvp`` and ``jax.hessian`` go through the formulas' derivatives."""
    import probloss

    jnp = jx.numpy
    labels, x = _data(kind, _rng(kind, "hessian"), (3, 4))
    loss = _public(kind)

    def total(p: Any) -> Any:
        return jnp.sum(loss(jnp.asarray(labels), p, validate="off"))

    p = jnp.asarray(x)
    tangent = jnp.asarray(_rng(kind, "tangent").normal(size=x.shape).astype(np.float32))
    fast_jvp, fast_h = jx.jvp(total, (p,), (tangent,))[1], jx.hessian(total)(p)
    with probloss.fast_paths(False):
        ref_jvp, ref_h = jx.jvp(total, (p,), (tangent,))[1], jx.hessian(total)(p)
    magnitude = float(np.sum(np.abs(np.asarray(jx.grad(total)(p))) * np.abs(np.asarray(tangent))))
    _close(fast_jvp, ref_jvp, rtol=0, atol=16 * F32 * max(magnitude, 1.0))
    scale = float(np.max(np.abs(np.asarray(ref_h))))
    _close(fast_h, ref_h, rtol=1e-4, atol=1e-5 * scale)


def test_gradients_against_float64_formulas(jx: Any) -> None:
    """The kernels' gradients: softmax - onehot (a dominant class's tiny slope kept), (p - y)/(p(1 - p))/n."""
    import probloss

    jnp = jx.numpy
    rng = _rng("float64")
    x = (4 * rng.normal(size=(16, 10))).astype(np.float32)
    x[0, 3] = 40.0  # dominant class: its label's slope is -S'/(1 + S'), about -1e-17
    labels = rng.integers(0, 10, 16).astype(np.int32)
    labels[0] = 3
    got = jx.grad(lambda p: jnp.sum(probloss.sparse_categorical_crossentropy(
        jnp.asarray(labels), p, from_logits=True, validate="off")))(jnp.asarray(x))
    z = x.astype(np.float64)
    e = np.exp(z - z.max(1, keepdims=True))
    want = e / e.sum(1, keepdims=True)
    want[np.arange(16), labels] -= 1
    rest = np.delete(e[0], 3).sum()  # S' without the maximum's exact 1: no cancellation
    want[0, 3] = -rest / (1 + rest)
    _close(got, want, rtol=8 * F32, atol=1e-30)
    y = rng.uniform(0, 1, (16, 10)).astype(np.float32)
    p = rng.uniform(1e-3, 1 - 1e-3, (16, 10)).astype(np.float32)
    got = jx.grad(lambda q: jnp.sum(probloss.binary_crossentropy(jnp.asarray(y), q, validate="off")))(jnp.asarray(p))
    p64, y64 = p.astype(np.float64), y.astype(np.float64)
    _close(got, (p64 - y64) / (p64 * (1 - p64)) / 10, rtol=4 * F32)
