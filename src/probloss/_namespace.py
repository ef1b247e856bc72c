"""Array namespace, device and dtype resolution over array-api-compat.

The public functions resolve the namespace once, here, and pass ``xp`` inward.
No optional array library is imported by this module: a library is touched only
when the caller's arrays already come from it.
"""

from __future__ import annotations

import sys
from typing import Any

import array_api_compat
import numpy as np

__all__ = [
    "FLOATX",
    "as_arrays",
    "compute_dtype",
    "device_of",
    "dtype_name",
    "element_count",
    "index_dtype",
    "is_eager",
    "is_floating",
    "is_integer",
    "jax_without_x64",
    "library_name",
    "resolve_dtype",
    "static_size",
]

# Keras's floatx(): Python floats and integer predictions are computed in float32.
FLOATX = "float32"
_LOW_PRECISION = ("float16", "bfloat16")


def library_name(x: object) -> str:
    """Return a short name for the library an array comes from (``"torch"``, ...)."""
    if array_api_compat.is_dask_array(x):
        return "dask"
    if array_api_compat.is_array_api_strict_namespace(_namespace_or_none(x)):
        return "array_api_strict"
    module = type(x).__module__.split(".", 1)[0]
    return {"jaxlib": "jax", "builtins": "python", "cupy": "cupy"}.get(module, module)


def _namespace_or_none(x: object) -> Any:
    try:
        return array_api_compat.array_namespace(x)
    except TypeError:
        return None


