"""First and second derivatives of the losses with respect to their raw scores.

Pure array-API math, ``xp`` keyword-only, no validation: the contract (label
smoothing, class weights, masks, sample weights, dtypes) lives in
:func:`probloss.grad_hess`. Every formula is written so that no intermediate
overflows or forms ``0 * inf`` at extreme scores (``|x| = 1e4`` and beyond):
sigmoids from ``exp(-|x|)``, softmax through ``-log_softmax``, and the focal
factors through ratios that stay in ``[0, 1]``. The derivations are in
docs/gbdt.md.

These functions are not dispatch kernels (no per-backend fast path: the
boosting libraries hand over NumPy arrays, and the cost is a few elementwise
passes).
"""

from __future__ import annotations

import math
from typing import Any

from .._numerics import (
    logit_parts,
    neg_log_softmax,
    pow_nonnegative,
    sigmoid_pair,
    zero_safe_multiply,
)
from ._crossentropy import binary_from_logit_parts

Array = Any


def binary_grad_hess(y: Array, x: Array, *, gamma: float, xp: Any) -> tuple[Array, Array]:
    """Derivatives of ``(1 - p_t)^gamma · bce(y, sigmoid(x))`` per element (``gamma = 0``: BCE).

    With ``m = 1 - p_t = y·σ(-x) + (1-y)·σ(x)``, ``b`` the cross-entropy and
    ``s = σ(x)σ(-x)``::

        f'  = m^γ [γ D b + b']
        f'' = m^γ [γ(γ-1) D² b + γ D t b + 2γ D b' + s]

    where ``b' = σ(x) - y``, ``t = σ(-x) - σ(x)`` and ``D = m'/m = (1-2y)·s/m``,
    a ratio in ``[-1, 1]`` computed without forming ``s`` or ``m`` (both
    underflow to 0 together for a confident correct score).
    """
    parts = logit_parts(x, xp=xp)
    sig, sig_neg = sigmoid_pair(parts, x, xp=xp)
    s = sig * sig_neg
    # σ(x) - y as (1-y)·σ(x) - y·σ(-x): no cancellation for a hard label.
    first = (1 - y) * sig - y * sig_neg
    if gamma == 0:
        return first, s
    b = binary_from_logit_parts(y, parts, xp=xp)
    m = y * sig_neg + (1 - y) * sig
    # s/m = 1/(1 + y·e^{-x} + (1-y)·e^{x}). With e = exp(-|x|) and the label weights
    # a (on the overflowing exponential) and c (on the other):
    #   s/m = e / (e + a + c·e²),  or  1 / (1 + c·e)  where a = 0 (a hard label).
    positive = x >= 0
    a = xp.where(positive, 1 - y, y)
    c = xp.where(positive, y, 1 - y)
    e = parts.e
    hard = a == 0
    ratio = xp.where(hard, 1 / (1 + c * e), e / xp.where(hard, xp.ones_like(e), e + a + c * e * e))
    d = (1 - 2 * y) * ratio
    t = sig_neg - sig
    weight = pow_nonnegative(m, gamma, xp=xp)
    grad = weight * (gamma * d * b + first)
    hess = weight * (gamma * (gamma - 1) * d * d * b + gamma * d * t * b + 2 * gamma * d * first + s)
    return grad, hess


def softmax_grad_hess(w: Array, x: Array, *, gamma: float, axis: int, xp: Any) -> tuple[Array, Array]:
    """Gradient and Hessian diagonal of ``sum_c w_c · h(L_c)`` in the logits ``x``.

    ``L_c = -log softmax(x)_c`` and ``h(L) = (1 - e^{-L})^γ · L`` (``γ = 0``:
    cross-entropy). ``w`` holds the class weights times the labels. With
    ``p = e^{-L}``, ``q = 1 - p``, ``dL_c/dx_j = p_j - δ_cj``::

        g_j = Σ_c w_c h'(L_c) (p_j - δ_cj)
        H_jj = Σ_c w_c [h''(L_c) (p_j - δ_cj)² + h'(L_c) p_j q_j]

    ``h'(L) = q^γ (γ p L/q + 1)`` and ``h''(L)·q² = γ p q^γ (2q - L + γ p L)``
    are bounded; ``h''`` alone grows like ``q^(γ-1)`` as a class becomes
    certain, so the (at most one) class with ``p > 1/2`` enters through
    ``h''·q²`` times ``(p_j/q_c)² <= 1``.
    """
    nll = neg_log_softmax(x, axis=axis, xp=xp)
    p = xp.exp(-nll)
    q = -xp.expm1(-nll)
    if gamma == 0:
        total = xp.sum(w, axis=axis, keepdims=True)
        # p_j (Σw - w_j) - w_j q_j: exact for a one-hot target (no 1 - p forms).
        return p * (total - w) - w * q, total * p * q
    q_gamma = pow_nonnegative(q, gamma, xp=xp)
    positive_q = q > 0
    ones = xp.ones_like(q)
    zeros = xp.zeros_like(q)
    # L/q -> 1 as L -> 0 (and q rounds to 0 only there).
    l_over_q = xp.where(positive_q, nll / xp.where(positive_q, q, ones), ones)
    # p·(L/q) is 0·inf only for a -inf logit (L = inf): its p is exactly 0.
    p_l_over_q = zero_safe_multiply(p, l_over_q, xp=xp)
    first = zero_safe_multiply(w, q_gamma * (gamma * p_l_over_q + 1), xp=xp)  # w·h'
    second_q2 = zero_safe_multiply(
        w, gamma * p * q_gamma * (2 * q - nll + gamma * zero_safe_multiply(p, nll, xp=xp)), xp=xp)  # w·h''·q²
    total_first = xp.sum(first, axis=axis, keepdims=True)
    grad = p * (total_first - first) - first * q
    dominant = p > 0.5
    regular_q2 = xp.where(dominant, ones, q * q)
    second = xp.where(dominant, zeros, second_q2 / regular_q2)  # w·h'' where q >= 1/2
    total_second = xp.sum(second, axis=axis, keepdims=True)
    q_dom = xp.sum(xp.where(dominant, q, zeros), axis=axis, keepdims=True)
    second_dom = xp.sum(xp.where(dominant, second_q2, zeros), axis=axis, keepdims=True)
    has_q_dom = q_dom > 0
    others = xp.where(dominant, zeros, p)  # the dominant class's own p over q_dom would overflow
    ratio = xp.where(has_q_dom, others / xp.where(has_q_dom, q_dom, ones), zeros)
    ratio = xp.minimum(ratio, ones)  # p_j <= q_c for j != c; rounding only
    hess = second_q2 + p * p * (total_second - second) + second_dom * ratio * ratio + p * q * total_first
    return grad, hess


def poisson_grad_hess(y: Array, z: Array, *, xp: Any) -> tuple[Array, Array]:
    """Derivatives of ``exp(z) - y·z`` in the log-rate ``z``: ``exp(z) - y`` and ``exp(z)``.

    ``exp(z)`` is +inf above the dtype's largest finite exponent, the correctly
    rounded value of the derivative; it is formed without an overflow warning.
    """
    limit = math.log(float(xp.finfo(z.dtype).max))
    over = z > limit
    rate = xp.exp(xp.where(over, xp.zeros_like(z), z))
    inf = xp.full_like(z, math.inf)
    return xp.where(over, inf, rate - y), xp.where(over, inf, rate)
