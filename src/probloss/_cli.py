"""The ``probloss`` command: ``demo`` and ``list``."""

from __future__ import annotations

import argparse
import inspect
import sys
from collections.abc import Sequence

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


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``probloss`` command line and return its exit status."""
    parser = argparse.ArgumentParser(prog="probloss", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("demo", help="compute every documented Keras example and compare")
    commands.add_parser("list", help="list the losses, functions and aliases")
    arguments = parser.parse_args(argv)
    handlers = {"demo": _demo, "list": _list}
    return handlers[arguments.command]()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
