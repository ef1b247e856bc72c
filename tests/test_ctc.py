"""CTC: Keras 3 parity, accuracy against a brute-force 50-digit reference, validation, native paths.

The reference (``brute_force``) enumerates every alignment of a tiny case in
mpmath with 50 digits: ``P`` is the sum of the path probabilities and the
gradient of ``-log P`` with respect to the logits is ``softmax - E[one-hot of
the path]``, computed from the same enumeration. It imports nothing from
probloss. Keras (JAX backend) is the reference for the API and the ordinary
range (losses below 1e4, where its -1e5 "log 0" does not cap the value).
"""

from __future__ import annotations

import functools
import itertools
import os
import warnings
from typing import Any

import mpmath
import numpy as np
import pytest
from conftest import jax_x64_mode, library

import probloss
from probloss._backends import _numpy_ctc
from probloss._kernels._ctc import ctc_loss_and_gradient

os.environ.setdefault("KERAS_BACKEND", "jax")
import keras  # a test dependency: missing Keras is an error, never a skip

EPS32 = float(np.finfo(np.float32).eps)


# --------------------------------------------------------------------------- the reference


def brute_force(labels: list[int], logits: np.ndarray, blank: int = 0) -> tuple[float, np.ndarray]:
    """Return ``(loss, d loss / d logits)`` of one sample, in 50-digit arithmetic, rounded to float64."""
    frames, classes = logits.shape
    with mpmath.workdps(50):
        logp = []
        for t in range(frames):
            row = [mpmath.mpf(float(v)) for v in logits[t]]
            top = max(row)
            lse = top + mpmath.log(mpmath.fsum(mpmath.exp(v - top) for v in row))
            logp.append([v - lse for v in row])
        total = mpmath.mpf(0)
        counts = [[mpmath.mpf(0)] * classes for _ in range(frames)]
        for path in itertools.product(range(classes), repeat=frames):
            collapsed = [k for i, k in enumerate(path) if (i == 0 or k != path[i - 1]) and k != blank]
            if collapsed != list(labels):
                continue
            weight = mpmath.exp(mpmath.fsum(logp[t][k] for t, k in enumerate(path)))
            total += weight
            for t, k in enumerate(path):
                counts[t][k] += weight
        if total == 0:
            return float("inf"), np.zeros((frames, classes))
        grad = np.array([[float(mpmath.exp(logp[t][k]) - counts[t][k] / total) for k in range(classes)]
                         for t in range(frames)]).reshape(frames, classes)
        return float(-mpmath.log(total)), grad


def reference(labels: np.ndarray, logits: np.ndarray, label_lengths: np.ndarray, logit_lengths: np.ndarray,
              blank: int = 0) -> tuple[np.ndarray, np.ndarray]:
    batch, frames, classes = logits.shape
    losses, grads = np.empty(batch), np.zeros((batch, frames, classes))
    for b in range(batch):
        t = int(logit_lengths[b])
        losses[b], grads[b, :t] = brute_force(list(labels[b, :label_lengths[b]]), logits[b, :t].astype(np.float64),
                                              blank)
    return losses, grads


def random_case(rng: np.random.Generator, *, batch: int = 2, frames: int = 5, classes: int = 3, slots: int = 3,
                scale: float = 3.0, blank: int = 0) -> tuple[np.ndarray, ...]:
    logits = (rng.normal(size=(batch, frames, classes)) * scale).astype(np.float32)
    labels = rng.integers(0, classes, size=(batch, slots))
    labels = np.where(labels == blank, (blank + 1) % classes, labels)
    label_lengths = rng.integers(0, slots + 1, size=batch)
    logit_lengths = rng.integers(0, frames + 1, size=batch)
    return labels, logits, label_lengths, logit_lengths


def confident_case(margin: float) -> tuple[np.ndarray, ...]:
    """Label [1, 2] over 5 frames whose logits favour "0 1 0 2 0" by ``margin`` (loss ~ 6·e^-margin)."""
    path = [0, 1, 0, 2, 0]
    logits = np.zeros((1, 5, 3), dtype=np.float32)
    for t, k in enumerate(path):
        logits[0, t, k] = margin
    return np.array([[1, 2]]), logits, np.array([2]), np.array([5])


