"""JAX fast paths: each loss a ``jax.custom_jvp`` with an analytic derivative.

Autodiff of the generic kernels goes through every ``where`` and every TwoSum
step, forward and back. Here each loss family is one ``jax.custom_jvp``
function: the primal computes the value with the generic kernel's formulas
(same accuracy, docs/accuracy.md), and the JVP rule returns ``sum(g·ẋ)`` with
``g`` the analytic gradient (``softmax - target``, ``sigmoid - target``, the
focal, Poisson and KL derivatives) written in plain ``jax.numpy``. Reverse mode
(``jax.grad``) transposes that linear map, so the backward pass is a scale of
``g``; under ``jax.jit`` XLA fuses ``g`` into it. Because the rule is itself
differentiable, forward mode (``jax.jvp``, ``jax.jacfwd``) and higher orders
(``jax.hessian``) work too: the second derivative is autodiff of ``g``.

Zero tangents stay symbolic (``symbolic_zeros=True``): the derivative with
respect to a label is only formed when something differentiates the label.

On CPU, float32 sparse and categorical cross-entropy from logits, binary and
categorical cross-entropy from probabilities compute the value and ``g`` with the
compiled kernels, called as XLA FFI targets (:mod:`probloss._backends._jax_ffi`);
the pair's own derivative is the ``jax.numpy`` formula's (for the probability paths,
the generic kernel's autodiff), so the higher orders above are unchanged. Poisson
takes its value from the compiled kernel and ``g`` from its ``jax.numpy`` formula,
which ``jax.grad`` fuses with the cotangent's scaling.

Inputs arrive cast by the public layer (float16 and bfloat16 as float32); other
dtypes, and the options without a path here, fall through to the generic kernel.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.custom_derivatives import SymbolicZero

from .._dispatch import GENERIC, fast_path
from .._kernels._crossentropy import mark_invalid_labels
from .._numerics import clip_bounds, neg_log_normalized
from . import _jax_ffi as _ffi

Array = Any
_FLOATS = (jnp.dtype("float32"), jnp.dtype("float64"))


def _handled(x: Array) -> bool:
    return x.dtype in _FLOATS


def _wide(dtype: Any) -> Any:
    """float64 for float32 where JAX has float64 (``jax_enable_x64``), else ``dtype``."""
    if dtype == jnp.float32 and jax.config.jax_enable_x64:
        return jnp.float64
    return dtype


def _is_zero(tangent: Any) -> bool:
    return isinstance(tangent, SymbolicZero)


def _linear(terms: list[tuple[Array, Any]], reduce: Callable[[Array], Array], out: Array) -> Array:
    """Return ``reduce(sum(g·ṫ))`` over the non-zero tangents ``ṫ`` (a linear map of them)."""
    total = None
    for g, tangent in terms:
        if _is_zero(tangent):
            continue
        term = g * tangent.astype(g.dtype)
        total = term if total is None else total + term
    if total is None:
        return jnp.zeros_like(out)
    return reduce(total).astype(out.dtype)


def _zero_safe(weight: Array, value: Array) -> Array:
    """``weight·value`` with ``0·inf`` read as 0, as the generic kernel."""
    return jnp.where(weight == 0, 0, weight * value)


# ------------------------------------------------------------------ softmax CE


class _Softmax(NamedTuple):
    """One row-wise softmax, kept in the pieces the accurate formulas need."""

    raw_max: Array  # the row maximum, keepdims
    m: Array  # the row maximum, 0 where the row has no softmax (the maximum is +inf or NaN)
    e: Array  # exp(x - m), TwoSum-corrected; -1 at every maximal entry (the marker of `top`)
    rest: Array  # S' = the sum of exp(x - m) over all entries but one maximum, keepdims; NaN: no softmax

    @property
    def top(self) -> Array:
        """bool: the row's maximal entries (ties included)."""
        return self.e < 0

    @property
    def magnitude(self) -> Array:
        """``exp(x - m)`` at every entry: ``|e|`` (exactly 1 at the maxima)."""
        return jnp.abs(self.e)


def _two_difference_exp(x: Array, m: Array) -> tuple[Array, Array]:
    """Return ``(x - m, exp(x - m)·(1 + err))`` with ``err`` the exact rounding error (TwoSum).

    ``exp(d + err) = exp(d)·(1 + err)`` to first order: the error of ``x - m`` (up to
    ``|x - m|/2`` ulps) does not reach the exponential. ``err`` is NaN where ``d`` is
    infinite (a -inf entry, or ``x - m`` overflowing), where ``exp(d)`` needs no
    correction. It carries no derivative (it is 0 in exact arithmetic), so
    higher-order autodiff skips it.
    """
    d = x - m
    a_part = d + m
    b_part = d - a_part
    err = (x - a_part) - (m + b_part)
    err = lax.stop_gradient(jnp.where(jnp.isnan(err), jnp.zeros_like(err), err))
    return d, jnp.exp(d) * (1 + err)


