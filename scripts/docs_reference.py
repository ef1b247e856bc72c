"""The API reference pages of the documentation site, generated from ``__all__``.

MkDocs loads this file as a hook (``hooks:`` in mkdocs.yml): at every build it
imports probloss, walks ``probloss.__all__`` and the ``__all__`` of every public
submodule found there (recursively), and adds one page per module under
``reference/`` with a mkdocstrings ``:::`` block per public name, so a name added
to an ``__all__`` appears in the reference without editing it by hand. The pages
are listed under the nav entry "API reference".

On a page, the names are grouped by kind (classes, functions, other objects,
modules); a second name for an object that the same ``__all__`` already lists
(``bce`` for ``binary_crossentropy``) gets a short entry that links to it. A
public name whose object has no docstring is an error: ``mkdocs build --strict``
fails on it (tests/test_docs.py checks the same thing with griffe).
"""

from __future__ import annotations

import importlib
import inspect
import logging
import types
from dataclasses import dataclass, field
from typing import Any

ROOT_MODULE = "probloss"
NAV_TITLE = "API reference"
PAGE_DIR = "reference"

log = logging.getLogger("mkdocs.plugins.probloss_reference")


@dataclass
class Entry:
    """One public name of a module."""

    name: str
    kind: str  # "class", "function", "object", "module", "alias", "constant"
    target: str = ""  # for an alias: the name it repeats; for a module: its dotted path


@dataclass
class ModulePage:
    """The reference page of one public module."""

    module: str
    entries: list[Entry] = field(default_factory=list)

    @property
    def path(self) -> str:
        return f"{PAGE_DIR}/{self.module}.md"


_KIND_TITLES = (
    ("class", "Classes"),
    ("function", "Functions"),
    ("object", "Other objects"),
    ("constant", "Constants"),
    ("alias", "Aliases"),
    ("module", "Modules"),
)


def _kind(obj: Any) -> str:
    if isinstance(obj, types.ModuleType):
        return "module"
    if inspect.isclass(obj):
        return "class"
    if callable(obj):
        return "function"
    if isinstance(obj, (str, int, float, bool, tuple)):
        return "constant"
    return "object"


def _canonical_names(module: types.ModuleType, names: list[str]) -> dict[int, str]:
    """For each object listed more than once, the name to document it under.

    That is the name equal to the object's own ``__name__`` when the module lists it,
    else the first such name in ``__all__``'s order.
    """
    by_id: dict[int, list[str]] = {}
    for name in names:
        by_id.setdefault(id(getattr(module, name)), []).append(name)
    canonical = {}
    for key, group in by_id.items():
        own = getattr(getattr(module, group[0]), "__name__", None)
        canonical[key] = own if own in group else group[0]
    return canonical


def module_pages(root: str = ROOT_MODULE) -> list[ModulePage]:
    """One page per public module: ``root`` and every submodule an ``__all__`` lists, depth first."""
    pages: list[ModulePage] = []
    seen: set[str] = set()

    def visit(dotted: str) -> None:
        if dotted in seen:
            return
        seen.add(dotted)
        module = importlib.import_module(dotted)
        names = list(getattr(module, "__all__", []))
        canonical = _canonical_names(module, names)
        page = ModulePage(dotted)
        pages.append(page)
        submodules = []
        for name in names:
            obj = getattr(module, name)
            kind = _kind(obj)
            if kind == "module":
                # A module listed in __all__ is documented on its own page when it is ours.
                target = obj.__name__
                page.entries.append(Entry(name, kind, target))
                if target.startswith(f"{root}."):
                    submodules.append(target)
                continue
            first = canonical[id(obj)]
            if kind in ("class", "function", "object") and first != name:
                page.entries.append(Entry(name, "alias", first))
            else:
                page.entries.append(Entry(name, kind))
        for target in submodules:
            visit(target)

    visit(root)
    return pages


def _heading_id(module: str, name: str) -> str:
    return f"{module}.{name}"


def _heading(name: str, anchor: str) -> str:
    """A level-3 heading that ``#anchor`` links to.

    attr_list gives the heading the id, except for a dunder name (``__version__``), whose
    underscores Markdown would read as bold inside ``{...}``: that heading keeps its own id
    and an empty ``<a id=...>`` carries the anchor.
    """
    if "__" in anchor:
        return f'### `{name}`\n\n<a id="{anchor}"></a>'
    return f"### `{name}` {{ #{anchor} }}"


def render(page: ModulePage, pages: list[ModulePage]) -> str:
    """The Markdown of one reference page."""
    module = importlib.import_module(page.module)
    paths = {p.module: p.path for p in pages}
    summary = inspect.getdoc(module) or ""
    lines = [f"# `{page.module}`", ""]
    first_paragraph = summary.split("\n\n", 1)[0].strip()
    if first_paragraph:
        lines += [first_paragraph, ""]
    lines += [f"Every public name of `{page.module}` (its `__all__`), generated from the docstrings.", ""]
    for kind, title in _KIND_TITLES:
        entries = [e for e in page.entries if e.kind == kind]
        if not entries:
            continue
        lines += [f"## {title}", ""]
        for entry in entries:
            anchor = _heading_id(page.module, entry.name)
            if kind in ("class", "function", "object"):
                lines += [f"::: {anchor}", ""]
            elif kind == "alias":
                target = _heading_id(page.module, entry.target)
                lines += [_heading(entry.name, anchor), "",
                          f"The same object as [`{entry.target}`](#{target}).", ""]
            elif kind == "constant":
                value = getattr(module, entry.name)
                lines += [_heading(entry.name, anchor), "", f"`{value!r}`", ""]
            else:  # module
                if entry.target in paths:
                    link = _relative_link(page.path, paths[entry.target])
                    text = f"[`{entry.target}`]({link})"
                else:
                    text = f"`{entry.target}`"
                doc = (inspect.getdoc(importlib.import_module(entry.target)) or "").split("\n\n", 1)[0]
                lines += [_heading(entry.name, anchor), "", f"{text}: {doc}".rstrip(": "), ""]
    return "\n".join(lines)


def _relative_link(src: str, dst: str) -> str:
    # Every reference page sits in the same folder.
    assert src.rsplit("/", 1)[0] == dst.rsplit("/", 1)[0]
    return dst.rsplit("/", 1)[1]


def undocumented(pages: list[ModulePage]) -> list[str]:
    """Public classes, functions and objects without a docstring of their own or their class's."""
    missing = []
    for page in pages:
        module = importlib.import_module(page.module)
        for entry in page.entries:
            if entry.kind in ("class", "function", "object") and not inspect.getdoc(getattr(module, entry.name)):
                missing.append(f"{page.module}.{entry.name}")
    return missing


# ------------------------------------------------------------------ MkDocs hooks

_pages: list[ModulePage] = []


def on_config(config: Any) -> Any:
    """Fill the nav entry "API reference" with the generated pages."""
    global _pages
    _pages = module_pages()
    for name in undocumented(_pages):
        log.warning("public name without a docstring: %s", name)
    nav = config.nav or []
    for item in nav:
        if isinstance(item, dict) and NAV_TITLE in item:
            item[NAV_TITLE] = [{f"{p.module}": p.path} for p in _pages]
            break
    else:
        log.warning("mkdocs.yml's nav has no %r entry for the generated reference", NAV_TITLE)
    return config


def on_files(files: Any, config: Any) -> Any:
    """Add the generated pages to the site's files."""
    from mkdocs.structure.files import File

    for page in _pages:
        files.append(File.generated(config, page.path, content=render(page, _pages)))
    return files
