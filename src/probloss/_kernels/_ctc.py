"""Connectionist temporal classification: the log-space forward-backward algorithm.

One implementation on any array-API namespace, used as the generic kernel and as
the reference the native paths are tested against. Everything runs in the wide
dtype (float64 where the library has it) and the caller rounds once.

Notation: ``B`` samples, ``T`` frames, ``K`` classes, ``L`` label slots, and the
extended label ``z`` of ``S = 2L + 1`` states (a blank before, between and after
the labels). ``alpha[t, s]`` is the log-probability of the prefixes ending in
state ``s`` at frame ``t`` (emission at ``t`` included); ``beta[t, s]`` that of
the suffixes from ``t + 1`` on, given state ``s`` at ``t`` (emission at ``t``
excluded), so ``alpha + beta - log P`` is the log-posterior of ``s`` at ``t``.
Frames at or after a sample's length leave its variables unchanged.

The loss is ``-log P``; ``+inf`` where no alignment exists (a label longer than
its input, counting the blanks that repeats need). Its gradient with respect to
the logits is ``softmax - occupancy`` (the posterior probability of each class
per frame), zero on frames past the length and for impossible samples.
"""

from __future__ import annotations

from typing import Any

from .._dispatch import kernel
from .._namespace import device_of
from .._numerics import wide_dtype

Array = Any
_NEG_INF = float("-inf")


def log_softmax(x: Array, *, xp: Any) -> Array:
    """Return ``log_softmax(x)`` over the last axis, accurate near 0.

    ``log_softmax(x)_k = (x_k - m) - log1p(S')`` with ``S'`` the sum of ``exp(x_j - m)``
    over every class but one maximal class: the tiny log-probability of a confident
    class is not lost to ``log(1 + S')`` rounding (``x`` is in the wide dtype, where
    ``x - m`` of float32 inputs is exact).
    """
    m = xp.max(x, axis=-1, keepdims=True)
    d = x - m
    top = _first_max_one_hot(x, xp=xp)
    e = xp.exp(d)
    others = xp.sum(xp.where(top, xp.zeros_like(e), e), axis=-1, keepdims=True)
    return d - xp.log1p(others)


def _first_max_one_hot(x: Array, *, xp: Any) -> Array:
    classes = x.shape[-1]
    index = xp.argmax(x, axis=-1, keepdims=True)
    return index == xp.arange(classes, dtype=index.dtype, device=device_of(x))


def extended_labels(labels: Array, blank: int, *, xp: Any) -> Array:
    """Return ``z``: ``(B, 2L + 1)``, the labels interleaved with blanks."""
    batch, slots = labels.shape
    last = xp.full((batch, 1), blank, dtype=labels.dtype, device=device_of(labels))
    if slots == 0:
        return last
    blanks = xp.full((batch, slots), blank, dtype=labels.dtype, device=device_of(labels))
    pairs = xp.reshape(xp.stack([blanks, labels], axis=2), (batch, 2 * slots))
    return xp.concat([pairs, last], axis=1)


def _shift(a: Array, by: int, fill: Array, *, xp: Any) -> Array:
    """``a`` moved ``by`` places along the last axis (right for by > 0), ``fill`` entering."""
    if by > 0:
        return xp.concat([fill[:, :by], a[:, :-by]], axis=1) if a.shape[1] > by else fill
    by = -by
    return xp.concat([a[:, by:], fill[:, :by]], axis=1) if a.shape[1] > by else fill


def _logaddexp(a: Array, b: Array, *, xp: Any) -> Array:
    """``log(exp(a) + exp(b))`` as max + log1p(exp(min - max)), whose autodiff gradient is finite.

    A log-probability near 0 keeps its digits. Where both are ``-inf`` (a state
    no alignment reaches) the result is ``-inf`` with a finite gradient (autodiff
    of the generic kernel under ``probloss.fast_paths(False)``). A library's own
    ``logaddexp`` is not safe there: PyTorch's autograd gives NaN, and so does
    ``jax.numpy.logaddexp``, whose derivative ``exp(a - out)`` is ``exp(-inf + inf)``.
    Every branch below is finite where it is not taken (``safe_top``, ``gap``),
    because ``where`` passes a zero cotangent to the untaken branch and
    ``0 * NaN`` would still be NaN. Finite inputs give the same bits as
    ``logaddexp`` (``min - max`` is ``-|a - b|`` exactly); NaN propagates.
    """
    top = xp.maximum(a, b)
    reached = top > _NEG_INF
    safe_top = xp.where(reached, top, xp.zeros_like(top))
    gap = xp.where(reached, xp.minimum(a, b) - safe_top, xp.zeros_like(top))
    return xp.where(reached, safe_top + xp.log1p(xp.exp(gap)), top)


