"""The options beyond Keras's: class_weight, pos_weight, normalize_by, sparse focal, log-space KL and Poisson.

Values on every backend against float64 formulas written here (Keras's clipping
on the probability paths, exact log-softmax and softplus on the logit paths);
gradients on PyTorch against autograd of the same formulas written in torch;
validation errors for bad weights; defaults that keep Keras's configs.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
import torch

import probloss

EPS = 1e-7
RTOL = 1e-9


def _call(backend: Any, fn: Any, *args: np.ndarray, **kwargs: Any) -> np.ndarray:
    """``fn`` on ``backend``'s arrays, as NumPy; on JAX under ``jax.jit`` (one compilation, not one per op)."""
    arrays = [backend.asarray(a) for a in args]
    if backend.name == "jax":
        import jax

        out = jax.jit(lambda *a: fn(*a, **kwargs))(*arrays)
    else:
        out = fn(*arrays, **kwargs)
    assert backend.is_native(out)
    return backend.to_numpy(out)


def _along(v: Any, ndim: int, axis: int) -> np.ndarray:
    shape = [1] * ndim
    shape[axis] = -1
    return np.reshape(np.asarray(v, dtype=np.float64), shape)


def _log_p(y_pred: np.ndarray, axis: int, from_logits: bool) -> np.ndarray:
    if from_logits:
        m = y_pred.max(axis=axis, keepdims=True)
        return y_pred - m - np.log(np.exp(y_pred - m).sum(axis=axis, keepdims=True))
    return np.log(np.clip(y_pred / y_pred.sum(axis=axis, keepdims=True), EPS, 1 - EPS))


def _softplus(x: np.ndarray) -> np.ndarray:
    return np.logaddexp(0.0, x)


@pytest.fixture(scope="module")
def data() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(160)
    labels = rng.integers(0, 3, size=(4, 2))  # rank 3 with the class axis in the middle: (4, 3, 2)
    return {
        "logits": rng.normal(scale=3.0, size=(4, 3, 2)),
        "probs": rng.uniform(0.01, 1.0, size=(4, 3, 2)),
        "labels": labels,
        "onehot": np.moveaxis(np.eye(3)[labels], -1, 1),
        "weight": np.array([0.5, 2.0, 1.25]),
    }


@pytest.mark.parametrize("from_logits", [False, True])
def test_class_weight_on_categorical_losses(backend: Any, data: dict[str, np.ndarray], from_logits: bool) -> None:
    y_pred = data["logits"] if from_logits else data["probs"]
    y, w = data["onehot"], data["weight"]
    log_p = _log_p(y_pred, 1, from_logits)
    ls = 0.1
    smoothed = y * (1 - ls) + ls / 3
    want = -np.sum(_along(w, 3, 1) * smoothed * log_p, axis=1)
    got = _call(backend, probloss.categorical_crossentropy, y, y_pred, from_logits=from_logits,
                label_smoothing=ls, axis=1, class_weight=w)
    np.testing.assert_allclose(got, want, rtol=RTOL)
    # Focal, per-class alpha times class weight: alpha_c·w_c·(1 - p_c)^γ·(-y_c·log p_c).
    alpha = [0.2, 0.3, 0.5]
    focal = -np.sum(_along(np.multiply(alpha, w), 3, 1) * (1 - np.exp(log_p)) ** 1.5 * y * log_p, axis=1)
    moved = np.moveaxis  # Keras broadcasts a per-class alpha on the last axis: use axis -1 here
    got = _call(backend, probloss.categorical_focal_crossentropy, moved(y, 1, -1), moved(y_pred, 1, -1),
                alpha=alpha, gamma=1.5, from_logits=from_logits, class_weight=w)
    np.testing.assert_allclose(got, focal, rtol=RTOL)
    # Sparse: the one-hot losses of the labels, any class axis.
    got = _call(backend, probloss.sparse_categorical_crossentropy, data["labels"], y_pred,
                from_logits=from_logits, axis=1, class_weight=w)
    np.testing.assert_allclose(got, -np.sum(_along(w, 3, 1) * y * log_p, axis=1), rtol=RTOL)
    got = _call(backend, probloss.sparse_categorical_focal_crossentropy, data["labels"], y_pred, alpha=alpha,
                gamma=1.5, from_logits=from_logits, axis=1, class_weight=w)
    np.testing.assert_allclose(got, -np.sum(_along(np.multiply(alpha, w), 3, 1) * (1 - np.exp(log_p)) ** 1.5
                                            * y * log_p, axis=1), rtol=RTOL)


