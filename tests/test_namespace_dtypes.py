"""The NumPy fast paths of ``dtype_name``, ``is_floating`` and ``is_integer`` against the general ones.

``probloss._namespace`` answers for NumPy number dtypes from the dtype's kind and
name (less Python per call); these tests compare every NumPy number dtype, in both
byte orders, with what the general code (the dtype's string, ``isdtype``) gives.
"""

from __future__ import annotations

import array_api_compat.numpy as xp
import numpy as np
import pytest

from probloss._namespace import dtype_name, is_floating, is_integer

CODES = "?bhilqBHILQefdgFDG"


def _string_name(dtype: np.dtype) -> str:
    """The general path of dtype_name: the dtype's string with the prefixes and quotes removed."""
    name = str(dtype)
    for prefix in ("dtype(", "<class 'numpy."):
        name = name.removeprefix(prefix)
    return name.strip("')>\"")


@pytest.mark.parametrize("code", CODES)
def test_native_dtype_names_are_the_strings(code: str) -> None:
    dtype = np.dtype(code)
    assert dtype_name(dtype) == _string_name(dtype) == str(dtype)
    assert dtype_name(dtype) == dtype_name(dtype)  # the cached answer is the same


@pytest.mark.parametrize("code", CODES)
def test_foreign_byte_order_keeps_the_general_path(code: str) -> None:
    dtype = np.dtype(code).newbyteorder("S")
    assert dtype_name(dtype) == _string_name(dtype)


@pytest.mark.parametrize("code", CODES)
@pytest.mark.parametrize("order", ["=", "S"])
def test_kinds_agree_with_isdtype(code: str, order: str) -> None:
    dtype = np.dtype(code).newbyteorder(order)
    assert is_floating(xp, dtype) == bool(np.isdtype(dtype, "real floating"))
    assert is_integer(xp, dtype) == bool(np.isdtype(dtype, "integral"))


def test_dtype_classes_and_other_libraries_take_the_general_path() -> None:
    assert dtype_name(np.float32) == "float32"  # the scalar type, not a dtype instance
    assert is_floating(xp, np.float32)
    assert not is_integer(xp, np.float32)
    assert dtype_name(np.dtype([("a", "f4")])) == _string_name(np.dtype([("a", "f4")]))
    assert not is_floating(xp, np.dtype([("a", "f4")]))