def _softmax(x: Array, axis: int) -> _Softmax:
    """The generic ``neg_log_softmax``'s pieces, in as few full-size passes as XLA allows.

    ``S'`` is ``exp(x - m)·(1 + err)`` summed over the entries below the maximum,
    plus ``n - 1`` for ``n`` tied maxima (each adds its exact 1 but one). A row whose
    maximum is not finite (+inf, NaN) has no softmax: ``S'`` is NaN.

    Shaped for XLA on CPU, where a plain ``max`` or ``sum`` over a stored array runs
    in a fast library fusion but an ``argmax`` (a two-valued reduction) or a
    reduction with a ``where`` inside runs several times slower: ``e`` is the one
    full-size intermediate, written in one pass with every maximal entry set to
    ``-1``, a marker that the gradient's pass reads back (``e < 0``) instead of
    comparing with ``x`` again. ``sum(max(e, 0))`` is then the sum below the
    maximum and ``sum(-min(e, 0))`` the exact count of maxima, two plain reductions.
    The marker is ``-1 - (x - m)``, exactly ``-1``, whose derivative keeps each tied
    maximum's ``exp(x - m)`` differentiable for higher-order autodiff.
    """
    top_value = jnp.max(x, axis=axis, keepdims=True)  # NaN if the row has a NaN
    row_ok = jnp.isfinite(top_value)
    m = jnp.where(row_ok, top_value, jnp.zeros_like(top_value))
    d, e = _two_difference_exp(x, m)
    e = jnp.where(x == m, -1 - d, e)
    # Each reduction with a constant of its own: XLA would store a shared broadcast.
    below = jnp.sum(jnp.maximum(e, -0.0), axis=axis, keepdims=True)
    # min(e, -1/2) is -1 at the n maxima, -1/2 elsewhere: a sum exact in float32.
    halves = jnp.sum(jnp.minimum(e, -0.5), axis=axis, keepdims=True)
    ties = (-2 * halves - x.shape[axis]) - 1
    rest = below + ties
    return _Softmax(top_value, m, e, jnp.where(row_ok, rest, jnp.full_like(rest, jnp.nan)))


def _label_entry(x: Array, labels: Array, axis: int) -> Array:
    """``x`` at each row's label (keepdims); out-of-range labels read a valid entry (marked later)."""
    index = jnp.expand_dims(jnp.clip(labels, 0, x.shape[axis] - 1), axis)
    return jnp.take_along_axis(x, index, axis=axis)


def _sparse_value(s: _Softmax, picked: Array, axis: int) -> Array:
    """``(m - x_label) + log1p(S')``: non-negative terms (no cancellation)."""
    return jnp.squeeze((s.m - picked) + jnp.log1p(s.rest), axis=axis)


def _sparse_formula(labels: Array, x: Array) -> tuple[Array, Array]:
    """Sparse CE of ``x`` (classes last) and its gradient ``softmax - onehot``, in ``jax.numpy``."""
    s = _softmax(x, -1)
    picked = _label_entry(x, labels, -1)
    value = _sparse_value(s, picked, -1)
    z = 1 + s.rest
    # The label's entry, p - 1, per row: -S'/(1 + S') where the label is a maximum (a
    # dominant class's tiny gradient keeps its bits), else exp(x_label - m)/(1 + S') - 1.
    _, e_label = _two_difference_exp(picked, s.m)
    at_label = jnp.where(picked == s.m, -s.rest, e_label - z) / z
    hit = lax.broadcasted_iota(labels.dtype, x.shape, x.ndim - 1) == labels[..., None]
    g = jnp.where(hit, at_label, s.magnitude / z)
    g = jnp.where(jnp.isnan(s.rest), jnp.zeros_like(g), g)  # no softmax: the value is NaN, the slope 0
    return value, g


def _sparse_kernel(labels: Array, x: Array) -> tuple[Array, Array]:
    if labels.dtype not in (jnp.int32, jnp.int64):
        labels = labels.astype(jnp.int32)
    return _ffi.softmax_rows(x, labels, sparse=True, want_grad=True)


_sparse_pair = _ffi.choose(_sparse_formula, _sparse_kernel)


def _compiled(x: Array) -> bool:
    """Whether ``x`` goes to the compiled kernels on CPU (float32; the FFI handlers are registered)."""
    return _ffi.AVAILABLE and x.dtype == jnp.float32 and x.size > 0


def _last(a: Array, axis: int) -> Array:
    return jnp.moveaxis(a, axis, -1)


def _sparse_loss_and_grad(labels: Array, x: Array, axis: int) -> tuple[Array, Array]:
    """``(loss, d loss/dx)`` in ``x``'s layout: the compiled kernel on CPU (float32), else the formula."""
    xm = _last(x, axis)
    value, g = (_sparse_pair if _compiled(x) else _sparse_formula)(labels, xm)
    return value, jnp.moveaxis(g, -1, axis)


def _sparse_primal(labels: Array, x: Array, axis: int) -> Array:
    plain = functools.partial(_sparse_plain, axis=axis)
    if not _compiled(x):
        return plain(labels, x)

    def on_cpu(labels: Array, x: Array) -> Array:
        index = labels if labels.dtype in (jnp.int32, jnp.int64) else labels.astype(jnp.int32)
        (loss,) = _ffi.softmax_rows(_last(x, axis), index, sparse=True, want_grad=False)
        return lax.cond(jnp.any(~jnp.isfinite(loss)), lambda: plain(labels, x), lambda: loss)

    return lax.platform_dependent(labels, x, cpu=on_cpu, default=plain)


def _sparse_plain(labels: Array, x: Array, axis: int) -> Array:
    return _sparse_value(_softmax(x, axis), _label_entry(x, labels, axis), axis)


@functools.partial(jax.custom_jvp, nondiff_argnums=(2,))
def _sparse_from_logits(labels: Array, x: Array, axis: int) -> Array:
    return _sparse_primal(labels, x, axis)


@functools.partial(_sparse_from_logits.defjvp, symbolic_zeros=True)
def _sparse_from_logits_jvp(axis: int, primals: tuple[Array, Array],
                            tangents: tuple[Any, Any]) -> tuple[Array, Array]:
    labels, x = primals
    if _is_zero(tangents[1]):
        value = _sparse_primal(labels, x, axis)
        return value, jnp.zeros_like(value)
    value, g = _sparse_loss_and_grad(labels, x, axis)
    return value, _linear([(g, tangents[1])], lambda t: jnp.sum(t, axis=axis), value)