def test_sparse_focal_is_categorical_focal_of_one_hot(backend: Any, data: dict[str, np.ndarray]) -> None:
    for from_logits in (False, True):
        y_pred = np.moveaxis(data["logits"] if from_logits else data["probs"], 1, -1)
        labels = data["labels"]
        want = _call(backend, probloss.categorical_focal_crossentropy, np.eye(3)[labels], y_pred, alpha=0.4,
                     gamma=2.0, from_logits=from_logits)
        got = _call(backend, probloss.sparse_categorical_focal_crossentropy, labels, y_pred, alpha=0.4,
                    gamma=2.0, from_logits=from_logits)
        np.testing.assert_allclose(got, want, rtol=RTOL)


def test_normalize_by(backend: Any, data: dict[str, np.ndarray]) -> None:
    reductions = ["sum_over_batch_size", "sum", "mean_with_sample_weight", "none"]
    if backend.name not in ("numpy", "torch"):
        reductions = reductions[::2]  # each call costs a compilation (JAX) or a graph (Dask)
    for reduction in reductions:
        _check_normalize_by(backend, data, reduction)


def _check_normalize_by(backend: Any, data: dict[str, np.ndarray], reduction: str) -> None:
    labels = data["labels"][:, 0].copy()
    labels[1] = -1  # ignored
    logits = data["logits"][:, :, 0]
    w, s = data["weight"], np.array([1.0, 0.5, 2.0, 0.25])
    valid = labels != -1
    safe = np.where(valid, labels, 0)
    losses = -_log_p(logits, 1, True)[np.arange(4), safe] * w[safe] * valid
    c = w[safe] * valid
    for normalize_by in ("count", "weights"):
        loss = probloss.SparseCategoricalCrossentropy(from_logits=True, ignore_class=-1, reduction=reduction,
                                                      class_weight=w, normalize_by=normalize_by)
        got = _call(backend, loss, labels, logits, s)
        if reduction == "none":
            want = s * losses
        elif reduction == "sum":
            want = np.sum(s * losses)
        elif normalize_by == "weights":  # PyTorch's mean: Σ s·c·l / Σ s·c
            want = np.sum(s * losses) / np.sum(s * c)
        elif reduction == "mean_with_sample_weight":
            want = np.sum(s * losses) / np.sum(s * valid)
        else:  # Keras: Σ s·c·l over the number of entries not ignored
            want = np.sum(s * losses) / valid.sum()
        np.testing.assert_allclose(got, want, rtol=RTOL)


def test_normalize_by_weights_is_torch_cross_entropy(data: dict[str, np.ndarray]) -> None:
    logits, labels, w = data["logits"], data["labels"], data["weight"]
    loss = probloss.CategoricalCrossentropy(from_logits=True, axis=1, class_weight=w, normalize_by="weights")
    got = float(loss(data["onehot"], logits))
    want = torch.nn.functional.cross_entropy(torch.tensor(logits), torch.tensor(labels), weight=torch.tensor(w))
    assert got == pytest.approx(want.item(), rel=RTOL)
    numerator, denominator = loss.partial(data["onehot"], logits)
    assert float(loss.combine(numerator, denominator)) == pytest.approx(got, rel=1e-12)


def _binary_formula(y: np.ndarray, y_pred: np.ndarray, pw: np.ndarray, from_logits: bool, gamma: float | None,
                    ) -> np.ndarray:
    if from_logits:
        bce = pw * y * _softplus(-y_pred) + (1 - y) * _softplus(y_pred)
        p = 1 / (1 + np.exp(-y_pred))
    else:
        clipped = np.clip(y_pred, EPS, 1 - EPS)
        bce = -(pw * y * np.log(clipped) + (1 - y) * np.log1p(-clipped))
        p = y_pred
    if gamma is not None:
        bce = (y * (1 - p) + (1 - y) * p) ** gamma * bce * (y * 0.25 + (1 - y) * 0.75)
    return bce.mean(axis=-1)


@pytest.mark.parametrize("from_logits", [False, True])
def test_pos_weight(backend: Any, data: dict[str, np.ndarray], from_logits: bool) -> None:
    rng = np.random.default_rng(161)
    y = rng.uniform(size=(4, 3))
    y[0] = [0.0, 1.0, 1.0]
    y_pred = data["logits"][:, :, 0] if from_logits else data["probs"][:, :, 0]
    pw = np.array([0.5, 3.0, 1.0])
    got = _call(backend, probloss.binary_crossentropy, y, y_pred, from_logits=from_logits, pos_weight=pw)
    np.testing.assert_allclose(got, _binary_formula(y, y_pred, pw, from_logits, None), rtol=RTOL)
    got = _call(backend, probloss.binary_focal_crossentropy, y, y_pred, apply_class_balancing=True, gamma=1.5,
                from_logits=from_logits, pos_weight=2.0)
    np.testing.assert_allclose(got, _binary_formula(y, y_pred, np.float64(2.0), from_logits, 1.5), rtol=RTOL)


