"""JAX fast paths (``probloss._backends._jax``) against the generic kernel and float64 formulas.

Each case is computed with the fast paths on and off (``probloss.fast_paths``), in
JAX's default float32-only mode and with ``jax_enable_x64`` (set and restored by the
``x64`` fixture): values, ``jax.grad`` with respect to ``y_pred`` and soft ``y_true``,
under ``jit`` and ``vmap``, with non-finite entries, ties, float16/bfloat16 inputs,
reductions and sample weights, and forward-mode and second derivatives (the paths are
``jax.custom_jvp`` functions whose rule is differentiable).

The generic kernel's derivative with respect to a label that is exactly 0 or 1 is
not the derivative of the loss (its ``0·inf`` guard, ``where(t == 0, 0, value)·t``,
also zeroes the slope there); the fast paths give the true one, checked here
against float64 formulas.
"""

from __future__ import annotations

import functools
import subprocess
import sys
import zlib
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest

jax = pytest.importorskip("jax")
jnp = pytest.importorskip("jax.numpy")

import probloss  # noqa: E402
from probloss import _dispatch  # noqa: E402
from probloss._backends import _jax  # noqa: E402, F401 - registers the JAX fast paths

F32 = np.finfo(np.float32).eps


@pytest.fixture(params=[False, True], ids=["float32-only", "x64"])
def x64(request: pytest.FixtureRequest) -> Iterator[bool]:
    """Run the test in JAX's default mode and with float64 enabled; restore the setting.

    Grids over many cases pass the mode themselves (``_modes``), with x64 only where the
    fast path's code differs there.
    """
    before = jax.config.jax_enable_x64
    jax.config.update("jax_enable_x64", request.param)
    try:
        yield request.param
    finally:
        jax.config.update("jax_enable_x64", before)


def _both(fn: Callable[..., Any], *args: Any) -> tuple[Any, Any]:
    """``fn(*args)`` with the fast paths, then with the generic kernel only."""
    fast = fn(*args)
    with probloss.fast_paths(False):
        generic = fn(*args)
    return fast, generic


def _close(fast: Any, generic: Any, *, rtol: float = 8 * F32, atol: float = 0.0) -> None:
    for f, g in zip(jax.tree_util.tree_leaves(fast), jax.tree_util.tree_leaves(generic), strict=True):
        np.testing.assert_allclose(np.asarray(f, np.float64), np.asarray(g, np.float64), rtol=rtol,
                                   atol=atol, equal_nan=True)


def _rng(*key: Any) -> np.random.Generator:
    # crc32, not hash(): str hashes change with PYTHONHASHSEED (pytest-randomly sets it per run)
    return np.random.default_rng(zlib.crc32(repr(key).encode()))


def _logits(rng: np.random.Generator, shape: tuple[int, ...], scale: float = 4.0) -> Any:
    return jnp.asarray((rng.normal(size=shape) * scale).astype(np.float32))


def _soft(rng: np.random.Generator, shape: tuple[int, ...], axis: int = -1) -> Any:
    """Soft labels strictly inside (0, 1), normalised along ``axis``."""
    u = rng.uniform(0.05, 1.0, size=shape)
    return jnp.asarray((u / u.sum(axis=axis, keepdims=True)).astype(np.float32))


