"""The binary family's compiled kernels (binary.c, binary_impl.h) loop by loop and build by build.

Each kernel runs one of two loops per block of up to 1024 elements: an
"ordinary" loop where no input of the block can hit a special case, and the
general loop otherwise; and the module holds two builds, the CPU's load-time
clone (AVX2/AVX-512 where present) and the baseline, which
``PROBLOSS_NATIVE_BASELINE=1`` forces. Here every kind, value and gradient, is
checked against its formula written in float64 NumPy in this file (an
independent reference), on rows that span three blocks, with data that sends
a block to each loop, in this process (the CPU's build) and in a child process
with the baseline forced. The public functions' parity with the generic kernel,
non-finite inputs included, is tests/test_native.py's; the child runs a part of
it too, so that the baseline build is held to it.
"""

from __future__ import annotations

import os
import subprocess
import sys

import mpmath
import numpy as np
import pytest

import probloss
from probloss import _native

pytestmark = pytest.mark.skipif(_native.binary is None, reason=f"extension not built: {_native.load_error}")

EPS32 = float(np.finfo(np.float32).eps)
COLS = 2100  # three blocks: 1024 + 1024 + 52
F32 = np.float32


def _sigmoid(x: np.ndarray) -> np.ndarray:
    """sigmoid in float64 without overflow."""
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def _softplus_minus(t: np.ndarray, z: np.ndarray) -> np.ndarray:
    """log(1 + e^z) - t·z in float64 without cancellation: log1p(e^-|z|) + (max(z, 0) - t·z).

    t·z of float32 inputs is exact in float64, so the bracket rounds once (relative 2^-53 of
    its value where 0 <= t <= 1); ``logaddexp(0, z) - t·z`` would lose the small loss of a
    confident correct logit (z = 20, t = 1: 2e-9 from 20 - 20).
    """
    return np.log1p(np.exp(-np.abs(z))) + (np.maximum(z, 0.0) - t * z)


def _reference(kind: str, y: np.ndarray, x: np.ndarray, p: tuple[float, ...]) -> tuple[np.ndarray, np.ndarray]:
    """(terms, d term / dx) of each kind in float64, from the losses' definitions."""
    t, z = y.astype(np.float64), x.astype(np.float64)
    if kind == "bce_logits":
        return _softplus_minus(t, z), _sigmoid(z) - t
    if kind in ("bce_probs", "focal_probs"):
        lo, hi = (p[0], p[1]) if kind == "bce_probs" else (p[4], p[5])
        pc = np.clip(z, lo, hi)
        bce = -(t * np.log(pc) + (1 - t) * np.log1p(-pc))
        dbce = (pc - t) / (pc * (1 - pc)) * ((z > lo) & (z < hi))
        if kind == "bce_probs":
            return bce, dbce
        u, du = t * (1 - z) + (1 - t) * z, 1 - 2 * t
    elif kind == "focal_logits":
        bce = _softplus_minus(t, z)
        dbce = _sigmoid(z) - t
        u = t * _sigmoid(-z) + (1 - t) * _sigmoid(z)
        du = (1 - 2 * t) * _sigmoid(z) * _sigmoid(-z)
    elif kind == "poisson":
        return z - t * np.log(z + p[0]), 1 - t / (z + p[0])
    else:  # kl
        lo = p[0]
        tc, pc = np.clip(t, lo, 1.0), np.clip(z, lo, 1.0)
        return tc * np.log(tc / pc), -tc / pc * ((z > lo) & (z < 1.0))
    gamma, alpha, balance = p[0], p[2], p[3]
    weight = t * alpha + (1 - t) * (1 - alpha) if balance else 1.0
    power = u**gamma
    slope = gamma * u ** (gamma - 1) if gamma else 0.0
    return weight * power * bce, weight * (slope * du * bce + power * dbce)