def unlikely_case() -> tuple[np.ndarray, ...]:
    """Label [1, 2] over 3 frames whose label logits are 5e4 below the blank's: loss about 1.5e5."""
    logits = np.zeros((1, 3, 3), dtype=np.float32)
    logits[0, :, 1:] = -5.0e4
    logits[0, 1, 1] += 0.5
    return np.array([[1, 2]]), logits, np.array([2]), np.array([3])


ACCURACY_CASES = {
    "loss-1e-10": confident_case(25.0),
    "loss-1e-3": confident_case(8.0),
    "ordinary": random_case(np.random.default_rng(3), batch=3, frames=5, classes=3, slots=2),
    "loss-1.5e5": unlikely_case(),
}


@functools.cache
def accuracy_reference(name: str) -> tuple[np.ndarray, np.ndarray]:
    return reference(*ACCURACY_CASES[name])


def assert_loss_accurate(loss: np.ndarray, truth: np.ndarray, ulps: float = 4) -> None:
    finite = np.isfinite(truth)
    assert np.array_equal(np.isposinf(loss), ~finite)
    error = np.abs(loss[finite].astype(np.float64) - truth[finite])
    assert np.all(error <= ulps * EPS32 * np.abs(truth[finite])), (loss, truth)
    assert np.all(loss >= 0)


def assert_gradient_accurate(grad: np.ndarray, truth: np.ndarray, ulps: float = 16) -> None:
    for g, r in zip(grad.astype(np.float64), truth, strict=True):
        assert np.linalg.norm(g - r) <= ulps * EPS32 * np.linalg.norm(r) + 1e-300, (g, r)


# --------------------------------------------------------------------------- accuracy


@pytest.mark.parametrize("name", list(ACCURACY_CASES))
def test_numpy_loss_and_gradient_are_accurate(name: str) -> None:
    labels, logits, label_lengths, logit_lengths = ACCURACY_CASES[name]
    truth, truth_grad = accuracy_reference(name)
    assert_loss_accurate(probloss.ctc_loss(labels, logits, label_lengths, logit_lengths, validate="off"), truth)
    loss, grad = ctc_loss_and_gradient(labels, logits, label_lengths, logit_lengths, blank_index=0, gradient=True,
                                       xp=_numpy_namespace())
    assert_loss_accurate(loss.astype(np.float32), truth)
    assert_gradient_accurate(grad.astype(np.float32), truth_grad)
    if _numpy_ctc.AVAILABLE:
        loss, grad = _numpy_ctc.compiled_ctc(labels, logits, label_lengths, logit_lengths, 0, True)
        assert_loss_accurate(loss.astype(np.float32), truth)
        assert_gradient_accurate(grad, truth_grad)


@pytest.mark.parametrize("name", list(ACCURACY_CASES))
def test_torch_loss_and_gradient_are_accurate(name: str) -> None:
    torch = pytest.importorskip("torch")
    labels, logits, label_lengths, logit_lengths = ACCURACY_CASES[name]
    truth, truth_grad = accuracy_reference(name)
    x = torch.tensor(logits, requires_grad=True)
    loss = probloss.ctc_loss(torch.tensor(labels), x, torch.tensor(label_lengths), torch.tensor(logit_lengths),
                             validate="off")
    loss.sum().backward()
    assert_loss_accurate(loss.detach().numpy(), truth)
    assert_gradient_accurate(x.grad.numpy(), truth_grad)


@pytest.mark.parametrize(("path", "x64"), [("default", True), ("default", False), ("scan", True)])
@pytest.mark.parametrize("name", list(ACCURACY_CASES))
def test_jax_loss_and_gradient_are_accurate(name: str, path: str, x64: bool) -> None:
    """The default path (on CPU the compiled kernel, float64 inside also without x64) and the
    ``lax.scan`` path of other devices (float64 with x64)."""
    jax = library("jax").module
    jnp = jax.numpy
    from probloss._backends import _jax_ctc

    with jax_x64_mode(x64):
        labels, logits, label_lengths, logit_lengths = (jnp.asarray(a) for a in ACCURACY_CASES[name])
        truth, truth_grad = accuracy_reference(name)

        def total(x: Any) -> Any:
            if path == "scan":
                loss = _jax_ctc.scan_ctc(labels, x, label_lengths, logit_lengths, 0)
            else:
                loss = probloss.ctc_loss(labels, x, label_lengths, logit_lengths)
            return jnp.sum(jnp.where(jnp.isfinite(loss), loss, 0.0)), loss

        (_, loss), grad = jax.jit(jax.value_and_grad(total, has_aux=True))(logits)
        assert_loss_accurate(np.asarray(loss), truth)
        assert_gradient_accurate(np.asarray(grad), truth_grad)


