"""probloss.compat against the real PyTorch, optax and scikit-learn.

Each compat function is compared with the original it imitates on seeded random
float64 inputs over its option combinations, on every array library (the
``backend`` fixture), to 1e-6 relative; then on the originals' edge cases (all
targets ignored, zero weights, ``-inf`` logits, probabilities 0 and 1). Where the
original gives NaN from ``0·inf`` (documented in docs/porting.md), the expected
value is the limit, written here as a formula. The signatures are compared with
the originals' (names, defaults, order).

On NumPy and PyTorch every combination of the options runs; on the libraries
whose calls cost more (JAX compiles, Dask builds a graph, array-api-strict
checks every call) one combination runs, with every option set, and a subset
of the edge cases: the compat functions are the same array-API code on every
library, so these runs check that each library computes it natively.
"""

from __future__ import annotations

import functools
import inspect
import itertools
import warnings
from typing import Any

import numpy as np
import optax
import pytest
import sklearn.metrics
import torch
import torch.nn.functional as tf
from conftest import jax_x64_mode

from probloss.compat import optax as poptax
from probloss.compat import sklearn as psklearn
from probloss.compat import torch as ptorch

RTOL = 1e-6
INF = float("inf")


def _t(x: Any) -> torch.Tensor:
    return torch.as_tensor(np.asarray(x))


def _check(backend: Any, ours: Any, reference: Any, rtol: float = RTOL) -> None:
    assert backend.is_native(ours) or np.isscalar(ours)
    got = backend.to_numpy(ours) if not np.isscalar(ours) else np.asarray(ours)
    want = reference.detach().numpy() if isinstance(reference, torch.Tensor) else np.asarray(reference)
    np.testing.assert_allclose(got, want, rtol=rtol, atol=1e-300)


def _combos(backend: Any, *options: tuple[Any, ...]) -> list[tuple[Any, ...]]:
    """Every combination on NumPy and PyTorch; elsewhere every option at its last value (all set)."""
    if _full(backend):
        return list(itertools.product(*options))
    return [tuple(o[-1] for o in options)]


def _full(backend: Any) -> bool:
    """Whether ``backend`` runs the whole grid (the compat code is the same array-API code on every library)."""
    return backend.name in ("numpy", "torch")


def _call(backend: Any, fn: Any, *args: Any, **kwargs: Any) -> Any:
    """``fn`` on ``backend``'s arrays (NumPy arrays among ``args`` and ``kwargs`` are converted).

    On JAX under ``jax.jit``: the function must trace, and one compilation costs
    far less than eager JAX's compilation of every operation for every new shape.
    """
    arrays = [backend.asarray(a) for a in args]
    dynamic = {k: backend.asarray(v) for k, v in kwargs.items() if isinstance(v, np.ndarray)}
    static = {k: v for k, v in kwargs.items() if k not in dynamic}
    if backend.name != "jax":
        return fn(*arrays, **dynamic, **static)
    import jax

    return jax.jit(lambda *a, **d: fn(*a, **d, **static))(*arrays, **dynamic)


# ------------------------------------------------------------------ signatures


def _signature(fn: Any) -> list[tuple[str, Any, Any]]:
    return [(p.name, p.default, p.kind) for p in inspect.signature(fn).parameters.values()]


@pytest.mark.parametrize(("ours", "theirs"), [
    *[(getattr(ptorch, n), getattr(tf, n)) for n in ptorch.__all__],
    *[(getattr(poptax, n), getattr(optax.losses, n)) for n in poptax.__all__],
    (psklearn.log_loss, sklearn.metrics.log_loss),
], ids=lambda f: f.__module__.split(".")[-1] + "." + f.__name__)
def test_signature_is_the_originals(ours: Any, theirs: Any) -> None:
    assert _signature(ours) == _signature(theirs)


def test_optax_has_no_poisson_nll_loss_to_imitate() -> None:
    # The issue asks for optax's poisson_nll_loss only if optax has one.
    assert not hasattr(optax.losses, "poisson_nll_loss")
    assert not hasattr(poptax, "poisson_nll_loss")


# ------------------------------------------------------------------ PyTorch


