"""The JAX paths of the CTC loss against each other, the generic kernel and the NumPy path.

On CPU, ``probloss.ctc_loss`` of JAX arrays runs the compiled kernel through
``jax.pure_callback`` (``_jax_ctc.callback_ctc``); elsewhere the ``lax.scan``
recursions (``_jax_ctc.scan_ctc``), which these tests run on CPU directly. The
references: the generic array-API kernel on NumPy in float64
(``ctc_loss_and_gradient``), and for non-finite inputs the NumPy path
(``compiled_ctc``), whose contract the CPU path shares. Both JAX modes
(float32-only and ``jax_enable_x64``), ``jit``, ``vmap``, ``grad``, every option
(blank index, per-sample lengths including 0 and impossible alignments,
repeats), and float16/bfloat16 inputs.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from typing import Any

import array_api_compat.numpy as numpy_namespace
import numpy as np
import pytest
from conftest import jax_x64_mode, library

import probloss
from probloss._backends import _numpy_ctc
from probloss._kernels._ctc import ctc_loss_and_gradient

EPS32 = float(np.finfo(np.float32).eps)


@pytest.fixture(params=[False, True], ids=["float32-only", "x64"])
def x64(request: pytest.FixtureRequest) -> Iterator[bool]:
    library("jax")
    with jax_x64_mode(request.param):
        yield request.param


def _jax() -> tuple[Any, Any, Any]:
    jax = library("jax").module
    from probloss._backends import _jax_ctc

    if not _jax_ctc.COMPILED:
        pytest.fail("the compiled CTC kernel is not built")
    return jax, jax.numpy, _jax_ctc


def _case(seed: int, *, batch: int = 6, frames: int = 9, classes: int = 5, slots: int = 4,
          blank: int = 0) -> tuple[np.ndarray, ...]:
    """Random logits and labels; lengths cover 0, full, and one sample with no alignment."""
    rng = np.random.default_rng(seed)
    logits = (rng.normal(size=(batch, frames, classes)) * rng.uniform(0.5, 6)).astype(np.float32)
    labels = rng.integers(0, classes - 1, size=(batch, slots))
    labels = np.where(labels >= blank, labels + 1, labels)  # never the blank
    labels[1, 1] = labels[1, 0]  # a repeat: needs a blank between
    label_lengths = rng.integers(1, slots + 1, size=batch)
    label_lengths[0] = 0
    logit_lengths = rng.integers(2 * slots + 1, frames + 1, size=batch)
    logit_lengths[2] = frames
    logit_lengths[3] = 0 if label_lengths[3] else 1
    label_lengths[3] = max(int(label_lengths[3]), 1)  # no alignment: a label, no frames
    return labels, logits, label_lengths, logit_lengths


def _reference(labels: np.ndarray, logits: np.ndarray, label_lengths: np.ndarray, logit_lengths: np.ndarray,
               blank: int) -> tuple[np.ndarray, np.ndarray]:
    return ctc_loss_and_gradient(labels, logits.astype(np.float64), label_lengths, logit_lengths, blank_index=blank,
                                 gradient=True, xp=numpy_namespace)


def _value_and_grad(jax: Any, fn: Callable[..., Any], labels: np.ndarray, label_lengths: np.ndarray,
                    logit_lengths: np.ndarray, blank: int, weights: np.ndarray) -> Callable[[Any], Any]:
    """``jit(value_and_grad)`` of the weighted sum of the finite losses, the losses as aux."""
    jnp = jax.numpy
    y, ll, tl, w = (jnp.asarray(a) for a in (labels, label_lengths, logit_lengths, weights))

    def total(x: Any) -> tuple[Any, Any]:
        loss = fn(y, x, ll, tl, blank)
        return jnp.sum(jnp.where(jnp.isfinite(loss), loss * w.astype(loss.dtype), 0)), loss

    return jax.jit(jax.value_and_grad(total, has_aux=True))


def _public(y: Any, x: Any, ll: Any, tl: Any, blank: int) -> Any:
    return probloss.ctc_loss(y, x, ll, tl, blank_index=blank, validate="off")


@pytest.mark.parametrize("blank", [0, 2, 4])
def test_cpu_path_matches_generic_kernel_and_scan_path(x64: bool, blank: int) -> None:
    """Loss and cotangent-weighted gradient of the public function (the CPU path), the callback
    and the scan path, under jit, against the float64 generic kernel."""
    jax, jnp, jax_ctc = _jax()
    labels, logits, label_lengths, logit_lengths = _case(10 + blank, blank=blank)
    loss_ref, grad_ref = _reference(labels, logits, label_lengths, logit_lengths, blank)
    assert np.isposinf(loss_ref[3])
    weights = np.linspace(0.5, 2.0, len(labels))
    expected_grad = grad_ref * weights[:, None, None]
    scale = np.abs(expected_grad).max()
    finite = np.isfinite(loss_ref)
    for name, fn in (("public", _public), ("callback", jax_ctc.callback_ctc), ("scan", jax_ctc.scan_ctc)):
        (_, loss), grad = _value_and_grad(jax, fn, labels, label_lengths, logit_lengths, blank, weights)(
            jnp.asarray(logits))
        loss, grad = np.asarray(loss), np.asarray(grad)
        assert loss.dtype == grad.dtype == np.float32, name
        assert np.array_equal(np.isposinf(loss), ~finite), (name, loss)
        # The scan path computes in float32 without x64; the compiled kernel in float64 always.
        float32_recursion = name == "scan" and not x64
        rtol, atol = (1e-5, 1e-5 * scale) if float32_recursion else (2 * EPS32, 4 * EPS32 * scale)
        np.testing.assert_allclose(loss[finite], loss_ref[finite], rtol=rtol, err_msg=name)
        np.testing.assert_allclose(grad, expected_grad, rtol=0, atol=atol, err_msg=name)
        assert np.all(grad[3] == 0), name
        # Forward only (no gradient residual): the same losses.
        alone = np.asarray(jax.jit(fn, static_argnums=4)(*(jnp.asarray(a) for a in (
            labels, logits, label_lengths, logit_lengths)), blank))
        np.testing.assert_array_equal(alone, loss, err_msg=name)


def test_cpu_lowering_runs_the_callback_not_the_scan(x64: bool) -> None:
    """On CPU the lowered loss holds the host callback and no loop (``platform_dependent`` picked
    the CPU branch); the scan path's lowering holds a loop."""
    jax, jnp, jax_ctc = _jax()
    labels, logits, label_lengths, logit_lengths = (jnp.asarray(a) for a in _case(1))

    def text(fn: Any) -> str:
        total = jax.value_and_grad(lambda x: fn(labels, x, label_lengths, logit_lengths, 0).sum())
        return jax.jit(total).lower(logits).as_text()

    public = text(_public)
    assert "callback" in public
    assert "while" not in public
    assert "while" in text(jax_ctc.scan_ctc)