def _cases() -> list[tuple[str, str, np.ndarray, np.ndarray, tuple[float, ...]]]:
    """(kind, variant, y, x, params): every kind on ordinary data and on data sending blocks to the general loop."""
    rng = np.random.default_rng(42)
    shape = (6, COLS)
    hard = (rng.random(shape) < 0.5).astype(F32)
    soft = rng.random(shape).astype(F32)
    logits = (rng.standard_normal(shape) * 4).astype(F32)
    probs = rng.uniform(1e-4, 1 - 1e-4, shape).astype(F32)
    eps, one_minus = float(F32(1e-7)), float(F32(1 - 1e-7))
    tiny = float(F32(1e-40))  # a subnormal float32 clip bound: the general loops
    # logits beyond 700 in the middle block of half the rows (finite losses, general loop)
    wide = logits.copy()
    wide[::2, 1100:1110] = F32(800.0) * np.sign(wide[::2, 1100:1110] + F32(0.5))
    wide[1::4, 1200] = F32(1e30)
    cases = [
        ("bce_logits", "ordinary", hard, logits, ()),
        ("bce_logits", "soft", soft, logits, ()),
        # p[0] = 1: no bounds wanted (max |x| alone picks the loop); logits beyond 87: the general loop
        ("bce_logits", "no-bounds", soft, logits, (1.0,)),
        ("bce_logits", "wide", soft, wide, ()),
        ("bce_logits", "wide-no-bounds", soft, wide, (1.0,)),
        ("bce_probs", "ordinary", hard, probs, (eps, one_minus)),
        ("bce_probs", "soft", soft, probs, (eps, one_minus)),
        ("bce_probs", "general", soft, probs, (tiny, 1.0)),
        ("poisson", "ordinary", rng.poisson(2.0, shape).astype(F32), (rng.random(shape) * 3).astype(F32), (eps,)),
        ("kl", "ordinary", soft, probs, (eps,)),
        ("kl", "general", soft, probs, (tiny,)),
        ("kl", "close", probs, (probs * (1 + rng.uniform(-1e-3, 1e-3, shape))).astype(F32), (eps,)),
    ]
    # focal from logits: soft and hard labels on wide logits (|x| up to ~90, tiny terms: the
    # short loop for gamma 0/1/2), and labels outside [0, 1] (the ordinary loop)
    far = (rng.standard_normal(shape) * 30).astype(F32)
    outside = rng.uniform(-0.5, 1.5, shape).astype(F32)
    # hard labels but one soft label in the middle block: the short loop's hard-label form
    # (focal_logits_hard_loop) on the first and last blocks, its soft form on the middle one
    mixed = hard.copy()
    mixed[:, 1500] = F32(0.3)
    for gamma, mode in ((0.0, 0.0), (1.0, 1.0), (2.0, 2.0), (1.5, 3.0)):
        for balance in (0.0, 1.0):
            focal = (gamma, mode, 0.25, balance, eps, one_minus)
            tag = f"g{gamma}-b{int(balance)}"
            cases += [
                ("focal_logits", f"ordinary-{tag}", soft, logits, focal),
                ("focal_logits", f"hard-{tag}", hard, logits, focal),
                ("focal_logits", f"mixed-{tag}", mixed, logits, focal),
                ("focal_logits", f"far-hard-{tag}", hard, far, focal),
                ("focal_logits", f"general-{tag}", hard, wide, focal),
                ("focal_probs", f"ordinary-{tag}", soft, probs, focal),
                ("focal_probs", f"general-{tag}", soft, probs, (gamma, mode, 0.25, balance, tiny, 1.0)),
            ]
            if mode < 3:  # (1 - p_t)^1.5 of a negative 1 - p_t has no real value
                cases.append(("focal_logits", f"labels-outside-{tag}", outside, logits, focal))
    return cases


KIND_IDS = {"bce_logits": "KIND_BCE_LOGITS", "bce_probs": "KIND_BCE_PROBS", "focal_logits": "KIND_FOCAL_LOGITS",
            "focal_probs": "KIND_FOCAL_PROBS", "poisson": "KIND_POISSON", "kl": "KIND_KL"}


