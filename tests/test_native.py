"""The compiled kernels (probloss._native) against the generic array-API kernels.

Every option, non-finite inputs, odd shapes, strides, byte order, axes and
thread counts: the compiled NumPy path must give the generic kernel's values
(``probloss.fast_paths(False)``) to a few float32 ulps, the same NaN/inf, and
bit-identical results for any number of threads. Also: the import fallback,
the fused data checks, the gradient output and fork safety.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import probloss
from probloss import _native

pytestmark = pytest.mark.skipif(_native.binary is None, reason=f"extension not built: {_native.load_error}")

EPS32 = float(np.finfo(np.float32).eps)


@pytest.fixture(autouse=True)
def _restore_threads():
    yield
    probloss.set_num_threads(None)


def _generic(fn, *args, **kwargs):
    with probloss.fast_paths(False):
        return fn(*args, **kwargs)


def _close(fast, generic, ulps: float = 4.0) -> None:
    assert fast.dtype == generic.dtype
    assert fast.shape == generic.shape
    np.testing.assert_allclose(fast, generic, rtol=ulps * EPS32, atol=0, equal_nan=True)


def _data(shape, seed=0, scale=6.0):
    rng = np.random.default_rng(seed)
    logits = (rng.standard_normal(shape) * scale).astype(np.float32)
    probs = rng.random(shape).astype(np.float32)
    hard = (rng.random(shape) < 0.5).astype(np.float32)
    soft = rng.random(shape).astype(np.float32)
    return logits, probs, hard, soft


# ----------------------------------------------------------------- every option

BINARY_CASES = [
    pytest.param(probloss.binary_crossentropy, {"from_logits": True}, id="bce-logits"),
    pytest.param(probloss.binary_crossentropy, {"from_logits": False}, id="bce-probs"),
    pytest.param(probloss.binary_crossentropy, {"from_logits": True, "label_smoothing": 0.2}, id="bce-logits-ls"),
    pytest.param(probloss.binary_crossentropy, {"from_logits": False, "label_smoothing": 0.1}, id="bce-probs-ls"),
]
for _gamma in (0.0, 1.0, 1.5, 2.0, 3.0):
    for _logits in (True, False):
        for _balanced in (False, True):
            BINARY_CASES.append(pytest.param(
                probloss.binary_focal_crossentropy,
                {"from_logits": _logits, "gamma": _gamma, "alpha": 0.3, "apply_class_balancing": _balanced},
                id=f"focal-{'logits' if _logits else 'probs'}-g{_gamma}-{'bal' if _balanced else 'nobal'}"))
BINARY_CASES.append(pytest.param(probloss.binary_focal_crossentropy, {"from_logits": True, "label_smoothing": 0.3},
                                 id="focal-logits-ls"))


@pytest.mark.parametrize(("fn", "options"), BINARY_CASES)
@pytest.mark.parametrize("labels", ["hard", "soft"])
@pytest.mark.parametrize("validate", ["off", "raise"])
def test_binary_family_equals_generic(fn, options, labels, validate):
    logits, probs, hard, soft = _data((64, 37), seed=len(str(options)))
    y_pred = logits if options["from_logits"] else probs
    y_true = hard if labels == "hard" else soft
    fast = fn(y_true, y_pred, validate=validate, **options)
    _close(fast, _generic(fn, y_true, y_pred, validate=validate, **options))


@pytest.mark.parametrize("fn", [probloss.poisson, probloss.kl_divergence])
@pytest.mark.parametrize("validate", ["off", "raise"])
def test_poisson_and_kl_equal_generic(fn, validate):
    _, probs, _, soft = _data((50, 33), seed=3)
    rng = np.random.default_rng(4)
    if fn is probloss.poisson:
        y_true = rng.poisson(2.0, size=probs.shape).astype(np.float32)
        y_pred = (probs * 5).astype(np.float32)
        y_pred[0, :3] = [0.0, 1e-30, 3.0]
    else:
        y_true, y_pred = soft, probs
        y_true[0, :3] = [0.0, 1.0, 1e-9]  # clipped to [eps, 1] by both
    _close(fn(y_true, y_pred, validate=validate), _generic(fn, y_true, y_pred, validate=validate), ulps=2)


# ---------------------------------------------------------- non-finite inputs


@pytest.mark.parametrize(("fn", "options"), [
    (probloss.binary_crossentropy, {"from_logits": True}),
    (probloss.binary_focal_crossentropy, {"from_logits": True}),
    (probloss.binary_focal_crossentropy, {"from_logits": True, "gamma": 1.5, "apply_class_balancing": True}),
])
def test_infinite_and_nan_logits_as_generic(fn, options):
    logits, _, hard, _ = _data((8, 5), seed=5)
    logits[0, 0], hard[0, 0] = np.inf, 1.0  # loss 0
    logits[1, 0], hard[1, 0] = -np.inf, 0.0  # loss 0
    logits[2, 0], hard[2, 0] = np.inf, 0.0  # loss inf
    logits[3, 0], hard[3, 0] = -np.inf, 1.0  # loss inf
    logits[4, 0] = np.nan
    hard[5, 0] = np.nan
    fast = fn(hard, logits, validate="off", **options)
    generic = _generic(fn, hard, logits, validate="off", **options)
    _close(fast, generic)
    assert np.isnan(fast[4:6]).all()
    assert np.isinf(fast[2:4]).all()


@pytest.mark.parametrize("fn", [probloss.binary_crossentropy, probloss.binary_focal_crossentropy,
                                probloss.poisson, probloss.kl_divergence])
def test_nan_probabilities_as_generic(fn):
    _, probs, hard, _ = _data((6, 4), seed=6)
    probs[1, 2] = np.nan
    hard[3, 1] = np.nan
    _close(fn(hard, probs, validate="off"), _generic(fn, hard, probs, validate="off"))


# ------------------------------------------------------------ shapes and layouts

SHAPES = [(0, 5), (1, 1), (1,), (17,), (3, 1031), (2, 40000), (40000, 3), (5, 0, 3)]


@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("from_logits", [True, False])
def test_odd_shapes(shape, from_logits):
    if shape[-1] == 0:
        pytest.skip("an empty averaging axis is refused before any kernel runs")
    logits, probs, hard, _ = _data(shape, seed=7)
    y_pred = logits if from_logits else probs
    for fn in (probloss.binary_crossentropy, probloss.binary_focal_crossentropy):
        _close(fn(hard, y_pred, from_logits=from_logits), _generic(fn, hard, y_pred, from_logits=from_logits))
    _close(probloss.kl_divergence(hard, probs), _generic(probloss.kl_divergence, hard, probs), ulps=2)


@pytest.mark.parametrize("axis", [0, 1, 2, -1])
def test_axes(axis):
    logits, probs, hard, soft = _data((6, 7, 9), seed=8)
    for fn, y_pred in ((probloss.binary_crossentropy, logits), (probloss.binary_focal_crossentropy, logits)):
        fast = fn(soft, y_pred, from_logits=True, axis=axis)
        _close(fast, _generic(fn, soft, y_pred, from_logits=True, axis=axis))
    _close(probloss.binary_crossentropy(hard, probs, axis=axis),
           _generic(probloss.binary_crossentropy, hard, probs, axis=axis))


@pytest.mark.parametrize("layout", ["strided", "transposed", "fortran", "big-endian", "negative-stride"])
def test_layouts(layout):
    logits, probs, hard, _ = _data((40, 60), seed=9)
    make = {
        "strided": lambda a: a[::2, ::3],
        "transposed": lambda a: a.T,
        "fortran": np.asfortranarray,
        "big-endian": lambda a: a.astype(">f4"),
        "negative-stride": lambda a: a[::-1, ::-2],
    }[layout]
    y, x, p = make(hard), make(logits), make(probs)
    for fn in (probloss.binary_crossentropy, probloss.binary_focal_crossentropy):
        fast = fn(y, x, from_logits=True)
        _close(fast.astype(np.float32), _generic(fn, y, x, from_logits=True).astype(np.float32))
        fast = fn(y, p)
        _close(fast.astype(np.float32), _generic(fn, y, p).astype(np.float32))
    fast, generic = probloss.poisson(y, p), _generic(probloss.poisson, y, p)
    _close(fast.astype(np.float32), generic.astype(np.float32), ulps=2)


def test_other_dtypes_use_the_generic_kernel():
    logits, _, hard, _ = _data((10, 6), seed=10)
    for dtype in (np.float64, np.float16):
        x, y = logits.astype(dtype), hard.astype(dtype)
        fast = probloss.binary_crossentropy(y, x, from_logits=True)
        generic = _generic(probloss.binary_crossentropy, y, x, from_logits=True)
        np.testing.assert_array_equal(fast, generic)


# ------------------------------------------------------------------- threads


@pytest.mark.parametrize("shape", [(300, 1000), (3, 100_000), (200_000,), (100_000, 2)], ids=str)
def test_results_are_bit_identical_for_any_thread_count(shape):
    logits, probs, _, soft = _data(shape, seed=11)
    results = {}
    for threads in (1, 2, 3, 7):
        probloss.set_num_threads(threads)
        results[threads] = [
            probloss.binary_crossentropy(soft, logits, from_logits=True),
            probloss.binary_crossentropy(soft, probs),
            probloss.binary_focal_crossentropy(soft, logits, from_logits=True, gamma=1.5),
            probloss.kl_divergence(soft, probs),
        ]
    for threads in (2, 3, 7):
        for one, many in zip(results[1], results[threads], strict=True):
            np.testing.assert_array_equal(one, many)
    generic = _generic(probloss.binary_crossentropy, soft, logits, from_logits=True)
    _close(results[2][0], generic, ulps=16 if shape[-1] > 10_000 else 4)  # float32 sums of 1e5 terms


def test_concurrent_calls_from_python_threads_are_exact():
    """Calls from several Python threads at once (the GIL is released): one owns the
    task pool, the others run on their own thread; every result is the serial one."""
    import concurrent.futures

    logits, probs, _, soft = _data((64, 4096), seed=21)
    probloss.set_num_threads(1)
    expected = [probloss.binary_crossentropy(soft, logits, from_logits=True), probloss.kl_divergence(soft, probs),
                probloss.poisson(soft, probs)]
    probloss.set_num_threads(3)

    def run(_: int) -> list[np.ndarray]:
        return [probloss.binary_crossentropy(soft, logits, from_logits=True), probloss.kl_divergence(soft, probs),
                probloss.poisson(soft, probs)]

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        for got in pool.map(run, range(24)):
            for one, many in zip(expected, got, strict=True):
                np.testing.assert_array_equal(one, many)


def test_task_pool_in_a_forked_child():
    """The compiled task pool itself after fork(), asked for threads (the Python layer
    would pass 1): the child has no workers, runs every task on its own thread, and
    can start workers of its own; the values are the parent's."""
    result = _run_python("""
        import os, numpy as np
        from probloss import _native
        B = _native.binary
        rng = np.random.default_rng(0)
        x = rng.standard_normal((256, 4096)).astype(np.float32)
        y = (x > 0).astype(np.float32)
        def run(threads):
            out = np.empty(256, np.float32)
            B.row_losses(B.KIND_BCE_LOGITS, y, x, out, 4096.0, threads, None, ())
            return out
        before = run(2)
        pid = os.fork()
        if pid == 0:
            ok = all(np.array_equal(before, run(t)) for t in (2, 3, 1, 2))
            os._exit(0 if ok else 3)
        _, status = os.waitpid(pid, 0)
        print(os.waitstatus_to_exitcode(status), np.array_equal(before, run(1)))
    """)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["0", "True"]