def test_vmap_over_extra_axes_matches_one_batch(x64: bool) -> None:
    """vmap (labels mapped or shared, nested) gives the per-batch results of the unmapped call."""
    jax, jnp, _ = _jax()
    labels, logits, label_lengths, logit_lengths = _case(4, batch=4)
    stacked = np.stack([logits, logits[::-1] * 0.5, logits + 1.0])  # (3, B, T, K)
    y, ll, tl = (jnp.asarray(a) for a in (labels, label_lengths, logit_lengths))

    def grad_fn(x: Any, y: Any) -> Any:
        return jax.value_and_grad(lambda q: jnp.sum(jnp.where(jnp.isfinite(f := _public(y, q, ll, tl, 0)), f, 0)))(x)

    one = [grad_fn(jnp.asarray(x), y) for x in stacked]
    mapped = jax.jit(jax.vmap(grad_fn, in_axes=(0, None)))(jnp.asarray(stacked), y)
    np.testing.assert_array_equal(np.asarray(mapped[0]), np.asarray([v for v, _ in one]))
    np.testing.assert_array_equal(np.asarray(mapped[1]), np.stack([np.asarray(g) for _, g in one]))
    # labels mapped too, and a second vmap over the first.
    labels_3 = jnp.asarray(np.stack([labels] * 3))
    losses = jax.vmap(jax.vmap(lambda y, x: _public(y, x, ll, tl, 0)))(
        jnp.stack([labels_3] * 2), jnp.asarray(np.stack([stacked] * 2)))
    expected = np.stack([np.asarray(_public(y, jnp.asarray(x), ll, tl, 0)) for x in stacked])
    np.testing.assert_array_equal(np.asarray(losses), np.stack([expected] * 2))
    # vmap of per-sample calls (a batch of one each) against the batched call.
    per_sample = jax.vmap(lambda y, x, a, b: _public(y[None], x[None], a[None], b[None], 0)[0])(
        y, jnp.asarray(logits), ll, tl)
    np.testing.assert_array_equal(np.asarray(per_sample), np.asarray(_public(y, jnp.asarray(logits), ll, tl, 0)))