def test_log_space_kl_and_poisson(backend: Any) -> None:
    rng = np.random.default_rng(162)
    t = rng.dirichlet(np.ones(4), size=3)
    t[0, 2] = 0.0
    q = rng.dirichlet(np.ones(4), size=3)
    with np.errstate(divide="ignore"):
        log_t = np.log(t)
    exact = np.sum(np.where(t > 0, t * (np.log(np.where(t > 0, t, 1)) - np.log(q)), 0.0), axis=-1)
    got = _call(backend, probloss.kl_divergence, log_t, np.log(q), log_input=True, log_target=True)
    np.testing.assert_allclose(got, exact, rtol=RTOL)
    clipped_t = np.clip(t, EPS, 1)  # a probability target is clipped as Keras's
    got = _call(backend, probloss.kl_divergence, t, np.log(q), log_input=True)
    np.testing.assert_allclose(got, np.sum(clipped_t * (np.log(clipped_t) - np.log(q)), axis=-1), rtol=RTOL)
    got = _call(backend, probloss.kl_divergence, log_t, q, log_target=True)
    np.testing.assert_allclose(got, exact, rtol=RTOL)
    counts = rng.poisson(2.0, size=(3, 4)).astype(np.float64)
    counts[0, :2] = [0.0, 1.0]
    z = rng.normal(size=(3, 4))
    stirling = np.where(counts > 1, counts * np.log(np.maximum(counts, 1)) - counts
                        + 0.5 * np.log(2 * math.pi * np.maximum(counts, 1)), 0.0)
    got = _call(backend, probloss.poisson, counts, z, log_input=True, full=True)
    np.testing.assert_allclose(got, np.mean(np.exp(z) - counts * z + stirling, axis=-1), rtol=RTOL)
    rate = np.exp(z)
    got = _call(backend, probloss.poisson, counts, rate, full=True)
    np.testing.assert_allclose(got, np.mean(rate - counts * np.log(rate + EPS) + stirling, axis=-1), rtol=RTOL)


# ------------------------------------------------------------------ gradients (PyTorch autograd)


def _grad(fn: Any, *arrays: np.ndarray) -> np.ndarray:
    x = torch.tensor(arrays[-1], requires_grad=True)
    fn(*(torch.as_tensor(a) for a in arrays[:-1]), x).sum().backward()
    return x.grad.numpy()


def test_gradients_against_autograd_of_formulas(data: dict[str, np.ndarray]) -> None:
    logits, y, w = data["logits"], data["onehot"], data["weight"]
    tw = torch.tensor(w).reshape(1, 3, 1)
    ours = _grad(lambda a, b: probloss.categorical_crossentropy(a, b, from_logits=True, axis=1, class_weight=w),
                 y, logits)
    want = _grad(lambda a, b: -(tw * a * torch.log_softmax(b, 1)).sum(1), y, logits)
    np.testing.assert_allclose(ours, want, rtol=1e-9, atol=1e-15)
    alpha = [0.2, 0.3, 0.5]
    ta = torch.tensor(alpha, dtype=torch.float64).reshape(1, 3, 1)
    ours = _grad(lambda a, b: probloss.sparse_categorical_focal_crossentropy(
        a, b, alpha=alpha, from_logits=True, axis=1, class_weight=w), data["labels"], logits)
    want = _grad(lambda a, b: -(ta * tw * torch.nn.functional.one_hot(a, 3).movedim(-1, 1)
                                * (1 - torch.softmax(b, 1)) ** 2 * torch.log_softmax(b, 1)).sum(1),
                 data["labels"], logits)
    np.testing.assert_allclose(ours, want, rtol=1e-9, atol=1e-15)
    yb = (data["probs"][:, :, 0] > 0.5).astype(np.float64)
    xb = logits[:, :, 0]
    pw = torch.tensor([0.5, 3.0, 1.0], dtype=torch.float64)
    ours = _grad(lambda a, b: probloss.binary_crossentropy(a, b, from_logits=True, pos_weight=[0.5, 3.0, 1.0]),
                 yb, xb)
    want = _grad(lambda a, b: (pw * a * torch.nn.functional.softplus(-b)
                               + (1 - a) * torch.nn.functional.softplus(b)).mean(-1), yb, xb)
    np.testing.assert_allclose(ours, want, rtol=1e-9, atol=1e-15)