def test_thread_setting():
    probloss.set_num_threads(3)
    assert probloss.get_num_threads() == 3
    probloss.set_num_threads(None)
    assert probloss.get_num_threads() >= 1
    for bad in (0, -1, 1.5, True, "2"):
        with pytest.raises(ValueError, match="positive int"):
            probloss.set_num_threads(bad)


def _run_python(code: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    src = os.path.dirname(os.path.dirname(probloss.__file__))
    environment = {**os.environ, "PYTHONPATH": src + os.pathsep + os.environ.get("PYTHONPATH", ""), **(env or {})}
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          env=environment, timeout=120, check=False)


def test_environment_variable_sets_the_default():
    result = _run_python("import probloss; print(probloss.get_num_threads())", {"PROBLOSS_NUM_THREADS": "5"})
    assert result.stdout.strip() == "5", result.stderr
    default = _run_python("import os, probloss; print(probloss.get_num_threads(), len(os.sched_getaffinity(0)))",
                          {"PROBLOSS_NUM_THREADS": ""})
    got, cores = default.stdout.split()
    assert got == cores


# ----------------------------------------------------------- fallback, fork, grad


def test_missing_extension_warns_once_and_computes():
    result = _run_python("""
        import sys, warnings
        sys.modules["probloss._native._binary"] = None  # makes the import fail
        import numpy as np
        import probloss
        from probloss._native import NativeUnavailableWarning
        y = np.array([[1, 0, 1]], np.float32)
        x = np.array([[2.0, -1.0, 0.5]], np.float32)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            a = probloss.binary_crossentropy(y, x, from_logits=True)
            b = probloss.kl_divergence(y, x * 0 + 0.5)
            c = probloss.poisson(y, x * 0 + 0.5)
        with probloss.fast_paths(False):
            ref = probloss.binary_crossentropy(y, x, from_logits=True)
        ours = [w for w in caught if issubclass(w.category, NativeUnavailableWarning)]
        print(len(ours), len(caught), bool(np.allclose(a, ref, rtol=1e-6)), "pip install" in str(ours[0].message))
    """)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["1", "1", "True", "True"]


