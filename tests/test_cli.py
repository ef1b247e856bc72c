"""The ``probloss`` command: ``demo`` reproduces the documented examples, ``list`` the names.

The demo's documented values come from the seed pages (src/probloss/_seed_examples.py);
this test checks that the command reports them all reproduced, that it fails when one
is not (so its check can fail), and that ``list`` shows every name and alias.
"""

from __future__ import annotations

import dataclasses
import subprocess
import sys

import pytest

from probloss import _seed_examples
from probloss._cli import main


def test_demo_reproduces_every_documented_example(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo"]) == 0
    out = capsys.readouterr().out
    count = len(_seed_examples.EXAMPLES)
    assert f"{count} of {count} documented examples reproduced." in out
    assert " NO" not in out


def test_demo_fails_on_a_wrong_documented_value(monkeypatch: pytest.MonkeyPatch,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    first = _seed_examples.EXAMPLES[0]
    wrong = dataclasses.replace(first, documented=(0.916, 0.800))  # 0.714 on the page
    monkeypatch.setattr(_seed_examples, "EXAMPLES", (wrong, *_seed_examples.EXAMPLES[1:]))
    assert main(["demo"]) == 1
    assert " NO" in capsys.readouterr().out


def test_list_shows_names_and_aliases(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for name in ("bce", "BCE", "kld", "KLD", "kullback_leibler_divergence", "BinaryCrossentropy",
                 "sparse_categorical_crossentropy", "KLDivergence", "Poisson"):
        assert any(line.split()[0] == name for line in out.splitlines()), name
    assert "alias of kl_divergence" in out


def test_module_entry_point_and_usage_error() -> None:
    ok = subprocess.run([sys.executable, "-m", "probloss", "list"], capture_output=True, text=True,
                        check=False, timeout=60)
    assert ok.returncode == 0
    assert "binary_crossentropy" in ok.stdout
    bad = subprocess.run([sys.executable, "-m", "probloss", "frobnicate"], capture_output=True,
                         text=True, check=False, timeout=60)
    assert bad.returncode == 2
    assert "invalid choice" in bad.stderr