def check_case(kind: str, y: np.ndarray, x: np.ndarray, params: tuple[float, ...]) -> None:
    """Values and gradients of one kind against the float64 reference, on 1 and 2 threads (bit-identical)."""
    module = _native.binary
    mean = kind != "kl"
    divisor = float(x.shape[1]) if mean else 1.0
    results = []
    for threads in (1, 2):
        out = np.empty(x.shape[0], F32)
        grad = np.empty(x.shape, F32)
        nonfinite = module.row_losses(getattr(module, KIND_IDS[kind]), y, x, out, divisor, threads, grad, params)[0]
        assert nonfinite == 0
        results.append((out, grad))
    np.testing.assert_array_equal(results[0][0], results[1][0])
    np.testing.assert_array_equal(results[0][1], results[1][1])
    out, grad = results[0]
    terms, dterms = _reference(kind, y, x, params)
    expected = terms.sum(axis=1) / divisor
    # terms of mixed sign (Poisson, KL) may cancel: the bound scales with their magnitudes
    tolerance = 4 * EPS32 * np.abs(expected) + 2 * EPS32 * np.abs(terms).sum(axis=1) / divisor * 1e-3
    assert np.all(np.abs(out - expected) <= tolerance), (kind, np.abs(out - expected) / np.abs(expected) / EPS32)
    expected_grad = dterms / divisor
    np.testing.assert_allclose(grad, expected_grad, rtol=8 * EPS32, atol=4 * EPS32 / x.shape[1], err_msg=kind)


def _cancelling_rows(kind: str) -> tuple[np.ndarray, np.ndarray, float]:
    """Rows of two entries whose terms cancel to far below float32's resolution: (y, x, ε).

    Poisson: ``y = (0, k)``, ``x = (p1, p2)`` with ``p1`` the float32 nearest to
    ``k·log(p2 + ε) - p2`` (so that the mean ``(p1 + p2 - k·log(p2 + ε))/2`` is tiny);
    KL: ``t = (a, 1 - a)``, ``p = (b, 1 - b)`` with ``b`` a few float32 steps from ``a``.
    Of many random candidates, those whose exact result (float64 preselection) is
    smallest relative to the terms. Poisson's cancel to 2⁻³³ (median) and 2⁻⁴¹ of
    their magnitudes, where an error of the kernel's float64 logarithm shows and
    float32 rounding hides nothing (measured: within 2⁻⁵³ of the magnitudes). KL's
    cannot go below ~2⁻²⁴ with float32 inputs (``|t - p|`` is at least a float32
    step and the loss ~``(t - p)²``): there the check holds them to float32's rounding.
    """
    rng = np.random.default_rng(17)
    n, keep = 20000, 300
    eps = float(F32(1e-7))
    if kind == "poisson":
        k = rng.integers(2, 60, n).astype(np.float64)
        p2 = rng.uniform(0.05, 4.0, n).astype(F32).astype(np.float64)
        p1 = (k * np.log(p2 + eps) - p2).astype(F32).astype(np.float64)
        ok = p1 > 0
        y = np.stack([np.zeros(n), k], axis=1)[ok]
        x = np.stack([p1, p2], axis=1)[ok]
        value = (x[:, 0] + x[:, 1] - y[:, 1] * np.log(x[:, 1] + eps)) / 2
        scale = (x[:, 0] + x[:, 1] + y[:, 1] * np.abs(np.log(x[:, 1] + eps))) / 2
    else:
        a = rng.uniform(0.01, 0.99, n).astype(F32)
        b = a.copy()
        steps = rng.integers(1, 4, n)
        toward = np.where(rng.random(n) < 0.5, F32(0), F32(1))
        for _ in range(3):  # b = a moved 1 to 3 float32 steps up or down
            b = np.where(steps > 0, np.nextafter(b, toward), b)
            steps -= 1
        y = np.stack([a, F32(1) - a], axis=1).astype(np.float64)
        x = np.stack([b, F32(1) - b], axis=1).astype(np.float64)
        terms = y * np.log(y / x)
        value, scale = terms.sum(axis=1), np.abs(terms).sum(axis=1)
    order = np.argsort(np.abs(value) / scale)[:keep]
    return y[order].astype(F32), x[order].astype(F32), eps


