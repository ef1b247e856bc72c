"""Linear cross-entropy: the output projection fused with sparse categorical cross-entropy.

``linear_cross_entropy(hidden, weight, labels)`` is Keras's
``SparseCategoricalCrossentropy(from_logits=True)`` applied to ``hidden @ weight.T
(+ bias)``, computed over chunks of tokens so that the ``[tokens, vocabulary]`` logits,
their softmax and their gradient never exist whole. The reduction, ``sample_weight`` and
``ignore_class`` follow Keras exactly (:mod:`probloss._reduction`); the per-token loss
adds the z-loss and tanh soft-capping that large-model training uses.

Every reduction is linear in the per-token losses: ``loss = sum_i coef_i L_i`` with
``coef`` depending only on the labels, the weights and the mask. The coefficients are
computed first (cheap, ``[N]``), so that the chunked kernels can produce the gradients
in the same pass as the loss (see :mod:`probloss._backends._torch_linear_ce`).
"""

from __future__ import annotations

import math
import numbers
from typing import Any, NamedTuple

import array_api_compat
import numpy as np

from ._kernels._linear_ce import (
    CHUNK_ELEMENTS,
    LinearCEOptions,
    default_chunk_rows,
    generic_linear_ce,
    numpy_linear_ce,
)
from ._loss import Loss, _standardize_dtype
from ._namespace import as_arrays, device_of, is_eager, is_floating, is_integer, library_name, static_size
from ._numerics import divide_no_nan
from ._reduction import partial_terms, reduce_weighted_values, standardize_reduction
from ._validation import check_ignore_class, check_label_smoothing

__all__ = ["LinearCrossEntropy", "LinearCrossEntropyGrad", "linear_cross_entropy",
           "linear_cross_entropy_with_grad"]

Array = Any
_MEANS = ("sum_over_batch_size", "mean", "mean_with_sample_weight")


class LinearCrossEntropyGrad(NamedTuple):
    """The result of :func:`probloss.linear_cross_entropy_with_grad`."""

    loss: Array
    hidden: Array
    weight: Array
    bias: Array | None


def _check_options(label_smoothing: object, z_loss: object, logit_softcap: object,
                   chunk_size: object) -> tuple[float, float, float | None, int | None]:
    smoothing = check_label_smoothing(label_smoothing)
    if isinstance(z_loss, bool) or not isinstance(z_loss, numbers.Real) or not (
            math.isfinite(float(z_loss)) and float(z_loss) >= 0):
        msg = f"`z_loss` must be a finite real number >= 0. Received: z_loss={z_loss!r}"
        raise ValueError(msg)
    cap = None
    if logit_softcap is not None:
        if isinstance(logit_softcap, bool) or not isinstance(logit_softcap, numbers.Real) or not (
                math.isfinite(float(logit_softcap)) and float(logit_softcap) > 0):
            msg = ("`logit_softcap` must be None or a finite real number > 0. "
                   f"Received: logit_softcap={logit_softcap!r}")
            raise ValueError(msg)
        cap = float(logit_softcap)
    if chunk_size is not None and (isinstance(chunk_size, bool) or not isinstance(chunk_size, numbers.Integral)
                                   or int(chunk_size) < 1):
        msg = f"`chunk_size` must be None or a positive int. Received: chunk_size={chunk_size!r}"
        raise ValueError(msg)
    return smoothing, float(z_loss), cap, None if chunk_size is None else int(chunk_size)


class _Plan(NamedTuple):
    xp: Any
    library: str
    hidden: Array  # [N, D]
    weight: Array
    bias: Array | None
    labels: Array  # [N]
    valid: Array | None  # [N] bool
    coef: Array  # [N]: reducing coefficients, or the per-token weights for "none"
    reducing: bool
    shape: tuple[int, ...]  # the per-token losses' shape
    out_dtype: Any
    options: LinearCEOptions


