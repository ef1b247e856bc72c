"""Shared fixtures: the array-library ``backend`` fixture and test settings.

Every value test takes the ``backend`` fixture and so runs on each installed
library. ``PROBLOSS_TEST_BACKENDS=numpy,torch`` selects a subset; a backend
that is requested (or expected, by default) but fails to import is an error,
never a skip.
"""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass
from enum import Enum
from typing import Any

import numpy as np
import pytest

# Keras (a test dependency, the reference) runs on its JAX backend, whose numerics
# are the stable ones. Set before anything imports keras.
os.environ.setdefault("KERAS_BACKEND", "jax")
os.environ.setdefault("JAX_PLATFORMS", "cpu")

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


_DEFAULT_BACKENDS = "numpy,array_api_strict,torch,jax,dask"


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
    if backend is Backend.JAX:
        module.config.update("jax_enable_x64", True)
    if backend is Backend.CUPY and module.cuda.runtime.getDeviceCount() == 0:
        msg = "Backend 'cupy' was requested but no GPU is present."
        raise pytest.UsageError(msg)
    return Library(backend, module)


def requested_backends() -> list[Backend]:
    """The backends selected by PROBLOSS_TEST_BACKENDS (default: the five CPU ones)."""
    names = os.environ.get("PROBLOSS_TEST_BACKENDS", _DEFAULT_BACKENDS)
    return [Backend(n.strip()) for n in names.split(",") if n.strip()]


_LIBRARIES: dict[Backend, Library] = {}


def pytest_configure(config: pytest.Config) -> None:
    for backend in requested_backends():
        _LIBRARIES[backend] = _load(backend)


@pytest.fixture(params=requested_backends(), ids=lambda b: b.value)
def backend(request: pytest.FixtureRequest) -> Library:
    """Each requested array library in turn."""
    return _LIBRARIES[request.param]


def library(name: str) -> Library:
    """The loaded library called ``name``, for tests about one library."""
    backend = Backend(name)
    if backend not in _LIBRARIES:
        pytest.skip(f"backend {name!r} not selected by PROBLOSS_TEST_BACKENDS")
    return _LIBRARIES[backend]