def _exact_row(kind: str, y: np.ndarray, x: np.ndarray, eps: float) -> tuple[float, float]:
    """(loss, sum of the terms' magnitudes) of one row in mpmath at 120 bits."""
    with mpmath.workprec(120):
        t, p = [mpmath.mpf(float(v)) for v in y], [mpmath.mpf(float(v)) for v in x]
        if kind == "poisson":
            pieces = [p[j] - t[j] * mpmath.log(p[j] + mpmath.mpf(eps)) for j in range(len(p))]
            magnitude = sum(abs(p[j]) + abs(t[j] * mpmath.log(p[j] + mpmath.mpf(eps))) for j in range(len(p)))
            return float(sum(pieces) / len(p)), float(magnitude / len(p))
        pieces = [t[j] * mpmath.log(t[j] / p[j]) for j in range(len(p))]
        return float(sum(pieces)), float(sum(abs(v) for v in pieces))


def check_cancelling(kind: str) -> None:
    """Poisson/KL rows that cancel to ~2⁻⁴⁰ of their terms: within float32's rounding of the exact
    loss plus 2⁻⁴⁸ of the terms' magnitudes. The kernels' float64 logarithm (log_reduced_2s,
    binary_impl.h) is within 2⁻⁵¹ relative; with the roundings of the products and sums a row is
    within 2⁻⁵⁰ of its magnitudes, so this holds with a factor 4 to spare, while a logarithm
    accurate only to 2⁻⁴⁰ (or float32 arithmetic) would miss it by orders of magnitude."""
    module = _native.binary
    y, x, eps = _cancelling_rows(kind)
    out = np.empty(y.shape[0], F32)
    kind_id = module.KIND_POISSON if kind == "poisson" else module.KIND_KL
    module.row_losses(kind_id, y, x, out, 2.0 if kind == "poisson" else 1.0, 1, None, (eps,))
    for r in range(y.shape[0]):
        exact, magnitude = _exact_row(kind, y[r], x[r], eps)
        allowed = float(np.spacing(np.abs(F32(exact)))) + 2.0**-48 * magnitude
        assert abs(float(out[r]) - exact) <= allowed, (kind, r, y[r], x[r], float(out[r]), exact, magnitude)


def check_all() -> int:
    """Every case of :func:`_cases`, and the cancelling Poisson and KL rows; returns how many cases ran."""
    cases = _cases()
    for kind, _variant, y, x, params in cases:
        check_case(kind, y, x, params)
    check_cancelling("poisson")
    check_cancelling("kl")
    return len(cases)


@pytest.mark.parametrize(("kind", "variant", "y", "x", "params"), _cases(),
                         ids=[f"{c[0]}-{c[1]}" for c in _cases()])
def test_kernel_against_float64_formula(kind, variant, y, x, params):
    check_case(kind, y, x, params)


@pytest.mark.parametrize("kind", ["poisson", "kl"])
def test_cancelling_rows_keep_float64_accuracy(kind):
    check_cancelling(kind)


def test_this_process_runs_the_cpu_build():
    expected = "baseline" if os.environ.get("PROBLOSS_NATIVE_BASELINE", "")[:1] == "1" else "auto"
    assert _native.binary.isa() == expected


def test_general_and_ordinary_loops_agree():
    """The same data through both loops (a clip bound that selects the loop but clips nothing): equal to ~1 ulp."""
    rng = np.random.default_rng(5)
    y = rng.uniform(1e-3, 1.0, (4, COLS)).astype(F32)
    x = rng.uniform(1e-3, 1.0 - 1e-3, (4, COLS)).astype(F32)
    module = _native.binary
    for kind, ordinary, general in [("KIND_KL", (1e-7,), (1e-40,)),
                                    ("KIND_BCE_PROBS", (1e-7, float(F32(1 - 1e-7))), (1e-40, 1.0)),
                                    ("KIND_FOCAL_PROBS", (2.0, 2.0, 0.25, 1.0, 1e-7, float(F32(1 - 1e-7))),
                                     (2.0, 2.0, 0.25, 1.0, 1e-40, 1.0))]:
        a, b = np.empty(4, F32), np.empty(4, F32)
        module.row_losses(getattr(module, kind), y, x, a, float(COLS), 1, None, ordinary)
        module.row_losses(getattr(module, kind), y, x, b, float(COLS), 1, None, general)
        np.testing.assert_allclose(a, b, rtol=2 * EPS32, atol=0, err_msg=kind)


