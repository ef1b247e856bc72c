"""Fused linear cross-entropy over token chunks: NumPy and generic array-API kernels.

Per chunk of ``rows`` tokens, the logits ``z = h_c @ W.T (+ b)`` are built, soft-capped,
reduced to the per-token loss and, when gradients are wanted, turned in place into
``dL/dz`` scaled by each token's reduction coefficient; then ``dW += dz.T @ h_c``,
``dh_c = dz @ W`` and ``db += sum(dz)``. Only one ``[rows, V]`` block (two with
soft-capping) exists at a time; no ``[N, V]`` array is ever built.

Per token, with ``s = softmax(z)``, ``lse = logsumexp(z)``, label ``y``, smoothing
``a`` and z-loss weight ``zl``::

    L = lse - (1 - a) z_y - (a / V) sum_k z_k + zl lse^2
    dL/dz_k = s_k (1 + 2 zl lse) - (1 - a) [k = y] - a / V

and with soft-capping ``z = cap tanh(u / cap)``, ``dz/du = 1 - (z / cap)^2``.
The kernels trust their inputs (validated, flattened to ``[N, D]`` / ``[N]``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

Array = Any

#: Elements of one chunk of logits: 2**23 float32 numbers are 32 MiB.
CHUNK_ELEMENTS = 2**23


@dataclass(frozen=True)
class LinearCEOptions:
    """The static options of one call (hashable: JAX and torch.compile key on them)."""

    label_smoothing: float
    z_loss: float
    logit_softcap: float | None
    chunk_rows: int
    #: Classes per block of the JAX backend's gradient loop (0: none; the others ignore it).
    vocab_block: int = 0


def default_chunk_rows(vocabulary: int, tokens: int, elements: int = CHUNK_ELEMENTS) -> int:
    """Rows per chunk so that a chunk's logits hold about ``elements`` numbers."""
    return max(1, min(tokens, elements // max(1, vocabulary)))


def _accumulating_gemm(dtype: np.dtype) -> Any:
    """SciPy's BLAS ``gemm`` (``C += A @ B`` in place) when SciPy is installed, else None."""
    try:
        from scipy.linalg import blas
    except ImportError:  # SciPy is optional: fall back to a temporary and an add
        return None
    return blas.dgemm if dtype == np.float64 else blas.sgemm


def numpy_linear_ce(hidden: np.ndarray, weight: np.ndarray, bias: np.ndarray | None,
                    labels: np.ndarray, coef: np.ndarray | None, valid: np.ndarray | None,
                    options: LinearCEOptions) -> tuple[np.ndarray, tuple[Any, Any, Any] | None]:
    """Per-token losses and, when ``coef`` is given, the gradients of ``sum(coef * L)``.

    Args:
        hidden: ``[N, D]`` float32 or float64.
        weight: ``[V, D]`` in ``hidden``'s dtype.
        bias: ``[V]`` or None.
        labels: ``[N]`` integers in ``[0, V)`` (ignored tokens may hold anything).
        coef: ``[N]`` per-token reduction coefficients, or None for no gradients.
        valid: ``[N]`` booleans (False = ignored token: loss 0, no gradient), or None.
        options: the static options.

    Returns:
        ``(losses [N], (d_hidden, d_weight, d_bias) or None)``; ``d_bias`` is None
        without a bias.
    """
    n, d = hidden.shape
    v = weight.shape[0]
    dtype = hidden.dtype
    smoothing, zl, cap = options.label_smoothing, options.z_loss, options.logit_softcap
    losses = np.empty(n, dtype)
    grads = coef is not None
    if grads:
        d_hidden = np.empty((n, d), dtype)
        d_weight = np.zeros((v, d), dtype)
        d_bias = np.zeros(v, dtype) if bias is not None else None
        gemm = _accumulating_gemm(dtype)
    weight_t = weight.T
    for start in range(0, n, options.chunk_rows):
        stop = min(n, start + options.chunk_rows)
        h = hidden[start:stop]
        y = labels[start:stop]
        keep = None if valid is None else valid[start:stop]
        if keep is not None and not keep.all():
            # Ignored tokens: zero hidden rows keep their (discarded) logits finite.
            h = np.where(keep[:, None], h, 0).astype(dtype, copy=False)
            y = np.where(keep, y, 0)
        rows = np.arange(stop - start)
        z = h @ weight_t
        if bias is not None:
            z += bias
        tanh = None
        if cap is not None:
            z *= 1.0 / cap
            tanh = np.tanh(z, out=z)
            z = tanh * cap
        picked = z[rows, y]
        total = z.sum(axis=1) if smoothing else None
        top = z.max(axis=1)
        z -= top[:, None]
        np.exp(z, out=z)
        norm = z.sum(axis=1)
        lse = top + np.log(norm)
        loss = lse - (1.0 - smoothing) * picked
        if smoothing:
            loss -= (smoothing / v) * total
        if zl:
            loss += zl * lse * lse
        if keep is not None:
            loss = np.where(keep, loss, 0)
        losses[start:stop] = loss
        if not grads:
            continue
        c = coef[start:stop]
        # z holds exp(z - max): scale rows into c * s * (1 + 2 zl lse), then the label terms.
        z *= (c * (1.0 + 2.0 * zl * lse) / norm)[:, None]
        z[rows, y] -= c * (1.0 - smoothing)
        if smoothing:
            z -= (c * (smoothing / v))[:, None]
        if tanh is not None:
            np.multiply(tanh, tanh, out=tanh)
            np.subtract(1.0, tanh, out=tanh)
            z *= tanh
        np.matmul(z, weight, out=d_hidden[start:stop])
        if gemm is not None:
            # d_weight.T (F-ordered [D, V]) += h.T @ z, in place, no [V, D] temporary.
            gemm(1.0, h.T, z.T, beta=1.0, c=d_weight.T, trans_b=True, overwrite_c=True)
        else:
            d_weight += z.T @ h
        if d_bias is not None:
            d_bias += z.sum(axis=0)
    if not grads:
        return losses, None
    return losses, (d_hidden, d_weight, d_bias)


def generic_linear_ce(hidden: Array, weight: Array, bias: Array | None, labels: Array,
                      coef: Array | None, valid: Array | None, options: LinearCEOptions,
                      *, xp: Any) -> tuple[Array, tuple[Any, Any, Any] | None]:
    """:func:`numpy_linear_ce` in array-API operations only (any library; the reference)."""
    n = hidden.shape[0]
    v = weight.shape[0]
    smoothing, zl, cap = options.label_smoothing, options.z_loss, options.logit_softcap
    grads = coef is not None
    columns = xp.arange(v, dtype=labels.dtype)
    pieces, d_hidden_pieces = [], []
    d_weight = d_bias = None
    weight_t = xp.matrix_transpose(weight)
    for start in range(0, n, options.chunk_rows):
        stop = min(n, start + options.chunk_rows)
        h = hidden[start:stop, ...]
        y = labels[start:stop]
        keep = None if valid is None else valid[start:stop]
        if keep is not None:
            h = xp.where(keep[:, None], h, xp.zeros_like(h))
            y = xp.where(keep, y, xp.zeros_like(y))
        z = h @ weight_t
        if bias is not None:
            z = z + bias
        tanh = None
        if cap is not None:
            tanh = xp.tanh(z / cap)
            z = tanh * cap
        # A one-hot comparison picks the label's logit on every library (Dask has no take).
        is_label = columns[None, :] == y[:, None]
        picked = xp.sum(xp.where(is_label, z, xp.zeros_like(z)), axis=1)
        top = xp.max(z, axis=1)
        e = xp.exp(z - top[:, None])
        norm = xp.sum(e, axis=1)
        lse = top + xp.log(norm)
        loss = lse - (1.0 - smoothing) * picked
        if smoothing:
            loss = loss - (smoothing / v) * xp.sum(z, axis=1)
        if zl:
            loss = loss + zl * lse * lse
        if keep is not None:
            loss = xp.where(keep, loss, xp.zeros_like(loss))
        # Lazy arrays (Dask) are not range-checked up front: a bad label's loss is NaN.
        bad = (y < 0) | (y >= v)
        loss = xp.where(bad, xp.full_like(loss, float("nan")), loss)
        pieces.append(loss)
        if not grads:
            continue
        c = coef[start:stop]
        g = e * (c * (1.0 + 2.0 * zl * lse) / norm)[:, None]
        g = g - xp.where(is_label, (c * (1.0 - smoothing))[:, None], xp.zeros_like(g))
        if smoothing:
            g = g - (c * (smoothing / v))[:, None]
        if tanh is not None:
            g = g * (1.0 - tanh * tanh)
        d_hidden_pieces.append(g @ weight)
        part = xp.matrix_transpose(g) @ h
        d_weight = part if d_weight is None else d_weight + part
        if bias is not None:
            part_b = xp.sum(g, axis=0)
            d_bias = part_b if d_bias is None else d_bias + part_b
    losses = xp.concat(pieces, axis=0)
    if not grads:
        return losses, None
    return losses, (xp.concat(d_hidden_pieces, axis=0), d_weight, d_bias)
