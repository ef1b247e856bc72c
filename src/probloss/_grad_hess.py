"""``probloss.grad_hess``: a loss's first and second derivatives in its raw scores.

The contract layer of the derivatives (see :mod:`probloss._kernels._derivatives`
for the math): it reads the options of a probloss loss object, resolves the array
namespace and dtype as the loss does, smooths labels, builds the class weights,
masks ignored labels, applies sample weights and the optional Hessian floor.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ._functional import (
    binary_crossentropy,
    binary_focal_crossentropy,
    categorical_crossentropy,
    categorical_focal_crossentropy,
    poisson,
    prepare,
    sparse_categorical_crossentropy,
)
from ._kernels._derivatives import binary_grad_hess, poisson_grad_hess, softmax_grad_hess
from ._loss import LossFunctionWrapper
from ._namespace import device_of
from ._numerics import wide_dtype
from ._reduction import squeeze_or_expand_to_same_rank
from ._validation import canonical_axis, check_same_shape

__all__ = ["grad_hess", "loss_options"]

Array = Any

_BINARY = (binary_crossentropy, binary_focal_crossentropy)
_SOFTMAX = (categorical_crossentropy, categorical_focal_crossentropy, sparse_categorical_crossentropy)
_SUPPORTED = ("BinaryCrossentropy", "BinaryFocalCrossentropy", "CategoricalCrossentropy",
              "CategoricalFocalCrossentropy", "SparseCategoricalCrossentropy", "Poisson")


def loss_options(loss: Any) -> tuple[Any, dict[str, Any]]:
    """Return ``(loss function, its options)`` of a loss that :func:`grad_hess` supports.

    Accepts a probloss loss object (or anything :func:`probloss.get` resolves to
    one: a name or a config). Raises a ``TypeError`` naming the supported losses
    otherwise, and a ``ValueError`` for a loss built with ``from_logits=False``.
    """
    if not isinstance(loss, LossFunctionWrapper):
        from ._registry import get

        try:
            resolved = get(loss)
        except (ValueError, TypeError):
            resolved = None
        if resolved in (*_BINARY, *_SOFTMAX, poisson):  # a function's name: its default options
            resolved = LossFunctionWrapper(resolved)
        if not isinstance(resolved, LossFunctionWrapper):
            msg = (f"grad_hess needs a probloss loss object, one of {', '.join(_SUPPORTED)} "
                   f"(or its name). Received: loss={loss!r}")
            raise TypeError(msg)
        loss = resolved
    fn = loss.fn
    if fn not in (*_BINARY, *_SOFTMAX, poisson):
        msg = (f"grad_hess supports {', '.join(_SUPPORTED)}; it has no raw-score derivative for "
               f"{type(loss).__name__} (loss function {getattr(fn, '__name__', fn)!r}).")
        raise TypeError(msg)
    options = dict(loss._values_kwargs)
    # Options added beyond Keras's (class and positive-class weights, log-space inputs)
    # have no raw-score derivative here yet: refuse them rather than ignore them.
    unsupported = sorted(k for k in ("class_weight", "pos_weight", "log_input", "full")
                         if options.get(k) not in (None, False))
    if unsupported or getattr(loss, "normalize_by", "count") != "count":
        msg = (f"grad_hess does not support the option(s) {unsupported or ['normalize_by']} of "
               f"{type(loss).__name__}; build the loss without them.")
        raise ValueError(msg)
    if fn is not poisson and not options["from_logits"]:
        msg = (f"grad_hess differentiates with respect to raw scores (logits), so the loss must be "
               f"built with from_logits=True. Received {type(loss).__name__} with from_logits=False; "
               f"use {type(loss).__name__}(from_logits=True, ...) with the same other options.")
        raise ValueError(msg)
    return fn, options


def grad_hess(loss: Any, y_true: Any, raw_score: Any, sample_weight: Any = None, *,
              hessian_floor: float | None = None) -> tuple[Array, Array]:
    """First and second derivatives of a loss with respect to its raw scores.

    The derivatives gradient-boosting libraries take as a custom objective,
    computed exactly (no autodiff) on any array library, for the unreduced loss
    of each sample:

    * ``BinaryCrossentropy`` / ``BinaryFocalCrossentropy``: per element of the
      logits (the mean over ``axis`` is not taken: each element is its own
      sample), with label smoothing, ``gamma`` and class balancing (``alpha``).
    * ``CategoricalCrossentropy``, ``CategoricalFocalCrossentropy``,
      ``SparseCategoricalCrossentropy``: the gradient of each sample's loss with
      respect to every logit along the class ``axis``, and the diagonal of its
      Hessian, as XGBoost and LightGBM use; with label smoothing, ``alpha``
      (a float or one per class), ``gamma`` and ``ignore_class`` (grad and hess
      0 on ignored samples).
    * ``Poisson``: in the log-rate ``z`` (the rate is ``exp(z)``), of the
      negative log-likelihood ``exp(z) - y·z``. ``probloss.Poisson`` takes the
      rate itself, as Keras, and adds ``ε`` inside its log:
      ``poisson(y, exp(z)) = exp(z) - y·log(exp(z) + ε)``, which differs from
      the log-likelihood by ``y·log1p(ε·e^-z)`` (< ``y·ε·e^-z``) and is not
      convex in ``z``; the derivatives here are those of the ``ε -> 0`` limit,
      the convex loss boosting needs (as XGBoost's ``count:poisson``).

    The loss must be built with ``from_logits=True``: boosting's raw scores are
    logits, and the derivative of a loss on clipped probabilities vanishes
    wherever the clip is active, which stalls a booster. A loss built with
    ``from_logits=False`` raises a ``ValueError`` that says so.

    Sample weights multiply both derivatives: one per sample (the leading
    dimensions of the per-sample losses), a scalar, or one per element.

    The cross-entropies are convex in the logits and their Hessian is never
    negative. The focal losses are not convex: their exact Hessian is
    negative where a sample is confidently wrong (for ``gamma = 2`` and a hard
    label, a logit more than about 2.8 on the wrong side), and it is
    returned as is. Boosting needs positive Hessians: ``hessian_floor=1e-16``
    (what the probloss adapters pass, and XGBoost's own floor) clips the
    loss's Hessian from below before the sample weights apply.

    Args:
        loss: a probloss loss object (or a name or config for
            :func:`probloss.get`) built with ``from_logits=True``.
        y_true: the labels, as the loss takes them.
        raw_score: the raw scores (logits, or log-rates for ``Poisson``), the
            shape the loss takes as ``y_pred``.
        sample_weight: optional non-negative weights, as the loss takes them.
        hessian_floor: if set, ``max(hess, hessian_floor)`` before the sample weights.

    Returns:
        ``(grad, hess)``: two arrays of ``raw_score``'s shape, library, device
        and dtype (the loss's ``dtype`` if set). float32 inputs are computed in
        float64 where the library has it, and rounded once.

    Raises:
        TypeError: for a loss without raw-score derivatives (``KLDivergence``,
            custom losses).
        ValueError: for ``from_logits=False``, or mismatched shapes.

    Examples:
        >>> import numpy as np
        >>> import probloss
        >>> loss = probloss.BinaryCrossentropy(from_logits=True)
        >>> grad, hess = probloss.grad_hess(loss, np.array([0.0, 1.0]), np.array([0.0, 2.0]))
        >>> grad.round(4), hess.round(4)  # sigmoid(x) - y and sigmoid(x)·sigmoid(-x)
        (array([ 0.5   , -0.1192]), array([0.25 , 0.105]))
        >>> focal = probloss.CategoricalFocalCrossentropy(gamma=2.0, from_logits=True)
        >>> grad, hess = probloss.grad_hess(focal, [[0.0, 1.0, 0.0]], [[1.0, 2.0, -1.0]])
        >>> grad.shape, bool(abs(float(grad.sum())) < 1e-7)  # softmax: the gradient sums to 0
        ((1, 3), True)
    """
    fn, options = loss_options(loss)
    if isinstance(loss, LossFunctionWrapper):
        dtype, validate = loss.dtype, loss.validate
    else:
        dtype = validate = None
    sparse = fn is sparse_categorical_crossentropy
    x, weight = prepare(y_true, raw_score, dtype=dtype, validate=validate, sparse=sparse,
                        sample_weight=sample_weight)
    xp, y, z = x.xp, x.y_true, x.y_pred
    wide = wide_dtype(z, xp=xp)
    z = xp.astype(z, wide, copy=False)
    if not sparse:
        y = xp.astype(y, wide, copy=False)
    mask = None
    if fn in _BINARY or fn is poisson:
        y, z_adjusted = squeeze_or_expand_to_same_rank(y, z, xp=xp, expand_rank_1=False)
        if z_adjusted.ndim != z.ndim:  # a (B,) label against (B, 1) scores: keep the scores' shape
            y = xp.reshape(y, tuple(z.shape))
        check_same_shape(y, z)
        if fn is poisson:
            x.checker.in_range(x.y_true, "y_true", 0.0, float("inf"))
            grad, hess = poisson_grad_hess(y, z, xp=xp)
        else:
            x.checker.in_range(x.y_true, "y_true", 0.0, 1.0)
            grad, hess, class_weight = _binary(y, z, options, xp=xp)
            if class_weight is not None:
                grad, hess = grad * class_weight, hess * class_weight
        per_sample_ndim = z.ndim
        axis = None
    else:
        axis = canonical_axis(options["axis"], z.ndim)
        if z.shape[axis] == 0:
            msg = f"Argument `raw_score` has no classes along axis {axis}. Received shape {tuple(z.shape)}."
            raise ValueError(msg)
        w, mask = _softmax_weights(fn, y, z, options, axis, x.checker, xp=xp)
        grad, hess = softmax_grad_hess(w, z, gamma=options.get("gamma", 0.0), axis=axis, xp=xp)
        per_sample_ndim = z.ndim - 1
    if hessian_floor is not None:
        hess = xp.maximum(hess, xp.asarray(float(hessian_floor), dtype=hess.dtype, device=device_of(hess)))
    factor = mask
    if weight is not None:
        x.checker.in_range(weight, "sample_weight", 0.0, float("inf"),
                           hint=" Sample weights must be non-negative.")
        weight = _align_weight(xp.astype(weight, wide), tuple(z.shape), per_sample_ndim, axis, xp=xp)
        factor = weight if factor is None else factor * weight
    if factor is not None:
        grad, hess = grad * factor, hess * factor
    return xp.astype(grad, x.out_dtype, copy=False), xp.astype(hess, x.out_dtype, copy=False)


def _binary(y: Array, z: Array, options: dict[str, Any], *, xp: Any) -> tuple[Array, Array, Array | None]:
    smoothing = options["label_smoothing"]
    if smoothing:
        y = y * (1.0 - smoothing) + 0.5 * smoothing
    gamma = options.get("gamma", 0.0)
    grad, hess = binary_grad_hess(y, z, gamma=gamma, xp=xp)
    if options.get("apply_class_balancing"):
        alpha = options["alpha"]
        return grad, hess, y * alpha + (1 - y) * (1 - alpha)
    return grad, hess, None


def _softmax_weights(fn: Any, y: Array, z: Array, options: dict[str, Any], axis: int, checker: Any, *,
                     xp: Any) -> tuple[Array, Array | None]:
    """Return the per-class weights ``alpha_c · y_c`` and the valid-sample mask (sparse only)."""
    num_classes = z.shape[axis]
    if fn is sparse_categorical_crossentropy:
        if y.ndim == z.ndim and y.shape[axis] == 1:
            y = xp.squeeze(y, axis=axis)
        expected = tuple(z.shape[:axis]) + tuple(z.shape[axis + 1:])
        if tuple(y.shape) != expected:
            msg = (f"Arguments `y_true` and `raw_score` must have matching shapes: y_true.shape must be "
                   f"raw_score.shape without the class axis (axis={axis}). Received: "
                   f"y_true.shape={tuple(y.shape)}, raw_score.shape={tuple(z.shape)}")
            raise ValueError(msg)
        ignore_class = options["ignore_class"]
        checker.labels(y, num_classes, ignore_class)
        shape = [1] * z.ndim
        shape[axis] = num_classes
        classes = xp.reshape(xp.arange(num_classes, dtype=y.dtype, device=device_of(z)), tuple(shape))
        labels = xp.expand_dims(y, axis=axis)
        w = xp.astype(labels == classes, z.dtype)
        in_range = (labels >= 0) & (labels < num_classes)
        # A label outside [0, num_classes) (with validation off) gives NaN in its row, never a number.
        w = xp.where(in_range, w, xp.full_like(w, float("nan")))
        if ignore_class is None:
            return w, None
        valid = labels != ignore_class
        return xp.where(valid, w, xp.zeros_like(w)), xp.astype(valid, z.dtype)
    check_same_shape(y, z)
    checker.in_range(y, "y_true", 0.0, 1.0)
    smoothing = options["label_smoothing"]
    if smoothing:
        y = y * (1.0 - smoothing) + smoothing / num_classes
    if fn is categorical_focal_crossentropy:
        alpha = options["alpha"]
        if isinstance(alpha, Sequence):
            # Keras broadcasts a per-class alpha against the last axis.
            y = y * xp.asarray([float(a) for a in alpha], dtype=z.dtype, device=device_of(z))
        else:
            y = y * float(alpha)
    return y, None


def _align_weight(weight: Array, shape: tuple[int, ...], per_sample_ndim: int, axis: int | None, *,
                  xp: Any) -> Array:
    """Shape ``sample_weight`` to multiply the derivatives of ``shape``.

    A weight covers the leading dimensions of the per-sample losses (one per
    sample), is a scalar, or (binary losses) has the scores' full shape.
    """
    per_sample = shape if axis is None else shape[:axis] + shape[axis + 1:]
    if weight.ndim > per_sample_ndim or tuple(weight.shape) != tuple(per_sample[:weight.ndim]):
        if weight.ndim == len(per_sample) and all(w in (1, s) for w, s in zip(weight.shape, per_sample,
                                                                              strict=True)):
            pass  # a full-rank weight that broadcasts
        else:
            msg = (f"`sample_weight` of shape {tuple(weight.shape)} does not match the leading dimensions of "
                   f"the per-sample losses of shape {tuple(per_sample)}: pass one weight per sample, "
                   "a scalar, or one per element.")
            raise ValueError(msg)
    weight = xp.reshape(weight, tuple(weight.shape) + (1,) * (len(per_sample) - weight.ndim))
    if axis is not None:
        weight = xp.expand_dims(weight, axis=axis)
    return weight
