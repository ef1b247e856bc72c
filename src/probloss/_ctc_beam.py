"""CTC prefix beam search, as ``keras.ops.ctc_decode(strategy="beam_search")`` computes it.

A host (NumPy, float64) implementation shared by every library: decoding is a
discrete search over a data-dependent set of prefixes, with nothing to
differentiate, so :func:`probloss.ctc_decode` copies the logits to the host,
runs this, and returns the results in the input's library and device.

The search (Keras 3's JAX backend, the same as TensorFlow's decoder without a
language model): every prefix in the beam keeps two log-probabilities, of the
frames so far ending in a blank and ending in its last label. At frame 0 the
beam is the ``beam_width`` most likely classes. Each later frame (below the
sample's length) extends every prefix by every class: the blank keeps the
prefix (into its blank-ending score), the prefix's last label repeated right
after it keeps the prefix (a merged repeat) and, after a blank, appends the
label again; any other label is appended. Prefixes reached several ways have
their probabilities summed, and the ``beam_width`` prefixes of highest total
stay. The result is the ``top_paths`` prefixes of highest total, best first,
with their total log-probability as the score.

Ties between exactly equal totals are broken as Keras breaks them: the prefix
whose class indices, counted from the last class (``num_classes - 1 - c``),
compare higher as a sequence wins.
"""

from __future__ import annotations

import numpy as np

__all__ = ["beam_search"]

_NEG_INF = -np.inf


def _log_softmax(logits: np.ndarray) -> np.ndarray:
    x = logits.astype(np.float64)
    top = np.max(x, axis=-1, keepdims=True)
    shifted = x - top
    return shifted - np.log(np.sum(np.exp(shifted), axis=-1, keepdims=True))


def _ranked(candidates: dict[tuple[int, ...], list[float]], keep: int, classes: int) -> list[
        tuple[tuple[int, ...], float, float, float]]:
    """The ``keep`` best prefixes as ``(prefix, total, blank_score, label_score)``, best first."""
    rows = []
    for prefix, (ending_blank, ending_label) in candidates.items():
        total = np.logaddexp(ending_blank, ending_label)
        if total > _NEG_INF:
            rows.append((total, tuple(classes - 1 - c for c in prefix), prefix, ending_blank, ending_label))
    rows.sort(key=lambda row: (row[0], row[1]), reverse=True)
    return [(prefix, total, blank, label) for total, _, prefix, blank, label in rows[:keep]]


def _add(scores: dict[tuple[int, ...], list[float]], prefix: tuple[int, ...], slot: int, value: float) -> None:
    entry = scores.get(prefix)
    if entry is None:
        entry = scores[prefix] = [_NEG_INF, _NEG_INF]
    entry[slot] = np.logaddexp(entry[slot], value)


def _decode_sample(logp: np.ndarray, length: int, beam_width: int, top_paths: int,
                   blank: int) -> list[tuple[tuple[int, ...], float]]:
    frames, classes = logp.shape
    if frames == 0:
        return []
    first: dict[tuple[int, ...], list[float]] = {}
    for c in range(classes):
        if c == blank:
            _add(first, (), 0, float(logp[0, c]))
        else:
            _add(first, (c,), 1, float(logp[0, c]))
    beam = _ranked(first, beam_width, classes)
    for t in range(1, min(length, frames)):
        y = logp[t]
        scores: dict[tuple[int, ...], list[float]] = {}
        for prefix, total, ending_blank, ending_label in beam:
            _add(scores, prefix, 0, total + y[blank])
            last = prefix[-1] if prefix else -1
            for c in range(classes):
                if c == blank:
                    continue
                if c == last:
                    _add(scores, prefix, 1, ending_label + y[c])
                    _add(scores, (*prefix, c), 1, ending_blank + y[c])
                else:
                    _add(scores, (*prefix, c), 1, total + y[c])
        beam = _ranked(scores, beam_width, classes)
    return [(prefix, total) for prefix, total, _, _ in beam[:top_paths]]


def beam_search(logits: np.ndarray, lengths: np.ndarray, beam_width: int, top_paths: int,
                blank: int) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(decoded int32 (top_paths, B, T), scores float64 (B, top_paths))`` (-1 and -inf fill)."""
    batch, frames, _ = logits.shape
    logp = _log_softmax(logits)
    decoded = np.full((top_paths, batch, frames), -1, dtype=np.int32)
    scores = np.full((batch, top_paths), _NEG_INF)
    for b in range(batch):
        for rank, (prefix, total) in enumerate(_decode_sample(logp[b], int(lengths[b]), beam_width, top_paths,
                                                              blank)):
            decoded[rank, b, :len(prefix)] = prefix
            scores[b, rank] = total
    return decoded, scores
