"""Settings: epsilon and threads (process-wide), data validation and fast paths (context-scoped).

``set_epsilon`` changes the fuzz factor for the whole process, as Keras's does;
``set_num_threads`` caps the threads of the compiled kernels, as NumPy's and
PyTorch's thread settings do.
Validation and fast paths live in :class:`contextvars.ContextVar` objects set by
``with`` blocks: a block changes them for the current thread or task only, and
the previous value is restored on exit even when the block raises.

The getters read the ContextVar only while some block is open (in any thread);
otherwise they return the default from a plain module global. ``torch.compile``
cannot trace ``ContextVar.get`` (a graph break in every loss), but it traces a
global, so a compiled loss outside any block is one graph.
"""

from __future__ import annotations

import contextlib
import os
import threading
import warnings
from collections.abc import Iterator
from contextvars import ContextVar
from typing import Literal

__all__ = [
    "ValidationMode",
    "epsilon",
    "fast_paths",
    "fast_paths_enabled",
    "get_num_threads",
    "set_epsilon",
    "set_num_threads",
    "validation",
    "validation_mode",
]

ValidationMode = Literal["raise", "warn", "off"]
VALIDATION_MODES: tuple[str, ...] = ("raise", "warn", "off")

# Keras's fuzz factor (keras.config.epsilon()), read at call time as Keras does. It is
# process-wide, as in Keras: a value set in the main thread must reach data-loader and
# worker threads (a ContextVar would leave new threads at the default).
_EPSILON = 1e-7
_NUM_THREADS: int | None = None  # None: not set yet (PROBLOSS_NUM_THREADS, else the usable cores)
_VALIDATION: ContextVar[str] = ContextVar("probloss_validation", default="raise")
_FAST_PATHS: ContextVar[bool] = ContextVar("probloss_fast_paths", default=True)
# Open `validation` / `fast_paths` blocks, over all threads (see the module docstring).
_OPEN_VALIDATION_BLOCKS = 0
_OPEN_FAST_PATH_BLOCKS = 0
_BLOCKS_LOCK = threading.Lock()


@contextlib.contextmanager
def _counted(name: str) -> Iterator[None]:
    """Count an open block in the module global ``name`` while it runs."""
    with _BLOCKS_LOCK:
        globals()[name] += 1
    try:
        yield
    finally:
        with _BLOCKS_LOCK:
            globals()[name] -= 1


def epsilon() -> float:
    """Return the fuzz factor used to clip probabilities (Keras's ``epsilon()``).

    Examples:
        >>> import probloss
        >>> probloss.epsilon()
        1e-07
    """
    return _EPSILON


def set_epsilon(value: float) -> None:
    """Set the fuzz factor for the whole process, as ``keras.config.set_epsilon``.

    Args:
        value: a float in ``(0, 0.5)``.

    Raises:
        ValueError: if ``value`` is outside ``(0, 0.5)``.

    Examples:
        >>> import probloss
        >>> probloss.set_epsilon(1e-3)
        >>> float(probloss.binary_crossentropy([1.0], [0.0])).__round__(4)  # -log(1e-3)
        6.9078
        >>> probloss.set_epsilon(1e-7)  # back to Keras's default
    """
    value = float(value)
    if not 0.0 < value < 0.5:
        msg = f"Invalid value for argument `epsilon`. Expected a float in (0, 0.5). Received: epsilon={value!r}"
        raise ValueError(msg)
    global _EPSILON  # a process-wide setting, as Keras's
    _EPSILON = value