# One function per case: (name, loss(y_true, y_pred) -> per-sample values, y_true, y_pred).
def _cases(rng: np.random.Generator) -> list[tuple[str, Callable[..., Any], Any, Any]]:
    x = _logits(rng, (6, 5))
    hard = jnp.asarray(rng.integers(0, 2, (6, 5)).astype(np.float32))
    soft_binary = jnp.asarray(rng.uniform(0.02, 0.98, (6, 5)).astype(np.float32))
    labels = jnp.asarray(rng.integers(0, 5, 6))
    one_hot = jax.nn.one_hot(labels, 5, dtype=jnp.float32)
    probs = jax.nn.softmax(_logits(rng, (6, 5)))
    cases = []
    # Label smoothing acts before the fast path (on y_true), so one smoothed and one plain
    # case per family cover it; the axis is the path's own argument.
    for ls, axis in ((0.0, -1), (0.1, 0)):
        cases.append((f"bce-ls{ls}-axis{axis}",
                      functools.partial(probloss.binary_crossentropy, from_logits=True, label_smoothing=ls,
                                        axis=axis), soft_binary, x))
        cases.append((f"cce-ls{ls}-axis{axis}",
                      functools.partial(probloss.categorical_crossentropy, from_logits=True,
                                        label_smoothing=ls, axis=axis), _soft(rng, (6, 5), axis), x))
    cases.append(("cce-onehot", functools.partial(probloss.categorical_crossentropy, from_logits=True), one_hot, x))
    # gamma 0 (its own branch), 0.5 (q**(γ-1) unbounded at q = 0) and 2; with and without balancing.
    for gamma, balance in ((0.0, False), (0.5, True), (2.0, False), (2.0, True)):
        cases.append((f"focal-g{gamma}-b{balance}",
                      functools.partial(probloss.binary_focal_crossentropy, from_logits=True, gamma=gamma,
                                        apply_class_balancing=balance, alpha=0.3, label_smoothing=0.05),
                      soft_binary, x))
    cases.append(("focal-hard", functools.partial(probloss.binary_focal_crossentropy, from_logits=True), hard, x))
    for ignore in (None, 2):
        cases.append((f"sparse-ignore{ignore}",
                      functools.partial(probloss.sparse_categorical_crossentropy, from_logits=True,
                                        ignore_class=ignore), labels, x))
    cases.append(("sparse-axis0", functools.partial(probloss.sparse_categorical_crossentropy, from_logits=True,
                                                    axis=0), labels[:5], x))
    cases.append(("poisson", probloss.poisson, jnp.asarray(rng.poisson(2.0, (6, 5)).astype(np.float32)),
                  jnp.asarray(rng.uniform(0.0, 4.0, (6, 5)).astype(np.float32))))
    cases.append(("kl", probloss.kl_divergence, _soft(rng, (6, 5)), probs))
    # Categorical CE from probabilities (compiled on CPU for float32): soft and one-hot labels,
    # rows that do not sum to 1, and the label smoothing and axis options.
    scaled = probs * jnp.asarray(rng.uniform(0.2, 1.0, (6, 1)).astype(np.float32))  # in [0, 1], sums below 1
    cases.append(("cce-probs-soft", probloss.categorical_crossentropy, _soft(rng, (6, 5)), scaled))
    cases.append(("cce-probs-onehot", probloss.categorical_crossentropy, one_hot, probs))
    cases.append(("cce-probs-ls0.1-axis0", functools.partial(probloss.categorical_crossentropy, label_smoothing=0.1,
                                                             axis=0), _soft(rng, (6, 5), 0), scaled))
    return cases


_CASE_NAMES = [name for name, *_ in _cases(np.random.default_rng(0))]

# Cases whose fast path runs different code with ``jax_enable_x64``: the focal, Poisson and
# KL paths compute float32 inputs in float64 there; sparse labels arrive as int64. The
# other paths are the same float32 code in both modes: checked once in x64 (one case each).
_X64_CASES = ("focal-g0.5-bTrue", "focal-g2.0-bTrue", "focal-hard", "poisson", "kl", "sparse-ignore2",
              "bce-ls0.1-axis0", "cce-onehot", "cce-probs-soft")


def _modes(names: list[str] | tuple[str, ...], x64_names: tuple[str, ...] = _X64_CASES) -> list[Any]:
    """``(x64, name)`` parameters: every name without float64, those in ``x64_names`` with it too."""
    return ([pytest.param(False, n, id=f"float32-only-{n}") for n in names]
            + [pytest.param(True, n, id=f"x64-{n}") for n in names if n in x64_names])


def _case(name: str) -> tuple[Callable[..., Any], Any, Any]:
    for n, fn, t, p in _cases(_rng(name)):
        if n == name:
            return fn, t, p
    raise KeyError(name)


def _summed(fn: Callable[..., Any]) -> Callable[..., Any]:
    return lambda t, p: jnp.sum(fn(t, p, validate="off"))


def test_every_loss_family_has_a_jax_path() -> None:
    registered = {name for name, backend in _dispatch.FAST if backend == "jax"}
    assert {"binary_crossentropy", "binary_focal_crossentropy", "categorical_crossentropy",
            "sparse_categorical_crossentropy", "poisson", "kl_divergence"} <= registered


