"""What the compat modules share: inputs as arrays of one library, dtypes, reductions."""

from __future__ import annotations

from typing import Any

from .._namespace import FLOATX, as_arrays, compute_dtype, is_floating, resolve_dtype

Array = Any

__all__ = ["Prepared", "legacy_reduction", "prepare", "reduce"]


class Prepared:
    """The inputs of one call: the namespace, the arrays (floats in the compute dtype), the output dtype."""

    def __init__(self, named: dict[str, Any], *, floats: tuple[str, ...], reference: str) -> None:
        xp, arrays = as_arrays(named)
        self.xp = xp
        ref = arrays[reference]
        self.out_dtype = ref.dtype if is_floating(xp, ref.dtype) else resolve_dtype(xp, FLOATX)
        work = compute_dtype(xp, self.out_dtype)
        for name in floats:
            if arrays.get(name) is not None:
                arrays[name] = xp.astype(arrays[name], work, copy=False)
        self.arrays = arrays

    def __getitem__(self, name: str) -> Array:
        return self.arrays[name]

    def out(self, result: Array) -> Array:
        """Round the result once to the output dtype."""
        return self.xp.astype(result, self.out_dtype, copy=False)


def prepare(named: dict[str, Any], *, floats: tuple[str, ...], reference: str) -> Prepared:
    """Resolve one namespace for ``named`` and cast the ``floats`` to the compute dtype of ``reference``."""
    return Prepared(named, floats=floats, reference=reference)


def legacy_reduction(size_average: bool | None, reduce_: bool | None, reduction: str) -> str:
    """PyTorch's reading of its deprecated ``size_average`` and ``reduce`` arguments."""
    if size_average is None and reduce_ is None:
        return reduction
    size_average = True if size_average is None else size_average
    reduce_ = True if reduce_ is None else reduce_
    if size_average and reduce_:
        return "mean"
    return "sum" if reduce_ else "none"


def reduce(values: Array, reduction: str, *, xp: Any, allowed: tuple[str, ...] = ("none", "mean", "sum")) -> Array:
    """Apply PyTorch's ``"none"``, ``"mean"`` (over all elements) or ``"sum"``."""
    if reduction not in allowed:
        msg = f"{reduction} is not a valid value for reduction"
        raise ValueError(msg)
    if reduction == "none":
        return values
    if reduction == "sum":
        return xp.sum(values)
    return xp.mean(values)