def _usable_cores() -> int:
    """The cores this process may run on (its CPU affinity where the OS has one)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # macOS, Windows
        return max(1, os.cpu_count() or 1)


def _threads_from_environment() -> int:
    text = os.environ.get("PROBLOSS_NUM_THREADS", "").strip()
    if text:
        try:
            value = int(text)
        except ValueError:
            value = 0
        if value >= 1:
            return value
        warnings.warn(f"PROBLOSS_NUM_THREADS={text!r} is not a positive integer; using every usable core.",
                      RuntimeWarning, stacklevel=3)
    return _usable_cores()


def get_num_threads() -> int:
    """Return the most threads a compiled kernel uses for one call.

    The default is ``PROBLOSS_NUM_THREADS`` from the environment if set, else
    the number of cores available to the process. Results never depend on it:
    the kernels split the work into fixed blocks, whatever the thread count.

    Examples:
        >>> import probloss
        >>> probloss.get_num_threads() >= 1
        True
    """
    global _NUM_THREADS  # process-wide, resolved on first use
    if _NUM_THREADS is None:
        _NUM_THREADS = _threads_from_environment()
    return _NUM_THREADS


def set_num_threads(n: int | None) -> None:
    """Cap the threads of the compiled kernels for the whole process.

    Args:
        n: a positive int, or None to go back to the default
            (``PROBLOSS_NUM_THREADS``, else every usable core).

    Raises:
        ValueError: if ``n`` is not a positive integer.

    Examples:
        >>> import probloss
        >>> probloss.set_num_threads(1)
        >>> probloss.get_num_threads()
        1
        >>> probloss.set_num_threads(None)  # back to the default
    """
    global _NUM_THREADS  # process-wide, as NumPy's and PyTorch's thread settings
    if n is None:
        _NUM_THREADS = None
        return
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        msg = f"`n` must be a positive int or None. Received: n={n!r}"
        raise ValueError(msg)
    _NUM_THREADS = n


def check_validation_mode(mode: object) -> str:
    """Return ``mode`` if it is a known validation mode, else raise ``ValueError``."""
    if mode not in VALIDATION_MODES:
        msg = (
            "Invalid value for argument `validate`. Expected one of "
            f"{VALIDATION_MODES}. Received: validate={mode!r}"
        )
        raise ValueError(msg)
    return str(mode)


def validation_mode() -> str:
    """Return the data-validation mode in force: ``"raise"``, ``"warn"`` or ``"off"``."""
    return _VALIDATION.get() if _OPEN_VALIDATION_BLOCKS else "raise"


@contextlib.contextmanager
def validation(mode: ValidationMode) -> Iterator[None]:
    """Set the default data-validation mode inside a ``with`` block.

    An explicit ``validate=`` argument on a function or loss object still wins.

    Args:
        mode: ``"raise"`` (the default outside any block), ``"warn"`` or ``"off"``.

    Examples:
        >>> import probloss
        >>> with probloss.validation("off"):  # 1.5 is not a probability, but unchecked
        ...     float(probloss.binary_crossentropy([0.0], [1.5])).__round__(3)
        15.942
    """
    token = _VALIDATION.set(check_validation_mode(mode))
    try:
        with _counted("_OPEN_VALIDATION_BLOCKS"):
            yield
    finally:
        _VALIDATION.reset(token)


def fast_paths_enabled() -> bool:
    """Return whether backend fast paths may replace the generic kernels."""
    return _FAST_PATHS.get() if _OPEN_FAST_PATH_BLOCKS else True


@contextlib.contextmanager
def fast_paths(enabled: bool) -> Iterator[None]:
    """Enable or disable backend fast paths inside a ``with`` block.

    ``with probloss.fast_paths(False):`` forces the generic array-API kernels,
    which is useful for debugging and for parity tests.

    Examples:
        >>> import numpy as np
        >>> import probloss
        >>> with probloss.fast_paths(False):  # the generic kernel, same value
        ...     probloss.sparse_categorical_crossentropy(np.array([1]), np.array([[0.5, 0.5]])).round(4)
        array([0.6931])
    """
    token = _FAST_PATHS.set(bool(enabled))
    try:
        with _counted("_OPEN_FAST_PATH_BLOCKS"):
            yield
    finally:
        _FAST_PATHS.reset(token)