def test_non_finite_inputs_as_the_numpy_path(x64: bool) -> None:
    """NaN and infinite logits, labels outside the classes (validation off): the CPU path returns
    what the NumPy path (the same kernel) returns, under jit and vmap; where the generic kernel
    is finite, all agree; NaN logits give a NaN loss and a zero gradient for that sample."""
    jax, jnp, _ = _jax()
    labels, logits, label_lengths, logit_lengths = _case(8, batch=6, frames=7, classes=4, slots=2)
    label_lengths[:] = 2
    logit_lengths[:] = 7
    logits[0, 1, 2] = np.nan
    logits[1, 2, 0] = np.inf
    logits[2, 3, 1] = -np.inf  # a class with probability 0: the kernel gives the limit
    logits[3, 0, 3] = logits[3, 0, 1] = np.inf
    labels[4, 1] = 9  # outside the 4 classes
    expected_loss, expected_grad = _numpy_ctc.compiled_ctc(labels, logits, label_lengths, logit_lengths, 0, True)
    with np.errstate(all="ignore"):
        generic_loss, generic_grad = _reference(labels, logits, label_lengths, logit_lengths, 0)
    assert np.isnan(expected_loss[[0, 4]]).all()
    assert np.all(expected_grad[0] == 0)
    assert np.isfinite(expected_loss[[2, 5]]).all()
    ordinary = np.isfinite(generic_loss)
    np.testing.assert_allclose(expected_loss[ordinary], generic_loss[ordinary], rtol=1e-12)
    np.testing.assert_allclose(expected_grad[ordinary], generic_grad[ordinary], atol=4 * EPS32)
    y, ll, tl = (jnp.asarray(a) for a in (labels, label_lengths, logit_lengths))
    (_, loss), grad = _value_and_grad(jax, _public, labels, label_lengths, logit_lengths, 0,
                                      np.ones(len(labels)))(jnp.asarray(logits))
    np.testing.assert_array_equal(np.asarray(loss), expected_loss.astype(np.float32))
    np.testing.assert_array_equal(np.asarray(grad)[~np.isinf(expected_loss)],
                                  expected_grad[~np.isinf(expected_loss)])
    mapped = jax.vmap(lambda x: _public(y, x, ll, tl, 0))(jnp.asarray(np.stack([logits, logits])))
    np.testing.assert_array_equal(np.asarray(mapped), np.stack([expected_loss.astype(np.float32)] * 2))


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_low_precision_inputs_are_computed_wide_and_rounded_once(x64: bool, dtype: str) -> None:
    jax, jnp, _ = _jax()
    labels, logits, label_lengths, logit_lengths = _case(6)
    low = jnp.asarray(logits).astype(dtype)
    wide = np.asarray(low.astype(jnp.float32))
    loss_ref, grad_ref = _reference(labels, wide, label_lengths, logit_lengths, 0)
    y, ll, tl = (jnp.asarray(a) for a in (labels, label_lengths, logit_lengths))
    loss, grad = jax.jit(jax.value_and_grad(
        lambda x: (lambda f: (jnp.sum(jnp.where(jnp.isfinite(f), f, 0)).astype(jnp.float32), f))(
            _public(y, x, ll, tl, 0)), has_aux=True))(low)
    loss = loss[1]
    assert loss.dtype == grad.dtype == jnp.dtype(dtype)
    # The float32 loss (x64 or not: the kernel computes in float64) rounded once to dtype.
    np.testing.assert_array_equal(np.asarray(loss.astype(jnp.float32)),
                                  np.asarray(jnp.asarray(loss_ref.astype(np.float32)).astype(dtype)
                                             .astype(jnp.float32)))
    np.testing.assert_allclose(np.asarray(grad.astype(jnp.float32)), grad_ref,
                               atol=2 * float(jnp.finfo(dtype).eps) * np.abs(grad_ref).max())


