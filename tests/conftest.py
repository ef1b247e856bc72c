"""Shared fixtures: the array-library ``backend`` fixture and test settings.

Every value test takes the ``backend`` fixture and so runs on each installed
library. ``PROBLOSS_TEST_BACKENDS=numpy,torch`` selects a subset; a backend
that is requested (or expected, by default) but fails to import is an error,
never a skip.

No test inherits global state from the tests that ran before it: every test
starts from the defaults of the settings in ``_SETTINGS`` (probloss's epsilon,
validation and fast-path modes, JAX's ``jax_enable_x64``, PyTorch's default
dtype, threads and grad mode, NumPy's error handling, Keras's floatx and
epsilon), and a test that leaves one changed fails. A test that needs another
value sets it for itself and restores it: the ``jax_x64`` fixture (which the
``backend`` fixture requests on JAX), ``with probloss.validation(...)``,
``try``/``finally`` around ``probloss.set_epsilon``.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import os
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from enum import Enum
from typing import Any

import numpy as np
import pytest

# Keras (a test dependency, the reference) runs on its JAX backend, whose numerics
# are the stable ones. Set before anything imports keras.
os.environ.setdefault("KERAS_BACKEND", "jax")
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's start-up notices, not warnings

from hypothesis import HealthCheck, settings

settings.register_profile(
    "ci", max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile("dev", max_examples=50, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


class Backend(Enum):
    """The array libraries probloss is tested on."""

    NUMPY = "numpy"
    ARRAY_API_STRICT = "array_api_strict"
    TORCH = "torch"
    JAX = "jax"
    DASK = "dask"
    CUPY = "cupy"
    TENSORFLOW = "tensorflow"


_DEFAULT_BACKENDS = "numpy,array_api_strict,torch,jax,dask,tensorflow"
# Selected by default for the tests about one library (``library("tensorflow")``), but
# not for the generic ``backend``-parametrized value tests unless PROBLOSS_TEST_BACKENDS
# names it: tests/test_tensorflow.py covers TensorFlow's values, dtypes and modes, and
# running every generic test once more on TF would add minutes to CI.
_GENERIC_ONLY_WHEN_NAMED = (Backend.TENSORFLOW,)


@dataclass(frozen=True)
class Library:
    """One array library, with converters to and from NumPy for the tests."""

    backend: Backend
    module: Any

    @property
    def name(self) -> str:
        return self.backend.value

    @property
    def lazy(self) -> bool:
        return self.backend is Backend.DASK

    def asarray(self, x: Any, dtype: str | None = None) -> Any:
        """Return ``x`` (anything NumPy reads) as an array of this library."""
        host = np.asarray(x)
        if dtype is not None:
            host = host.astype(_numpy_dtype(dtype))
        if self.backend is Backend.NUMPY:
            return host
        if self.backend is Backend.TORCH:
            torch = self.module
            if dtype == "bfloat16":
                return torch.asarray(host.astype(np.float32)).to(torch.bfloat16)
            return torch.asarray(host)
        if self.backend is Backend.JAX:
            return self.module.numpy.asarray(host)
        if self.backend is Backend.DASK:
            chunks = tuple(max(1, (d + 1) // 2) for d in host.shape)
            return self.module.array.from_array(host, chunks=chunks)
        if self.backend is Backend.ARRAY_API_STRICT:
            return self.module.asarray(host)
        if self.backend is Backend.TENSORFLOW:
            tf = self.module
            if dtype == "bfloat16":
                return tf.cast(tf.constant(host.astype(np.float32)), tf.bfloat16)
            return tf.constant(host)
        return self.module.asarray(host)  # cupy

    def to_numpy(self, x: Any) -> np.ndarray:
        """Return a library array as a NumPy array (float32 for bfloat16)."""
        if self.backend is Backend.TORCH:
            x = x.detach().cpu()
            if str(x.dtype) == "torch.bfloat16":
                x = x.float()
            return x.numpy()
        if self.backend is Backend.DASK:
            return np.asarray(x.compute())
        if self.backend is Backend.ARRAY_API_STRICT:
            return np.asarray(x._array)
        if self.backend is Backend.CUPY:
            return x.get()
        if self.backend is Backend.TENSORFLOW:
            if x.dtype == self.module.bfloat16:
                x = self.module.cast(x, self.module.float32)
            return x.numpy()
        return np.asarray(x)

    def is_native(self, x: Any) -> bool:
        """Whether ``x`` is an array of this library."""
        import array_api_compat as compat

        checks = {
            Backend.NUMPY: compat.is_numpy_array,
            Backend.TORCH: compat.is_torch_array,
            Backend.JAX: compat.is_jax_array,
            Backend.DASK: compat.is_dask_array,
            Backend.CUPY: compat.is_cupy_array,
            Backend.ARRAY_API_STRICT: lambda a: type(a).__module__.startswith("array_api_strict"),
            Backend.TENSORFLOW: lambda a: isinstance(a, self.module.Tensor),
        }
        return bool(checks[self.backend](x))


def _numpy_dtype(name: str) -> Any:
    if name == "bfloat16":
        import ml_dtypes

        return ml_dtypes.bfloat16
    return np.dtype(name)


def _load(backend: Backend) -> Library:
    module_name = {"dask": "dask.array", "array_api_strict": "array_api_strict"}.get(
        backend.value, backend.value)
    try:
        importlib.import_module(module_name)
        module = importlib.import_module(backend.value.split(".")[0])
    except ImportError as error:  # requested backends must be there: an error, not a skip
        msg = f"Backend {backend.value!r} was requested but does not import: {error}"
        raise pytest.UsageError(msg) from error
    if backend is Backend.CUPY and module.cuda.runtime.getDeviceCount() == 0:
        msg = "Backend 'cupy' was requested but no GPU is present."
        raise pytest.UsageError(msg)
    return Library(backend, module)


def requested_backends() -> list[Backend]:
    """The backends selected by PROBLOSS_TEST_BACKENDS (default: the six CPU ones)."""
    names = os.environ.get("PROBLOSS_TEST_BACKENDS", _DEFAULT_BACKENDS)
    return [Backend(n.strip()) for n in names.split(",") if n.strip()]


_LIBRARIES: dict[Backend, Library] = {}


# Imported on first use rather than at start-up: TensorFlow takes ~10 s of CPU to
# import, which every xdist process (the controller too) would pay for nothing.
_LOADED_ON_FIRST_USE = (Backend.TENSORFLOW,)


def pytest_configure(config: pytest.Config) -> None:
    for backend in requested_backends():
        if backend in _LOADED_ON_FIRST_USE:
            if importlib.util.find_spec(backend.value) is None:
                msg = f"Backend {backend.value!r} was requested but is not installed."
                raise pytest.UsageError(msg)
            continue
        _LIBRARIES[backend] = _load(backend)


def _loaded(backend: Backend) -> Library:
    if backend not in _LIBRARIES:
        _LIBRARIES[backend] = _load(backend)
    return _LIBRARIES[backend]


def _generic_backends() -> list[Backend]:
    named = os.environ.get("PROBLOSS_TEST_BACKENDS") is not None
    return [b for b in requested_backends() if named or b not in _GENERIC_ONLY_WHEN_NAMED]


@pytest.fixture(params=_generic_backends(), ids=lambda b: b.value)
def backend(request: pytest.FixtureRequest) -> Library:
    """Each requested array library in turn; JAX with float64 enabled (``jax_x64``)."""
    if request.param is Backend.JAX:
        request.getfixturevalue("jax_x64")
    return _loaded(request.param)


def library(name: str) -> Library:
    """The loaded library called ``name``, for tests about one library.

    It changes no setting: a test that uses JAX's float64 also takes ``jax_x64``.
    """
    backend = Backend(name)
    if backend not in requested_backends():
        pytest.skip(f"backend {name!r} not selected by PROBLOSS_TEST_BACKENDS")
    return _loaded(backend)


# ------------------------------------------------------------------ JAX's modes


@contextlib.contextmanager
def jax_x64_mode(enabled: bool) -> Iterator[None]:
    """JAX with float64 enabled or not (``jax_enable_x64``) inside the block, the previous mode after it.

    The switch is process-wide (``jax.config.update``), not JAX's thread-local
    context manager, so that threads started inside the block see it too.
    """
    import jax

    previous = bool(jax.config.jax_enable_x64)
    jax.config.update("jax_enable_x64", enabled)
    try:
        yield
    finally:
        jax.config.update("jax_enable_x64", previous)


@pytest.fixture
def jax_x64() -> Iterator[None]:
    """Run the test with JAX's float64 enabled, as the value tests on JAX assume.

    Outside it a test sees JAX's default, float32-only mode (``_SETTINGS``).
    Nothing to do, and no skip, where JAX is not installed: the tests that use
    JAX skip or fail on their own then.
    """
    try:
        import jax  # noqa: F401
    except ImportError:
        yield
        return
    with jax_x64_mode(True):
        yield


# ---------------------------------------------------------------- global state


@dataclass(frozen=True)
class _Setting:
    """A setting outside any test: read and written only once ``module`` is imported."""

    name: str
    module: str
    get: Callable[[], Any]
    set: Callable[[Any], None]
    default: Callable[[], Any]


def _probloss_config() -> Any:
    from probloss import _config

    return _config


def _mod(name: str) -> Any:
    return sys.modules[name]


def _first_seen(read: Callable[[], Any]) -> Callable[[], Any]:
    """A default that is the value when the setting is first read (a thread count, an error mode)."""
    seen: list[Any] = []

    def default() -> Any:
        if not seen:
            seen.append(read())
        return seen[0]

    return default


_SETTINGS: tuple[_Setting, ...] = (
    _Setting("probloss epsilon", "probloss", lambda: _mod("probloss").epsilon(),
             lambda v: _mod("probloss").set_epsilon(v), lambda: 1e-7),
    _Setting("probloss validation mode", "probloss", lambda: _probloss_config().validation_mode(),
             lambda v: _probloss_config()._VALIDATION.set(v), lambda: "raise"),
    _Setting("probloss fast paths", "probloss", lambda: _probloss_config().fast_paths_enabled(),
             lambda v: _probloss_config()._FAST_PATHS.set(v), lambda: True),
    _Setting("jax_enable_x64", "jax", lambda: bool(_mod("jax").config.jax_enable_x64),
             lambda v: _mod("jax").config.update("jax_enable_x64", v), lambda: False),
    _Setting("torch default dtype", "torch", lambda: _mod("torch").get_default_dtype(),
             lambda v: _mod("torch").set_default_dtype(v), lambda: _mod("torch").float32),
    _Setting("torch grad mode", "torch", lambda: _mod("torch").is_grad_enabled(),
             lambda v: _mod("torch").set_grad_enabled(v), lambda: True),
    _Setting("torch threads", "torch", lambda: _mod("torch").get_num_threads(),
             lambda v: _mod("torch").set_num_threads(v), _first_seen(lambda: _mod("torch").get_num_threads())),
    _Setting("numpy error handling", "numpy", np.geterr, lambda v: np.seterr(**v), _first_seen(np.geterr)),
    _Setting("keras floatx", "keras", lambda: _mod("keras").config.floatx(),
             lambda v: _mod("keras").config.set_floatx(v), lambda: "float32"),
    _Setting("keras epsilon", "keras", lambda: _mod("keras").config.epsilon(),
             lambda v: _mod("keras").config.set_epsilon(v), lambda: 1e-7),
)


def _restore_defaults() -> list[str]:
    """Put every setting back to its default; return what was changed (``name: value``)."""
    changed = []
    for setting in _SETTINGS:
        if setting.module not in sys.modules:
            continue
        value, default = setting.get(), setting.default()
        if value != default:
            setting.set(default)
            changed.append(f"{setting.name}: {value!r} (default {default!r})")
    return changed


@pytest.fixture(autouse=True)
def _default_global_state() -> Iterator[None]:
    """Start each test from the default settings, and fail one that leaves them changed.

    Doctests and imports run outside this fixture; whatever they left is reset
    before the next test.
    """
    _restore_defaults()
    yield
    leaked = _restore_defaults()
    if leaked:
        pytest.fail("the test left global settings changed (restored now): " + "; ".join(leaked), pytrace=False)