def test_zero_targets_give_finite_values_and_gradients() -> None:
    t = torch.tensor([[0.0, 0.25, 0.75]], dtype=torch.float64)
    log_q = torch.log(torch.tensor([[0.2, 0.3, 0.5]], dtype=torch.float64)).requires_grad_(True)
    log_t = torch.log(t).requires_grad_(True)
    loss = probloss.kl_divergence(log_t, log_q, log_input=True, log_target=True)
    loss.sum().backward()
    assert torch.isfinite(loss).all()
    assert torch.isfinite(log_q.grad).all()
    assert torch.isfinite(log_t.grad).all()
    np.testing.assert_allclose(log_q.grad.numpy(), -t.numpy(), rtol=1e-12)  # d/d log q of -Σ t·log q
    z = torch.tensor([[-float("inf"), 0.5, 1.0]], dtype=torch.float64, requires_grad=True)
    counts = torch.tensor([[0.0, 0.0, 3.0]], dtype=torch.float64)
    loss = probloss.poisson(counts, z, log_input=True, full=True)
    loss.sum().backward()
    assert torch.isfinite(loss).all()
    assert torch.isfinite(z.grad).all()
    np.testing.assert_allclose(z.grad.numpy(), (torch.exp(z.detach()) - counts).numpy() / 3, rtol=1e-12)


# ------------------------------------------------------------------ validation, defaults, configs


@pytest.mark.parametrize(("kwargs", "error", "match"), [
    ({"class_weight": [1.0, 2.0]}, ValueError, "one entry per class"),
    ({"class_weight": [1.0, -2.0, 1.0]}, ValueError, "non-negative"),
    ({"class_weight": [1.0, float("nan"), 1.0]}, ValueError, "non-negative"),
    ({"class_weight": [1.0, float("inf"), 1.0]}, ValueError, "finite"),
    ({"class_weight": 2.0}, TypeError, "one per class"),
    ({"class_weight": ["a", "b", "c"]}, TypeError, "real numbers"),
    ({"class_weight": []}, ValueError, "at least one"),
])
def test_bad_class_weights_are_refused(kwargs: dict[str, Any], error: type, match: str) -> None:
    y, p = np.array([0, 2]), np.full((2, 3), 1 / 3)
    with pytest.raises(error, match=match):
        probloss.sparse_categorical_crossentropy(y, p, **kwargs)
    with pytest.raises(error, match=match):
        probloss.categorical_crossentropy(np.eye(3)[y], p, **kwargs)
    if "per class" not in match:  # a length is only known at the call
        with pytest.raises(error, match=match):
            probloss.SparseCategoricalFocalCrossentropy(**kwargs)


def test_bad_options_are_refused() -> None:
    with pytest.raises(ValueError, match="pos_weight"):
        probloss.BinaryCrossentropy(pos_weight=-1.0)
    with pytest.raises(ValueError, match="one entry per class"):
        probloss.binary_crossentropy(np.zeros((2, 3)), np.full((2, 3), 0.5), pos_weight=[1.0, 2.0])
    with pytest.raises(ValueError, match="normalize_by"):
        probloss.CategoricalCrossentropy(normalize_by="batch")
    with pytest.raises(ValueError, match="alpha"):
        probloss.sparse_categorical_focal_crossentropy(np.array([0]), np.full((1, 3), 1 / 3), alpha=[0.5, 0.5])
    with pytest.raises(TypeError, match="log_input"):
        probloss.Poisson(log_input="yes")
    with pytest.raises(ValueError, match="grad_hess does not support"):
        probloss.grad_hess(probloss.BinaryCrossentropy(from_logits=True, pos_weight=2.0), [1.0], [0.5])


def test_defaults_keep_keras_configs_and_fast_paths_agree(data: dict[str, np.ndarray]) -> None:
    assert "class_weight" not in probloss.CategoricalCrossentropy().get_config()
    assert "log_input" not in probloss.Poisson().get_config()
    loss = probloss.SparseCategoricalFocalCrossentropy(alpha=[0.2, 0.3, 0.5], class_weight=[1.0, 2.0, 3.0],
                                                       normalize_by="weights")
    config = loss.get_config()
    assert config["class_weight"] == [1.0, 2.0, 3.0]
    assert config["normalize_by"] == "weights"
    rebuilt = probloss.deserialize(probloss.serialize(loss))
    y, p = data["labels"][:, 0], data["probs"][:, :, 0]
    assert float(rebuilt(y, p)) == float(loss(y, p))
    # Class weights folded into the labels run through the fast paths; the generic kernels agree.
    y1 = data["onehot"][:, :, 0].astype(np.float32)
    x32 = data["logits"][:, :, 0].astype(np.float32)
    fast = probloss.categorical_crossentropy(y1, x32, from_logits=True, class_weight=[0.5, 2.0, 1.0])
    with probloss.fast_paths(False):
        generic = probloss.categorical_crossentropy(y1, x32, from_logits=True, class_weight=[0.5, 2.0, 1.0])
    np.testing.assert_allclose(fast, generic, rtol=4 * np.finfo(np.float32).eps)