def test_ctc_form_matches_generic_kernel(x64: bool) -> None:
    """Keras's ``ctc`` form (0 pads, every frame) on the CPU path: value and weighted gradient
    against the float64 generic kernel."""
    jax, jnp, _ = _jax()
    rng = np.random.default_rng(3)
    logits = (rng.normal(size=(3, 12, 6)) * 2).astype(np.float32)
    labels = np.array([[1, 2, 2, 0], [5, 0, 0, 0], [3, 4, 1, 2]])
    weights = np.array([1.0, 0.5, 2.0])

    def total(x: Any) -> Any:
        loss = probloss.ctc(jnp.asarray(labels), x)
        return jnp.sum(loss * jnp.asarray(weights, x.dtype)), loss

    (_, loss), grad = jax.jit(jax.value_and_grad(total, has_aux=True))(jnp.asarray(logits))
    loss_ref, grad_ref = _reference(labels, logits, (labels != 0).sum(axis=1), np.full(3, 12), 0)
    np.testing.assert_allclose(np.asarray(loss), loss_ref, rtol=2 * EPS32)
    np.testing.assert_allclose(np.asarray(grad), grad_ref * weights[:, None, None], atol=8 * EPS32)


# Both modes and three blank indices in three cases: XLA compiles the generic kernel's
# unrolled recursion and its gradient for each (several seconds apiece).
@pytest.mark.parametrize(("x64_on", "blank"), [(False, 0), (True, 2), (False, 4)],
                         ids=["float32-only-0", "x64-2", "float32-only-4"])
def test_autodiff_through_the_generic_kernel_is_finite_and_matches_the_analytic_gradient(x64_on: bool,
                                                                                         blank: int) -> None:
    """With the fast paths off, ``jax.grad`` differentiates the generic kernel's recursion (JAX
    arrays, ``jit``): states no alignment reaches are ``logaddexp(-inf, -inf)``, whose derivative
    must be finite, not NaN. Finite everywhere and equal to the float64 analytic gradient (and
    the fast path's): repeated labels, label length 0, padding frames, an impossible sample, a
    sample with no label and no frames, the blank at several indices."""
    jax, jnp, _ = _jax()
    with jax_x64_mode(x64_on):
        _check_generic_autodiff(jax, jnp, blank, x64_on)


def _check_generic_autodiff(jax: Any, jnp: Any, blank: int, x64: bool) -> None:
    labels, logits, label_lengths, logit_lengths = _case(40 + blank, batch=7, frames=8, slots=3, blank=blank)
    labels[5, :3] = labels[5, 0]  # a triple repeat
    label_lengths[5] = 3
    logit_lengths[4], logit_lengths[5] = 7, 6  # padding frames
    label_lengths[6], logit_lengths[6] = 0, 0  # nothing at all: loss 0
    loss_ref, grad_ref = _reference(labels, logits, label_lengths, logit_lengths, blank)
    assert np.isposinf(loss_ref[3])
    assert loss_ref[6] == 0
    weights = np.linspace(0.5, 2.0, len(labels))
    expected_grad = grad_ref * weights[:, None, None]
    scale = np.abs(expected_grad).max()
    finite = np.isfinite(loss_ref)
    grads = {}
    for fast in (True, False):
        with probloss.fast_paths(fast):
            (_, loss), grad = _value_and_grad(jax, _public, labels, label_lengths, logit_lengths, blank, weights)(
                jnp.asarray(logits))
        loss, grad = np.asarray(loss), np.asarray(grad)
        grads[fast] = grad
        assert np.all(np.isfinite(grad)), (fast, np.argwhere(~np.isfinite(grad)))
        assert np.array_equal(np.isposinf(loss), ~finite)
        assert np.all(grad[[3, 6]] == 0)  # no alignment; nothing to align
        assert np.all(grad[4, 7:] == 0)  # padding frames
        assert np.all(grad[5, 6:] == 0)
        # Without x64 the generic kernel computes in float32 (the fast path in float64 always).
        rtol, atol = (1e-5, 1e-5 * scale) if not (fast or x64) else (2 * EPS32, 4 * EPS32 * scale)
        np.testing.assert_allclose(loss[finite], loss_ref[finite], rtol=rtol, atol=EPS32, err_msg=str(fast))
        np.testing.assert_allclose(grad, expected_grad, rtol=0, atol=atol, err_msg=str(fast))
    generic_atol = 4 * EPS32 * scale if x64 else 1e-5 * scale
    np.testing.assert_allclose(grads[False], grads[True], rtol=0, atol=generic_atol)


