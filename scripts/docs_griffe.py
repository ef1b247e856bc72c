"""A griffe extension for the documentation site (``extensions:`` in mkdocs.yml's mkdocstrings options).

It changes what the API reference shows, not the code:

- Sphinx roles in docstrings (``:func:`probloss.get```, ``:class:`~probloss.Loss```),
  which Markdown would show as typed, become code spans, linked to their entry in the
  reference when they name a public probloss object by its full path (``probloss.X`` or
  ``probloss.X.y``, no private part);
- a parameter default that names a private module constant holding a literal
  (``reduction=_SOBS``) shows the literal (``"sum_over_batch_size"``).
"""

from __future__ import annotations

import re
from typing import Any

import griffe

_ROLE = re.compile(r":(?:func|class|meth|mod|attr|data|obj|exc):`(~?)([^`]+)`")


def _markdown(match: re.Match[str]) -> str:
    short, target = match.group(1), match.group(2)
    text = target.rsplit(".", 1)[-1] if short else target
    parts = target.split(".")
    if parts[0] == "probloss" and len(parts) > 1 and not any(p.startswith("_") for p in parts):
        return f"[`{text}`][{target}]"
    return f"`{text}`"


def rewrite_roles(text: str) -> str:
    """``text`` with every Sphinx role replaced by a Markdown code span or reference."""
    return _ROLE.sub(_markdown, text)


def _literal_default(function: griffe.Function, default: Any) -> Any:
    """The literal a private module constant named as a default holds, else ``default``."""
    if not isinstance(default, griffe.ExprName) or not default.name.startswith("_"):
        return default
    constant = function.module.members.get(default.name)
    if constant is None or constant.is_alias or not constant.is_attribute:
        return default
    value = constant.value
    text = str(value) if value is not None else ""
    return text if text[:1] in "\"'0123456789-" and text else default


class ReferenceView(griffe.Extension):
    """Rewrites Sphinx roles in every docstring and private-constant defaults in every signature."""

    def on_package(self, *, pkg: griffe.Module, **kwargs: Any) -> None:
        seen: set[int] = set()

        def visit(obj: griffe.Object) -> None:
            if id(obj) in seen:
                return
            seen.add(id(obj))
            if obj.docstring is not None:
                obj.docstring.value = rewrite_roles(obj.docstring.value)
            if obj.is_function:
                for parameter in obj.parameters:
                    parameter.default = _literal_default(obj, parameter.default)
            for member in obj.members.values():
                if not member.is_alias:
                    visit(member)

        visit(pkg)
