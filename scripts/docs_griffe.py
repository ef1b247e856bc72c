"""A griffe extension for the documentation site (``extensions:`` in mkdocs.yml's mkdocstrings options).

It changes what the API reference shows, not the code:

- Sphinx roles in docstrings (``:func:`probloss.get```, ``:class:`~probloss.Loss```),
  which Markdown would show as typed, become code spans, linked to their entry in the
  reference when they name a public probloss object by its full path (``probloss.X`` or
  ``probloss.X.y``, no private part);
- an ``Args:`` entry that documents several parameters at once (``reduction, name,
  dtype, validate: see probloss.Loss.``), which griffe's Google parser would take for one
  unknown parameter, becomes one entry per parameter with the same text;
- a parameter default that names a private module constant holding a literal
  (``reduction=_SOBS``) shows the literal (``"sum_over_batch_size"``).
"""

from __future__ import annotations

import re
from typing import Any

import griffe

_GROUPED_ARGS = re.compile(r"^(\s+)(\w+(?:, \w+)+): (.*)$")
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


def split_grouped_args(text: str) -> str:
    """``text`` with each ``a, b: text`` entry of its ``Args:`` sections split into ``a: text`` and ``b: text``."""
    lines = text.split("\n")
    out: list[str] = []
    section_indent: int | None = None  # the indentation of the current "Args:" header
    for line in lines:
        stripped = line.strip()
        indent = len(line) - len(line.lstrip())
        if stripped in ("Args:", "Arguments:", "Parameters:"):
            section_indent = indent
        elif stripped and section_indent is not None and indent <= section_indent:
            section_indent = None
        match = _GROUPED_ARGS.match(line) if section_indent is not None else None
        if match and len(match.group(1)) > section_indent:
            lead, names, rest = match.groups()
            out += [f"{lead}{name}: {rest}" for name in names.split(", ")]
        else:
            out.append(line)
    return "\n".join(out)


class ReferenceView(griffe.Extension):
    """Rewrites the docstrings and signatures of the loaded package as the module docstring says."""

    def on_package(self, *, pkg: griffe.Module, **kwargs: Any) -> None:
        seen: set[int] = set()

        def visit(obj: griffe.Object) -> None:
            if id(obj) in seen:
                return
            seen.add(id(obj))
            if obj.docstring is not None:
                obj.docstring.value = split_grouped_args(rewrite_roles(obj.docstring.value))
            if obj.is_function:
                for parameter in obj.parameters:
                    parameter.default = _literal_default(obj, parameter.default)
            for member in obj.members.values():
                if not member.is_alias:
                    visit(member)

        visit(pkg)