def test_focal_block_redone_by_the_loop_it_suits():
    """Blocks the focal kernel's first loop does not suit are written again by the loop they do suit.

    focal_logits_block runs the short loop's hard-label form when a block's first 16
    labels are 0 or 1, and its soft-label form otherwise; a block with a soft label
    further on is then done again by the soft-label form, and one with a logit beyond
    700 by the general loop. Each element's gradient is then the loop's value for that
    element alone: the same bits as where the block goes to that loop at once (a
    soft first label; a first label already outside the short loops' range).
    """
    rng = np.random.default_rng(11)
    shape = (8, 256)  # one block per row
    hard = (rng.random(shape) < 0.5).astype(F32)
    x = (rng.standard_normal(shape) * 4).astype(F32)
    late = hard.copy()
    late[:, 200] = F32(0.3)  # hard loop first, then the soft-label loop
    early = late.copy()
    early[:, 0] = F32(0.7)  # the soft-label loop at once
    wide = x.copy()
    wide[:, 150] = F32(800.0)  # hard loop first, then the general loop
    wide_early = wide.copy()
    wide_early[:, 0] = F32(900.0)
    module = _native.binary
    eps, one_minus = float(F32(1e-7)), float(F32(1 - 1e-7))
    for gamma in (0.0, 1.0, 2.0):
        for balance in (0.0, 1.0):
            params = (gamma, gamma, 0.25, balance, eps, one_minus)
            grads = {}
            for name, (labels, logits) in {"late": (late, x), "early": (early, x), "wide": (hard, wide),
                                           "wide_early": (hard, wide_early)}.items():
                out, grad = np.empty(shape[0], F32), np.empty(shape, F32)
                module.row_losses(module.KIND_FOCAL_LOGITS, labels, logits, out, 256.0, 1, grad, params)
                assert np.all(np.isfinite(out))
                grads[name] = grad
            np.testing.assert_array_equal(grads["late"][:, 1:], grads["early"][:, 1:])
            np.testing.assert_array_equal(grads["wide"][:, 1:], grads["wide_early"][:, 1:])


BASELINE_CHILD = """
import json, os, sys
import numpy as np
sys.path.insert(0, {tests!r})
import test_native_binary_paths as t
import test_native as tn
import probloss
from probloss import _native
count = t.check_all()
# the public functions against the generic kernel, non-finite inputs included (test_native's checks)
logits, probs, hard, soft = tn._data((7, 300), seed=3)
logits[0, 3], logits[1, 4], logits[2, 5], probs[3, 6] = np.inf, -np.inf, np.nan, np.nan
for fn, kw, x in [(probloss.binary_crossentropy, {{"from_logits": True}}, logits),
                  (probloss.binary_crossentropy, {{}}, probs),
                  (probloss.binary_focal_crossentropy, {{"from_logits": True, "gamma": 2.0}}, logits),
                  (probloss.binary_focal_crossentropy, {{"gamma": 1.5, "apply_class_balancing": True}}, probs),
                  (probloss.poisson, {{}}, probs * 3),
                  (probloss.kl_divergence, {{}}, probs)]:
    tn._close(fn(soft, x, validate="off", **kw), tn._generic(fn, soft, x, validate="off", **kw))
print(json.dumps({{"isa": _native.binary.isa(), "cases": count}}))
"""