def _gap_sum(t: Array, x: Array, s: _Softmax, axis: int) -> Array:
    """``sum(t·(m - x))`` (keepdims) with ``0·inf`` read as 0, as the generic kernel.

    The plain product's sum runs in XLA's fast reduction, fused with the maximum's;
    a ``where`` inside it, or the row maximum made safe by one, would not. It is NaN
    only where a term is, or the row has no softmax: then (a zero label on a -inf
    logit, NaN or +inf input) the batch is summed again with the guards
    (``lax.cond`` runs one branch). Both branches form ``m - x`` themselves: handing
    them a shared one would make XLA store it.
    """
    plain = jnp.sum(t * (s.raw_max - x), axis=axis, keepdims=True)
    return lax.cond(jnp.any(jnp.isnan(plain)),
                    lambda: jnp.sum(_zero_safe(t, s.m - x), axis=axis, keepdims=True), lambda: plain)


def _dense_value(s: _Softmax, t: Array, x: Array, axis: int) -> tuple[Array, Array, Array]:
    """Return ``(loss, gap, log1p(S'))``: ``sum(t·gap) + sum(t)·log1p(S')`` (zero labels skip ±inf)."""
    gap = s.m - x
    log_rest = jnp.log1p(s.rest)
    total = jnp.sum(t, axis=axis, keepdims=True)
    loss = _gap_sum(t, x, s, axis) + _zero_safe(total, log_rest)
    return jnp.squeeze(loss, axis=axis), gap, log_rest


def _dense_grad(s: _Softmax, t: Array, axis: int) -> Array:
    """``sum(t)·softmax - t`` along ``axis``; at a maximum ``(sum(t) - t)/(1 + S') - t·S'/(1 + S')``.

    So a one-hot label on a dominant class gives -S'/(1 + S'), not 1/(1 + S') - 1.
    """
    z = 1 + s.rest
    total = jnp.sum(t, axis=axis, keepdims=True)
    e = s.magnitude
    g = jnp.where(s.top, (total * e - t) - t * s.rest, total * e - t * z) / z
    return jnp.where(jnp.isnan(s.rest), jnp.zeros_like(g), g)  # no softmax: the value is NaN, the slope 0


def _dense_formula(t: Array, x: Array) -> tuple[Array, Array]:
    """Categorical CE of ``x`` (classes last) and its gradient, in ``jax.numpy``."""
    s = _softmax(x, -1)
    return _dense_value(s, t, x, -1)[0], _dense_grad(s, t, -1)


def _dense_kernel(t: Array, x: Array) -> tuple[Array, Array]:
    return _ffi.softmax_rows(x, t.astype(jnp.float32), sparse=False, want_grad=True)


_dense_pair = _ffi.choose(_dense_formula, _dense_kernel)


def _dense_plain(t: Array, x: Array, axis: int) -> Array:
    return _dense_value(_softmax(x, axis), t, x, axis)[0]


def _dense_primal(t: Array, x: Array, axis: int) -> Array:
    plain = functools.partial(_dense_plain, axis=axis)
    if not (_compiled(x) and t.dtype == jnp.float32):
        return plain(t, x)

    def on_cpu(t: Array, x: Array) -> Array:
        (loss,) = _ffi.softmax_rows(_last(x, axis), _last(t, axis), sparse=False, want_grad=False)
        return lax.cond(jnp.any(~jnp.isfinite(loss)), lambda: plain(t, x), lambda: loss)

    return lax.platform_dependent(t, x, cpu=on_cpu, default=plain)


@functools.partial(jax.custom_jvp, nondiff_argnums=(2,))
def _dense_from_logits(t: Array, x: Array, axis: int) -> Array:
    return _dense_primal(t, x, axis)


@functools.partial(_dense_from_logits.defjvp, symbolic_zeros=True)
def _dense_from_logits_jvp(axis: int, primals: tuple[Array, Array],
                           tangents: tuple[Any, Any]) -> tuple[Array, Array]:
    t, x = primals
    terms = []
    if _is_zero(tangents[0]):
        if _is_zero(tangents[1]):
            value = _dense_primal(t, x, axis)
            return value, jnp.zeros_like(value)
        if _compiled(x) and t.dtype == jnp.float32:
            value, g = _dense_pair(_last(t, axis), _last(x, axis))
            return value, _linear([(jnp.moveaxis(g, -1, axis), tangents[1])], lambda u: jnp.sum(u, axis=axis), value)
    # A label tangent: the XLA formulas for both slopes (the softmax shared).
    s = _softmax(x, axis)
    value, gap, log_rest = _dense_value(s, t, x, axis)
    if not _is_zero(tangents[1]):
        terms.append((_dense_grad(s, t, axis), tangents[1]))
    if not _is_zero(tangents[0]):
        # d/dt = -log softmax; a zero label on a -inf logit (a 0·inf term, read as 0) gets 0.
        nll = gap + log_rest
        terms.append((jnp.where((t == 0) & jnp.isinf(nll), jnp.zeros_like(nll), nll), tangents[0]))
    return value, _linear(terms, lambda u: jnp.sum(u, axis=axis), value)


@fast_path("sparse_categorical_crossentropy", backend="jax")
def sparse_categorical_crossentropy(y_true: Array, y_pred: Array, *, from_logits: bool, axis: int,
                                    epsilon: float, xp: Any) -> Array:
    """Softmax cross-entropy with integer labels, from logits."""
    if not from_logits or not _handled(y_pred):
        return NotImplemented
    loss = _sparse_from_logits(y_true, y_pred, axis)
    return mark_invalid_labels(loss, y_true, y_pred.shape[axis], xp=xp)


