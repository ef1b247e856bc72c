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


# ------------------------------------------------------------------ probloss score

import json  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

RNG = np.random.default_rng(2026)
N, K = 157, 4
EPS = 1e-7


def _sparse_case() -> tuple[np.ndarray, np.ndarray]:
    return RNG.integers(0, K, N), RNG.dirichlet(np.ones(K), N).astype(np.float32)


def _sparse_reference(labels: np.ndarray, probs: np.ndarray, weight: np.ndarray | None = None) -> dict:
    """Sparse CE in float64 from the formula: renormalise, clip to [eps, 1-eps], -log."""
    p = probs.astype(np.float64)
    picked = p[np.arange(len(labels)), labels] / p.sum(axis=1)
    values = -np.log(np.clip(picked, EPS, 1 - EPS))
    w = np.ones(len(labels)) if weight is None else weight.astype(np.float64)
    per_class = [float(np.sum((values * w)[labels == k]) / np.sum(w[labels == k])) for k in range(K)]
    return {"loss": float(np.sum(values * w) / np.sum(w)), "count": float(np.sum(w)), "per_class": per_class}


def _score_json(capsys: pytest.CaptureFixture[str], *args: str) -> dict:
    # --chunk-mb small enough that every file is read in several chunks.
    assert main(["score", "--json", "--chunk-mb", "0.0005", *args]) == 0
    captured = capsys.readouterr()
    assert captured.err == ""  # no progress bar when stderr is not a terminal
    return json.loads(captured.out)


def _check(result: dict, expected: dict) -> None:
    np.testing.assert_allclose(result["loss"], expected["loss"], rtol=1e-6)
    assert result["count"] == pytest.approx(expected["count"])
    assert result["rows"] == N
    np.testing.assert_allclose([c["loss"] for c in result["per_class"]], expected["per_class"], rtol=1e-6)