def _prepare(hidden: Any, weight: Any, labels: Any, bias: Any, ignore_class: Any, label_smoothing: Any,
             z_loss: Any, logit_softcap: Any, sample_weight: Any, reduction: Any, chunk_size: Any,
             dtype: str | None = None) -> _Plan:
    ignore_class = check_ignore_class(ignore_class)
    smoothing, zl, cap, chunk_size = _check_options(label_smoothing, z_loss, logit_softcap, chunk_size)
    reduction = standardize_reduction(reduction)
    xp, arrays = as_arrays({"hidden": hidden, "weight": weight, "labels": labels, "bias": bias,
                            "sample_weight": sample_weight})
    hidden, weight, labels, bias = arrays["hidden"], arrays["weight"], arrays["labels"], arrays["bias"]
    sample_weight = arrays["sample_weight"]
    if dtype is not None:
        from ._namespace import resolve_dtype

        target = resolve_dtype(xp, dtype)
        hidden, weight = xp.astype(hidden, target), xp.astype(weight, target)
        bias = None if bias is None else xp.astype(bias, target)
    _check_arrays(xp, hidden, weight, labels, bias)
    if labels.ndim == hidden.ndim and labels.shape[-1] == 1:  # Keras's trailing-1 labels
        labels = xp.reshape(labels, tuple(labels.shape[:-1]))
    d = hidden.shape[-1]
    v = weight.shape[0]
    shape = tuple(int(s) for s in labels.shape)
    n = static_size(labels)
    valid = None if ignore_class is None else labels != ignore_class
    if n:
        _check_label_range(xp, labels, valid, v)
    compute = xp.float64 if hidden.dtype == xp.float64 else xp.float32
    if sample_weight is not None:
        sample_weight = xp.astype(sample_weight, compute)
    coef, reducing = _coefficients(xp, shape, device_of(labels), sample_weight, valid, reduction, compute)
    library = library_name(hidden)
    block = 0
    if library == "jax":  # fewer, larger chunks, and the vocabulary blocks: see the JAX backend
        from ._backends import _jax_linear_ce

        chunk_size = chunk_size or _jax_linear_ce.default_chunk_rows(n, d, v)
        block = _jax_linear_ce.vocab_block(chunk_size, d, v)
    elif library == "torch" and not chunk_size:
        # Taller chunks make faster matmuls (N=4096, D=1024, V=64000 on 2 CPU cores: 682 rows
        # 13.0 s, 131 rows 14.7 s): a chunk's logits may take up to 2/3 of the weight's size,
        # so the step's extra memory (the weight's gradient and one chunk) stays below twice it.
        chunk_size = default_chunk_rows(v, n, max(CHUNK_ELEMENTS, 2 * v * d // 3))
    options = LinearCEOptions(smoothing, zl, cap, chunk_size or default_chunk_rows(v, n, CHUNK_ELEMENTS), block)
    return _Plan(xp, library, xp.reshape(hidden, (n, d)), weight, bias, xp.reshape(labels, (n,)),
                 None if valid is None else xp.reshape(valid, (n,)), xp.reshape(coef, (n,)), reducing, shape,
                 hidden.dtype, options)


def _check_arrays(xp: Any, hidden: Array, weight: Array, labels: Array, bias: Array | None) -> None:
    if hidden.ndim < 2:
        msg = ("`hidden` must have shape (..., D): at least one token axis and the feature axis. "
               f"Received: hidden.shape={tuple(hidden.shape)}")
        raise ValueError(msg)
    if weight.ndim != 2 or weight.shape[1] != hidden.shape[-1]:
        msg = ("`weight` must have shape (V, D) with D = hidden.shape[-1]. Received: "
               f"weight.shape={tuple(weight.shape)}, hidden.shape={tuple(hidden.shape)}")
        raise ValueError(msg)
    if weight.shape[0] < 1:
        msg = f"`weight` must have at least one row (class). Received: weight.shape={tuple(weight.shape)}"
        raise ValueError(msg)
    expected = tuple(hidden.shape[:-1])
    if tuple(labels.shape) != expected and tuple(labels.shape) != (*expected, 1):
        msg = ("`labels` must have shape hidden.shape[:-1]. Received: "
               f"labels.shape={tuple(labels.shape)}, hidden.shape={tuple(hidden.shape)}")
        raise ValueError(msg)
    if bias is not None and tuple(bias.shape) != (weight.shape[0],):
        msg = ("`bias` must have shape (V,) with V = weight.shape[0]. Received: "
               f"bias.shape={tuple(bias.shape)}, weight.shape={tuple(weight.shape)}")
        raise ValueError(msg)
    if not is_floating(xp, hidden.dtype):
        msg = f"`hidden` must have a floating dtype. Received: hidden.dtype={hidden.dtype}"
        raise TypeError(msg)
    for name, x in (("weight", weight), ("bias", bias)):
        if x is not None and x.dtype != hidden.dtype:
            msg = (f"`{name}` must have the dtype of `hidden`. Received: {name}.dtype={x.dtype}, "
                   f"hidden.dtype={hidden.dtype}. Cast one of them.")
            raise TypeError(msg)
    if not is_integer(xp, labels.dtype):
        msg = (f"`labels` must hold integer class indices. Received: labels.dtype={labels.dtype}. "
               "Cast them to an integer dtype.")
        raise TypeError(msg)


def _check_label_range(xp: Any, labels: Array, valid: Array | None, vocabulary: int) -> None:
    bad = (labels < 0) | (labels >= vocabulary)
    if valid is not None:
        bad = bad & valid
    if not is_eager(bad):  # traced or lazy: the kernels give such tokens a NaN loss instead
        return
    if bool(xp.any(bad)):
        shown = labels[bad][:5] if not array_api_compat.is_torch_array(labels) else labels[bad][:5].cpu()
        msg = (f"`labels` must be in [0, {vocabulary}) (the rows of `weight`), or equal `ignore_class`. "
               f"Received out-of-range labels such as {[int(x) for x in np.asarray(shown)]}.")
        raise ValueError(msg)


def _coefficients(xp: Any, shape: tuple[int, ...], device: Any, sample_weight: Array | None,
                  valid: Array | None, reduction: str | None, dtype: Any) -> tuple[Array, bool]:
    """Per-token ``d loss / d L_i``, or the per-token weights for ``"none"``; and whether it reduces."""
    ones = xp.ones(shape, dtype=dtype, device=device)
    weights = reduce_weighted_values(ones, sample_weight=sample_weight, mask=valid, reduction="none", xp=xp)
    if tuple(weights.shape) != shape:
        msg = (f"`sample_weight` of shape {tuple(sample_weight.shape)} must broadcast to the labels' shape "
               f"{shape}.")
        raise ValueError(msg)
    if reduction in (None, "none"):
        return weights, False
    if reduction in _MEANS:
        _, denominator = partial_terms(ones, sample_weight=sample_weight, mask=valid, reduction=reduction, xp=xp)
        weights = divide_no_nan(weights, denominator, xp=xp)
    return weights, True


def _backend(library: str) -> Any:
    if library == "torch":
        from ._backends import _torch_linear_ce

        return _torch_linear_ce
    if library == "jax":
        from ._backends import _jax_linear_ce

        return _jax_linear_ce
    return None


def _host_kernel(plan: _Plan, coef: Array | None) -> tuple[Array, Any]:
    if plan.library == "numpy":
        cast = np.float64 if plan.hidden.dtype == np.float64 else np.float32
        return numpy_linear_ce(
            plan.hidden.astype(cast, copy=False), plan.weight.astype(cast, copy=False),
            None if plan.bias is None else plan.bias.astype(cast, copy=False), plan.labels,
            None if coef is None else coef.astype(cast, copy=False), plan.valid, plan.options)
    xp = plan.xp
    cast = xp.float64 if plan.hidden.dtype == xp.float64 else xp.float32
    if plan.hidden.shape[0] == 0:
        empty = xp.zeros((0,), dtype=cast, device=device_of(plan.hidden))
        zeros = (xp.zeros(plan.hidden.shape, dtype=cast, device=device_of(plan.hidden)),
                 xp.zeros(plan.weight.shape, dtype=cast, device=device_of(plan.hidden)),
                 None if plan.bias is None else xp.zeros(plan.bias.shape, dtype=cast, device=device_of(plan.hidden)))
        return empty, None if coef is None else zeros
    return generic_linear_ce(
        xp.astype(plan.hidden, cast), xp.astype(plan.weight, cast),
        None if plan.bias is None else xp.astype(plan.bias, cast), plan.labels,
        None if coef is None else xp.astype(coef, cast), plan.valid, plan.options, xp=xp)


def _weighted_sum(xp: Any, losses: Array, coef: Array) -> Array:
    """``sum(coef * losses)``, accumulated in float64 where the library has it."""
    if array_api_compat.is_numpy_array(losses):
        return np.asarray(np.dot(losses.astype(np.float64), coef.astype(np.float64)))
    return xp.sum(losses * xp.astype(coef, losses.dtype))


def linear_cross_entropy(hidden: Any, weight: Any, labels: Any, *, bias: Any = None, ignore_class: int | None = None,
                         label_smoothing: float = 0.0, z_loss: float = 0.0, logit_softcap: float | None = None,
                         sample_weight: Any = None, reduction: str | None = "sum_over_batch_size",
                         chunk_size: int | None = None) -> Array:
    r"""Sparse categorical cross-entropy of ``hidden @ weight.T + bias``, never building the logits.

    The same number as ``SparseCategoricalCrossentropy(from_logits=True,
    ignore_class=ignore_class, reduction=reduction)(labels, hidden @ weight.T + bias,
    sample_weight)``, computed over chunks of ``chunk_size`` tokens: only one
    ``[chunk_size, V]`` block of logits exists at a time. Per token, with
    :math:`z = \mathrm{cap}\tanh(u / \mathrm{cap})` (soft-capping, when
    ``logit_softcap`` is set) of the logits :math:`u`, label smoothing :math:`a` and
    z-loss weight :math:`\lambda`:

    .. math::
        L = -\sum_k \big((1-a)[k=y] + a/V\big) \log\mathrm{softmax}(z)_k
            + \lambda\,\big(\mathrm{logsumexp}_k z_k\big)^2

    Differentiable on PyTorch (a ``torch.autograd.Function``, usable under
    ``torch.compile`` and on CUDA) and JAX (``jax.custom_vjp``, usable under
    ``jax.jit``); for NumPy, :func:`probloss.linear_cross_entropy_with_grad` returns
    the gradients. Any other array-API library runs a chunked reference kernel.

    Args:
        hidden: ``[..., D]`` floating features (one row per token).
        weight: ``[V, D]`` projection (PyTorch's ``nn.Linear.weight`` layout), in
            ``hidden``'s dtype.
        labels: ``[...]`` integer class indices in ``[0, V)``, ``hidden.shape[:-1]``.
        bias: optional ``[V]`` bias, in ``hidden``'s dtype.
        ignore_class: a label value whose tokens count for nothing (loss 0, no
            gradient, and left out of the mean), as Keras's ``ignore_class``. A
            batch of only ignored tokens gives 0, as in Keras.
        label_smoothing: in [0, 1]: the target becomes ``(1 - a)`` one-hot plus
            ``a / V`` everywhere (Keras's categorical cross-entropy smoothing).
        z_loss: weight of the auxiliary ``logsumexp(z)**2`` term (PaLM), >= 0.
        logit_softcap: None, or ``cap > 0`` to use ``cap * tanh(logits / cap)``
            (Gemma 2).
        sample_weight: None, a scalar, one weight per sample (``labels.shape[:1]``)
            or per token (``labels.shape``), as for the other losses.
        reduction: as :class:`probloss.Loss` (``"sum_over_batch_size"`` by default).
        chunk_size: tokens per chunk; None picks ``max(1, 2**23 // V)``, so that a
            chunk's float32 logits take about 32 MiB, except on JAX, where up to
            ``max(2**23 // V, 3 D // 4)`` tokens in equal chunks (a chunk's logits
            at most 3/4 of the size of ``weight``'s gradient) make fewer passes over
            ``weight`` (see docs/linear_ce.md).

    Returns:
        A scalar in ``hidden``'s dtype, or the per-token losses (``labels``'
        shape) with reduction ``"none"``.

    Raises:
        ValueError: for mismatched shapes, labels outside ``[0, V)`` (checked on
            eager arrays; under ``jit``/``torch.compile`` such a token's loss is NaN)
            or bad options.
        TypeError: for non-integer labels, or ``weight``/``bias`` in a dtype other
            than ``hidden``'s.

    Examples:
        >>> import numpy as np
        >>> import probloss
        >>> hidden = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]], np.float32)
        >>> weight = np.array([[2.0, 0.0], [0.0, 2.0], [1.0, 1.0]], np.float32)
        >>> labels = np.array([0, 1, 2])
        >>> round(float(probloss.linear_cross_entropy(hidden, weight, labels)), 4)
        0.6379
        >>> logits = hidden @ weight.T
        >>> round(float(probloss.sparse_categorical_crossentropy(labels, logits, from_logits=True).mean()), 4)
        0.6379
        >>> probloss.linear_cross_entropy(hidden, weight, labels, ignore_class=2, reduction="none").round(4)
        array([0.4076, 0.4076, 0.    ], dtype=float32)
    """
    plan = _prepare(hidden, weight, labels, bias, ignore_class, label_smoothing, z_loss, logit_softcap,
                    sample_weight, reduction, chunk_size)
    return _evaluate(plan)


def _evaluate(plan: _Plan) -> Array:
    xp = plan.xp
    backend = _backend(plan.library)
    if backend is not None:
        run = backend.linear_ce_sum if plan.reducing else backend.linear_ce_values
        result = run(plan.hidden, plan.weight, plan.bias, plan.labels, plan.coef, plan.valid, plan.options)
    else:
        losses, _ = _host_kernel(plan, None)
        result = (_weighted_sum(xp, losses, plan.coef) if plan.reducing
                  else losses * xp.astype(plan.coef, losses.dtype))
    if not plan.reducing:
        result = xp.reshape(result, plan.shape)
    return xp.astype(result, plan.out_dtype, copy=False)


def linear_cross_entropy_with_grad(hidden: Any, weight: Any, labels: Any, *, bias: Any = None,
                                   ignore_class: int | None = None, label_smoothing: float = 0.0,
                                   z_loss: float = 0.0, logit_softcap: float | None = None,
                                   sample_weight: Any = None, reduction: str | None = "sum_over_batch_size",
                                   chunk_size: int | None = None) -> LinearCrossEntropyGrad:
    """:func:`probloss.linear_cross_entropy` and its gradients, in one chunked pass.

    For libraries without automatic differentiation (NumPy): the gradients of the
    reduced loss with respect to ``hidden``, ``weight`` and ``bias`` are computed
    chunk by chunk with the loss (three matmuls over the vocabulary in all; the
    weight gradient is accumulated in place through BLAS). Also works for PyTorch
    and JAX arrays, without their autograd. Arguments as
    :func:`probloss.linear_cross_entropy`; ``reduction`` must reduce.

    Returns:
        ``LinearCrossEntropyGrad(loss, hidden, weight, bias)``: the loss and the
        gradients, each in its input's dtype and shape (``bias`` None without a bias).

    Examples:
        >>> import numpy as np
        >>> import probloss
        >>> hidden = np.array([[1.0, 0.0], [0.0, 1.0]], np.float32)
        >>> weight = np.array([[2.0, 0.0], [0.0, 2.0], [1.0, 1.0]], np.float32)
        >>> result = probloss.linear_cross_entropy_with_grad(hidden, weight, np.array([0, 1]))
        >>> round(float(result.loss), 4), result.hidden.shape, result.weight.shape
        (0.4076, (2, 2), (3, 2))
    """
    if standardize_reduction(reduction) in (None, "none"):
        msg = "linear_cross_entropy_with_grad needs a reducing `reduction`; received reduction='none'."
        raise ValueError(msg)
    plan = _prepare(hidden, weight, labels, bias, ignore_class, label_smoothing, z_loss, logit_softcap,
                    sample_weight, reduction, chunk_size)
    xp = plan.xp
    backend = _backend(plan.library)
    if backend is not None:
        value, (d_hidden, d_weight, d_bias) = backend.linear_ce_grads(
            plan.hidden, plan.weight, plan.bias, plan.labels, plan.coef, plan.valid, plan.options)
    else:
        losses, (d_hidden, d_weight, d_bias) = _host_kernel(plan, plan.coef)
        value = _weighted_sum(xp, losses, plan.coef)
    d_hidden = xp.reshape(xp.astype(d_hidden, plan.out_dtype, copy=False), (*plan.shape, plan.hidden.shape[-1]))
    return LinearCrossEntropyGrad(
        xp.astype(value, plan.out_dtype, copy=False), d_hidden, xp.astype(d_weight, plan.out_dtype, copy=False),
        None if d_bias is None else xp.astype(d_bias, plan.out_dtype, copy=False))


class LinearCrossEntropy(Loss):
    """Fused output projection and sparse cross-entropy; see :func:`probloss.linear_cross_entropy`.

    Called as ``loss(labels, (hidden, weight), sample_weight=None)`` or
    ``loss(labels, (hidden, weight, bias))``: the prediction is the projection's input
    and parameters, so the ``[tokens, V]`` logits are never built.

    Args:
        ignore_class: a label value to leave out (Keras's ``ignore_class``).
        label_smoothing: in [0, 1], as Keras's categorical cross-entropy.
        z_loss: weight of the ``logsumexp(logits)**2`` auxiliary loss, >= 0.
        logit_softcap: None, or the ``cap`` of ``cap * tanh(logits / cap)``.
        chunk_size: tokens per chunk; None chooses one (about 32 MiB of logits).
        reduction, name, dtype, validate: see :class:`probloss.Loss`.

    Examples:
        >>> import numpy as np
        >>> import probloss
        >>> hidden = np.array([[1.0, 0.0], [0.0, 1.0]], np.float32)
        >>> weight = np.array([[2.0, 0.0], [0.0, 2.0], [1.0, 1.0]], np.float32)
        >>> loss = probloss.LinearCrossEntropy(z_loss=1e-4)
        >>> round(float(loss(np.array([0, 1]), (hidden, weight))), 4)
        0.4082
        >>> probloss.deserialize(probloss.serialize(loss)).z_loss
        0.0001
    """

    def __init__(self, ignore_class: int | None = None, label_smoothing: float = 0.0, z_loss: float = 0.0,
                 logit_softcap: float | None = None, chunk_size: int | None = None,
                 reduction: str | None = "sum_over_batch_size", name: str = "linear_cross_entropy",
                 dtype: Any = None, *, validate: str | None = None) -> None:
        super().__init__(name=name, reduction=reduction, dtype=dtype, validate=validate)
        self.ignore_class = check_ignore_class(ignore_class)
        self.label_smoothing, self.z_loss, self.logit_softcap, self.chunk_size = _check_options(
            label_smoothing, z_loss, logit_softcap, chunk_size)

    def _plan(self, y_true: Any, y_pred: Any, sample_weight: Any, reduction: str | None) -> _Plan:
        if not isinstance(y_pred, tuple | list) or len(y_pred) not in (2, 3):
            msg = ("LinearCrossEntropy takes y_pred = (hidden, weight) or (hidden, weight, bias). "
                   f"Received: {type(y_pred).__name__}")
            raise TypeError(msg)
        hidden, weight, *rest = y_pred
        return _prepare(hidden, weight, y_true, rest[0] if rest else None, self.ignore_class,
                        self.label_smoothing, self.z_loss, self.logit_softcap, sample_weight, reduction,
                        self.chunk_size, dtype=_standardize_dtype(self.dtype))

    def __call__(self, y_true: Any, y_pred: Any, sample_weight: Any = None) -> Array:
        """The reduced loss of ``labels`` under ``y_pred = (hidden, weight[, bias])``."""
        return _evaluate(self._plan(y_true, y_pred, sample_weight, self.reduction))

    def call(self, y_true: Any, y_pred: Any) -> Array:
        """The per-token losses (no reduction, no weights; ignored tokens are 0)."""
        return _evaluate(self._plan(y_true, y_pred, None, "none"))

    def partial(self, y_true: Any, y_pred: Any, sample_weight: Any = None) -> tuple[Array, Array]:
        """The reduction's ``(numerator, denominator)``; see :meth:`probloss.Loss.partial`."""
        plan = self._plan(y_true, y_pred, sample_weight, "sum")
        numerator = _evaluate(plan)
        xp = plan.xp
        ones = xp.ones(plan.shape, dtype=numerator.dtype, device=device_of(plan.labels))
        weight = None if sample_weight is None else xp.astype(xp.asarray(sample_weight), numerator.dtype)
        valid = None if plan.valid is None else xp.reshape(plan.valid, plan.shape)
        _, denominator = partial_terms(ones, sample_weight=weight, mask=valid, reduction=self.reduction, xp=xp)
        return numerator, denominator