def test_fork_after_parallel_use():
    result = _run_python("""
        import os, numpy as np, probloss
        probloss.set_num_threads(2)
        x = np.random.default_rng(0).standard_normal((400, 1000)).astype(np.float32)
        y = (x > 0).astype(np.float32)
        before = probloss.binary_crossentropy(y, x, from_logits=True)
        pid = os.fork()
        if pid == 0:
            after = probloss.binary_crossentropy(y, x, from_logits=True)
            os._exit(0 if np.array_equal(before, after) else 3)
        _, status = os.waitpid(pid, 0)
        print(os.waitstatus_to_exitcode(status))
    """)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "0"


def test_gradient_output():
    from probloss._backends._native_binary import binary_crossentropy_with_grad

    logits, _, _, soft = _data((30, 17), seed=12)
    logits[0, :2] = [80.0, -80.0]
    loss, grad = binary_crossentropy_with_grad(soft, logits)
    _close(loss, _generic(probloss.binary_crossentropy, soft, logits, from_logits=True))
    x, y = logits.astype(np.float64), soft.astype(np.float64)
    expected = (1 / (1 + np.exp(-x)) - y) / x.shape[1]
    # sigmoid to a few ulps; sigmoid - y may cancel, so the bound is absolute there.
    np.testing.assert_allclose(grad, expected, rtol=8 * EPS32, atol=4 * EPS32 / x.shape[1])
    loss0, grad0 = binary_crossentropy_with_grad(soft.T, logits.T, axis=0)
    np.testing.assert_array_equal(loss0, loss)
    np.testing.assert_array_equal(grad0, grad)