def as_arrays(named: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
    """Resolve one namespace for several inputs and convert non-arrays into it.

    Args:
        named: argument name -> value; ``None`` values are passed through.

    Returns:
        ``(xp, arrays)``: the array-api-compat namespace and the inputs as arrays
        of that namespace, on the device of the first array input. Python lists
        and scalars become arrays of that library, floats as float32 (Keras's
        floatx), integers as the library's default integer type.

    Raises:
        TypeError: if the inputs come from two different array libraries, or an
            input cannot be read as a numeric array.
    """
    named = {k: _from_dask_dataframe(v) for k, v in named.items()}
    tensorflow = _tensorflow_inputs(named)
    if tensorflow is not None:
        return tensorflow
    arrays = {k: v for k, v in named.items() if v is not None and _is_array(v)}
    if arrays:
        first = next(iter(arrays))
        try:
            xp = array_api_compat.array_namespace(*arrays.values())
        except TypeError:
            libraries = {k: library_name(v) for k, v in arrays.items()}
            other = next(k for k in arrays if libraries[k] != libraries[first])
            msg = (
                f"Arguments `{first}` and `{other}` come from different array libraries: "
                f"{first} is a {libraries[first]} array and {other} is a "
                f"{libraries[other]} array. Convert both to the same library."
            )
            raise TypeError(msg) from None
        device = array_api_compat.device(arrays[first])
    else:
        xp = array_api_compat.array_namespace(np.empty(0))
        device = None
    out: dict[str, Any] = {}
    for key, value in named.items():
        if value is None or key in arrays:
            out[key] = value
        else:
            out[key] = _convert(key, value, xp, device)
    return xp, out


def _is_tensorflow(value: object) -> bool:
    """Whether ``value`` is a ``tf.Tensor`` or ``tf.Variable`` (TensorFlow is never imported here)."""
    if "tensorflow" not in sys.modules or not type(value).__module__.startswith("tensorflow"):
        return False
    tf = sys.modules["tensorflow"]
    return isinstance(value, tf.Tensor | tf.Variable)


def _tensorflow_inputs(named: dict[str, Any]) -> tuple[Any, dict[str, Any]] | None:
    """:func:`as_arrays` for calls with a TensorFlow tensor among the inputs (else None).

    array-api-compat has no TensorFlow namespace: probloss's own adapter over
    TensorFlow ops serves the kernels. As TensorFlow's own ops do, NumPy arrays,
    lists and scalars given beside a tensor are converted to tensors (keeping a
    NumPy array's dtype); variables are read as tensors (``GradientTape`` sees
    the read). Arrays of any other library are refused.
    """
    tensors = [k for k, v in named.items() if _is_tensorflow(v)]
    if not tensors:
        return None
    from ._backends import _tensorflow_namespace as xp

    first = tensors[0]
    device = device_of(named[first])
    out: dict[str, Any] = {}
    for key, value in named.items():
        if value is None:
            out[key] = None
        elif key in tensors:
            out[key] = xp.asarray(value)
        elif _is_array(value) and not isinstance(value, np.ndarray):
            msg = (
                f"Arguments `{first}` and `{key}` come from different array libraries: "
                f"{first} is a tensorflow array and {key} is a {library_name(value)} array. "
                "Convert both to the same library."
            )
            raise TypeError(msg)
        else:
            out[key] = _convert(key, value, xp, device)
    return xp, out


def _from_dask_dataframe(value: Any) -> Any:
    """A dask DataFrame or Series becomes a dask array (columns in order), lazily.

    Its partitions become the array's row blocks (their lengths are computed once,
    as Dask needs them for the rank adjustments); anything else is returned as is.
    """
    if "dask" in sys.modules and type(value).__module__.split(".")[0] in ("dask", "dask_expr") \
            and hasattr(value, "to_dask_array") and hasattr(value, "npartitions"):
        return value.to_dask_array(lengths=True)
    return value


def _is_array(value: object) -> bool:
    return array_api_compat.is_array_api_obj(value) and not isinstance(value, np.generic)


def _convert(name: str, value: object, xp: Any, device: Any) -> Any:
    """Convert a list, tuple or scalar the way Keras's ``convert_to_tensor`` does."""
    try:
        host = np.asarray(value)
    except (ValueError, TypeError) as error:
        msg = f"Argument `{name}` could not be read as a numeric array: {error}"
        raise TypeError(msg) from None
    if host.dtype == np.bool_:
        host = host.astype(np.int64)
    elif host.dtype.kind == "f" and not isinstance(value, np.ndarray | np.generic):
        host = host.astype(FLOATX)
    elif host.dtype.kind not in "iuf":
        msg = (
            f"Argument `{name}` must contain numbers. Received: {name} with dtype "
            f"{host.dtype} ({type(value).__name__})"
        )
        raise TypeError(msg)
    if array_api_compat.is_numpy_namespace(xp):
        return host
    return xp.asarray(host, device=device)


def device_of(x: Any) -> Any:
    """Return the device of an array (None for jitted JAX values without one).

    A JAX array sharded over several devices reports its sharding, which a new
    scalar cannot take (a scalar has no axis to shard): None then, so that JAX
    places the scalar itself.
    """
    if _is_tensorflow(x):
        return x.device or None  # "" inside a graph: TensorFlow places the op
    device = array_api_compat.device(x)
    if type(device).__name__.endswith("Sharding") and len(getattr(device, "device_set", ())) > 1:
        return None
    return device


def element_count(x: Any, *, xp: Any, dtype: Any) -> Any:
    """Return the number of elements of ``x`` as a scalar array of ``dtype``.

    From the static shape where it is known; a dimension unknown while tracing
    (a TensorFlow graph's batch size) is read from the tensor at run time.
    """
    for d in x.shape:  # a loop, not a generator: torch.compile traces it without a graph break
        if d is None:
            return xp.astype(xp.size_array(x), dtype)
    return xp.asarray(static_size(x), dtype=dtype, device=device_of(x))


def static_size(x: Any) -> int:
    """Return the number of elements of ``x`` from its shape (no data is read)."""
    size = 1
    for d in x.shape:  # a loop, not a generator: torch.compile traces it without a graph break
        size *= int(d)
    return size


def jax_without_x64(xp: Any) -> bool:
    """Return whether ``xp`` is JAX with 64-bit types disabled (its default)."""
    return xp.__name__ == "jax.numpy" and not sys.modules["jax"].config.jax_enable_x64


def index_dtype(xp: Any) -> Any:
    """Return the integer dtype for class indices: int64, or int32 on JAX without x64."""
    return xp.int32 if jax_without_x64(xp) else xp.int64


# The classes of NumPy's boolean, integer, float and complex dtype instances (np.dtype("float32")
# is an instance of np.dtypes.Float32DType).
_NUMBER_DTYPES = frozenset(type(np.dtype(code)) for code in "?bhilqBHILQefdgFDG")
_NUMPY_NAMES: dict[Any, str] = {}


def dtype_name(dtype: Any) -> str:
    """Return the canonical name of a dtype of any library (``"float32"``, ...)."""
    # A native-order NumPy number dtype prints as its name: skip the string work (a
    # quarter of a small NumPy call's overhead). Other byte orders keep their str ("<f4").
    if type(dtype) in _NUMBER_DTYPES and dtype.isnative:
        name = _NUMPY_NAMES.get(dtype)
        if name is None:  # at most one entry per number dtype (dtype.name is slow Python code)
            name = _NUMPY_NAMES[dtype] = dtype.name
        return name
    # String work only: np.dtype(torch.float64) would fail inside torch.compile.
    name = str(dtype)
    for prefix in ("torch.", "<dtype: ", "dtype(", "<class 'numpy.", "<class 'jax.numpy.", "<class 'ml_dtypes."):
        name = name.removeprefix(prefix)
    return name.strip("')>\"")


def is_floating(xp: Any, dtype: Any) -> bool:
    """Return whether ``dtype`` is a real floating dtype (bfloat16 included)."""
    if type(dtype) in _NUMBER_DTYPES:  # NumPy: the kind says it, without isdtype's overhead
        return dtype.kind == "f"
    if dtype_name(dtype) in _LOW_PRECISION:
        return True
    try:
        return bool(xp.isdtype(dtype, "real floating"))
    except (TypeError, ValueError):
        return False


def is_integer(xp: Any, dtype: Any) -> bool:
    """Return whether ``dtype`` is an integer dtype."""
    if type(dtype) in _NUMBER_DTYPES:
        return dtype.kind in "iu"
    try:
        return bool(xp.isdtype(dtype, "integral"))
    except (TypeError, ValueError):
        return False


def compute_dtype(xp: Any, dtype: Any) -> Any:
    """Return the dtype arithmetic runs in: float32 for float16/bfloat16 inputs."""
    if dtype_name(dtype) in _LOW_PRECISION:
        return xp.float32
    return dtype


def resolve_dtype(xp: Any, name: str) -> Any:
    """Return the namespace's dtype object for a dtype name such as ``"bfloat16"``."""
    dtype = getattr(xp, name, None)
    if dtype is not None:
        return dtype
    if array_api_compat.is_torch_namespace(xp):
        return getattr(sys.modules["torch"], name)
    if array_api_compat.is_dask_namespace(xp) and name == "float16":
        return np.dtype(name)  # Dask computes with NumPy dtypes; float16 is not in the standard
    if array_api_compat.is_numpy_namespace(xp) and name == "bfloat16":
        try:
            import ml_dtypes
        except ImportError:
            msg = "dtype='bfloat16' with NumPy arrays needs the `ml_dtypes` package."
            raise TypeError(msg) from None
        return np.dtype(ml_dtypes.bfloat16)
    msg = f"The {xp.__name__} namespace has no dtype {name!r}."
    raise TypeError(msg)


def is_eager(*arrays: Any) -> bool:
    """Return whether every array holds concrete data that may be inspected.

    Dask arrays, JAX tracers (inside ``jit``/``grad``/``vmap``), tensors being
    traced by ``torch.compile`` and TensorFlow graph tensors (``tf.function``)
    are not eager: inspecting them would compute a
    graph or break tracing, so data validation skips them.
    """
    for x in arrays:
        if x is None:
            continue
        if array_api_compat.is_jax_array(x):
            if isinstance(x, sys.modules["jax"].core.Tracer):
                return False
        elif array_api_compat.is_torch_array(x):
            torch = sys.modules["torch"]
            if torch.compiler.is_compiling() or _is_functorch_wrapped(torch, x):
                return False
        elif _is_tensorflow(x):
            if sys.modules["tensorflow"].is_symbolic_tensor(x):  # inside tf.function
                return False
        elif array_api_compat.is_lazy_array(x):
            return False
    return True


def _is_functorch_wrapped(torch: Any, x: Any) -> bool:
    """Whether ``x`` is a ``torch.func`` (grad/vmap) wrapper, whose values cannot be read."""
    # A private helper of PyTorch's: if a release removes it, assume a plain tensor.
    check = getattr(getattr(torch._C, "_functorch", None), "is_functorch_wrapped_tensor", None)
    return bool(check(x)) if check is not None else False