@fast_path("categorical_crossentropy", backend="jax")
def categorical_crossentropy(y_true: Array, y_pred: Array, *, from_logits: bool, axis: int,
                             epsilon: float, xp: Any) -> Array:
    """Softmax cross-entropy with dense (soft) labels, from logits; from probabilities on CPU (compiled)."""
    if not _handled(y_pred):
        return NotImplemented
    if not from_logits:
        low, high = _probs_bounds(epsilon)
        # No XLA formula of its own: the compiled kernel for float32 on CPU, else the generic kernel.
        if not (_compiled(y_pred) and y_true.dtype == jnp.float32 and y_true.shape == y_pred.shape
                and np.finfo(np.float32).tiny <= low <= high):
            return NotImplemented
        return _dense_from_probs(y_true, y_pred, axis, float(epsilon))
    return _dense_from_logits(y_true, y_pred, axis)


# ------------------------------------------------------------------ categorical CE from probabilities


def _probs_bounds(epsilon: float) -> tuple[float, float]:
    """Keras's clip bounds ``[ε, 1-ε]`` made in float32, as the generic kernel's clip makes them."""
    return float(np.float32(epsilon)), float(np.float32(1.0 - epsilon))


def _cce_probs_plain(t: Array, y: Array, axis: int, epsilon: float) -> Array:
    return GENERIC["categorical_crossentropy"](t, y, from_logits=False, axis=axis, epsilon=epsilon, xp=jnp)


def _cce_probs_formula(t: Array, y: Array, epsilon: float) -> tuple[Array, Array]:
    """The generic kernel's categorical CE from probabilities (classes last), and its autodiff gradient."""
    value, pullback = jax.vjp(lambda q: _cce_probs_plain(t, q, -1, epsilon), y)
    return value, pullback(jnp.ones_like(value))[0]


def _cce_probs_kernel(epsilon: float, t: Array, y: Array) -> tuple[Array, Array]:
    low, high = _probs_bounds(epsilon)
    return _ffi.normalized_rows(t, y, low=low, high=high, want_grad=True)


def _cce_probs_primal(t: Array, y: Array, axis: int, epsilon: float) -> Array:
    """The loss alone: the compiled kernel on CPU (rows it leaves NaN: the generic kernel), else the generic kernel."""
    plain = functools.partial(_cce_probs_plain, axis=axis, epsilon=epsilon)
    low, high = _probs_bounds(epsilon)

    def on_cpu(t: Array, y: Array) -> Array:
        (loss,) = _ffi.normalized_rows(_last(t, axis), _last(y, axis), low=low, high=high, want_grad=False)
        ok = jnp.isfinite(loss)
        return lax.cond(jnp.all(ok), lambda: loss, lambda: jnp.where(ok, loss, plain(t, y)))

    return lax.platform_dependent(t, y, cpu=on_cpu, default=plain)


@functools.partial(jax.custom_jvp, nondiff_argnums=(2, 3))
def _dense_from_probs(t: Array, y: Array, axis: int, epsilon: float) -> Array:
    """Categorical CE of float32 probabilities (float32 labels of their shape; CPU: compiled)."""
    return _cce_probs_primal(t, y, axis, epsilon)


@functools.partial(_dense_from_probs.defjvp, symbolic_zeros=True)
def _dense_from_probs_jvp(axis: int, epsilon: float, primals: tuple[Array, Array],
                          tangents: tuple[Any, Any]) -> tuple[Array, Array]:
    t, y = primals
    if _is_zero(tangents[1]):
        value = _dense_from_probs(t, y, axis, epsilon)  # differentiable again through this rule
        terms = []
    else:
        # The kernel's loss and gradient in one call (rows it leaves NaN: the generic kernel's
        # autodiff); the pair's own derivative is that autodiff's, for the higher orders.
        pair = _ffi.choose(functools.partial(_cce_probs_formula, epsilon=epsilon),
                           functools.partial(_cce_probs_kernel, epsilon))
        value, g = pair(_last(t, axis), _last(y, axis))
        terms = [(jnp.moveaxis(g, -1, axis), tangents[1])]
    if not _is_zero(tangents[0]):  # d/dt = -log(clip(y/sum(y))), the generic kernel's own term
        terms.append((neg_log_normalized(y, epsilon, 1.0 - epsilon, axis=axis, xp=jnp), tangents[0]))
    return value, _linear(terms, lambda u: jnp.sum(u, axis=axis), value)


# ------------------------------------------------------------------ binary CE


class _Logit(NamedTuple):
    """A logit's pieces (the generic ``LogitParts``) and its sigmoids."""

    relu: Array
    relu_neg: Array
    log1p_e: Array
    sig_pos: Array  # sigmoid(x)
    sig_neg: Array  # sigmoid(-x)


def _logit(x: Array) -> _Logit:
    zeros = jnp.zeros_like(x)
    relu = jnp.maximum(x, zeros)
    relu_neg = jnp.maximum(-x, zeros)
    e = jnp.exp(-(relu + relu_neg))
    # sigmoid(|x|) = 1/(1+e), sigmoid(-|x|) = e/(1+e): no 1 - p anywhere.
    near_one = 1 / (1 + e)
    near_zero = e * near_one
    positive = x >= 0
    return _Logit(relu, relu_neg, jnp.log1p(e), jnp.where(positive, near_one, near_zero),
                  jnp.where(positive, near_zero, near_one))


def _bce(y: Array, p: _Logit) -> Array:
    """``log1p(e^-|x|) + y·relu(-x) + (1-y)·relu(x)``, non-negative terms."""
    return p.log1p_e + _zero_safe(y, p.relu_neg) + _zero_safe(1 - y, p.relu)


@functools.partial(jax.custom_jvp, nondiff_argnums=(2,))
def _binary_from_logits(y: Array, x: Array, axis: int) -> Array:
    return jnp.mean(_bce(y, _logit(x)), axis=axis)