def test_random_cases_match_brute_force_including_lengths_and_blank() -> None:
    rng = np.random.default_rng(7)
    for _ in range(6):
        blank = int(rng.integers(0, 3))
        labels, logits, label_lengths, logit_lengths = random_case(rng, frames=4, blank=blank)
        truth, truth_grad = reference(labels, logits, label_lengths, logit_lengths, blank)
        loss = probloss.ctc_loss(labels, logits, label_lengths, logit_lengths, blank_index=blank, validate="off")
        assert_loss_accurate(loss, truth)
        _, grad = ctc_loss_and_gradient(labels, logits, label_lengths, logit_lengths, blank_index=blank,
                                        gradient=True, xp=_numpy_namespace())
        np.testing.assert_allclose(grad, truth_grad, atol=1e-12)


def _numpy_namespace() -> Any:
    import array_api_compat.numpy

    return array_api_compat.numpy


# --------------------------------------------------------------------------- Keras parity


def _keras_cases() -> list[tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(11)
    cases = []
    for batch, frames, classes, slots in ((1, 1, 2, 1), (3, 12, 6, 4), (4, 16, 8, 5)):
        logits = (rng.normal(size=(batch, frames, classes)) * 2).astype(np.float32)
        labels = np.zeros((batch, slots), dtype=np.int64)
        for b in range(batch):
            n = int(rng.integers(0, min(slots, (frames + 1) // 2) + 1))
            labels[b, :n] = rng.integers(1, classes, size=n)
        cases.append((labels, logits))
    return cases


KERAS_CASES = _keras_cases()


@functools.cache
def keras_ctc(case: int) -> np.ndarray:
    labels, logits = KERAS_CASES[case]
    return np.asarray(keras.losses.ctc(labels, logits))


@pytest.mark.parametrize("case", range(len(KERAS_CASES)))
def test_ctc_function_matches_keras(case: int, backend: Any) -> None:
    labels, logits = KERAS_CASES[case]
    expected = keras_ctc(case)
    assert np.all(expected < 1e4)
    got = probloss.ctc(backend.asarray(labels), backend.asarray(logits))
    assert backend.is_native(got)
    np.testing.assert_allclose(backend.to_numpy(got), expected, rtol=1e-5)


@pytest.mark.parametrize("reduction", ["sum_over_batch_size", "sum", "none"])
def test_ctc_class_matches_keras(reduction: str) -> None:
    labels, logits = KERAS_CASES[1]
    weight = np.array([0.5, 2.0, 1.0], dtype=np.float32)
    for sample_weight in (None, weight):
        expected = keras.losses.CTC(reduction=reduction)(labels, logits, sample_weight=sample_weight)
        got = probloss.CTC(reduction=reduction)(labels, logits, sample_weight=sample_weight)
        np.testing.assert_allclose(got, np.asarray(expected), rtol=1e-5)


def test_ctc_loss_with_lengths_and_blank_matches_keras() -> None:
    rng = np.random.default_rng(5)
    for blank in (0, 2, 4):
        labels, logits, label_lengths, logit_lengths = random_case(rng, batch=4, frames=9, classes=5, slots=3,
                                                                   scale=2.0, blank=blank)
        logit_lengths = np.maximum(logit_lengths, 7)
        expected = np.asarray(keras.ops.ctc_loss(labels, logits, label_lengths, logit_lengths, mask_index=blank))
        got = probloss.ctc_loss(labels, logits, label_lengths, logit_lengths, blank_index=blank)
        np.testing.assert_allclose(got, expected, rtol=1e-5)


def test_greedy_decode_matches_keras() -> None:
    rng = np.random.default_rng(2)
    logits = rng.normal(size=(5, 9, 4)).astype(np.float32)
    logits[:, 3] = logits[:, 2]  # repeated frames
    lengths = np.array([9, 0, 4, 7, 1])
    for blank in (0, 3):
        for merge in (True, False):
            expected = keras.ops.ctc_decode(logits, lengths, merge_repeated=merge, mask_index=blank)
            got = probloss.ctc_decode(logits, lengths, merge_repeated=merge, blank_index=blank)
            np.testing.assert_array_equal(got[0], np.asarray(expected[0]))
            np.testing.assert_allclose(got[1], np.asarray(expected[1]), rtol=1e-6)


@pytest.mark.parametrize(("beam_width", "top_paths", "blank"), [(6, 3, 2)])
def test_beam_search_decode_matches_keras(beam_width: int, top_paths: int, blank: int) -> None:
    rng = np.random.default_rng(23 + beam_width)
    logits = (rng.normal(size=(4, 7, 5)) * 2).astype(np.float32)
    logits[:, 4] = logits[:, 3]  # repeated frames
    lengths = np.array([7, 5, 1, 3])
    expected = keras.ops.ctc_decode(logits, lengths, strategy="beam_search", beam_width=beam_width,
                                    top_paths=top_paths, mask_index=blank)
    got = probloss.ctc_decode(logits, lengths, strategy="beam_search", beam_width=beam_width, top_paths=top_paths,
                              blank_index=blank)
    assert got[0].dtype == np.int32
    assert got[1].dtype == np.float32
    np.testing.assert_array_equal(got[0], np.asarray(expected[0]))
    # Keras sums the scores in float32 (a score near 0 keeps ~1e-8 absolute); probloss in float64.
    np.testing.assert_allclose(got[1], np.asarray(expected[1]), rtol=1e-5, atol=1e-6)


def test_beam_search_decode_returns_the_input_library_and_checks_arguments() -> None:
    torch = pytest.importorskip("torch")
    logits = np.log(np.array([[[.1, .8, .1], [.1, .8, .1], [.8, .1, .1], [.1, .1, .8]]]))
    # A beam wider than the 31 possible prefixes is exact: every prefix, by probability.
    paths, scores = probloss.ctc_decode(torch.tensor(logits), torch.tensor([4]), strategy="beam_search",
                                        beam_width=40, top_paths=34)
    assert isinstance(paths, torch.Tensor)
    assert paths.dtype == torch.int32
    assert scores.dtype == torch.float64
    assert paths.shape == (34, 1, 4)
    assert scores.shape == (1, 34)
    # Brute force over the 81 alignments: every prefix's probability.
    totals: dict[tuple[int, ...], float] = {}
    probs = np.exp(logits[0])
    for path in itertools.product(range(3), repeat=4):
        prefix = tuple(k for i, k in enumerate(path) if k != 0 and (i == 0 or k != path[i - 1]))
        totals[prefix] = totals.get(prefix, 0.0) + float(np.prod(probs[np.arange(4), path]))
    count = len(totals)
    got = {tuple(int(k) for k in row if k >= 0): float(np.exp(s))
           for row, s in zip(paths[:count, 0].numpy(), scores[0, :count].numpy(), strict=True)}
    assert got.keys() == totals.keys()
    np.testing.assert_allclose([got[p] for p in totals], list(totals.values()), rtol=1e-12)
    assert torch.all(scores[0, 1:count] <= scores[0, :count - 1])
    # Fewer prefixes than top_paths: the other rows are -1 with score -inf.
    assert torch.all(paths[count:] == -1)
    assert torch.all(torch.isneginf(scores[0, count:]))
    with pytest.raises(ValueError, match="Invalid strategy"):
        probloss.ctc_decode(np.zeros((1, 2, 3)), np.array([2]), strategy="best")
    with pytest.raises(ValueError, match="beam_width must be a positive integer"):
        probloss.ctc_decode(np.zeros((1, 2, 3)), np.array([2]), strategy="beam_search", beam_width=0)


def test_registry_names_and_config_match_keras() -> None:
    assert probloss.get("ctc") is probloss.ctc
    assert isinstance(probloss.get("CTC"), probloss.CTC)
    loss = probloss.CTC(reduction="sum", name="my_ctc")
    assert loss.get_config() == keras.losses.CTC(reduction="sum", name="my_ctc").get_config()
    assert type(probloss.deserialize(probloss.serialize(loss))) is probloss.CTC
    assert type(keras.losses.deserialize(probloss.serialize(loss))).__name__ == "CTC"


# --------------------------------------------------------------------------- beyond Keras's range


def test_huge_loss_is_not_capped_where_keras_is() -> None:
    labels, logits, _, _ = unlikely_case()
    truth, _ = accuracy_reference("loss-1.5e5")
    assert float(np.asarray(keras.losses.ctc(labels, logits))[0]) < 1.01e5  # Keras's cap
    assert_loss_accurate(probloss.ctc(labels, logits), truth)


def test_impossible_alignment_is_an_error_a_warning_or_inf_with_zero_gradient() -> None:
    labels = np.array([[1, 1, 2], [1, 2, 0]])
    logits = np.zeros((2, 3, 3), dtype=np.float32)
    with pytest.raises(ValueError, match=r"CTC sample 0 has no alignment: .* length 3 .* at least 4 frames"):
        probloss.ctc(labels, logits)
    with pytest.warns(probloss.ValidationWarning, match="sample 0"):
        loss = probloss.ctc(labels, logits, validate="warn")
    assert np.isposinf(loss[0])
    assert np.isfinite(loss[1])
    torch = pytest.importorskip("torch")
    x = torch.zeros(2, 3, 3, requires_grad=True)
    loss = probloss.ctc(torch.tensor(labels), x, validate="off")
    loss[1].backward()
    assert torch.isinf(loss[0])
    assert bool(torch.all(x.grad[0] == 0))
    assert bool(torch.any(x.grad[1] != 0))


# --------------------------------------------------------------------------- validation


@pytest.mark.parametrize(("labels", "logits", "match"), [
    (np.zeros(2, dtype=int), np.zeros((2, 3, 3)), r"Targets `y_true` .* Received: y_true.shape=\(2,\)"),
    (np.zeros((2, 1), dtype=int), np.zeros((2, 3)), r"Logits `y_pred` .* Received: y_pred.shape=\(2, 3\)"),
    (np.ones((3, 1), dtype=int), np.zeros((2, 3, 3)), r"same batch size"),
    (np.array([[1, 0, 2]]), np.zeros((1, 5, 3)), r"sample 0 has the blank/padding label 0 at position 1"),
    (np.array([[1, 3]]), np.zeros((1, 5, 3)), r"label value of 3 at position \(0, 1\)"),
    (np.array([[1, -1]]), np.zeros((1, 5, 3)), r"label value of -1 at position \(0, 1\)"),
    (np.array([[1]]), np.array([[[0.0, np.nan, 0.0]]]), r"`y_pred` must be a finite number"),
    (np.array([[1]]), np.array([[[0.0, np.inf, 0.0]]]), r"`y_pred` must be a finite number"),
])
def test_ctc_validation_errors(labels: np.ndarray, logits: np.ndarray, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        probloss.ctc(labels, logits)


def test_ctc_loss_validation_errors() -> None:
    labels, logits = np.array([[1, 2]]), np.zeros((1, 4, 3), dtype=np.float32)
    with pytest.raises(ValueError, match=r"`label_lengths` must lie in \[0, 2\].* 3 for sample 0"):
        probloss.ctc_loss(labels, logits, np.array([3]), np.array([4]))
    with pytest.raises(ValueError, match=r"`logit_lengths` must lie in \[0, 4\].* 5 for sample 0"):
        probloss.ctc_loss(labels, logits, np.array([2]), np.array([5]))
    with pytest.raises(ValueError, match=r"equals the blank index 2"):
        probloss.ctc_loss(labels, logits, np.array([2]), np.array([4]), blank_index=2)
    with pytest.raises(ValueError, match=r"`blank_index` must be an int in \[0, 3\)"):
        probloss.ctc_loss(labels, logits, np.array([2]), np.array([4]), blank_index=3)
    with pytest.raises(ValueError, match=r"`label_lengths` must have shape \(batch_size,\)"):
        probloss.ctc_loss(labels, logits, np.array([[2]]), np.array([4]))
    with pytest.raises(TypeError, match=r"`labels` must hold integers"):
        probloss.ctc_loss(labels.astype(bool), logits, np.array([2]), np.array([4]))
    # Past a sample's length, labels are not read (and not checked).
    got = probloss.ctc_loss(np.array([[1, 7]]), logits, np.array([1]), np.array([4]))
    np.testing.assert_allclose(got, probloss.ctc_loss(np.array([[1]]), logits, np.array([1]), np.array([4])))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        probloss.ctc(np.array([[1, 1]]), np.zeros((1, 3, 3)), validate="raise")  # 1 blank 1: possible


# --------------------------------------------------------------------------- native paths


def test_compiled_kernel_matches_generic_and_ignores_thread_count() -> None:
    if not _numpy_ctc.AVAILABLE:
        pytest.fail("the compiled CTC kernel is not built")
    rng = np.random.default_rng(13)
    xp = _numpy_namespace()
    for dtype in (np.float32, np.float64):
        for _ in range(4):
            blank = int(rng.integers(0, 4))
            labels, logits, label_lengths, logit_lengths = random_case(rng, batch=5, frames=9, classes=4, slots=4,
                                                                       scale=float(rng.uniform(0.1, 30)),
                                                                       blank=blank)
            logits = logits.astype(dtype)
            loss, grad = ctc_loss_and_gradient(labels, logits, label_lengths, logit_lengths, blank_index=blank,
                                               gradient=True, xp=xp)
            results = []
            for threads in (1, 2, 3):
                probloss.set_num_threads(threads)
                try:
                    results.append(_numpy_ctc.compiled_ctc(labels, logits, label_lengths, logit_lengths, blank, True))
                finally:
                    probloss.set_num_threads(None)
            for other in results[1:]:
                np.testing.assert_array_equal(other[0], results[0][0])
                np.testing.assert_array_equal(other[1], results[0][1])
            np.testing.assert_allclose(results[0][0], loss, rtol=1e-13)
            np.testing.assert_allclose(results[0][1], grad.astype(dtype), atol=4 * np.finfo(dtype).eps)
    bad = _numpy_ctc.compiled_ctc(np.array([[5]]), np.zeros((1, 2, 3), np.float32), np.array([1]), np.array([2]),
                                  0, True)
    assert np.isnan(bad[0][0])
    assert np.all(np.isnan(bad[1]))


def test_compiled_linear_space_path_matches_generic_on_long_sequences() -> None:
    """The compiled kernel's scaled linear-space recursion (ordinary samples) and its log-space
    fallback (a confident sample, an impossible one, repeated labels) against the generic kernel."""
    if not _numpy_ctc.AVAILABLE:
        pytest.fail("the compiled CTC kernel is not built")
    rng = np.random.default_rng(19)
    batch, frames, classes, slots = 6, 120, 6, 24
    logits = rng.normal(size=(batch, frames, classes)) * np.array([0.5, 1, 2, 4, 40, 1])[:, None, None]
    labels = rng.integers(1, 3, size=(batch, slots))  # classes 1 and 2 only: many repeats
    labels[5] = 1
    label_lengths = np.array([24, 20, 24, 7, 24, 24])
    logit_lengths = np.array([120, 100, 57, 120, 120, 40])  # sample 5: no alignment (needs 47 frames)
    xp = _numpy_namespace()
    for dtype in (np.float64, np.float32):
        x = logits.astype(dtype)
        loss, grad = ctc_loss_and_gradient(labels, x, label_lengths, logit_lengths, blank_index=0, gradient=True,
                                           xp=xp)
        got_loss, got_grad = _numpy_ctc.compiled_ctc(labels, x, label_lengths, logit_lengths, 0, True)
        np.testing.assert_allclose(got_loss, loss, rtol=1e-12)
        assert np.isposinf(got_loss[5])
        scale = np.abs(grad).max()
        np.testing.assert_allclose(got_grad, grad.astype(dtype), atol=(1e-13 if dtype == np.float64 else 1e-7) * scale)
        forward_only, _ = _numpy_ctc.compiled_ctc(labels, x, label_lengths, logit_lengths, 0, False)
        np.testing.assert_array_equal(forward_only, got_loss)


def test_torch_gradient_matches_the_generic_kernel_and_low_precision_rounds_once() -> None:
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(17)
    labels, logits, label_lengths, logit_lengths = random_case(rng, batch=4, frames=8, classes=4, slots=3)
    _, grad = ctc_loss_and_gradient(labels, logits, label_lengths, logit_lengths, blank_index=0, gradient=True,
                                    xp=_numpy_namespace())
    args = [torch.tensor(a) for a in (labels, label_lengths, logit_lengths)]
    x = torch.tensor(logits, requires_grad=True)
    probloss.ctc_loss(args[0], x, args[1], args[2], validate="off").sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), grad, atol=4 * EPS32)
    low = torch.tensor(logits).to(torch.bfloat16)
    got = probloss.ctc_loss(args[0], low, args[1], args[2], validate="off")
    wide, _ = ctc_loss_and_gradient(labels, low.float().numpy(), label_lengths, logit_lengths, blank_index=0,
                                    gradient=False, xp=_numpy_namespace())
    assert got.dtype == torch.bfloat16
    assert torch.equal(got, torch.tensor(wide).to(torch.bfloat16))


@pytest.mark.parametrize("blank", [0, 2, 3])
def test_torch_autodiff_through_the_generic_kernel_has_finite_gradients(blank: int) -> None:
    """With the fast paths off, autograd differentiates the generic recursion: unreachable
    states (logaddexp of two -inf) must give zero, not NaN. The gradient equals the fast path's
    and the float64 analytic one: repeats, padding frames and label slots, label length 0, a
    sample with no alignment, the blank at several indices."""
    torch = library("torch").module
    rng = np.random.default_rng(29 + blank)
    logits = (rng.normal(size=(6, 6, 4)) * 2).astype(np.float32)
    a, b, c = (k for k in range(4) if k != blank)
    labels = np.array([[a, b, b], [c, a, a], [a, a, a], [b, b, b], [c, c, a], [a, b, c]])
    label_lengths = np.array([3, 2, 3, 0, 3, 0])
    logit_lengths = np.array([6, 4, 4, 5, 6, 0])  # sample 2: no alignment (needs 5 frames)
    loss_ref, grad_ref = ctc_loss_and_gradient(labels, logits.astype(np.float64), label_lengths, logit_lengths,
                                               blank_index=blank, gradient=True, xp=_numpy_namespace())
    assert np.isposinf(loss_ref[2])
    assert loss_ref[5] == 0
    grads = {}
    for fast in (True, False):
        x = torch.tensor(logits, requires_grad=True)
        with probloss.fast_paths(fast):
            loss = probloss.ctc_loss(torch.tensor(labels), x, torch.tensor(label_lengths),
                                     torch.tensor(logit_lengths), blank_index=blank, validate="off")
        torch.where(torch.isfinite(loss), loss, 0.0).sum().backward()
        loss, grads[fast] = loss.detach().numpy(), x.grad.numpy()
        np.testing.assert_allclose(loss, loss_ref.astype(np.float32), rtol=4 * EPS32, atol=EPS32, err_msg=str(fast))
        assert np.all(np.isfinite(grads[fast])), fast
        assert np.all(grads[fast][[2, 5]] == 0), fast
        assert np.all(grads[fast][1, 4:] == 0), fast
        np.testing.assert_allclose(grads[fast], grad_ref, rtol=0, atol=8 * EPS32, err_msg=str(fast))
    np.testing.assert_allclose(grads[False], grads[True], rtol=0, atol=16 * EPS32)


def test_torch_compile_captures_the_loss_and_its_gradient() -> None:
    torch = library("torch").module
    labels, logits = KERAS_CASES[1]
    lengths = torch.tensor((labels != 0).sum(axis=1))
    frames = torch.full((len(labels),), logits.shape[1])
    labels = torch.tensor(labels)

    def total(x: Any) -> Any:
        return probloss.ctc_loss(labels, x, lengths, frames, validate="off").sum()

    import torch._dynamo

    x = torch.tensor(logits, requires_grad=True)
    torch._dynamo.reset()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Dynamo's notes on tracing array-api-compat's helpers
            value = torch.compile(total, backend="aot_eager", fullgraph=True)(x)  # one graph, or an error
            value.backward()
    finally:
        torch._dynamo.reset()
    y = torch.tensor(logits, requires_grad=True)
    expected = total(y)
    expected.backward()
    torch.testing.assert_close(value, expected)
    torch.testing.assert_close(x.grad, y.grad)


def test_decode_on_dask_matches_numpy() -> None:
    dask_array = library("dask").module.array
    rng = np.random.default_rng(31)
    logits = rng.normal(size=(5, 9, 4)).astype(np.float32)
    lengths = np.array([9, 0, 4, 7, 1])
    chunked = dask_array.from_array(logits, chunks=(2, 9, 4)), dask_array.from_array(lengths, chunks=2)
    for options in ({"strategy": "greedy"}, {"strategy": "greedy", "merge_repeated": False, "blank_index": 3},
                    {"strategy": "beam_search", "beam_width": 3, "top_paths": 2}):
        got = probloss.ctc_decode(*chunked, **options)
        expected = probloss.ctc_decode(logits, lengths, **options)
        assert isinstance(got[0], dask_array.Array)
        np.testing.assert_array_equal(got[0].compute(), expected[0])
        np.testing.assert_array_equal(got[1].compute(), expected[1])


def test_jax_jit_vmap_and_grad(jax_x64: None) -> None:
    jax = pytest.importorskip("jax")
    jnp = jax.numpy
    labels, logits = KERAS_CASES[1]
    expected = probloss.ctc(labels, logits)
    got = jax.jit(probloss.ctc)(jnp.asarray(labels), jnp.asarray(logits))
    np.testing.assert_allclose(np.asarray(got), expected, rtol=1e-6)
    per_sample = jax.vmap(lambda y, x: probloss.ctc(y[None], x[None])[0])(jnp.asarray(labels), jnp.asarray(logits))
    np.testing.assert_allclose(np.asarray(per_sample), expected, rtol=1e-6)
    grad = jax.grad(lambda x: probloss.ctc(jnp.asarray(labels), x).sum())(jnp.asarray(logits))
    label_lengths = (labels != 0).sum(axis=1)
    _, reference_grad = ctc_loss_and_gradient(labels, logits, label_lengths, np.full(len(labels), logits.shape[1]),
                                              blank_index=0, gradient=True, xp=_numpy_namespace())
    np.testing.assert_allclose(np.asarray(grad), reference_grad, atol=4 * EPS32)


# --------------------------------------------------------------------------- Keras on TensorFlow

_TF_WORKER = r"""
import json, sys
import numpy as np
import keras
cases = json.loads(sys.stdin.read())
out = {"backend": keras.backend.backend(), "ctc": [], "ctc_loss": []}
for case in cases["ctc"]:
    labels, logits = np.array(case[0]), np.array(case[1], dtype="float32")
    out["ctc"].append(np.asarray(keras.losses.ctc(labels, logits)).tolist())
for labels, logits, label_lengths, logit_lengths, blank in cases["ctc_loss"]:
    loss = keras.ops.ctc_loss(np.array(labels), np.array(logits, dtype="float32"), np.array(label_lengths),
                              np.array(logit_lengths), mask_index=blank)
    out["ctc_loss"].append(np.asarray(loss).tolist())
print("RESULT " + json.dumps(out))
"""


def test_ctc_matches_keras_on_the_tensorflow_backend() -> None:
    """Keras 3 with ``KERAS_BACKEND=tensorflow`` (a fresh process: the suite's Keras runs on JAX):
    ``keras.losses.ctc`` on the Keras cases, ``keras.ops.ctc_loss`` with lengths and blanks."""
    library("tensorflow")
    import json
    import subprocess
    import sys

    rng = np.random.default_rng(41)
    with_lengths = []
    for blank in (0, 3):
        labels, logits, label_lengths, logit_lengths = random_case(rng, batch=4, frames=10, classes=5, slots=3,
                                                                   scale=2.0, blank=blank)
        with_lengths.append((labels, logits, label_lengths, np.maximum(logit_lengths, 7), blank))
    cases = {"ctc": [(labels.tolist(), logits.tolist()) for labels, logits in KERAS_CASES],
             "ctc_loss": [[a.tolist() for a in case[:4]] + [case[4]] for case in with_lengths]}
    env = {**os.environ, "KERAS_BACKEND": "tensorflow", "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONWARNINGS": "ignore"}
    result = subprocess.run([sys.executable, "-c", _TF_WORKER], input=json.dumps(cases), capture_output=True,
                            text=True, env=env, timeout=300, check=False)
    lines = [line for line in result.stdout.splitlines() if line.startswith("RESULT ")]
    failure = f"{result.stdout[-2000:]}\n{result.stderr[-4000:]}"
    assert result.returncode == 0, failure
    assert lines, failure
    keras_tf = json.loads(lines[-1].removeprefix("RESULT "))
    assert keras_tf["backend"] == "tensorflow"
    for (labels, logits), expected in zip(KERAS_CASES, keras_tf["ctc"], strict=True):
        assert np.all(np.asarray(expected) < 1e4)
        np.testing.assert_allclose(probloss.ctc(labels, logits), expected, rtol=1e-5)
    for (labels, logits, label_lengths, logit_lengths, blank), expected in zip(with_lengths, keras_tf["ctc_loss"],
                                                                               strict=True):
        assert np.all(np.asarray(expected) < 1e4)
        got = probloss.ctc_loss(labels, logits, label_lengths, logit_lengths, blank_index=blank)
        np.testing.assert_allclose(got, expected, rtol=1e-5)