def test_score_npy_npz_csv_with_weights(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    labels, probs = _sparse_case()
    weight = RNG.uniform(0.1, 2.0, N)
    np.save(tmp_path / "y.npy", labels)
    np.save(tmp_path / "p.npy", probs)
    np.savez(tmp_path / "both.npz", labels=labels, probs=probs)
    header = "id,label,w," + ",".join(f"p{k}" for k in range(K))
    rows = [f"{i},{labels[i]},{float(weight[i])!r}," + ",".join(repr(float(v)) for v in probs[i]) for i in range(N)]
    (tmp_path / "t.csv").write_text(header + "\n" + "\n".join(rows) + "\n")
    expected = _sparse_reference(labels, probs)
    _check(_score_json(capsys, "--loss", "sparse_categorical_crossentropy",
                       str(tmp_path / "y.npy"), str(tmp_path / "p.npy")), expected)
    _check(_score_json(capsys, "--loss", "SparseCategoricalCrossentropy",
                       f"{tmp_path / 'both.npz'}:labels", f"{tmp_path / 'both.npz'}:probs"), expected)
    csv = str(tmp_path / "t.csv")
    columns = ",".join(f"p{k}" for k in range(K))
    _check(_score_json(capsys, "--loss", "sparse_categorical_crossentropy", "--sample-weight",
                       f"{csv}:w", f"{csv}:label", f"{csv}:{columns}"),
           _sparse_reference(labels, probs, weight))


def test_score_parquet_columns_and_list_column(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    labels, probs = _sparse_case()
    onehot = np.eye(K, dtype=np.float32)[labels]
    table = pa.table({"label": labels, "scores": pa.array(list(probs), type=pa.list_(pa.float32())),
                      **{f"p{k}": probs[:, k] for k in range(K)},
                      **{f"y{k}": onehot[:, k] for k in range(K)}})
    path = str(tmp_path / "t.parquet")
    pq.write_table(table, path, row_group_size=50)
    expected = _sparse_reference(labels, probs)
    _check(_score_json(capsys, "--loss", "sparse_categorical_crossentropy", f"{path}:label", f"{path}:scores"),
           expected)
    # Categorical CE on one-hot labels is the same number; per class by the labels' argmax.
    _check(_score_json(capsys, "--loss", "categorical_crossentropy", f"{path}:" + ",".join(f"y{k}" for k in range(K)),
                       f"{path}:" + ",".join(f"p{k}" for k in range(K))), expected)


def test_score_binary_from_logits_and_ignore_class(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    y = RNG.integers(0, 2, N).astype(np.float32)
    logits = RNG.normal(0, 3, N).astype(np.float32)
    np.save(tmp_path / "y.npy", y)
    np.save(tmp_path / "x.npy", logits)
    result = _score_json(capsys, "--loss", "bce", "--from-logits", str(tmp_path / "y.npy"), str(tmp_path / "x.npy"))
    x = logits.astype(np.float64)
    expected = np.mean(y * np.logaddexp(0, -x) + (1 - y) * np.logaddexp(0, x))
    np.testing.assert_allclose(result["loss"], expected, rtol=1e-6)
    assert result["count"] == N
    assert "per_class" not in result
    labels, probs = _sparse_case()
    labels[::3] = -1
    np.save(tmp_path / "l.npy", labels)
    np.save(tmp_path / "p.npy", probs)
    result = _score_json(capsys, "--loss", "sparse_categorical_crossentropy", "--ignore-class", "-1",
                         str(tmp_path / "l.npy"), str(tmp_path / "p.npy"))
    kept = labels != -1
    reference = _sparse_reference(labels[kept], probs[kept])
    np.testing.assert_allclose(result["loss"], reference["loss"], rtol=1e-6)
    assert result["count"] == int(kept.sum())


def test_score_demo_scores_the_bundled_digits(capsys: pytest.CaptureFixture[str]) -> None:
    import probloss

    data = np.load(Path(probloss.__file__).parent / "data" / "digits.npz", allow_pickle=False)
    labels, probs = data["y_true"], data["y_pred"]
    p = probs.astype(np.float64)
    expected = np.mean(-np.log(np.clip(p[np.arange(len(labels)), labels] / p.sum(axis=1), EPS, 1 - EPS)))
    assert main(["score", "--demo"]) == 0
    out = capsys.readouterr().out
    assert "digits" in out
    assert f"{expected:.6f}" in out
    result = _score_json(capsys, "--demo")
    np.testing.assert_allclose(result["loss"], expected, rtol=1e-9)
    assert result["rows"] == len(labels) > 500
    assert len(result["per_class"]) == 10


def _bad(tmp_path: Path) -> dict[str, tuple[list[str], str]]:
    labels, probs = _sparse_case()
    np.save(tmp_path / "y.npy", labels)
    np.save(tmp_path / "p.npy", probs)
    np.save(tmp_path / "short.npy", labels[:-5])
    nan = probs.copy()
    nan[42, 2] = np.nan
    np.save(tmp_path / "nan.npy", nan)
    far = labels.copy()
    far[99] = K + 3
    np.save(tmp_path / "far.npy", far)
    np.save(tmp_path / "objects.npy", np.array([{"a": 1}, None], dtype=object), allow_pickle=True)
    np.savez(tmp_path / "z.npz", labels=labels)
    (tmp_path / "h.csv").write_text("a,b\n1,2\n")
    y, p = str(tmp_path / "y.npy"), str(tmp_path / "p.npy")
    sparse = ["--loss", "sparse_categorical_crossentropy"]
    return {
        "missing file": ([*sparse, str(tmp_path / "nope.npy"), p], "nope.npy: no such file"),
        "unknown key": ([*sparse, f"{tmp_path / 'z.npz'}:lables", p], "no array named 'lables'"),
        "unknown column": ([*sparse, f"{tmp_path / 'h.csv'}:c", p], "no column 'c'"),
        "lengths": ([*sparse, str(tmp_path / "short.npy"), p], "short.npy"),
        "nan row": ([*sparse, y, str(tmp_path / "nan.npy")], "nan.npy: NaN at row 42, column 2"),
        "label range": ([*sparse, str(tmp_path / "far.npy"), p], "far.npy: label 7 at row 99 is outside [0, 4)"),
        "objects": ([*sparse, str(tmp_path / "objects.npy"), p], "objects.npy: holds Python objects"),
        "option": (["--loss", "poisson", "--ignore-class", "1", y, p], "--ignore-class does not apply"),
        "loss name": (["--loss", "hinge", y, p], "unknown loss 'hinge'"),
    }


@pytest.mark.parametrize("case", ["missing file", "unknown key", "unknown column", "lengths", "nan row",
                                  "label range", "objects", "option", "loss name"])
def test_score_bad_input_is_one_line_and_status_2(case: str, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    arguments, expected = _bad(tmp_path)[case]
    assert main(["score", *arguments]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("probloss: error: ")
    assert captured.err.count("\n") == 1, captured.err
    assert expected in captured.err
    assert "Traceback" not in captured.err


def test_describe_and_backends(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["describe", "SparseCategoricalCrossentropy"]) == 0
    out = capsys.readouterr().out
    assert "ignore_class=None" in out
    assert '"reduction": "sum_over_batch_size"' in out
    assert main(["describe", "nope"]) == 2
    assert main(["backends"]) == 0
    out = capsys.readouterr().out
    assert "numpy" in out
    assert "threads per call" in out