@functools.partial(_binary_from_logits.defjvp, symbolic_zeros=True)
def _binary_from_logits_jvp(axis: int, primals: tuple[Array, Array],
                            tangents: tuple[Any, Any]) -> tuple[Array, Array]:
    y, x = primals
    p = _logit(x)
    value = jnp.mean(_bce(y, p), axis=axis)
    # sigmoid(x) - y as (1-y)·sigmoid(x) - y·sigmoid(-x): exact for hard labels in both tails.
    grad_x = (1 - y) * p.sig_pos - y * p.sig_neg
    return value, _linear([(grad_x, tangents[1]), (-x, tangents[0])],
                          lambda t: jnp.mean(t, axis=axis), value)


@fast_path("binary_crossentropy", backend="jax")
def binary_crossentropy(y_true: Array, y_pred: Array, *, from_logits: bool, axis: int, epsilon: float,
                        xp: Any) -> Array:
    """Binary cross-entropy from logits."""
    if not _handled(y_pred):
        return NotImplemented
    if not from_logits:
        if not _compiled(y_pred):  # no XLA formula of its own: the generic kernel
            return NotImplemented
        return _binary_from_probs(y_true, y_pred, axis, float(epsilon))
    return _binary_from_logits(y_true, y_pred, axis)


# ------------------------------------------------------------------ binary focal


class _FocalOptions(NamedTuple):
    gamma: float
    alpha: float | None  # None: no class balancing
    axis: int


def _power(q: Array, gamma: float) -> tuple[Array, Array]:
    """Return ``(q**γ, d/dq q**γ)`` for ``q >= 0``; both 0 at ``q = 0`` for ``γ > 0`` (as the generic kernel)."""
    if gamma == 0:
        return jnp.ones_like(q), jnp.zeros_like(q)
    positive = q > 0
    safe = jnp.where(positive, q, jnp.ones_like(q))
    zeros = jnp.zeros_like(q)
    return jnp.where(positive, safe**gamma, zeros), jnp.where(positive, gamma * safe ** (gamma - 1), zeros)


def _focal_pieces(y: Array, x: Array, options: _FocalOptions) -> tuple[Array, ...]:
    p = _logit(x)
    bce = _bce(y, p)
    q = y * p.sig_neg + (1 - y) * p.sig_pos  # 1 - p_t, no cancellation
    weight, d_weight = _power(q, options.gamma)
    balance = None if options.alpha is None else y * options.alpha + (1 - y) * (1 - options.alpha)
    return p, bce, weight, d_weight, balance


def _focal_value(bce: Array, weight: Array, balance: Array | None, axis: int, dtype: Any) -> Array:
    focal = weight * bce
    if balance is not None:
        focal = balance * focal
    return jnp.mean(focal, axis=axis).astype(dtype)


def _focal_plain_value(y: Array, x: Array, options: _FocalOptions) -> Array:
    wide = _wide(x.dtype)
    _, bce, weight, _, balance = _focal_pieces(y.astype(wide), x.astype(wide), options)
    return _focal_value(bce, weight, balance, options.axis, x.dtype)


# The same loss twice: ``_binary_focal_plain`` differentiates by the XLA formula
# alone (_focal_formula_jvp), ``_binary_focal_from_logits`` (the fast path) by
# the compiled kernel where it can (_binary_focal_from_logits_jvp). The kernel's
# pair needs a formula whose own derivative never reaches the kernel again (its
# rows left NaN and higher derivatives go through it), hence two functions.
_binary_focal_plain = jax.custom_jvp(_focal_plain_value, nondiff_argnums=(2,))
_binary_focal_from_logits = jax.custom_jvp(_focal_plain_value, nondiff_argnums=(2,))


def _focal_kernel_params(options: _FocalOptions) -> tuple[float, ...]:
    """The compiled focal kernel's params (binary.c): gamma, its power mode, alpha, balancing, clip bounds."""
    gamma = options.gamma
    mode = gamma if gamma in (0.0, 1.0, 2.0) else 3.0
    alpha = 0.0 if options.alpha is None else options.alpha
    return (gamma, mode, alpha, 0.0 if options.alpha is None else 1.0, 0.0, 1.0)


def _focal_rows_formula(options: _FocalOptions, y: Array, x: Array) -> tuple[Array, Array]:
    """Per-row focal loss (classes last) and its gradient in ``x``, by the XLA formula."""
    rows = options._replace(axis=-1)
    value, pullback = jax.vjp(lambda q: _binary_focal_plain(y, q, rows), x)
    return value, pullback(jnp.ones_like(value))[0]


def _focal_rows_kernel(options: _FocalOptions, y: Array, x: Array) -> tuple[Array, Array]:
    """Per-row focal loss and its gradient by the compiled kernel (float64 inside; NaN rows for the formula)."""
    return _ffi.binary_rows(_native_kinds().KIND_FOCAL_LOGITS, y.astype(jnp.float32), x, divisor=x.shape[-1],
                            params=_focal_kernel_params(options), want_grad=True)


@functools.partial(_binary_focal_from_logits.defjvp, symbolic_zeros=True)
def _binary_focal_from_logits_jvp(options: _FocalOptions, primals: tuple[Array, Array],
                                  tangents: tuple[Any, Any]) -> tuple[Array, Array]:
    y_in, x_in = primals
    if _compiled(x_in) and _is_zero(tangents[0]) and not _is_zero(tangents[1]):
        # On CPU (float32 logits, the labels constant: a training step) the compiled
        # kernel computes the loss and its gradient in one pass, in float64 inside,
        # and the gradient is the only residual: jit(value_and_grad) is that call
        # and one multiply by the cotangent. The XLA formula (_focal_formula_jvp)
        # materialises its exp, sigmoid, bce and weight, four passes before the
        # gradient's (benchmarks/speed.py's JAX suite, 4096 x 256: 1.2-1.5x faster).
        pair = _ffi.choose(functools.partial(_focal_rows_formula, options),
                           functools.partial(_focal_rows_kernel, options))
        value, g = pair(_last(y_in, options.axis), _last(x_in, options.axis))
        return value, _linear([(jnp.moveaxis(g, -1, options.axis), tangents[1])],
                              lambda t: jnp.sum(t, axis=options.axis), value)
    return _focal_formula_jvp(options, primals, tangents)