def _logaddexp3(a: Array, b: Array, c: Array, *, xp: Any) -> Array:
    return _logaddexp(_logaddexp(a, b, xp=xp), c, xp=xp)


class Lattice:
    """The static pieces of one call: extended labels, allowed skips, lengths as masks."""

    def __init__(self, labels: Array, label_lengths: Array, logit_lengths: Array, blank: int,
                 num_classes: int, wide: Any, *, xp: Any) -> None:
        device = device_of(labels)
        self.z = extended_labels(labels, blank, xp=xp)
        states = self.z.shape[1]
        s = xp.arange(states, dtype=label_lengths.dtype, device=device)
        z_before = _shift(self.z, 2, xp.full_like(self.z, -1), xp=xp)
        # A label state may be entered from the label two states back unless they repeat.
        self.skip = ((s % 2) == 1) & (s >= 2) & (self.z != z_before)
        self.skip_into_next2 = _shift(self.skip, -2, xp.zeros_like(self.skip), xp=xp)
        end = 2 * label_lengths[:, None]
        self.final = (s[None, :] == end) | (s[None, :] == end - 1)
        self.is_end = s[None, :] == end
        self.is_end_label = s[None, :] == end - 1
        self.logit_lengths = logit_lengths
        self.classes = xp.arange(num_classes, dtype=self.z.dtype, device=device)
        # (B, S, K): state s emits class z[s]; exact 0/1 so a matmul gathers exactly.
        self.emits = xp.astype(self.z[:, :, None] == self.classes[None, None, :], wide)
        self.known = (self.z >= 0) & (self.z < num_classes)


def forward(logp: Array, lattice: Lattice, *, xp: Any, keep: bool) -> tuple[Array, list[Array], Array]:
    """Run the alpha recursion; return ``(log P, [alpha_t], emissions (B, T, S))``."""
    frames = logp.shape[1]
    emit = emissions(logp, lattice, xp=xp)
    alpha = initial_alpha(lattice, logp.dtype, xp=xp)
    alphas = []
    for t in range(frames):
        alpha = alpha_step(alpha, emit[:, t, :], t, lattice, xp=xp)
        if keep:
            alphas.append(alpha)
    return log_likelihood(alpha, lattice, xp=xp), alphas, emit


def emissions(logp: Array, lattice: Lattice, *, xp: Any) -> Array:
    """The log-probability each state emits per frame, ``(B, T, S)``: logp gathered at z (exact 0/1 matmul).

    A label outside the classes (unchecked input) emits NaN, so its sample's loss is NaN.
    """
    emit = xp.matmul(logp, xp.permute_dims(lattice.emits, (0, 2, 1)))
    return xp.where(lattice.known[:, None, :], emit, xp.full_like(emit, float("nan")))


def initial_alpha(lattice: Lattice, dtype: Any, *, xp: Any) -> Array:
    """Alpha before frame 0: log 1 in state 0, log 0 elsewhere (so the first frame enters state 0 or 1)."""
    device = device_of(lattice.z)
    neg_inf = xp.full(lattice.skip.shape, _NEG_INF, dtype=dtype, device=device)
    s0 = xp.arange(lattice.skip.shape[1], device=device)[None, :] == 0
    return xp.where(s0, xp.zeros_like(neg_inf), neg_inf)


def terminal_beta(lattice: Lattice, dtype: Any, *, xp: Any) -> Array:
    """Beta at a sample's last frame: log 1 in its two final states, log 0 elsewhere."""
    neg_inf = xp.full(lattice.skip.shape, _NEG_INF, dtype=dtype, device=device_of(lattice.z))
    return xp.where(lattice.final, xp.zeros_like(neg_inf), neg_inf)


def log_likelihood(alpha: Array, lattice: Lattice, *, xp: Any) -> Array:
    """``log P`` from the alpha of each sample's last frame (``-inf``: no alignment)."""
    neg_inf = xp.full_like(alpha, _NEG_INF)
    end = xp.max(xp.where(lattice.is_end, alpha, neg_inf), axis=1)
    end_label = xp.max(xp.where(lattice.is_end_label, alpha, neg_inf), axis=1)
    return _logaddexp(end, end_label, xp=xp)