_SHARD_MAP = """
import jax, jax.numpy as jnp, numpy as np, probloss
from jax.sharding import PartitionSpec as P
from probloss._backends import _jax_ctc
assert jax.device_count() == 2, jax.devices()
mesh = jax.make_mesh((2,), ("batch",), axis_types=(jax.sharding.AxisType.Auto,))
rng = np.random.default_rng(5)
logits = rng.normal(size=(4, 7, 5)).astype(np.float32)
labels = np.array([[1, 2, 2], [3, 0, 0], [4, 4, 1], [2, 1, 3]])
label_lengths, logit_lengths = np.array([3, 0, 3, 2]), np.array([7, 5, 2, 6])  # sample 2: no alignment
weights = np.array([0.5, 1.0, 1.5, 2.0])


def public(y, x, a, b):
    return probloss.ctc_loss(y, x, a, b, validate="off")


def scan(y, x, a, b):
    return _jax_ctc.scan_ctc(y, x, a, b, 0)


def total(fn, y, x, a, b, w):
    loss = fn(y, x, a, b)
    return jnp.sum(jnp.where(jnp.isfinite(loss), loss * w.astype(loss.dtype), 0)), loss


for x64 in (False, True):
    jax.config.update("jax_enable_x64", x64)
    args = [jnp.asarray(a) for a in (labels, logits, label_lengths, logit_lengths, weights)]
    for name, fn in (("public", public), ("scan", scan)):
        # The weighted sum over the whole batch: psum of the shards' sums.
        sharded = jax.shard_map(lambda *a: (lambda s, l: (jax.lax.psum(s, "batch"), l))(*total(fn, *a)),
                                mesh=mesh, in_specs=(P("batch"),) * 5, out_specs=(P(), P("batch")))
        grad_of = lambda f: jax.jit(jax.value_and_grad(lambda x, y, a, b, w: f(y, x, a, b, w), has_aux=True))
        (value, loss), grad = grad_of(sharded)(args[1], args[0], *args[2:])
        (expected, expected_loss), expected_grad = grad_of(lambda *a: total(fn, *a))(args[1], args[0], *args[2:])
        assert np.isposinf(np.asarray(loss)[2]), (x64, name, loss)
        assert np.all(np.isfinite(np.asarray(grad))), (x64, name)
        # The same per-sample computation on a smaller batch (sums may be ordered differently).
        for got, want in ((loss, expected_loss), (value, expected), (grad, expected_grad)):
            np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-6, atol=1e-7, err_msg=f"{x64} {name}")
        print(x64, name, "ok")
print("shard_map ok")
"""


def test_shard_map_over_two_host_devices_matches_the_whole_batch() -> None:
    """``jax.shard_map`` over the batch (2 CPU devices, a subprocess: the device count is fixed
    at start-up): the public loss (the compiled kernel by ``pure_callback``, with the scan path
    traced as ``platform_dependent``'s other branch) and the scan path alone; both JAX modes.
    Under ``shard_map`` the scan carries and the two branches must carry the mesh axes the
    inputs vary over, or tracing fails. The losses and gradients equal the unsharded call's
    (the same per-sample computation)."""
    library("jax")
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=2", "JAX_PLATFORMS": "cpu"}
    done = subprocess.run([sys.executable, "-c", _SHARD_MAP], capture_output=True, text=True, env=env,
                          timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "shard_map ok" in done.stdout
