"""A griffe extension for the documentation site: Sphinx roles in docstrings become Markdown.

The docstrings name other objects with Sphinx roles (``:func:`probloss.get```,
``:class:`~probloss.Loss```), which Markdown would show as typed. This extension
(``extensions:`` in mkdocs.yml's mkdocstrings options) rewrites each into a code span,
linked to its entry in the API reference when it names a public probloss object by its
full path (``probloss.X`` or ``probloss.X.y``, no private part).
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


class SphinxRoles(griffe.Extension):
    """Rewrites the Sphinx roles of every docstring in the loaded package."""

    def on_package(self, *, pkg: griffe.Module, **kwargs: Any) -> None:
        seen: set[int] = set()

        def visit(obj: griffe.Object) -> None:
            if id(obj) in seen:
                return
            seen.add(id(obj))
            if obj.docstring is not None:
                obj.docstring.value = rewrite_roles(obj.docstring.value)
            for member in obj.members.values():
                if not member.is_alias:
                    visit(member)

        visit(pkg)