@functools.partial(_binary_focal_plain.defjvp, symbolic_zeros=True)
def _focal_formula_jvp(options: _FocalOptions, primals: tuple[Array, Array],
                       tangents: tuple[Any, Any]) -> tuple[Array, Array]:
    y_in, x_in = primals
    wide = _wide(x_in.dtype)
    y, x = y_in.astype(wide), x_in.astype(wide)
    p, bce, weight, d_weight, balance = _focal_pieces(y, x, options)
    value = _focal_value(bce, weight, balance, options.axis, x_in.dtype)
    scale = 1 if balance is None else balance
    terms = []
    if not _is_zero(tangents[1]):
        # d/dx [w(q)·bce] = w'(q)·dq/dx·bce + w(q)·(sigmoid(x) - y), dq/dx = (1 - 2y)·σ(x)σ(-x).
        dq = (1 - 2 * y) * (p.sig_pos * p.sig_neg)
        d_bce = (1 - y) * p.sig_pos - y * p.sig_neg
        terms.append((scale * (d_weight * dq * bce + weight * d_bce), tangents[1]))
    if not _is_zero(tangents[0]):
        # d/dy: dq/dy = σ(-x) - σ(x), d bce/dy = -x, d balance/dy = 2α - 1.
        grad_y = scale * (d_weight * (p.sig_neg - p.sig_pos) * bce - weight * x)
        if balance is not None:
            grad_y = grad_y + (2 * options.alpha - 1) * (weight * bce)
        terms.append((grad_y, tangents[0]))
    return value, _linear(terms, lambda t: jnp.mean(t, axis=options.axis), value)


@fast_path("binary_focal_crossentropy", backend="jax")
def binary_focal_crossentropy(y_true: Array, y_pred: Array, *, apply_class_balancing: bool, alpha: float,
                              gamma: float, from_logits: bool, axis: int, epsilon: float, xp: Any) -> Array:
    """Binary focal cross-entropy from logits (float64 inside where JAX has it)."""
    if not from_logits or not _handled(y_pred):
        return NotImplemented
    options = _FocalOptions(float(gamma), float(alpha) if apply_class_balancing else None, axis)
    return _binary_focal_from_logits(y_true, y_pred, options)


# ------------------------------------------------------------------ Poisson and KL


def _poisson_value(t: Array, p: Array, epsilon: float) -> Array:
    """Poisson ``mean(p - t·log(p + ε))`` along the last axis (float64 inside where JAX has it)."""
    wide = _wide(p.dtype)
    eps = jnp.asarray(epsilon, p.dtype).astype(wide)
    tw, pw = t.astype(wide), p.astype(wide)
    return jnp.mean(pw - tw * jnp.log(pw + eps), axis=-1).astype(p.dtype)


def _binary_kernel(kind: int, params: tuple[float, ...], y: Array, x: Array) -> tuple[Array, Array]:
    return _ffi.binary_rows(kind, y.astype(jnp.float32), x, divisor=x.shape[-1], params=params, want_grad=True)


def _binary_primal(kind: int, params: tuple[float, ...], plain: Callable[[Array, Array], Array], y: Array, x: Array,
                   axis: int, *, mean: bool = True) -> Array:
    """The loss alone (no gradient): the compiled kernel on CPU for float32, else ``plain``.

    The kernel's rows are means along ``axis`` (``mean``) or sums.
    """
    if not _compiled(x):
        return plain(y, x)

    def on_cpu(y: Array, x: Array) -> Array:
        (loss,) = _ffi.binary_rows(kind, _last(y, axis).astype(jnp.float32), _last(x, axis),
                                   divisor=x.shape[axis] if mean else 1.0, params=params, want_grad=False)
        return lax.cond(jnp.any(~jnp.isfinite(loss)), lambda: plain(y, x), lambda: loss)

    return lax.platform_dependent(y, x, cpu=on_cpu, default=plain)


def _poisson_plain(t: Array, p: Array, axis: int, epsilon: float) -> Array:
    return _poisson_value(_last(t, axis), _last(p, axis), epsilon)


def _poisson_params(epsilon: float, dtype: Any) -> tuple[float, ...]:
    """The compiled kernel's Poisson parameters: ε, and float32 arithmetic where JAX has no float64."""
    float32 = 1.0 if _wide(dtype) == dtype else 0.0  # binary_impl.h's poisson_block
    return (float(np.float32(epsilon)), float32)


def _poisson_primal(t: Array, p: Array, axis: int, epsilon: float) -> Array:
    """The loss: the compiled kernel on CPU for float32, else the XLA formula.

    The kernel computes in float64 where JAX has it, and in float32 arithmetic
    without it (the rounding error of ``p + ε`` restored, products and sums in
    float64: docs/accuracy.md).
    """
    return _binary_primal(_native_kinds().KIND_POISSON if _compiled(p) else 0, _poisson_params(epsilon, p.dtype),
                          functools.partial(_poisson_plain, axis=axis, epsilon=epsilon), t, p, axis)


@functools.partial(jax.custom_jvp, nondiff_argnums=(2, 3))
def _poisson(t: Array, p: Array, axis: int, epsilon: float) -> Array:
    return _poisson_primal(t, p, axis, epsilon)