def test_baseline_build_against_float64_formula():
    """PROBLOSS_NATIVE_BASELINE=1: the baseline build, every case above and the public functions' parity."""
    src = os.path.dirname(os.path.dirname(probloss.__file__))
    env = {**os.environ, "PROBLOSS_NATIVE_BASELINE": "1",
           "PYTHONPATH": src + os.pathsep + os.environ.get("PYTHONPATH", "")}
    code = BASELINE_CHILD.format(tests=os.path.dirname(os.path.abspath(__file__)))
    run = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300,
                         check=False)
    assert run.returncode == 0, run.stderr[-4000:]
    last = run.stdout.strip().splitlines()[-1]
    assert '"isa": "baseline"' in last, last
    assert f'"cases": {len(_cases())}' in last, last


KL_IDENTITY_CHILD = """
import sys
import numpy as np
sys.path.insert(0, {tests!r})
import test_native_binary_paths as t
out, grad = t.kl_values_and_gradients()
np.save({path!r}, np.concatenate([out.view(np.uint32).ravel(), grad.view(np.uint32).ravel()]))
"""


def kl_cancelling_rows() -> tuple[np.ndarray, np.ndarray]:
    """KL rows whose sum the remainder rho = t - q·p decides: two terms that cancel.

    Each row has t = p except at two entries: t1 one float32 ulp above p1 and t2 one
    below p2 (p1, p2 in [1/2, 1), one binade), so t1·log(t1/p1) + t2·log(t2/p2) cancels
    to ~1e-7 of either term, and q = t/p's rounding (2⁻⁵³) is ~2⁻²⁹ of the row: without
    rho every row's float32 value would be wrong. The last 32 rows: unrelated distributions.
    """
    rng = np.random.default_rng(23)
    rows, cols, near = 544, 64, 512
    p = rng.uniform(0.5, 1.0, (rows, cols)).astype(F32)
    t = p.copy()
    r = np.arange(near)
    t[r, 5] = np.nextafter(p[r, 5], F32(2))
    t[r, 40] = np.nextafter(p[r, 40], F32(0))
    t[near:] = rng.uniform(1e-7, 1.0, (rows - near, cols)).astype(F32)
    return t, p


def kl_values_and_gradients() -> tuple[np.ndarray, np.ndarray]:
    """The kernel's KL values and gradients of kl_cancelling_rows (two threads)."""
    t, p = kl_cancelling_rows()
    module = _native.binary
    out, grad = np.empty(t.shape[0], F32), np.empty(t.shape, F32)
    module.row_losses(module.KIND_KL, t, p, out, 1.0, 2, grad, (float(F32(1e-7)),))
    return out, grad


def test_kl_cpu_build_matches_baseline_bit_for_bit(tmp_path):
    """KL's remainder rho is exact in every build (one fused multiply-add on FMA CPUs, four
    operations in the baseline build): the two builds agree to the bit, on rows that rho
    decides, and those rows are right (mpmath)."""
    src = os.path.dirname(os.path.dirname(probloss.__file__))
    env = {**os.environ, "PROBLOSS_NATIVE_BASELINE": "1",
           "PYTHONPATH": src + os.pathsep + os.environ.get("PYTHONPATH", "")}
    path = str(tmp_path / "baseline.npy")
    code = KL_IDENTITY_CHILD.format(tests=os.path.dirname(os.path.abspath(__file__)), path=path)
    run = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300,
                         check=False)
    assert run.returncode == 0, run.stderr[-4000:]
    out, grad = kl_values_and_gradients()
    mine = np.concatenate([out.view(np.uint32).ravel(), grad.view(np.uint32).ravel()])
    np.testing.assert_array_equal(mine, np.load(path, allow_pickle=False))
    t, p = kl_cancelling_rows()
    with mpmath.workprec(160):
        for row in range(0, 512, 4):
            exact = sum(mpmath.mpf(float(a)) * mpmath.log(mpmath.mpf(float(a)) / mpmath.mpf(float(b)))
                        for a, b in ((t[row, 5], p[row, 5]), (t[row, 40], p[row, 40])))
            ulps = abs(float(out[row]) - float(exact)) / float(np.spacing(F32(float(exact))))
            assert ulps <= 1.0, (row, out[row], float(exact), ulps)