def _logits(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    return rng.normal(scale=3.0, size=shape)


@pytest.mark.parametrize("spatial", [False, True], ids=["NC", "NCd"])
def test_cross_entropy_matches_torch(backend: Any, spatial: bool) -> None:
    rng = np.random.default_rng(16)
    shape = (5, 4, 3) if spatial else (6, 4)
    x = _logits(rng, shape)
    indices = rng.integers(0, 4, size=shape[:1] + shape[2:])
    indices.flat[1] = -100
    probs = rng.dirichlet(np.ones(4), size=shape[:1] + shape[2:])
    probs = np.moveaxis(probs, -1, 1)
    weight = rng.uniform(0.1, 3.0, size=4)
    for target, w, reduction, smoothing in _combos(
            backend, (indices, probs), (None, weight), ("none", "mean", "sum"), (0.0, 0.2)):
        want = tf.cross_entropy(_t(x), _t(target), weight=None if w is None else _t(w), reduction=reduction,
                                label_smoothing=smoothing)
        ours = _call(backend, ptorch.cross_entropy, x, target, weight=w, reduction=reduction,
                     label_smoothing=smoothing)
        _check(backend, ours, want)


def test_nll_loss_and_ignore_index_match_torch(backend: Any) -> None:
    rng = np.random.default_rng(17)
    logp = np.log(rng.dirichlet(np.ones(3), size=6))
    target = np.array([0, 2, 7, 1, 7, 2])
    weight = np.array([0.5, 2.0, 1.0])
    for w, reduction in _combos(backend, (None, weight), ("none", "mean", "sum")):
        want = tf.nll_loss(_t(logp), _t(target), None if w is None else _t(w), ignore_index=7, reduction=reduction)
        ours = _call(backend, ptorch.nll_loss, logp, target, weight=w, ignore_index=7, reduction=reduction)
        _check(backend, ours, want)
    # The deprecated arguments, read as PyTorch reads them.
    for size_average, reduce in ((False, None), (None, False), (True, True)):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # PyTorch's deprecation note
            want = tf.nll_loss(_t(logp), _t(target), size_average=size_average, reduce=reduce, ignore_index=7)
        ours = _call(backend, ptorch.nll_loss, logp, target, size_average=size_average, reduce=reduce,
                     ignore_index=7)
        _check(backend, ours, want)


def test_binary_cross_entropies_match_torch(backend: Any) -> None:
    rng = np.random.default_rng(18)
    x = _logits(rng, (5, 3))
    p = rng.uniform(size=(5, 3))
    p[0, :] = [0.0, 1.0, 1e-60]  # PyTorch's clamp of the logs at -100
    y = rng.uniform(size=(5, 3))
    y[1, :] = [0.0, 1.0, 1.0]
    weight = rng.uniform(0.0, 2.0, size=(5, 3))
    pos_weight = np.array([0.5, 1.0, 4.0])
    for w, reduction in _combos(backend, (None, weight), ("none", "mean", "sum")):
        tw = None if w is None else _t(w)
        _check(backend, _call(backend, ptorch.binary_cross_entropy, p, y, weight=w, reduction=reduction),
               tf.binary_cross_entropy(_t(p), _t(y), tw, reduction=reduction))
        for pw in (None, pos_weight):
            want = tf.binary_cross_entropy_with_logits(_t(x), _t(y), tw, reduction=reduction,
                                                       pos_weight=None if pw is None else _t(pw))
            ours = _call(backend, ptorch.binary_cross_entropy_with_logits, x, y, weight=w, reduction=reduction,
                         pos_weight=pw)
            _check(backend, ours, want)


def test_kl_div_and_poisson_nll_match_torch(backend: Any) -> None:
    rng = np.random.default_rng(19)
    logq = np.log(rng.dirichlet(np.ones(4), size=5))
    t = rng.dirichlet(np.ones(4), size=5)
    t[0, 1] = 0.0
    for log_target, reduction in _combos(backend, (False, True), ("none", "mean", "sum", "batchmean")):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # np.log(0) and PyTorch's note on "mean"
            target = np.log(t) if log_target else t
            # With log_target, PyTorch's exp(log 0)·(log 0 - input) is 0·inf = NaN where the target is 0;
            # probloss gives the limit 0, which is PyTorch's own value for the same target as a probability.
            want = tf.kl_div(_t(logq), _t(t), reduction=reduction)
            if log_target:
                assert np.isnan(tf.kl_div(_t(logq), _t(target), reduction="none", log_target=True)[0, 1].item())
        ours = _call(backend, ptorch.kl_div, logq, target, reduction=reduction, log_target=log_target)
        _check(backend, ours, want)
    rate = rng.uniform(0.1, 4.0, size=(4, 3))
    counts = rng.poisson(2.0, size=(4, 3)).astype(np.float64)
    counts[0, :2] = [0.0, 1.0]
    for log_input, full, reduction in _combos(backend, (True, False), (False, True), ("none", "mean", "sum")):
        x = np.log(rate) if log_input else rate
        want = tf.poisson_nll_loss(_t(x), _t(counts), log_input=log_input, full=full, reduction=reduction)
        ours = _call(backend, ptorch.poisson_nll_loss, x, counts, log_input=log_input, full=full,
                     reduction=reduction)
        _check(backend, ours, want)


def test_torch_edge_cases(backend: Any) -> None:
    x = np.array([[0.0, -INF, 1.0], [2.0, 0.5, -1.0]])
    # All targets ignored, and all weights 0: the mean is 0/0 in both.
    cases = ((np.array([-100, -100]), None), (np.array([0, 1]), np.zeros(3)))
    for target, weight in cases if _full(backend) else cases[:1]:
        want = tf.cross_entropy(_t(x), _t(target), None if weight is None else _t(weight))
        ours = _call(backend, ptorch.cross_entropy, x, target, weight=weight)
        assert np.isnan(want.item())
        _check(backend, ours, want)
    # A -inf logit off the label is finite; on the label the loss is inf, in both.
    for target in (np.array([1, 0]), np.array([2, 0])) if _full(backend) else (np.array([1, 0]),):
        want = tf.cross_entropy(_t(x), _t(target), reduction="none")
        _check(backend, _call(backend, ptorch.cross_entropy, x, target, reduction="none"), want)
        assert (want[0].item() == INF) == (target[0] == 1)
    # Where PyTorch forms 0·inf (NaN), the limit: a zero probability at a -inf logit adds 0.
    probs = np.array([[0.5, 0.0, 0.5], [0.0, 1.0, 0.0]])
    assert np.isnan(tf.cross_entropy(_t(x), _t(probs), reduction="none")[0].item())
    with np.errstate(invalid="ignore"):
        expected = -np.sum(np.where(probs > 0, probs * _log_softmax_or_zero(x), 0.0), axis=1)
    _check(backend, _call(backend, ptorch.cross_entropy, x, probs, reduction="none"), expected)
    # Infinite logits with the matching hard label: loss 0 (PyTorch: NaN).
    z = np.array([-INF, INF, 3.0])
    y = np.array([0.0, 1.0, 1.0])
    expected = np.array([0.0, 0.0, np.log1p(np.exp(-3.0))])
    _check(backend, _call(backend, ptorch.binary_cross_entropy_with_logits, z, y, reduction="none"), expected)
    # kl_div: a zero target next to a -inf log-prediction adds 0; poisson: a count of 0 at rate 0 adds 0.
    _check(backend, _call(backend, ptorch.kl_div, np.array([-INF, np.log(0.5)]), np.array([0.0, 1.0]),
                          reduction="sum"), np.array(-np.log(0.5)))
    _check(backend, _call(backend, ptorch.poisson_nll_loss, np.array([-INF, 0.0]), np.array([0.0, 1.0]),
                          reduction="sum"), np.array(1.0))


def _log_softmax_or_zero(x: np.ndarray) -> np.ndarray:
    m = np.max(x, axis=1, keepdims=True)
    with np.errstate(divide="ignore"):
        return x - m - np.log(np.sum(np.exp(x - m), axis=1, keepdims=True))


def test_gradients_match_torch_autograd() -> None:
    rng = np.random.default_rng(20)
    x = _logits(rng, (4, 3))
    target = np.array([0, 2, -100, 1])
    weight = np.array([1.0, 2.0, 0.5])
    ours_x = torch.tensor(x, requires_grad=True)
    theirs_x = torch.tensor(x, requires_grad=True)
    ptorch.cross_entropy(ours_x, _t(target), _t(weight), label_smoothing=0.1).backward()
    tf.cross_entropy(theirs_x, _t(target), _t(weight), label_smoothing=0.1).backward()
    np.testing.assert_allclose(ours_x.grad.numpy(), theirs_x.grad.numpy(), rtol=1e-9, atol=1e-15)
    y = rng.uniform(size=(4, 3))
    ours_x.grad = theirs_x.grad = None
    ptorch.binary_cross_entropy_with_logits(ours_x, _t(y), pos_weight=_t(weight)).backward()
    tf.binary_cross_entropy_with_logits(theirs_x, _t(y), pos_weight=_t(weight)).backward()
    np.testing.assert_allclose(ours_x.grad.numpy(), theirs_x.grad.numpy(), rtol=1e-9, atol=1e-15)


def test_bad_reduction_is_refused() -> None:
    with pytest.raises(ValueError, match="reduction"):
        ptorch.cross_entropy(np.zeros((2, 3)), np.array([0, 1]), reduction="batchmean")
    with pytest.raises(ValueError, match="weight"):
        ptorch.cross_entropy(np.zeros((2, 3)), np.array([0, 1]), weight=np.ones(2))


# ------------------------------------------------------------------ optax


def _jnp(x: Any) -> Any:
    import jax.numpy as jnp

    return jnp.asarray(x)


def _optax_cases() -> list[tuple[Any, Any, tuple[np.ndarray, ...], dict[str, Any]]]:
    rng = np.random.default_rng(21)
    x = _logits(rng, (5, 4))
    soft = rng.dirichlet(np.ones(4), size=5)
    binary = rng.uniform(size=(5, 4))
    binary[0] = [0.0, 1.0, 0.0, 1.0]
    labels = rng.integers(0, 4, size=5)
    where = rng.uniform(size=(5, 4)) > 0.3
    where[:, 0] = True
    where[1, labels[1]] = False  # a label outside the softmax's entries
    return [
        (poptax.sigmoid_binary_cross_entropy, optax.losses.sigmoid_binary_cross_entropy, (x, binary), {}),
        (poptax.sigmoid_focal_loss, optax.losses.sigmoid_focal_loss, (x, binary), {}),
        (poptax.sigmoid_focal_loss, optax.losses.sigmoid_focal_loss, (x, binary), {"alpha": 0.3, "gamma": 1.5}),
        (poptax.softmax_cross_entropy, optax.losses.softmax_cross_entropy, (x, soft), {}),
        (poptax.softmax_cross_entropy, optax.losses.softmax_cross_entropy, (x, soft), {"where": where}),
        (poptax.softmax_cross_entropy, optax.losses.softmax_cross_entropy, (x.T, soft.T), {"axis": 0}),
        (poptax.safe_softmax_cross_entropy, optax.losses.safe_softmax_cross_entropy, (x, soft), {}),
        (poptax.softmax_cross_entropy_with_integer_labels,
         optax.losses.softmax_cross_entropy_with_integer_labels, (x, labels), {}),
        (poptax.softmax_cross_entropy_with_integer_labels,
         optax.losses.softmax_cross_entropy_with_integer_labels, (x, labels), {"where": where}),
        (poptax.kl_divergence, optax.losses.kl_divergence, (np.log(soft), soft), {}),
        (poptax.kl_divergence, optax.losses.kl_divergence, (np.log(soft), soft), {"axis": None}),
    ]


@functools.cache
def _optax_references() -> tuple[np.ndarray, ...]:
    """optax's values for :func:`_optax_cases`, computed once (in float64)."""
    import jax

    cases = _optax_cases()

    def references(*arrays: Any) -> tuple[Any, ...]:
        out, position = [], 0
        for _, theirs, args, kwargs in cases:
            n = len(args) + sum(isinstance(v, np.ndarray) for v in kwargs.values())
            given, position = arrays[position:position + n], position + n
            dynamic = {k: given[len(args) + i]
                       for i, k in enumerate(k for k, v in kwargs.items() if isinstance(v, np.ndarray))}
            static = {k: v for k, v in kwargs.items() if not isinstance(v, np.ndarray)}
            out.append(theirs(*given[:len(args)], **dynamic, **static))
        return tuple(out)

    inputs = [a for _, _, args, kwargs in cases
              for a in (*args, *(v for v in kwargs.values() if isinstance(v, np.ndarray)))]
    # One compilation for all the cases (eager JAX would compile each operation for each shape).
    with jax_x64_mode(True):
        return tuple(np.asarray(r) for r in jax.jit(references)(*map(_jnp, inputs)))


def test_optax_losses_match(backend: Any) -> None:
    for index, ((ours_fn, _, args, kwargs), want) in enumerate(zip(_optax_cases(), _optax_references(), strict=True)):
        if not _full(backend) and index not in (0, 2, 4, 6, 8, 10):  # one case of each function
            continue
        ours = _call(backend, ours_fn, *args, **kwargs)
        _check(backend, ours, want)


def test_optax_edge_case_references(jax_x64: None) -> None:
    """What optax gives on the edge cases below (once, not per backend; one compilation)."""
    import jax

    def edge_cases(x: Any, y: Any, zeros: Any, label: Any, where: Any, z: Any, t: Any) -> tuple[Any, ...]:
        return (optax.losses.safe_softmax_cross_entropy(x, y), optax.losses.softmax_cross_entropy(x, y),
                optax.losses.softmax_cross_entropy_with_integer_labels(zeros, label, where=where),
                optax.losses.sigmoid_binary_cross_entropy(z, t))

    safe, plain, integer, sigmoid = map(np.asarray, jax.jit(edge_cases)(*map(_jnp, (
        np.array([[2.0, -INF, 0.0]]), np.array([[1.0, 0.0, 0.0]]), np.zeros((1, 3)), np.array([1]),
        np.zeros((1, 3), dtype=bool), np.array([-INF]), np.array([0.0])))))
    np.testing.assert_allclose(safe, [np.log1p(np.exp(-2.0))], rtol=1e-12)
    assert np.isnan(plain).all()  # 0·log 0 (probloss: 0)
    assert integer.tolist() == [0.0]
    assert np.isnan(sigmoid).all()


def test_optax_edge_cases(backend: Any) -> None:
    x, y = np.array([[2.0, -INF, 0.0]]), np.array([[1.0, 0.0, 0.0]])
    # 0·log 0 = 0 in both (optax's softmax_cross_entropy: NaN); the value is log(1 + e^-2).
    for fn in (poptax.safe_softmax_cross_entropy, poptax.softmax_cross_entropy):
        _check(backend, _call(backend, fn, x, y), np.array([np.log1p(np.exp(-2.0))]))
    # An all-False `where` row gives 0, as optax.
    ours = _call(backend, poptax.softmax_cross_entropy_with_integer_labels, np.zeros((1, 3)), np.array([1]),
                 where=np.zeros((1, 3), dtype=bool))
    _check(backend, ours, np.zeros(1))
    # Infinite logits with the matching hard labels: 0 (optax: NaN).
    z, t = np.array([-INF, INF]), np.array([0.0, 1.0])
    _check(backend, _call(backend, poptax.sigmoid_binary_cross_entropy, z, t), np.zeros(2))


# ------------------------------------------------------------------ scikit-learn


def test_log_loss_matches_sklearn(backend: Any) -> None:
    rng = np.random.default_rng(22)
    proba = rng.dirichlet(np.ones(3), size=6)
    proba[0] = [1.0, 0.0, 0.0]  # clipped to [eps, 1 - eps]
    proba[1] = [0.0, 1.0, 0.0]
    y = np.array([0, 2, 1, 1, 0, 2])
    weight = rng.uniform(0.1, 2.0, size=6)
    for normalize, w in _combos(backend, (True, False), (None, weight)):
        want = sklearn.metrics.log_loss(y, proba, normalize=normalize, sample_weight=w)
        ours = psklearn.log_loss(backend.asarray(y), backend.asarray(proba), normalize=normalize,
                                 sample_weight=None if w is None else backend.asarray(w))
        assert isinstance(ours, float)
        assert ours == pytest.approx(want, rel=RTOL)
    if backend.name not in ("numpy", "torch"):
        return  # the cases below on NumPy and PyTorch only (each new shape costs an eager JAX compilation)
    # Labels given (one of them absent from y_true), a 1-D positive-class probability, float32.
    p4 = rng.dirichlet(np.ones(4), size=6)
    assert psklearn.log_loss(backend.asarray(y), backend.asarray(p4), labels=[0, 1, 2, 3]) == pytest.approx(
        sklearn.metrics.log_loss(y, p4, labels=[0, 1, 2, 3]), rel=RTOL)
    yb, pb = np.array([0, 1, 1, 0]), np.array([0.2, 1.0, 0.7, 0.0])
    assert psklearn.log_loss(backend.asarray(yb), backend.asarray(pb)) == pytest.approx(
        sklearn.metrics.log_loss(yb, pb), rel=RTOL)
    p32 = proba.astype(np.float32)
    assert psklearn.log_loss(backend.asarray(y), backend.asarray(p32)) == pytest.approx(
        sklearn.metrics.log_loss(y, p32), rel=1e-5)


def test_log_loss_errors_and_warnings_as_sklearn() -> None:
    y = ["a", "b", "b"]
    with pytest.raises(ValueError, match="greater than 1"):
        psklearn.log_loss(y, np.array([[0.5, 1.5], [0.5, 0.5], [0.5, 0.5]]))
    with pytest.raises(ValueError, match="only one label"):
        psklearn.log_loss(["a", "a"], np.array([0.2, 0.3]))
    with pytest.warns(UserWarning, match="do not sum to one"):
        got = psklearn.log_loss(y, np.array([[0.5, 0.6], [0.5, 0.5], [0.2, 0.8]]))
    with pytest.warns(UserWarning, match="do not sum to one"):
        want = sklearn.metrics.log_loss(y, np.array([[0.5, 0.6], [0.5, 0.5], [0.2, 0.8]]))
    assert got == pytest.approx(want, rel=RTOL)
