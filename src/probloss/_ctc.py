"""Connectionist temporal classification: Keras 3's ``ctc``, ``ops.ctc_loss`` and ``ops.ctc_decode``.

The contract layer of the CTC loss (the kernel is :mod:`probloss._kernels._ctc`):
shapes and dtypes are checked here, data (label range, padding, lengths, finite
logits, whether an alignment exists) on eager arrays according to the
validation mode, and the loss is computed in float64 where the library has it
and rounded once to the output dtype.

Two deliberate differences from Keras 3 (see docs/differences.md): the loss is
exact over its whole range (Keras's JAX backend uses -1e5 as log 0, which caps
every loss near 1e5), and a sample with no alignment has loss ``+inf`` and a
zero gradient (Keras returns about 1e5 with a finite gradient).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from . import _kernels  # noqa: F401 - registers the kernels
from ._ctc_beam import beam_search
from ._dispatch import call
from ._functional import Inputs, evaluate, implemented_by
from ._metrics import to_host
from ._namespace import FLOATX, as_arrays, compute_dtype, index_dtype, is_floating, is_integer, resolve_dtype
from ._validation import DataChecker, _detached

__all__ = ["ctc", "ctc_decode", "ctc_loss"]

Array = Any


def _check_ranks(labels: Array, logits: Array, label_lengths: Array | None, logit_lengths: Array | None,
                 names: tuple[str, str, str, str]) -> None:
    for x, rank, name, what in ((labels, 2, names[0], "(batch_size, max_label_length)"),
                                (logits, 3, names[1], "(batch_size, max_length, num_classes)"),
                                (label_lengths, 1, names[2], "(batch_size,)"),
                                (logit_lengths, 1, names[3], "(batch_size,)")):
        if x is not None and x.ndim != rank:
            msg = f"Argument `{name}` must have shape {what}. Received: {name}.shape={tuple(x.shape)}"
            raise ValueError(msg)
    batch = {name: x.shape[0] for x, name in zip((labels, logits, label_lengths, logit_lengths), names,
                                                   strict=True) if x is not None}
    if len(set(batch.values())) > 1:
        sizes = ", ".join(f"{name}.shape[0]={size}" for name, size in batch.items())
        msg = f"CTC arguments must have the same batch size. Received: {sizes}"
        raise ValueError(msg)


def _check_blank(blank_index: object, num_classes: int) -> int:
    if isinstance(blank_index, bool) or not isinstance(blank_index, int) or not (
            0 <= blank_index < num_classes):
        msg = (f"Argument `blank_index` must be an int in [0, {num_classes}) for {num_classes} classes. "
               f"Received: blank_index={blank_index!r}")
        raise ValueError(msg)
    return blank_index


def _as_index(checker: DataChecker, x: Array, name: str, xp: Any) -> Array:
    if not is_integer(xp, x.dtype):
        if not is_floating(xp, x.dtype):
            msg = f"Argument `{name}` must hold integers. Received dtype {x.dtype}."
            raise TypeError(msg)
        checker.integral(x)
    return xp.astype(x, index_dtype(xp), copy=False)


def _check_data(checker: DataChecker, labels: Array, logits: Array, label_lengths: Array,
                logit_lengths: Array, blank: int, *, padded_by_blank: bool, names: tuple[str, str]) -> None:
    """The eager data checks (see the module docstring); each failure names the sample."""
    if not checker.active:
        return
    xp = checker.xp
    labels, label_lengths, logit_lengths = (_detached(a) for a in (labels, label_lengths, logit_lengths))
    batch, slots = labels.shape
    frames, classes = logits.shape[1], logits.shape[2]
    if batch == 0:
        return
    checker.in_range(logits, names[1], -float("inf"), float("inf"))
    if not checker.active:
        return
    for lengths, name, high in ((label_lengths, "label_lengths", slots), (logit_lengths, "logit_lengths", frames)):
        bad = (lengths < 0) | (lengths > high)
        if bool(xp.any(bad)):
            value, where = checker._first(bad, lengths)
            checker.fail(f"`{name}` must lie in [0, {high}] (the {'label' if high == slots else 'input'} "
                         f"slots). Received {value} for sample {where[0]}.")
            return
    if slots == 0:
        return
    position = xp.arange(slots, dtype=label_lengths.dtype, device=_device(labels))[None, :]
    inside = position < label_lengths[:, None]
    if padded_by_blank:
        bad = inside & (labels == blank)
        if bool(xp.any(bad)):
            _, where = checker._first(bad, labels)
            checker.fail(
                f"`{names[0]}` of sample {where[0]} has the blank/padding label {blank} at position {where[1]} "
                f"before a non-zero label: padding must come only at the end (Keras would read a different "
                "label).")
            return
    out_of_range = inside & ((labels < 0) | (labels >= classes) | (labels == blank))
    if bool(xp.any(out_of_range)):
        value, where = checker._first(out_of_range, labels)
        checker.fail(f"Received a label value of {value} at position {where} in `{names[0]}`, which is outside "
                     f"the valid range [0, {classes}) for {classes} classes or equals the blank index {blank}.")
        return
    if slots > 1:
        repeats = xp.sum(xp.astype((labels[:, 1:] == labels[:, :-1]) & inside[:, 1:], label_lengths.dtype), axis=1)
    else:
        repeats = xp.zeros_like(label_lengths)
    needed = label_lengths + repeats
    impossible = needed > logit_lengths
    if bool(xp.any(impossible)):
        _, where = checker._first(impossible, needed)
        b = where[0]
        checker.fail(
            f"CTC sample {b} has no alignment: its label of length {int(label_lengths[b])} (with "
            f"{int(repeats[b])} repeated neighbour(s), which need a blank between them) needs at least "
            f"{int(needed[b])} frames, but its input length is {int(logit_lengths[b])}. Its loss is +inf "
            "and its gradient 0.")


def _device(x: Array) -> Any:
    from ._namespace import device_of

    return device_of(x)


def _output_dtype(xp: Any, logits: Array) -> Any:
    return logits.dtype if is_floating(xp, logits.dtype) else resolve_dtype(xp, FLOATX)


def ctc_loss(labels: Any, logits: Any, label_lengths: Any, logit_lengths: Any, *, blank_index: int = 0,
             validate: str | None = None) -> Array:
    """CTC loss with per-sample lengths (Keras 3's ``keras.ops.ctc_loss``).

    ``loss[b] = -log sum over alignments a of prod_t softmax(logits[b, t])[a_t]``,
    over the alignments of the first ``logit_lengths[b]`` frames that collapse
    (merge repeats, then drop blanks) to ``labels[b, :label_lengths[b]]``. The
    log-softmax and the forward recursion run in float64 (where the library has
    it), so the loss keeps float32's last bits from 1e-10 to 1e5 and beyond. A
    sample with no alignment gets ``+inf`` (and a zero gradient); with validation
    on (the default) it is an error that names the sample.

    Args:
        labels: integer labels, ``(batch_size, max_label_length)``; entries past
            a sample's length are ignored.
        logits: unnormalised logits, ``(batch_size, max_length, num_classes)``.
        label_lengths: ``(batch_size,)`` integers in ``[0, max_label_length]``.
        logit_lengths: ``(batch_size,)`` integers in ``[0, max_length]``.
        blank_index: the blank class (Keras's ``mask_index``). Defaults to 0.
        validate: data checks: ``"raise"``, ``"warn"``, ``"off"`` or None (the
            mode of :func:`probloss.validation`).

    Returns:
        The per-sample loss, ``(batch_size,)``, in ``logits``' floating dtype.

    Examples:
        >>> import numpy as np
        >>> import probloss
        >>> logits = np.zeros((1, 3, 3), dtype=np.float32)  # uniform over 3 classes
        >>> probloss.ctc_loss(np.array([[1, 2]]), logits, np.array([2]), np.array([3])).round(4)
        array([1.6864], dtype=float32)
    """
    xp, arrays = as_arrays({"labels": labels, "logits": logits, "label_lengths": label_lengths,
                            "logit_lengths": logit_lengths})
    names = ("labels", "logits", "label_lengths", "logit_lengths")
    labels, logits, label_lengths, logit_lengths = (arrays[n] for n in names)
    _check_ranks(labels, logits, label_lengths, logit_lengths, names)
    blank_index = _check_blank(blank_index, logits.shape[2])
    out_dtype = _output_dtype(xp, logits)
    checker = DataChecker(validate, xp, labels, logits, label_lengths, logit_lengths)
    labels = _as_index(checker, labels, "labels", xp)
    label_lengths = _as_index(checker, label_lengths, "label_lengths", xp)
    logit_lengths = _as_index(checker, logit_lengths, "logit_lengths", xp)
    logits = xp.astype(logits, compute_dtype(xp, out_dtype), copy=False)
    _check_data(checker, labels, logits, label_lengths, logit_lengths, blank_index, padded_by_blank=False,
                names=("labels", "logits"))
    loss = call("ctc_loss", labels, logits, label_lengths, logit_lengths, xp=xp, blank_index=blank_index)
    return xp.astype(loss, out_dtype, copy=False)


def _ctc(x: Inputs) -> tuple[Array, None]:
    xp, y_true, y_pred = x.xp, x.y_true, x.y_pred
    if y_true.ndim != 2:
        msg = ("Targets `y_true` are expected to be a tensor of shape `(batch_size, max_length)` in integer "
               f"format. Received: y_true.shape={tuple(y_true.shape)}")
        raise ValueError(msg)
    if y_pred.ndim != 3:
        msg = ("Logits `y_pred` are expected to be a tensor of shape `(batch_size, max_length, num_classes)`. "
               f"Received: y_pred.shape={tuple(y_pred.shape)}")
        raise ValueError(msg)
    _check_ranks(y_true, y_pred, None, None, ("y_true", "y_pred", "", ""))
    batch, frames = y_pred.shape[0], y_pred.shape[1]
    label_lengths = xp.sum(xp.astype(y_true != 0, y_true.dtype), axis=1)
    logit_lengths = xp.full((batch,), frames, dtype=y_true.dtype, device=_device(y_true))
    _check_data(x.checker, y_true, y_pred, label_lengths, logit_lengths, 0, padded_by_blank=True,
                names=("y_true", "y_pred"))
    return call("ctc_loss", y_true, y_pred, label_lengths, logit_lengths, xp=xp, blank_index=0), None


@implemented_by(_ctc, sparse=True)
def ctc(y_true: Any, y_pred: Any, *, validate: str | None = None) -> Array:
    """CTC loss as Keras 3's ``keras.losses.ctc``: 0 is the blank and the padding.

    Each label's length is its count of non-zero entries (padding must come at
    the end: an interior 0 is an error, not a silently shorter label), and every
    input has all ``max_length`` frames. See :func:`ctc_loss` for the formula,
    the precision, and the ``+inf`` of a sample with no alignment.

    Args:
        y_true: integer labels, ``(batch_size, max_label_length)``, in
            ``[1, num_classes)`` followed by 0 padding.
        y_pred: unnormalised logits, ``(batch_size, max_length, num_classes)``.
        validate: data checks, as in :func:`ctc_loss`.

    Returns:
        The per-sample loss, ``(batch_size,)``.

    Examples:
        >>> import numpy as np
        >>> import probloss
        >>> y_true = np.array([[1, 2, 0], [2, 0, 0]])
        >>> y_pred = np.log(np.full((2, 4, 3), 1 / 3, dtype=np.float32))
        >>> probloss.ctc(y_true, y_pred).round(4)
        array([1.6864, 2.0919], dtype=float32)
    """
    return evaluate(ctc, y_true, y_pred, validate=validate)


def ctc_decode(logits: Any, lengths: Any, strategy: str = "greedy", beam_width: int = 100, top_paths: int = 1,
               merge_repeated: bool = True, blank_index: int = 0) -> tuple[Array, Array]:
    """Decode CTC logits (Keras 3's ``keras.ops.ctc_decode``): greedy or beam search.

    Greedy: the most likely class per frame (frames past ``lengths`` count as
    blank), repeats merged when ``merge_repeated``, blanks removed, the labels
    moved to the front and the rest filled with -1.

    Beam search (as Keras 3 computes it with its JAX backend): CTC prefix beam
    search over the log-softmax of the logits, ``beam_width`` prefixes kept per
    frame, the ``top_paths`` most likely returned best first (see
    ``probloss._ctc_beam``). It runs on the host in float64 for every library
    (a search, not differentiable, and not traceable by ``jax.jit``) and returns
    arrays of the input's library and device. Frame 0 is always decoded, as in
    Keras (a length of 0 decodes like 1); ``merge_repeated`` does not apply (as
    in Keras's JAX backend). Where fewer than ``top_paths`` prefixes have a
    nonzero probability, the remaining rows are -1 with score ``-inf``.

    Args:
        logits: ``(batch_size, max_length, num_classes)``.
        lengths: ``(batch_size,)`` integers, the frames to decode per sample.
        strategy: ``"greedy"`` or ``"beam_search"``.
        beam_width: prefixes kept per frame by beam search (unused by greedy).
        top_paths: paths returned by beam search (greedy returns 1).
        merge_repeated: whether greedy decoding merges repeated classes of
            adjacent frames.
        blank_index: the blank class (Keras's ``mask_index``). Defaults to 0.

    Returns:
        ``(decoded, scores)``: ``decoded`` int32 of shape ``(paths, batch_size,
        max_length)`` (-1 past each sequence; ``paths`` is 1 for greedy and
        ``top_paths`` for beam search), and ``scores`` of shape ``(batch_size,
        paths)``: greedy, minus the sum over the decoded frames of the largest
        logit, as Keras computes it; beam search, each path's total
        log-probability.

    Examples:
        >>> import numpy as np
        >>> import probloss
        >>> logits = np.log(np.array([[[.1, .8, .1], [.1, .8, .1], [.8, .1, .1], [.1, .1, .8]]]))
        >>> decoded, scores = probloss.ctc_decode(logits, np.array([4]))
        >>> decoded
        array([[[ 1,  2, -1, -1]]], dtype=int32)
        >>> paths, scores = probloss.ctc_decode(logits, np.array([4]), strategy="beam_search", beam_width=4,
        ...                                     top_paths=2)
        >>> paths
        array([[[ 1,  2, -1, -1]],
        <BLANKLINE>
               [[ 1, -1, -1, -1]]], dtype=int32)
    """
    if strategy not in ("greedy", "beam_search"):
        msg = f"Invalid strategy {strategy}. Supported values are 'greedy' and 'beam_search'."
        raise ValueError(msg)
    xp, arrays = as_arrays({"logits": logits, "lengths": lengths})
    logits, lengths = arrays["logits"], arrays["lengths"]
    _check_ranks(None, logits, None, lengths, ("", "logits", "", "lengths"))
    _, frames, classes = logits.shape
    blank_index = _check_blank(blank_index, classes)
    if not is_floating(xp, logits.dtype):
        logits = xp.astype(logits, resolve_dtype(xp, FLOATX))
    device = _device(logits)
    if strategy == "beam_search":
        return _beam_search_decode(xp, logits, lengths, beam_width, top_paths, blank_index, device)
    if not hasattr(xp, "take_along_axis") and type(logits).__module__.startswith("dask"):
        return _greedy_decode_dask(logits, lengths, merge_repeated, blank_index)
    int32 = xp.int32
    best = xp.astype(xp.argmax(logits, axis=-1), int32)
    top = xp.max(logits, axis=-1)
    past = xp.arange(frames, device=device)[None, :] >= xp.astype(lengths, xp.int64 if index_dtype(xp) == xp.int64
                                                                     else int32)[:, None]
    blank = xp.full_like(best, blank_index)
    best = xp.where(past, blank, best)
    top = xp.where(past, xp.zeros_like(top), top)
    if merge_repeated and frames > 1:
        repeat = xp.concat([xp.zeros_like(past[:, :1]), best[:, 1:] == best[:, :-1]], axis=1)
        best = xp.where(repeat, blank, best)
    dropped = best == blank_index
    best = xp.where(dropped, xp.full_like(best, -1), best)
    order = xp.where(dropped, xp.full_like(best, frames), xp.astype(
        xp.broadcast_to(xp.arange(frames, device=device)[None, :], best.shape), int32))
    order = xp.argsort(order, axis=-1, stable=True)
    decoded = xp.take_along_axis(best, order, axis=-1)
    scores = -xp.sum(top, axis=1, keepdims=True)
    return decoded[None, ...], scores


def _beam_search_decode(xp: Any, logits: Any, lengths: Any, beam_width: int, top_paths: int, blank_index: int,
                        device: Any) -> tuple[Array, Array]:
    for name, value in (("beam_width", beam_width), ("top_paths", top_paths)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            msg = f"probloss.ctc_decode: {name} must be a positive integer, got {value!r}."
            raise ValueError(msg)
    decoded, scores = beam_search(to_host(logits), to_host(lengths), int(beam_width), int(top_paths), blank_index)
    # Scores in the logits' precision, at least float32 (as Keras's result_type(dtype, "float32")).
    score_dtype = logits.dtype if xp.finfo(logits.dtype).bits >= 32 else xp.float32
    return (xp.asarray(decoded, dtype=xp.int32, device=device),
            xp.asarray(scores.astype(np.float32 if xp.finfo(score_dtype).bits == 32 else np.float64),
                       dtype=score_dtype, device=device))


def _greedy_decode_dask(logits: Any, lengths: Any, merge_repeated: bool, blank_index: int) -> tuple[Array, Array]:
    """Greedy decoding of each chunk of samples by the NumPy code (Dask has no take_along_axis)."""
    import dask.array as da

    logits = logits.rechunk({1: -1, 2: -1})
    lengths = lengths.rechunk((logits.chunks[0],))

    def decoded_block(x: np.ndarray, n: np.ndarray) -> np.ndarray:  # (chunk, T)
        return ctc_decode(x, n, merge_repeated=merge_repeated, blank_index=blank_index)[0][0]

    def scores_block(x: np.ndarray, n: np.ndarray) -> np.ndarray:  # (chunk, 1)
        return ctc_decode(x, n, merge_repeated=merge_repeated, blank_index=blank_index)[1]

    decoded = da.blockwise(decoded_block, "bt", logits, "btk", lengths, "b", dtype=np.int32, concatenate=True)
    scores = da.blockwise(scores_block, "bo", logits, "btk", lengths, "b", dtype=logits.dtype, concatenate=True,
                          new_axes={"o": 1})
    return decoded[None, ...], scores
