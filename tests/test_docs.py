"""The documentation site: its API reference is complete and its examples run.

* The reference that scripts/docs_reference.py generates (the MkDocs hook) lists every
  name of ``probloss.__all__`` and of every public submodule's ``__all__``, each with a
  docstring as mkdocstrings reads it (griffe, statically), so a public name added
  anywhere is documented or this fails.
* Every code example on the site's pages (docs/**/*.md) runs, page by page in one
  namespace, in a fresh working directory: ```python blocks are executed, ```pycon
  blocks are doctests (their printed output is compared), and ```console blocks' ``$
  probloss ...`` commands run the command line's ``main`` in this process and their
  output is compared. A page that imports torch, jax, dask, tensorflow or cupy runs only
  when that backend is selected (PROBLOSS_TEST_BACKENDS); one that imports xgboost,
  lightgbm, keras, pyarrow or distributed only when it is installed. A block preceded by
  ``<!-- docs-test: skip -->`` (or ``<!-- docs-test: skip (why) -->``) is shown, not run:
  a signature sketch, or an example another test runs already.
"""

from __future__ import annotations

import contextlib
import doctest
import importlib
import importlib.util
import io
import re
import shlex
import sys
import types
from pathlib import Path

import pytest
from conftest import library

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
SKIP_MARK = "<!-- docs-test: skip"  # then "-->", or a reason and "-->"
BACKENDS = ("torch", "jax", "dask", "tensorflow", "cupy")  # selected by PROBLOSS_TEST_BACKENDS
OPTIONAL = ("xgboost", "lightgbm", "keras", "pyarrow", "distributed")  # skipped when absent
FENCE = re.compile(r"^```(\w+)[^\n]*\n(.*?)^```[ \t]*$", re.S | re.M)


def _reference_module() -> types.ModuleType:
    spec = importlib.util.spec_from_file_location("docs_reference", ROOT / "scripts" / "docs_reference.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault(spec.name, module)  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def _public_modules() -> dict[str, list[str]]:
    """``probloss`` and every probloss module an ``__all__`` lists, with their ``__all__``, found here."""
    found: dict[str, list[str]] = {}
    todo = ["probloss"]
    while todo:
        name = todo.pop()
        if name in found:
            continue
        module = importlib.import_module(name)
        found[name] = list(module.__all__)
        todo += [value.__name__ for value in vars(module).values()
                 if isinstance(value, types.ModuleType) and value.__name__.startswith("probloss.")
                 and any(getattr(module, n, None) is value for n in module.__all__)]
    return found


def test_reference_lists_every_public_name() -> None:
    ref = _reference_module()
    pages = ref.module_pages()
    generated = {page.module: sorted(entry.name for entry in page.entries) for page in pages}
    expected = {module: sorted(names) for module, names in _public_modules().items()}
    assert generated == expected
    for page in pages:
        text = ref.render(page, pages)
        for entry in page.entries:
            anchor = f"{page.module}.{entry.name}"
            # mkdocstrings renders a `::: path` block; the others are headings with that id.
            assert f"::: {anchor}\n" in text or f"{{ #{anchor} }}" in text or f'<a id="{anchor}">' in text, anchor


def test_every_public_name_has_a_docstring_mkdocstrings_reads() -> None:
    griffe = pytest.importorskip("griffe", reason="the docs extra (pip install -e '.[docs]') is not installed")
    package = griffe.load("probloss", search_paths=[str(ROOT / "src")], resolve_aliases=True,
                          resolve_external=False)
    ref = _reference_module()
    missing = []
    for page in ref.module_pages():
        for entry in page.entries:
            if entry.kind not in ("class", "function", "object"):
                continue
            obj = package[f"{page.module}.{entry.name}".removeprefix("probloss.")]
            if not (obj.docstring and obj.docstring.value.strip()):
                missing.append(f"{page.module}.{entry.name}")
    assert not missing, f"public names without a docstring: {missing}"


# ------------------------------------------------------------------ examples on the pages


def _pages() -> list[Path]:
    return sorted(p for p in DOCS.rglob("*.md") if "screenshots" not in p.parts)


def _blocks(text: str) -> list[tuple[str, str, int]]:
    """The fenced blocks to run: (language, code, line number), in page order."""
    blocks = []
    for match in FENCE.finditer(text):
        before = text[:match.start()].rstrip().rsplit("\n", 1)[-1]
        if before.strip().startswith(SKIP_MARK):
            continue
        blocks.append((match.group(1), match.group(2), text.count("\n", 0, match.start()) + 2))
    return [b for b in blocks if b[0] in ("python", "pycon", "console")]


def _requirements(blocks: list[tuple[str, str, int]]) -> set[str]:
    code = "\n".join(b[1] for b in blocks)
    return {name for name in BACKENDS + OPTIONAL
            if re.search(rf"^\s*(?:>>> )?(?:import|from) {name}\b", code, re.M)}


_CHECKER = doctest.OutputChecker()
_FLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE


def _probloss_command(argv: list[str]) -> tuple[int, str]:
    """Run the ``probloss`` command in this process (as ``python -m probloss``): exit status and output."""
    from probloss._cli import main

    output = io.StringIO()
    with contextlib.redirect_stdout(output), contextlib.redirect_stderr(output):
        try:
            status = main(argv)
        except SystemExit as exit_:  # argparse's usage errors
            status = exit_.code if isinstance(exit_.code, int) else 1
    return status, output.getvalue()


def _run_console(code: str, where: str) -> None:
    commands: list[tuple[str, list[str]]] = []
    for line in code.splitlines():
        if line.startswith("$ "):
            commands.append((line[2:], []))
        elif commands:
            commands[-1][1].append(line)
    for command, expected in commands:
        argv = shlex.split(command)
        assert argv[0] == "probloss", f"{where}: only `probloss` commands run in console blocks: {command}"
        _, got = _probloss_command(argv[1:])
        want = "\n".join(expected).strip() + "\n"
        assert _CHECKER.check_output(want, got.strip() + "\n", _FLAGS), f"{where}: `{command}` printed\n{got}"


@pytest.mark.parametrize("page", _pages(), ids=lambda p: str(p.relative_to(DOCS)))
def test_page_examples_run(page: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blocks = _blocks(page.read_text())
    if not blocks:
        return
    for name in sorted(_requirements(blocks)):
        if name in BACKENDS:
            try:
                library(name)
            except ValueError:  # not a backend of this conftest: run it where installed
                pytest.importorskip(name)
        else:
            pytest.importorskip(name)
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, object] = {"__name__": f"docs_{page.stem}"}
    parser = doctest.DocTestParser()
    for language, code, line in blocks:
        where = f"{page.relative_to(ROOT)}:{line}"
        if language == "python":
            exec(compile(code, where, "exec"), namespace)  # the page's own example code
        elif language == "pycon":
            test = parser.get_doctest(code, namespace, where, str(page), line - 1)
            runner = doctest.DocTestRunner(optionflags=_FLAGS)
            runner.run(test, clear_globs=False)
            namespace.update(test.globs)  # the doctest ran on a copy of the namespace
            assert not runner.failures, f"{where}: {runner.failures} of {runner.tries} examples failed (above)"
        else:
            _run_console(code, where)