def _poisson_slope(t: Array, p: Array, epsilon: float, n: int) -> Array:
    """``d/dp mean(p - t·log(p + ε)) = ((p - t) + ε)/(p + ε)/n`` (float64 inside where JAX has it).

    ``p - t`` first: where ``t`` is near ``p + ε`` it is exact (Sterbenz), so the
    numerator carries one rounding, not the cancelled rounding error of ``p + ε``
    (a few ulps in float32). Plain elementwise XLA, so that ``jax.grad`` fuses it
    with the cotangent's scaling into one pass: the compiled kernel's own
    gradient would need that pass on top of its own, and costs more than the
    loss alone (measured in benchmarks/speed.py's JAX suite). The denominator's
    ε passes an optimization barrier: a ``p + ε`` shared with the value's XLA
    formula (off CPU) would make XLA store it for both passes.
    """
    wide = _wide(p.dtype)
    eps = jnp.asarray(epsilon, p.dtype).astype(wide)
    tw, pw = t.astype(wide), p.astype(wide)
    return ((((pw - tw) + eps) / (pw + lax.optimization_barrier(eps))) / n).astype(p.dtype)


@functools.partial(_poisson.defjvp, symbolic_zeros=True)
def _poisson_jvp(axis: int, epsilon: float, primals: tuple[Array, Array],
                 tangents: tuple[Any, Any]) -> tuple[Array, Array]:
    t, p = primals
    # The value by the custom_jvp function itself, so that differentiating this rule again
    # (jax.hessian) goes through this rule, not into the compiled kernel's FFI call.
    value = _poisson(t, p, axis, epsilon)
    n = p.shape[axis]
    terms = []
    if not _is_zero(tangents[1]):
        terms.append((_poisson_slope(t, p, epsilon, n), tangents[1]))
    if not _is_zero(tangents[0]):
        wide = _wide(p.dtype)
        eps = jnp.asarray(epsilon, p.dtype).astype(wide)
        terms.append((-jnp.log(p.astype(wide) + eps) / n, tangents[0]))
    return value, _linear(terms, lambda u: jnp.sum(u, axis=axis), value)


@fast_path("poisson", backend="jax")
def poisson(y_true: Array, y_pred: Array, *, axis: int, epsilon: float, xp: Any) -> Array:
    """Poisson: ``mean(p - y·log(p + ε))``, float64 inside where JAX has it."""
    if not _handled(y_pred):
        return NotImplemented
    return _poisson(y_true, y_pred, axis, float(epsilon))


# ------------------------------------------------------------------ binary CE from probabilities


def _bce_probs_formula(y: Array, p: Array, epsilon: float) -> tuple[Array, Array]:
    """The generic kernel's BCE from probabilities along the last axis, and its autodiff gradient."""
    def loss(q: Array) -> Array:
        return GENERIC["binary_crossentropy"](y, q, from_logits=False, axis=-1, epsilon=epsilon, xp=jnp)

    value, pullback = jax.vjp(loss, p)
    return value, pullback(jnp.ones_like(value))[0]


def _bce_probs_params(epsilon: float) -> tuple[float, ...]:
    # Keras clips to [ε, 1-ε] made in the input dtype, as the generic kernel's clip.
    return float(np.float32(epsilon)), float(np.float32(1.0 - epsilon))


def _bce_probs_plain(y: Array, p: Array, axis: int, epsilon: float) -> Array:
    return GENERIC["binary_crossentropy"](y, p, from_logits=False, axis=axis, epsilon=epsilon, xp=jnp)


@functools.partial(jax.custom_jvp, nondiff_argnums=(2, 3))
def _binary_from_probs(y: Array, p: Array, axis: int, epsilon: float) -> Array:
    return _binary_primal(_native_kinds().KIND_BCE_PROBS, _bce_probs_params(epsilon),
                          functools.partial(_bce_probs_plain, axis=axis, epsilon=epsilon), y, p, axis)


@functools.partial(_binary_from_probs.defjvp, symbolic_zeros=True)
def _binary_from_probs_jvp(axis: int, epsilon: float, primals: tuple[Array, Array],
                           tangents: tuple[Any, Any]) -> tuple[Array, Array]:
    y, p = primals
    kernel = functools.partial(_binary_kernel, _native_kinds().KIND_BCE_PROBS, _bce_probs_params(epsilon))
    value, g = _ffi.choose(functools.partial(_bce_probs_formula, epsilon=epsilon), kernel)(_last(y, axis),
                                                                                          _last(p, axis))
    terms = [(jnp.moveaxis(g, -1, axis), tangents[1])]
    if not _is_zero(tangents[0]):  # the label's slope: autodiff of the generic kernel (rare)
        g_y = jax.grad(lambda u: jnp.sum(_bce_probs_plain(u, p, axis, epsilon)))(y)
        terms.append((g_y, tangents[0]))
    return value, _linear(terms, lambda u: jnp.sum(u, axis=axis), value)


def _native_kinds() -> Any:
    """The binary module's kernel kinds (its constants; the module is loaded where ``_compiled`` holds)."""
    return _ffi.native_binary()


def _clip_slope(x: Array, low: float, high: float) -> Array:
    """The derivative JAX gives ``min(max(x, low), high)``: 1 inside, 1/2 at a bound, 0 outside."""
    half = jnp.asarray(0.5, x.dtype)
    return (half * ((x >= low).astype(x.dtype) + (x > low).astype(x.dtype))
            * half * ((x <= high).astype(x.dtype) + (x < high).astype(x.dtype)))


def _log_ratio(t: Array, p: Array) -> Array:
    """``log(t/p)`` for float32 ``t, p`` in ``[ε, 1]`` held in float64: ``log1p((t - p)/p)``.

    There ``t - p`` and the quotient carry float64's precision, so the one logarithm
    is accurate everywhere (``t/p >= ε``: ``1 + r`` keeps ~2⁻³⁰ relative precision).
    """
    return jnp.log1p((t - p) / p)


