"""Poisson and Kullback-Leibler divergence kernels."""

from __future__ import annotations

import math
from typing import Any

from .._dispatch import kernel
from .._namespace import device_of
from .._numerics import clip, log_ratio, wide_dtype, zero_safe_multiply

Array = Any


@kernel
def poisson(y_true: Array, y_pred: Array, *, axis: int, epsilon: float, xp: Any,
            log_input: bool = False, full: bool = False) -> Array:
    # See probloss.poisson for the contract: Keras's mean(p - y·log(p + ε)), or
    # mean(exp(z) - y·z) on log-rates, plus PyTorch's Stirling term with `full`.
    # The terms cancel (p ≈ y·log p, and signs mix across the axis), so float32
    # inputs are computed in float64 and rounded once (see docs/accuracy.md).
    # Fast paths take neither option: the functional layer calls this kernel directly.
    wide = wide_dtype(y_pred, xp=xp)
    t = xp.astype(y_true, wide)
    p = xp.astype(y_pred, wide)
    if log_input:
        # exp(z) - y·z, and 0 for y = 0 even where z = -inf (a rate of 0 and a count of 0).
        values = xp.exp(p) - zero_safe_multiply(t, p, xp=xp)
    else:
        eps = xp.astype(xp.asarray(epsilon, dtype=y_pred.dtype, device=device_of(y_pred)), wide)
        values = p - t * xp.log(p + eps)
    if full:
        values = values + stirling(t, xp=xp)
    return xp.astype(xp.mean(values, axis=axis), y_pred.dtype)


def stirling(t: Array, *, xp: Any) -> Array:
    """PyTorch's Stirling approximation of ``log(t!)``: ``t·log t - t + log(2πt)/2`` where ``t > 1``, else 0.

    The unused branch sees ``t = 1`` so that neither its value nor its gradient is NaN.
    """
    counted = t > 1
    safe = xp.where(counted, t, xp.ones_like(t))
    term = safe * xp.log(safe) - safe + 0.5 * xp.log(2 * math.pi * safe)
    return xp.where(counted, term, xp.zeros_like(t))


@kernel
def kl_divergence(y_true: Array, y_pred: Array, *, axis: int, epsilon: float, xp: Any,
                  log_input: bool = False, log_target: bool = False) -> Array:
    # See probloss.kl_divergence for the contract: Keras clips both to [ε, 1].
    # Terms of both signs cancel in the sum (to ~0 for close distributions), so
    # float32 inputs are summed in float64 and rounded once (see docs/accuracy.md).
    # Fast paths take neither option: the functional layer calls this kernel directly.
    if log_input or log_target:
        return _kl_divergence_logs(y_true, y_pred, axis=axis, epsilon=epsilon, log_input=log_input,
                                   log_target=log_target, xp=xp)
    wide = wide_dtype(y_pred, xp=xp)
    t = xp.astype(clip(y_true, epsilon, 1.0, xp=xp), wide)
    p = xp.astype(clip(y_pred, epsilon, 1.0, xp=xp), wide)
    return xp.astype(xp.sum(t * log_ratio(t, p, xp=xp), axis=axis), y_pred.dtype)


def _kl_divergence_logs(y_true: Array, y_pred: Array, *, axis: int, epsilon: float, log_input: bool,
                        log_target: bool, xp: Any) -> Array:
    """``sum(t·(log t - log q))`` with either argument given as log-probabilities.

    A log argument is taken exactly; a probability argument is clipped to
    ``[ε, 1]`` as Keras does. A target of 0 (log-target ``-inf``) contributes 0,
    and neither it nor its gradient is NaN.
    """
    wide = wide_dtype(y_pred, xp=xp)
    q = xp.astype(y_pred, wide)
    log_q = q if log_input else xp.log(xp.astype(clip(y_pred, epsilon, 1.0, xp=xp), wide))
    if log_target:
        log_t = xp.astype(y_true, wide)
        present = log_t > -math.inf
        safe = xp.where(present, log_t, xp.zeros_like(log_t))
        terms = xp.where(present, xp.exp(safe) * (safe - log_q), xp.zeros_like(log_t))
    else:
        t = xp.astype(clip(y_true, epsilon, 1.0, xp=xp), wide)
        terms = t * (xp.log(t) - log_q)
    return xp.astype(xp.sum(terms, axis=axis), y_pred.dtype)
