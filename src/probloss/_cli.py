"""The ``probloss`` command: ``score``, ``demo``, ``list``, ``describe``, ``backends``.

Errors in the user's input (files, columns, labels, options) print one line,
``probloss: error: ...``, and exit with status 2, as argparse does for usage
errors; never a traceback.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import inspect
import json
import os
import sys
from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["main"]


def _demo() -> int:
    from ._seed_examples import EXAMPLES

    print(f"{'example':<44} {'documented':<18} {'probloss':<26} match")
    failures = 0
    for example in EXAMPLES:
        value = np.atleast_1d(np.asarray(example.compute(), dtype=np.float64))
        documented = np.asarray(example.documented)
        # The pages print 3 or 4 decimals, some rounded and some truncated (0.2436
        # is printed 0.243): agree within one unit of the last printed decimal.
        ok = value.shape == documented.shape and bool(
            np.all(np.abs(value - documented) < 10.0 ** -example.decimals))
        failures += not ok
        shown = ", ".join(f"{v:.6f}" for v in value)
        given = ", ".join(f"{d:g}" for d in documented)
        print(f"{example.source:<44} {given:<18} {shown:<26} {'yes' if ok else 'NO'}")
    print(f"\n{len(EXAMPLES) - failures} of {len(EXAMPLES)} documented examples reproduced.")
    return 1 if failures else 0


def _list() -> int:
    from ._registry import ALIASES, OBJECTS

    for name, obj in sorted(OBJECTS.items(), key=lambda item: item[0].lower()):
        if name in ALIASES:
            print(f"{name:<34} alias of {ALIASES[name]}")
        else:
            kind = "class" if inspect.isclass(obj) else "function"
            print(f"{name:<34} {kind}{_plain_signature(obj)}")
    return 0


def _plain_signature(obj: object) -> inspect.Signature:
    """The signature as a user writes the call: names and defaults, no annotations."""
    signature = inspect.signature(obj)  # type: ignore[arg-type]
    parameters = [p.replace(annotation=p.empty) for p in signature.parameters.values()]
    return signature.replace(parameters=parameters, return_annotation=signature.empty)


def _describe(name: str) -> int:
    from ._registry import ALIASES, OBJECTS

    obj = OBJECTS.get(name)
    if obj is None:
        return _fail(f"unknown loss {name!r}; `probloss list` shows the names")
    if name in ALIASES:
        print(f"{name}: alias of {ALIASES[name]}")
    kind = "class" if inspect.isclass(obj) else "function"
    print(f"{obj.__name__}{_plain_signature(obj)}  ({kind})")
    summary = (inspect.getdoc(obj) or "").split("\n\n")[0]
    print(f"\n{summary}")
    if inspect.isclass(obj) and obj.__name__ != "LossFunctionWrapper":
        print("\ndefault config:")
        print(json.dumps(obj().get_config(), indent=2))
    return 0


def _backends() -> int:
    from . import _native
    from ._config import get_num_threads

    print(f"{'array library':<18} {'version':<14} status")
    for module, distribution in (("numpy", "numpy"), ("torch", "torch"), ("jax", "jax"),
                                 ("dask", "dask"), ("cupy", "cupy"),
                                 ("array_api_strict", "array-api-strict"),
                                 ("tensorflow", "tensorflow")):
        found = importlib.util.find_spec(module) is not None
        version = _version(distribution) if found else "-"
        print(f"{module:<18} {version:<14} {'installed' if found else 'not installed'}")
    print()
    for family, module in (("binary (BCE, BFCE, Poisson, KL)", _native.binary),
                           ("softmax (CCE, CFCE, sparse CE)", _native.softmax)):
        state = "compiled kernels loaded" if module is not None else f"unavailable ({_native.load_error})"
        print(f"NumPy fast path, {family}: {state}")
    print("PyTorch and JAX fast paths: used when the library is imported (see docs/backends.md)")
    print(f"threads per call: {get_num_threads()} (PROBLOSS_NUM_THREADS or probloss.set_num_threads)")
    return 0


def _version(distribution: str) -> str:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return "?"


def _fail(message: str) -> int:
    print(f"probloss: error: {message}", file=sys.stderr)
    return 2


def _score(arguments: argparse.Namespace) -> int:
    from ._readers import InputError
    from ._score import ScoreResult

    try:
        result = _run_score(arguments)
    except InputError as error:
        return _fail(str(error))
    except MemoryError:
        return _fail("out of memory; lower --chunk-mb")
    assert isinstance(result, ScoreResult)
    if arguments.json:
        print(json.dumps(result.as_dict()))
        return 0
    if "scored" in result.extra:
        print(f"scored: {result.extra['scored']}\n")
    print(f"{'metric':<10} {result.name}")
    print(f"{'loss':<10} {result.loss:.6f}")
    print(f"{'count':<10} {result.count:g}")
    print(f"{'rows':<10} {result.rows}")
    if result.per_class:
        print(f"\n{'class':>5} {'count':>10} {'mean loss':>12}")
        for row in result.per_class:
            print(f"{row['class']:>5} {row['count']:>10g} {row['loss']:>12.6f}")
    return 0


def _run_score(arguments: argparse.Namespace) -> Any:
    from ._readers import InputError, open_source
    from ._score import DEFAULT_CHUNK_BYTES, make_metric, progress_bar, score

    if arguments.demo:
        if arguments.y_true or arguments.y_pred:
            msg = "--demo scores the bundled data set; give no files with it"
            raise InputError(msg)
        path = os.path.join(os.path.dirname(__file__), "data", "digits.npz")
        with __import__("numpy").load(path, allow_pickle=False) as data:
            described = str(data["description"])
        if arguments.loss is None:
            arguments.loss = "sparse_categorical_crossentropy"
        y_true = open_source(f"{path}:y_true")
        y_pred = open_source(f"{path}:{'logits' if arguments.from_logits else 'y_pred'}")
        weight = None
    else:
        if not (arguments.y_true and arguments.y_pred):
            msg = "give Y_TRUE and Y_PRED files, or --demo"
            raise InputError(msg)
        if arguments.loss is None:
            msg = "--loss NAME is required (see `probloss list`)"
            raise InputError(msg)
        y_true, y_pred = open_source(arguments.y_true), open_source(arguments.y_pred)
        weight = open_source(arguments.sample_weight) if arguments.sample_weight else None
    metric = make_metric(arguments.loss, from_logits=arguments.from_logits,
                         label_smoothing=arguments.label_smoothing, ignore_class=arguments.ignore_class)
    if arguments.dask:
        from ._dask_score import score_with_dask

        result = score_with_dask(metric, y_true, y_pred, weight, scheduler=arguments.scheduler,
                                 chunk_bytes=int(arguments.chunk_mb * 2**20))
    else:
        advance, stop = progress_bar(y_pred.rows, f"scoring {y_pred.label}")
        try:
            result = score(metric, y_true, y_pred, weight, progress=advance,
                           chunk_bytes=int(arguments.chunk_mb * 2**20) or DEFAULT_CHUNK_BYTES)
        finally:
            stop()
    if arguments.demo:
        result.extra["scored"] = (f"{described}; {result.rows} predictions, loss "
                                  f"{result.name}" + (" from the logits" if arguments.from_logits else ""))
    return result


def _score_parser(commands: Any) -> None:
    score = commands.add_parser(
        "score", help="score prediction files (or --demo) with a loss, streaming in chunks",
        description="Compute a loss over prediction files of any size, read in bounded chunks. "
                    "Files: .npy, .npz (FILE:KEY), .csv (FILE:COLUMN[,COLUMN...] with a header), "
                    ".parquet (FILE:COLUMN[,COLUMN...], or one list column; needs pyarrow).")
    score.add_argument("y_true", nargs="?", metavar="Y_TRUE", help="the labels")
    score.add_argument("y_pred", nargs="?", metavar="Y_PRED", help="the predictions")
    score.add_argument("--loss", help="a loss name, as `probloss list` shows (default for --demo: "
                                      "sparse_categorical_crossentropy)")
    score.add_argument("--from-logits", action="store_true", help="Y_PRED holds logits")
    score.add_argument("--label-smoothing", type=float, default=None, metavar="X")
    score.add_argument("--ignore-class", type=int, default=None, metavar="K",
                       help="sparse labels equal to K are left out")
    score.add_argument("--sample-weight", metavar="FILE", help="one weight per row")
    score.add_argument("--json", action="store_true", help="print one JSON object")
    score.add_argument("--demo", action="store_true",
                       help="score the bundled data set: a classifier's predictions on scikit-learn's digits")
    score.add_argument("--dask", action="store_true", help="compute through Dask")
    score.add_argument("--scheduler", metavar="ADDRESS",
                       help="with --dask: a dask.distributed scheduler address (default: local threads)")
    score.add_argument("--chunk-mb", type=float, default=32.0, metavar="MB",
                       help="rows read at a time, in MB of the widest file (default 32)")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``probloss`` command line and return its exit status."""
    parser = argparse.ArgumentParser(prog="probloss", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    _score_parser(commands)
    commands.add_parser("demo", help="compute every documented Keras example and compare")
    commands.add_parser("list", help="list the losses, functions and aliases")
    describe = commands.add_parser("describe", help="a loss's signature and default config")
    describe.add_argument("name")
    commands.add_parser("backends", help="array libraries found, compiled fast paths, threads")
    arguments = parser.parse_args(argv)
    if arguments.command == "score":
        return _score(arguments)
    if arguments.command == "describe":
        return _describe(arguments.name)
    handlers = {"demo": _demo, "list": _list, "backends": _backends}
    return handlers[arguments.command]()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