def _clip(x: Array, low: float, high: float) -> Array:
    """``clip(x, low, high)`` written as two maxima (XLA turns ``min(max)`` into a ``clamp``).

    The value's pass and the gradient's must not share a subexpression (XLA would
    write it to memory for both): the gradient clips with ``jnp.clip``, the value
    with this spelling of the same numbers.
    """
    return -jnp.maximum(-jnp.maximum(x, low), -high)


def _split(a: Array) -> tuple[Array, Array]:
    """Veltkamp's split ``a = hi + lo``, each half with at most half the significand's bits."""
    factor = 4097.0 if a.dtype == jnp.float32 else 134217729.0  # 2^12 + 1, 2^27 + 1
    c = a * factor
    hi = c - (c - a)
    return hi, a - hi


def _kl_terms(t: Array, p: Array, low: float) -> tuple[Array, Array]:
    """Per-entry ``(t·log(t/p), t/p)`` of the clipped inputs, in their own dtype, in one fused pass.

    ``q = t/p`` is rounded; ``ρ = t - q·p`` is its exact remainder (Dekker's product,
    no FMA needed), and ``log(t/p) = log(q) + log1p(ρ/(q·p)) ≈ log(q) + ρ/t``, so
    ``t·log(t/p) = t·log(q) + ρ`` to a few ulps, ``t ≈ p`` included (where ``log(q)``
    is accurate relative to itself). One logarithm and one division, no branch:
    XLA evaluates every branch of a ``where``. The ``abs`` of the non-negative ``q``
    lets XLA fuse the division into the pass (it will not fuse a division that a
    fused pass reads several times), and the final ``where(t != t, t, ·)``, the
    identity, keeps this pass out of the reduction, which on XLA CPU runs long
    element-wise chains slowly.
    """
    tc, pc = _clip(t, low, 1.0), _clip(p, low, 1.0)
    q = jnp.abs(tc / pc)
    q_hi, q_lo = _split(q)
    p_hi, p_lo = _split(pc)
    remainder = (((tc - q_hi * p_hi) - q_hi * p_lo) - q_lo * p_hi) - q_lo * p_lo
    terms = tc * jnp.log(q) + remainder
    return jnp.where(t != t, t, terms), q


def _kl_value(t: Array, p: Array, axis: int, epsilon: float) -> Array:
    wide = _wide(p.dtype)
    if wide == p.dtype:
        return jnp.sum(_kl_terms(t, p, epsilon)[0], axis=axis)
    tc = jnp.clip(t, epsilon, 1.0).astype(wide)
    pc = jnp.clip(p, epsilon, 1.0).astype(wide)
    return jnp.sum(tc * _log_ratio(tc, pc), axis=axis).astype(p.dtype)


def _kl_params(low: float) -> tuple[float, ...]:
    """The compiled kernel's KL parameters: the clip's lower bound and float32 arithmetic (binary_impl.h)."""
    return (float(np.float32(low)), 1.0)


def _kl_primal(t: Array, p: Array, axis: int, epsilon: float) -> Array:
    """The loss: without float64, the compiled kernel's float32 mode on CPU, else the XLA formula.

    The kernel evaluates ``_kl_terms``'s formula (``t·log(q) + ρ``, the exact
    remainder ``ρ`` by a float64 product) in one pass and sums in float64; with
    float64 on, the XLA formula computes in float64 and is kept.
    """
    if _wide(p.dtype) != p.dtype or not _compiled(p):
        return _kl_value(t, p, axis, epsilon)
    return _binary_primal(_native_kinds().KIND_KL, _kl_params(epsilon),
                          functools.partial(_kl_value, axis=axis, epsilon=epsilon), t, p, axis, mean=False)


@functools.partial(jax.custom_jvp, nondiff_argnums=(2, 3))
def _kl(t: Array, p: Array, axis: int, epsilon: float) -> Array:
    return _kl_primal(t, p, axis, epsilon)


@functools.partial(_kl.defjvp, symbolic_zeros=True)
def _kl_jvp(axis: int, epsilon: float, primals: tuple[Array, Array],
            tangents: tuple[Any, Any]) -> tuple[Array, Array]:
    t, p = primals
    # The value by the custom_jvp function itself, so that differentiating this rule again
    # (jax.hessian) goes through this rule, not into the compiled kernel's FFI call.
    value = _kl(t, p, axis, epsilon)
    tc, pc = jnp.clip(t, epsilon, 1.0), jnp.clip(p, epsilon, 1.0)
    terms = []
    if not _is_zero(tangents[1]):
        # d/dp t·log(t/p) = -t/p, in the input dtype (one rounded division).
        terms.append((-(tc / pc) * _clip_slope(p, epsilon, 1.0), tangents[1]))
    if not _is_zero(tangents[0]):
        # d/dt t·log(t/p) = log(t/p) + 1.
        wide = _wide(p.dtype)
        if wide == p.dtype:
            log_ratio = _kl_terms(t, p, epsilon)[0] / tc
        else:
            log_ratio = _log_ratio(tc.astype(wide), pc.astype(wide))
        terms.append(((log_ratio + 1).astype(p.dtype) * _clip_slope(t, epsilon, 1.0), tangents[0]))
    return value, _linear(terms, lambda u: jnp.sum(u, axis=axis), value)


@fast_path("kl_divergence", backend="jax")
def kl_divergence(y_true: Array, y_pred: Array, *, axis: int, epsilon: float, xp: Any) -> Array:
    """KL divergence of inputs clipped to ``[ε, 1]``, float64 inside where JAX has it."""
    if not _handled(y_pred):
        return NotImplemented
    low, _ = clip_bounds(epsilon, y_pred.dtype, xp=xp)
    return _kl(y_true, y_pred, axis, low)
