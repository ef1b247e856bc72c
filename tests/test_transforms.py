"""Function transforms: jax.jit/grad/vmap, PyTorch autograd, torch.compile, torch.func.

Every loss function and class (classes with a sample weight) is run under
``jax.jit``, ``jax.grad`` and ``jax.vmap`` (float64 enabled, the ``jax_x64``
fixture), and under PyTorch autograd; values and gradients are compared with
float64 references written here:

* values: the loss formulas below, written once on the array-API names
  (``xp.log``, ``xp.sum``...), evaluated in float64 NumPy;
* JAX gradients: analytic formulas (``(sigmoid(x) - y)/C`` for BCE logits,
  ``softmax(x) - y`` for CE logits, ...), and for the two focal losses the
  gradient of the float64 formula by ``jax.grad`` (the focal gradient has no
  short closed form);
* PyTorch gradients: ``torch.autograd`` on the same formulas evaluated by torch
  in float64.

``torch.compile`` is run on the three cross-entropies (function and class
each, one compiled call per loss to keep the suite fast), and
``torch.func.grad``/``vmap`` on a few losses.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import array_api_compat
import numpy as np
import pytest
from conftest import jax_x64_mode, library

import probloss

EPS = 1e-7
B, C = 4, 3

# ------------------------------------------------------------ float64 formulas (xp-generic)


def _softplus(x: Any, xp: Any) -> Any:
    return xp.log1p(xp.exp(x))  # inputs here are small: no overflow


def _sigmoid(x: Any, xp: Any) -> Any:
    return 1.0 / (1.0 + xp.exp(-x))


def _log_probs(p: Any, logits: bool, xp: Any) -> Any:
    if logits:
        return p - xp.log(xp.sum(xp.exp(p), axis=-1, keepdims=True))
    return xp.log(xp.clip(p / xp.sum(p, axis=-1, keepdims=True), EPS, 1 - EPS))


def _bce_elements(y: Any, p: Any, logits: bool, xp: Any) -> Any:
    if logits:
        return y * _softplus(-p, xp) + (1 - y) * _softplus(p, xp)
    q = xp.clip(p, EPS, 1 - EPS)
    return -(y * xp.log(q) + (1 - y) * xp.log(1 - q))


def f_bce(y: Any, p: Any, xp: Any, *, from_logits: bool = False, label_smoothing: float = 0.0) -> Any:
    y = y * (1 - label_smoothing) + 0.5 * label_smoothing
    return xp.mean(_bce_elements(y, p, from_logits, xp), axis=-1)


def f_bfce(y: Any, p: Any, xp: Any, *, apply_class_balancing: bool = False, alpha: float = 0.25,
           gamma: float = 2.0, from_logits: bool = False, label_smoothing: float = 0.0) -> Any:
    y = y * (1 - label_smoothing) + 0.5 * label_smoothing
    s = _sigmoid(p, xp) if from_logits else p
    p_t = y * s + (1 - y) * (1 - s)
    loss = (1 - p_t) ** gamma * _bce_elements(y, p, from_logits, xp)
    if apply_class_balancing:
        loss = (y * alpha + (1 - y) * (1 - alpha)) * loss
    return xp.mean(loss, axis=-1)


def f_cce(y: Any, p: Any, xp: Any, *, from_logits: bool = False, label_smoothing: float = 0.0) -> Any:
    y = y * (1 - label_smoothing) + label_smoothing / y.shape[-1]
    return -xp.sum(y * _log_probs(p, from_logits, xp), axis=-1)


def f_cfce(y: Any, p: Any, xp: Any, *, alpha: float = 0.25, gamma: float = 2.0, from_logits: bool = False,
           label_smoothing: float = 0.0) -> Any:
    y = y * (1 - label_smoothing) + label_smoothing / y.shape[-1]
    logq = _log_probs(p, from_logits, xp)
    return xp.sum(alpha * (1 - xp.exp(logq)) ** gamma * -y * logq, axis=-1)


def f_scce(one_hot: Any, p: Any, xp: Any, *, from_logits: bool = False) -> Any:
    return -xp.sum(one_hot * _log_probs(p, from_logits, xp), axis=-1)


def f_poisson(y: Any, p: Any, xp: Any) -> Any:
    return xp.mean(p - y * xp.log(p + EPS), axis=-1)


def f_kld(y: Any, p: Any, xp: Any) -> Any:
    t, q = xp.clip(y, EPS, 1.0), xp.clip(p, EPS, 1.0)
    return xp.sum(t * xp.log(t / q), axis=-1)


# ------------------------------------------------------ analytic gradients (NumPy float64)


def _np_softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def g_bce(y: np.ndarray, p: np.ndarray, *, from_logits: bool = False, label_smoothing: float = 0.0) -> np.ndarray:
    y = y * (1 - label_smoothing) + 0.5 * label_smoothing
    if from_logits:
        return (1 / (1 + np.exp(-p)) - y) / p.shape[-1]
    return (-y / p + (1 - y) / (1 - p)) / p.shape[-1]


def g_cce(y: np.ndarray, p: np.ndarray, *, from_logits: bool = False, label_smoothing: float = 0.0) -> np.ndarray:
    y = y * (1 - label_smoothing) + label_smoothing / y.shape[-1]
    total = y.sum(axis=-1, keepdims=True)
    if from_logits:
        return _np_softmax(p) * total - y
    return -y / p + total / p.sum(axis=-1, keepdims=True)


def g_poisson(y: np.ndarray, p: np.ndarray) -> np.ndarray:
    return (1 - y / (p + EPS)) / p.shape[-1]


def g_kld(y: np.ndarray, p: np.ndarray) -> np.ndarray:
    return -y / p


# ----------------------------------------------------------------------- inputs

_rng = np.random.default_rng(99)
BINARY_TRUE = _rng.integers(0, 2, (B, C)).astype(np.float64)
PROBS = _rng.uniform(0.1, 0.9, (B, C))
LOGITS = _rng.uniform(-3.0, 3.0, (B, C))
LABELS = np.array([2, 0, 1, 2])
ONE_HOT = np.eye(C)[LABELS]
COUNTS = _rng.integers(0, 4, (B, C)).astype(np.float64)
RATES = _rng.uniform(0.2, 3.0, (B, C))
DIST_TRUE = _rng.dirichlet(np.ones(C), B)
DIST_PRED = _rng.dirichlet(np.ones(C), B) * 0.9 + 0.1 / C
WEIGHTS = np.array([0.5, 1.0, 2.0, 0.25])

INPUTS = {
    "binary": {False: (BINARY_TRUE, PROBS), True: (BINARY_TRUE, LOGITS)},
    "categorical": {False: (ONE_HOT, PROBS), True: (ONE_HOT, LOGITS)},
    "sparse": {False: (LABELS, PROBS), True: (LABELS, LOGITS)},
    "poisson": {False: (COUNTS, RATES)},
    "kl": {False: (DIST_TRUE, DIST_PRED)},
}


@dataclass(frozen=True)
class Case:
    """A loss with options, its xp-generic formula and (when short) its analytic gradient."""

    id: str
    kind: str
    function: Callable[..., Any]
    loss_class: type
    formula: Callable[..., Any]
    gradient: Callable[..., np.ndarray] | None
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def logits(self) -> bool:
        return bool(self.options.get("from_logits", False))

    def inputs(self) -> tuple[np.ndarray, np.ndarray]:
        return INPUTS[self.kind][self.logits]

    def formula_true(self) -> np.ndarray:
        """``y_true`` as the formulas take it: one-hot for the sparse loss."""
        y_true = self.inputs()[0]
        return np.eye(C)[y_true] if self.kind == "sparse" else y_true

    def values64(self, y_true: Any, y_pred: Any, xp: Any) -> Any:
        return self.formula(y_true, y_pred, xp, **self.options)

    def loss(self) -> Any:
        return self.loss_class(**self.options)


CASES = [
    Case("bce", "binary", probloss.binary_crossentropy, probloss.BinaryCrossentropy, f_bce, g_bce,
         {"label_smoothing": 0.1}),
    Case("bce_logits", "binary", probloss.binary_crossentropy, probloss.BinaryCrossentropy, f_bce, g_bce,
         {"from_logits": True, "label_smoothing": 0.2}),
    Case("bfce", "binary", probloss.binary_focal_crossentropy, probloss.BinaryFocalCrossentropy, f_bfce, None,
         {"apply_class_balancing": True, "alpha": 0.3, "gamma": 1.5}),
    Case("bfce_logits", "binary", probloss.binary_focal_crossentropy, probloss.BinaryFocalCrossentropy, f_bfce,
         None, {"from_logits": True, "gamma": 2.0}),
    Case("cce", "categorical", probloss.categorical_crossentropy, probloss.CategoricalCrossentropy, f_cce, g_cce),
    Case("cce_logits", "categorical", probloss.categorical_crossentropy, probloss.CategoricalCrossentropy, f_cce,
         g_cce, {"from_logits": True, "label_smoothing": 0.1}),
    Case("cfce", "categorical", probloss.categorical_focal_crossentropy, probloss.CategoricalFocalCrossentropy,
         f_cfce, None, {"gamma": 2.0}),
    Case("cfce_logits", "categorical", probloss.categorical_focal_crossentropy,
         probloss.CategoricalFocalCrossentropy, f_cfce, None, {"from_logits": True, "alpha": 0.5}),
    Case("scce", "sparse", probloss.sparse_categorical_crossentropy, probloss.SparseCategoricalCrossentropy,
         f_scce, lambda y, p: g_cce(y, p)),
    Case("scce_logits", "sparse", probloss.sparse_categorical_crossentropy,
         probloss.SparseCategoricalCrossentropy, f_scce, lambda y, p, **o: g_cce(y, p, **o), {"from_logits": True}),
    Case("poisson", "poisson", probloss.poisson, probloss.Poisson, f_poisson, g_poisson),
    Case("kld", "kl", probloss.kl_divergence, probloss.KLDivergence, f_kld, g_kld),
]
IDS = [c.id for c in CASES]

NP = array_api_compat.array_namespace(np.empty(0))


def _expected_values(case: Case, weighted: bool) -> np.ndarray:
    values = case.values64(case.formula_true(), case.inputs()[1], NP)
    return (values * WEIGHTS).mean() if weighted else values


def _expected_gradient(case: Case, weighted: bool) -> np.ndarray:
    """d(sum of per-sample losses)/d y_pred, or d(weighted mean)/d y_pred for a class."""
    y_true, y_pred = case.formula_true(), case.inputs()[1]
    if case.gradient is not None:
        grad = case.gradient(y_true, y_pred, **case.options)
    else:  # focal losses: the gradient of the float64 formula itself, by JAX (a test dependency)
        import jax
        import jax.numpy as jnp

        with jax_x64_mode(True):
            grad = np.asarray(jax.grad(lambda p: jnp.sum(case.values64(jnp.asarray(y_true), p, jnp)))(
                jnp.asarray(y_pred)))
    return grad * WEIGHTS[:, None] / B if weighted else grad


def _jax() -> tuple[Any, Any]:
    jax = library("jax").module
    return jax, jax.numpy


def _jax_arrays(case: Case) -> tuple[Any, Any, Any]:
    _, jnp = _jax()
    y_true, y_pred = case.inputs()
    return jnp.asarray(y_true), jnp.asarray(y_pred), jnp.asarray(WEIGHTS)


# -------------------------------------------------------------------------- JAX


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_jax_jit_function_and_class(case: Case, jax_x64: None) -> None:
    jax, _ = _jax()
    y_true, y_pred, weight = _jax_arrays(case)
    fn = jax.jit(lambda t, p: case.function(t, p, **case.options))
    out = fn(y_true, y_pred)
    assert library("jax").is_native(out)
    assert out.dtype == np.float64
    np.testing.assert_allclose(np.asarray(out), _expected_values(case, False), rtol=1e-12, atol=1e-14)
    loss = case.loss()
    out = jax.jit(lambda t, p, w: loss(t, p, sample_weight=w))(y_true, y_pred, weight)
    np.testing.assert_allclose(np.asarray(out), _expected_values(case, True), rtol=1e-12, atol=1e-14)
    out = jax.jit(loss)(y_true, y_pred)  # the loss object itself, jitted
    np.testing.assert_allclose(np.asarray(out), _expected_values(case, False).mean(), rtol=1e-12)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_jax_grad_function_and_class(case: Case, jax_x64: None) -> None:
    jax, jnp = _jax()
    y_true, y_pred, weight = _jax_arrays(case)
    grad = jax.grad(lambda p: jnp.sum(case.function(y_true, p, **case.options)))(y_pred)
    np.testing.assert_allclose(np.asarray(grad), _expected_gradient(case, False), rtol=1e-10, atol=1e-12)
    loss = case.loss()
    grad = jax.jit(jax.grad(lambda p: loss(y_true, p, sample_weight=weight)))(y_pred)
    np.testing.assert_allclose(np.asarray(grad), _expected_gradient(case, True), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_jax_vmap_function_and_class(case: Case, jax_x64: None) -> None:
    """vmap over a leading replica axis: two input sets, each reduced on its own."""
    jax, jnp = _jax()
    y_true, y_pred = case.inputs()
    y_true2, y_pred2 = y_true[::-1], y_pred[[1, 2, 3, 0]]
    stacked_true, stacked_pred = jnp.asarray(np.stack([y_true, y_true2])), jnp.asarray(np.stack([y_pred, y_pred2]))
    weights = jnp.asarray(np.stack([WEIGHTS, WEIGHTS[::-1]]))
    one_hot = (lambda t: np.eye(C)[t]) if case.kind == "sparse" else (lambda t: t)
    expected = np.stack([case.values64(one_hot(t), p, NP) for t, p in ((y_true, y_pred), (y_true2, y_pred2))])

    out = jax.vmap(lambda t, p: case.function(t, p, **case.options))(stacked_true, stacked_pred)
    np.testing.assert_allclose(np.asarray(out), expected, rtol=1e-12, atol=1e-14)
    loss = case.loss()
    out = jax.vmap(lambda t, p, w: loss(t, p, sample_weight=w))(stacked_true, stacked_pred, weights)
    np.testing.assert_allclose(np.asarray(out), (expected * np.asarray(weights)).mean(axis=1), rtol=1e-12)


# ------------------------------------------------------------------------ PyTorch


def _torch() -> Any:
    return library("torch").module


def _torch_inputs(case: Case) -> tuple[Any, Any, Any, Any]:
    """(y_true for probloss, y_true for the formula, y_pred, weights), float64 tensors."""
    torch = _torch()
    y_true, y_pred = case.inputs()
    return (torch.asarray(y_true), torch.asarray(case.formula_true()), torch.asarray(y_pred),
            torch.asarray(WEIGHTS))


def _torch_reference_grad(case: Case, weighted: bool) -> Any:
    torch = _torch()
    xp = array_api_compat.array_namespace(torch.empty(0))
    _, formula_true, y_pred, weight = _torch_inputs(case)
    p = y_pred.clone().requires_grad_(True)
    values = case.values64(formula_true, p, xp)
    total = (values * weight).mean() if weighted else values.sum()
    (grad,) = torch.autograd.grad(total, p)
    return grad


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_torch_autograd_function_and_class(case: Case) -> None:
    torch = _torch()
    y_true, _, y_pred, weight = _torch_inputs(case)
    p = y_pred.clone().requires_grad_(True)
    out = case.function(y_true, p, **case.options)
    assert out.dtype == torch.float64
    assert out.requires_grad
    np.testing.assert_allclose(out.detach().numpy(), _expected_values(case, False), rtol=1e-12, atol=1e-14)
    out.sum().backward()
    torch.testing.assert_close(p.grad, _torch_reference_grad(case, False), rtol=1e-10, atol=1e-12)

    p = y_pred.clone().requires_grad_(True)
    out = case.loss()(y_true, p, sample_weight=weight)
    np.testing.assert_allclose(out.detach().numpy(), _expected_values(case, True), rtol=1e-12)
    out.backward()
    torch.testing.assert_close(p.grad, _torch_reference_grad(case, True), rtol=1e-10, atol=1e-12)
    # The analytic/JAX reference agrees too (a check on the references themselves).
    np.testing.assert_allclose(p.grad.numpy(), _expected_gradient(case, True), rtol=1e-10, atol=1e-12)


def test_torch_autograd_float32_weight_gradient() -> None:
    """Gradients also flow to a sample weight that requires grad: d loss / d w_i = v_i / B."""
    torch = _torch()
    case = CASES[1]
    y_true, _, y_pred, _ = _torch_inputs(case)
    w = torch.asarray(WEIGHTS, dtype=torch.float32).requires_grad_(True)
    out = case.loss()(y_true.float(), y_pred.float(), sample_weight=w)
    out.backward()
    expected = _expected_values(case, False) / B
    np.testing.assert_allclose(w.grad.numpy(), expected, rtol=1e-5)


@pytest.mark.parametrize("case", [c for c in CASES if c.id in ("bce_logits", "cce_logits", "scce", "bfce")],
                         ids=lambda c: c.id)
def test_torch_func_grad_and_vmap(case: Case) -> None:
    torch = _torch()
    y_true, _, y_pred, weight = _torch_inputs(case)
    loss = case.loss()
    grad = torch.func.grad(lambda p: loss(y_true, p, sample_weight=weight))(y_pred)
    torch.testing.assert_close(grad, _torch_reference_grad(case, True), rtol=1e-10, atol=1e-12)
    per_row = torch.func.vmap(lambda t, p: case.function(t, p, **case.options))(y_true, y_pred)
    np.testing.assert_allclose(per_row.numpy(), _expected_values(case, False), rtol=1e-12, atol=1e-14)


# ---------------------------------------------------------------- torch.compile

COMPILED = ["bce_logits", "cce", "scce_logits"]


@pytest.mark.parametrize("case", [c for c in CASES if c.id in COMPILED], ids=lambda c: c.id)
def test_torch_compile_cross_entropies(case: Case) -> None:
    """One compiled callable per cross-entropy: its function and its class (with weights)."""
    torch = _torch()
    y_true, _, y_pred, weight = _torch_inputs(case)
    loss = case.loss()

    def both(t: Any, p: Any, w: Any) -> tuple[Any, Any]:
        return case.function(t, p, **case.options), loss(t, p, sample_weight=w)

    with warnings.catch_warnings():
        # Dynamo notes that it traces through functools caches (array-api-compat's and
        # ours); those caches hold pure lookups, so that is not a problem. Inductor's own
        # imports touch the deprecated torch.jit.script_method.
        warnings.filterwarnings("ignore", message=r"Dynamo detected a call to a `functools", category=UserWarning)
        warnings.filterwarnings("ignore", message=r"`torch\.jit\.script_method` is deprecated",
                                category=DeprecationWarning)
        compiled = torch.compile(both)
        per_sample, reduced = compiled(y_true, y_pred, weight)
    np.testing.assert_allclose(per_sample.numpy(), _expected_values(case, False), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(reduced.numpy(), _expected_values(case, True), rtol=1e-12)
    eager_per_sample, eager_reduced = both(y_true, y_pred, weight)
    torch.testing.assert_close(per_sample, eager_per_sample, rtol=1e-14, atol=0)
    torch.testing.assert_close(reduced, eager_reduced, rtol=1e-14, atol=0)