@pytest.mark.parametrize(("x64", "name"), _modes(_CASE_NAMES), indirect=["x64"])
def test_values_and_gradients_equal_generic_kernel(x64: bool, name: str) -> None:
    fn, t, p = _case(name)
    loss = _summed(fn)
    # Poisson's p - y·log(p) cancels: a float32 generic kernel is off by a few eps of the terms'
    # size, not of the (near-zero) result, while the compiled CPU path computes in float64.
    atol = 0.0
    if name == "poisson":
        terms = np.abs(np.asarray(p)) + np.abs(np.asarray(t) * np.log(np.asarray(p) + 1e-7))
        atol = 8 * F32 * float(np.max(np.mean(terms, axis=-1)))
    _close(*_both(lambda t, p: fn(t, p), t, p), atol=atol)
    _close(*_both(jax.grad(loss, argnums=1), t, p), atol=2 * F32)
    if jnp.issubdtype(t.dtype, jnp.floating) and float(jnp.min(t)) > 0:  # soft labels: the generic slope is right
        _close(*_both(jax.grad(loss, argnums=0), t, p), atol=4 * F32)


@pytest.mark.parametrize(("x64", "name"), _modes(_CASE_NAMES), indirect=["x64"])
def test_jit_vmap_and_jvp_equal_generic_kernel(x64: bool, name: str) -> None:
    fn, t, p = _case(name)
    loss = _summed(fn)
    _close(*_both(jax.jit(jax.value_and_grad(loss, argnums=1)), t, p), atol=2 * F32)
    batched = jax.vmap(jax.grad(loss, argnums=1), in_axes=(None, 0))
    stack = jnp.stack([p, p * 0.5])
    _close(*_both(batched, t, stack), atol=2 * F32)
    tangent = jnp.asarray(_rng(name, "tangent").normal(size=p.shape).astype(np.float32))
    # The tangent output is a float32 sum of gradient x tangent with signs of both kinds: each
    # side rounds it in its own order, so its error is bounded by the sum of the terms' sizes,
    # not by the (cancelled) result.
    magnitude = float(np.sum(np.abs(np.asarray(jax.grad(loss, argnums=1)(t, p), np.float64))
                             * np.abs(np.asarray(tangent, np.float64))))
    _close(*_both(lambda t, p: jax.jvp(lambda q: loss(t, q), (p,), (tangent,)), t, p),
           atol=8 * F32 * max(magnitude, 1.0))


@pytest.mark.parametrize(("x64", "name"),
                         _modes(["bce-ls0.1-axis0", "cce-ls0.0-axis-1", "focal-g2.0-bTrue", "sparse-ignoreNone",
                                 "poisson", "kl", "cce-probs-soft"], ("focal-g2.0-bTrue", "poisson", "kl")),
                         indirect=["x64"])
def test_second_derivatives_equal_generic_kernel(x64: bool, name: str) -> None:
    """The JVP rules are plain JAX: ``jax.hessian`` (forward over reverse) works, and agrees."""
    fn, t, p = _case(name)
    loss = _summed(fn)
    fast, generic = _both(jax.hessian(loss, argnums=1), t, p)
    scale = float(jnp.max(jnp.abs(generic)))
    _close(fast, generic, rtol=1e-4, atol=1e-5 * scale)


def test_label_derivatives_at_hard_labels_are_the_loss_slopes(x64: bool) -> None:
    """At labels exactly 0 or 1: -x/n (BCE), -log softmax (CCE), against float64 formulas."""
    rng = _rng("hard labels")
    x = _logits(rng, (4, 6))
    t = jnp.asarray(rng.integers(0, 2, (4, 6)).astype(np.float32))
    got = jax.grad(lambda t: jnp.sum(probloss.binary_crossentropy(t, x, from_logits=True)))(t)
    np.testing.assert_allclose(np.asarray(got), -np.asarray(x, np.float64) / 6, rtol=4 * F32)
    one_hot = jax.nn.one_hot(jnp.asarray([0, 5, 2, 2]), 6, dtype=jnp.float32)
    got = jax.grad(lambda t: jnp.sum(probloss.categorical_crossentropy(t, x, from_logits=True)))(one_hot)
    z = np.asarray(x, np.float64)
    want = -(z - z.max(1, keepdims=True) - np.log(np.exp(z - z.max(1, keepdims=True)).sum(1, keepdims=True)))
    np.testing.assert_allclose(np.asarray(got), want, rtol=8 * F32)


def test_dominant_class_keeps_its_tiny_loss_and_gradient(x64: bool) -> None:
    """S' = 1e-30: the loss is S' and the label's gradient -S'/(1 + S'), not rounded to 0."""
    gaps = np.array([40.0, 50.0, 69.0], np.float64)
    x = jnp.asarray(np.concatenate([[0.0], -gaps]).astype(np.float32)[None, :])
    z = np.asarray(x, np.float64)[0]
    rest = np.exp(z[1:]).sum()
    for fn, y in ((probloss.sparse_categorical_crossentropy, jnp.asarray([0])),
                  (probloss.categorical_crossentropy, jnp.asarray([[1.0, 0, 0, 0]], jnp.float32))):
        value = fn(y, x, from_logits=True)
        np.testing.assert_allclose(float(value[0]), np.log1p(rest), rtol=4 * F32)
        grad = jax.grad(lambda q, fn=fn, y=y: jnp.sum(fn(y, q, from_logits=True)))(x)
        np.testing.assert_allclose(float(grad[0, 0]), -rest / (1 + rest), rtol=4 * F32)
        np.testing.assert_allclose(np.asarray(grad[0, 1:]), np.exp(z[1:]) / (1 + rest), rtol=4 * F32)