# ------------------------------------------------------------ fused data checks


def test_fused_checks_report_the_first_offending_position():
    logits, probs, hard, _ = _data((500, 300), seed=13)
    probs[123, 45] = 1.5
    probs[400, 2] = np.nan
    with pytest.raises(ValueError, match=r"Received nan at position \(400, 2\)"):
        probloss.binary_crossentropy(hard, probs)
    probs[400, 2] = 0.5
    with pytest.raises(ValueError, match=r"Received 1.5 at position \(123, 45\)"):
        probloss.binary_crossentropy(hard, probs)
    hard[7, 8] = -0.0  # a valid label (-0.0 == 0)
    logits[9, 9] = np.inf
    with pytest.raises(ValueError, match=r"Received inf at position \(9, 9\)"):
        probloss.binary_focal_crossentropy(hard, logits, from_logits=True)
    logits[9, 9] = -np.inf  # allowed for logits
    probloss.binary_crossentropy(hard, logits, from_logits=True)


def test_fused_checks_warn_mode_returns_the_values():
    _, probs, hard, _ = _data((20, 10), seed=14)
    probs[3, 3] = 1.25
    with pytest.warns(probloss.ValidationWarning, match=r"position \(3, 3\)"):
        got = probloss.binary_crossentropy(hard, probs, validate="warn")
    _close(got, _generic(probloss.binary_crossentropy, hard, probs, validate="off"))


def test_probabilities_as_logits_warning_from_fused_bounds():
    _, probs, hard, _ = _data((20, 10), seed=15)
    with pytest.warns(probloss.ProbabilitiesAsLogitsWarning):
        probloss.binary_crossentropy(hard, probs, from_logits=True)