def occupancy_gradient(logp: Array, log_p: Array, alphas: list[Array], emit: Array, lattice: Lattice, *,
                       xp: Any) -> Array:
    """Run the beta recursion and return d(-log P)/d(logits) (see :func:`gradient`)."""
    frames = logp.shape[1]
    terminal = terminal_beta(lattice, logp.dtype, xp=xp)
    beta = terminal
    betas = []
    for t in range(frames - 1, -1, -1):
        betas.append(beta)
        if t == 0:
            break
        beta = beta_step(beta, emit[:, t, :], t, lattice, terminal, xp=xp)
    if not betas:
        return xp.zeros_like(logp)
    return gradient(logp, log_p, xp.stack(alphas, axis=1), xp.stack(betas[::-1], axis=1), lattice, xp=xp)


def alpha_step(alpha: Array, emit_t: Array, t: Any, lattice: Lattice, *, xp: Any) -> Array:
    """One frame of the forward recursion (``t`` may be traced)."""
    neg_inf = xp.full_like(alpha, _NEG_INF)
    skipped = xp.where(lattice.skip, _shift(alpha, 2, neg_inf, xp=xp), neg_inf)
    step = _logaddexp3(alpha, _shift(alpha, 1, neg_inf, xp=xp), skipped, xp=xp) + emit_t
    return xp.where((t < lattice.logit_lengths)[:, None], step, alpha)


def beta_step(beta: Array, emit_t: Array, t: Any, lattice: Lattice, terminal: Array, *, xp: Any) -> Array:
    """From ``beta_t`` to ``beta_{t-1}`` (``t`` may be traced)."""
    neg_inf = xp.full_like(beta, _NEG_INF)
    g = beta + emit_t
    skipped = xp.where(lattice.skip_into_next2, _shift(g, -2, neg_inf, xp=xp), neg_inf)
    previous = _logaddexp3(g, _shift(g, -1, neg_inf, xp=xp), skipped, xp=xp)
    return xp.where((t < lattice.logit_lengths)[:, None], previous, terminal)


def gradient(logp: Array, log_p: Array, alphas: Array, betas: Array, lattice: Lattice, *, xp: Any) -> Array:
    """Return d(-log P)/d(logits): ``softmax - occupancy`` per frame, ``(B, T, K)``.

    ``alphas`` and ``betas`` are ``(B, T, S)``. Where one class holds nearly all
    of a frame's occupancy and probability, both are close to 1 and their
    difference cancels; there the gradient is formed from the complements
    instead (the other classes' occupancy minus their probability), which are
    sums of small positive terms.
    """
    frames = logp.shape[1]
    possible = xp.isfinite(log_p)
    shift_ll = xp.where(possible, log_p, xp.zeros_like(log_p))[:, None, None]
    occ_states = xp.exp(alphas + betas - shift_ll)  # (B, T, S)
    occ = xp.matmul(occ_states, lattice.emits)  # (B, T, K)
    probs = xp.exp(logp)
    zeros = xp.zeros_like(probs)
    dominant = _first_max_one_hot(occ, xp=xp)
    dominant_of_state = xp.matmul(xp.astype(dominant, logp.dtype), xp.permute_dims(lattice.emits, (0, 2, 1)))
    occ_rest = xp.sum(occ_states * (1 - dominant_of_state), axis=2, keepdims=True)
    prob_rest = xp.sum(xp.where(dominant, zeros, probs), axis=2, keepdims=True)
    grad = xp.where(dominant, occ_rest - prob_rest, probs - occ)
    frame = xp.arange(frames, device=device_of(logp))[None, :] < lattice.logit_lengths[:, None]
    keep = frame[:, :, None] & possible[:, None, None]
    return xp.where(keep, grad, zeros)


def ctc_loss_and_gradient(labels: Array, logits: Array, label_lengths: Array, logit_lengths: Array, *,
                          blank_index: int, gradient: bool, xp: Any) -> tuple[Array, Array | None]:
    """Return ``(loss (B,), d loss / d logits (B, T, K) or None)`` in the wide dtype."""
    wide = wide_dtype(logits, xp=xp)
    x = xp.astype(logits, wide)
    logp = log_softmax(x, xp=xp)
    lattice = Lattice(labels, label_lengths, logit_lengths, blank_index, x.shape[2], wide, xp=xp)
    log_p, alphas, emit = forward(logp, lattice, xp=xp, keep=gradient)
    loss = -log_p
    if not gradient:
        return loss, None
    return loss, occupancy_gradient(logp, log_p, alphas, emit, lattice, xp=xp)


@kernel
def ctc_loss(labels: Array, logits: Array, label_lengths: Array, logit_lengths: Array, *,
             blank_index: int, xp: Any) -> Array:
    # See probloss.ctc_loss for the contract. Computed in the wide dtype and
    # returned in it; the functional layer rounds once to the output dtype.
    loss, _ = ctc_loss_and_gradient(labels, logits, label_lengths, logit_lengths,
                                    blank_index=blank_index, gradient=False, xp=xp)
    return loss