def test_ties_give_softmax_minus_onehot(x64: bool) -> None:
    x = jnp.asarray([[2.0, 2.0, 0.0, -1.0], [2.0, 2.0, 0.0, -1.0], [0.5, 3.0, 3.0, 3.0], [1.0, 1.0, 1.0, 1.0]],
                    jnp.float32)
    labels = jnp.asarray([0, 1, 2, 3])
    z = np.asarray(x, np.float64)
    p = np.exp(z - z.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    one_hot = np.eye(4)[np.asarray(labels)]
    for fn, y in ((probloss.sparse_categorical_crossentropy, labels),
                  (probloss.categorical_crossentropy, jnp.asarray(one_hot, jnp.float32))):
        value = fn(y, x, from_logits=True)
        np.testing.assert_allclose(np.asarray(value), -np.log(p[np.arange(4), np.asarray(labels)]), rtol=4 * F32)
        grad = jax.grad(lambda q, fn=fn, y=y: jnp.sum(fn(y, q, from_logits=True)))(x)
        np.testing.assert_allclose(np.asarray(grad), p - one_hot, rtol=4 * F32, atol=1e-7)


@pytest.mark.parametrize(("x64", "family"), _modes(["sparse", "cce", "bce", "focal", "cce-probs"],
                                                  ("sparse", "focal")), indirect=["x64"])
def test_non_finite_logits_equal_generic_kernel(x64: bool, family: str) -> None:
    """-inf entries (masked classes), +inf and NaN: the same values; gradients where the generic one is finite.

    Not the focal loss's gradient at an infinite logit, where the generic kernel's autodiff
    meets 0·inf and the value it returns is arbitrary.
    """
    x = np.array([[0.0, -np.inf, 1.0, 2.0], [np.inf, 0.0, 1.0, 2.0], [np.nan, 0.0, 1.0, 2.0],
                  [-np.inf, -np.inf, 3.0, -np.inf]], np.float32)
    labels = np.array([1, 0, 2, 2])
    if family == "sparse":
        fn = functools.partial(probloss.sparse_categorical_crossentropy, jnp.asarray(labels), from_logits=True)
    elif family == "cce":
        t = np.eye(4, dtype=np.float32)[labels]
        t[0] = [0.5, 0.0, 0.25, 0.25]  # a zero label on the -inf entry: 0·inf is 0
        fn = functools.partial(probloss.categorical_crossentropy, jnp.asarray(t), from_logits=True)
    elif family == "bce":
        fn = functools.partial(probloss.binary_crossentropy, jnp.asarray(np.eye(4, dtype=np.float32)[labels]),
                               from_logits=True)
    elif family == "cce-probs":
        # probabilities: a NaN, an infinite, a negative entry and a zero row (the generic kernel's rows)
        x = np.array([[0.5, 0.25, 0.25, 0.0], [np.inf, 0.1, 0.2, 0.3], [np.nan, 0.2, 0.3, 0.5],
                      [0.2, -0.1, 0.4, 0.5], [0.0, 0.0, 0.0, 0.0], [0.1, 0.2, 0.3, 0.4]], np.float32)
        t = np.eye(4, dtype=np.float32)[[0, 1, 2, 3, 0, 3]]
        t[0] = [0.5, 0.0, 0.25, 0.25]
        fn = functools.partial(probloss.categorical_crossentropy, jnp.asarray(t))
    else:
        fn = functools.partial(probloss.binary_focal_crossentropy, jnp.asarray(np.eye(4, dtype=np.float32)[labels]),
                               from_logits=True)
    fn = functools.partial(fn, validate="off")
    fast, generic = _both(fn, jnp.asarray(x))
    np.testing.assert_array_equal(np.isfinite(fast), np.isfinite(generic))
    _close(fast, generic)
    if family == "focal":
        return
    fast_g, generic_g = _both(jax.grad(lambda q: jnp.sum(jnp.where(jnp.isfinite(fn(q)), fn(q), 0))), jnp.asarray(x))
    finite = np.isfinite(np.asarray(generic_g))
    _close(np.asarray(fast_g)[finite], np.asarray(generic_g)[finite], atol=2 * F32)


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
@pytest.mark.parametrize(("x64", "name"),
                         _modes(["bce-ls0.1-axis0", "cce-ls0.1-axis0", "focal-g2.0-bTrue", "sparse-ignore2",
                                 "poisson", "kl", "cce-probs-soft"], ("focal-g2.0-bTrue", "poisson", "kl")),
                         indirect=["x64"])
def test_low_precision_inputs_equal_generic_kernel(x64: bool, dtype: str, name: str) -> None:
    fn, t, p = _case(name)
    p = p.astype(dtype)
    t = t.astype(dtype) if jnp.issubdtype(t.dtype, jnp.floating) else t
    fast, generic = _both(lambda t, p: fn(t, p), t, p)
    assert fast.dtype == p.dtype
    # Both compute in float32 and round once to the low-precision dtype: float32 values a few
    # ulps apart can round to neighbouring low-precision numbers, so one ulp of that dtype.
    _close(fast, generic, rtol=float(jnp.finfo(p.dtype).eps))
    _close(*_both(jax.grad(_summed(fn), argnums=1), t, p), rtol=1e-2, atol=1e-3)


@pytest.mark.parametrize(("x64", "reduction"), _modes(["sum_over_batch_size", "sum", "mean", "none"],
                                                     ("sum_over_batch_size",)), indirect=["x64"])
def test_loss_classes_with_sample_weights_equal_generic_kernel(x64: bool, reduction: str) -> None:
    rng = _rng("classes", reduction)
    x = _logits(rng, (8, 5))
    labels = jnp.asarray(rng.integers(0, 5, 8))
    weights = jnp.asarray(rng.uniform(0, 2, 8).astype(np.float32))
    objects = [
        (probloss.SparseCategoricalCrossentropy(from_logits=True, ignore_class=1, reduction=reduction), labels),
        (probloss.CategoricalCrossentropy(from_logits=True, label_smoothing=0.1, reduction=reduction),
         jax.nn.one_hot(labels, 5, dtype=jnp.float32)),
        (probloss.BinaryCrossentropy(from_logits=True, reduction=reduction), _soft(rng, (8, 5))),
        (probloss.BinaryFocalCrossentropy(from_logits=True, apply_class_balancing=True, reduction=reduction),
         _soft(rng, (8, 5))),
        (probloss.Poisson(reduction=reduction), _soft(rng, (8, 5)) * 3),
        (probloss.KLDivergence(reduction=reduction), _soft(rng, (8, 5))),
        (probloss.CategoricalCrossentropy(label_smoothing=0.1, reduction=reduction), _soft(rng, (8, 5))),
    ]
    for obj, y in objects:
        probabilities = isinstance(obj, probloss.KLDivergence | probloss.Poisson) or (
            isinstance(obj, probloss.CategoricalCrossentropy) and not obj.get_config()["from_logits"])
        pred = jax.nn.softmax(x) if probabilities else x
        call = jax.jit(lambda y, q, obj=obj: obj(y, q, sample_weight=weights))
        _close(*_both(call, y, pred))
        _close(*_both(jax.grad(lambda q, y=y, call=call: jnp.sum(call(y, q))), pred), atol=2 * F32)


def test_fast_paths_are_used_and_can_be_turned_off() -> None:
    """The JAX chain holds the fast path (and nothing else is imported by ``import probloss``)."""
    x = jnp.asarray([[1.0, 2.0, 3.0]])
    probloss.sparse_categorical_crossentropy(jnp.asarray([2]), x, from_logits=True)
    chain = _dispatch._chain("sparse_categorical_crossentropy", "jax")
    assert chain[0] is _dispatch.FAST["sparse_categorical_crossentropy", "jax"]
    jaxpr = str(jax.make_jaxpr(lambda q: probloss.sparse_categorical_crossentropy(
        jnp.asarray([2]), q, from_logits=True))(x))
    assert "custom_jvp_call" in jaxpr
    with probloss.fast_paths(False):
        jaxpr = str(jax.make_jaxpr(lambda q: probloss.sparse_categorical_crossentropy(
            jnp.asarray([2]), q, from_logits=True))(x))
    assert "custom_jvp_call" not in jaxpr
    code = "import sys, probloss; assert 'jax' not in sys.modules, 'probloss imported jax'"
    subprocess.run([sys.executable, "-c", code], check=True)
