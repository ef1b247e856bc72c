"""Fit the float polynomials of binary CE from logits (binary_impl.h: exp_neg_f6, log1p_unit_f8).

Minimax fits of the relative error by linear programming on Chebyshev points
(scipy's HiGHS), the exact values from mpmath. Coefficients are rounded to
float32 one at a time, lowest order first, each later one refitted with the
rounded ones fixed, so the printed error is that of the float coefficients (in
exact arithmetic; the float evaluation adds its roundings, which
scripts/native_math_ulps.c-style sweeps measure).

- ``e^r = 1 + r + c2·r^2 + ... + c6·r^6`` on ``|r| <= 0.347`` (the reduced
  argument of pl_math.h's float exps, plus a rounding): 3.1e-9.
- ``log1p(e) = e + e^2·(c0 + c1·e + ... + c8·e^8)`` on ``[0, 1]``: 5.3e-9.

Run: ``.venv/bin/python scripts/fit_bce_polys.py`` (a few seconds).
"""

from __future__ import annotations

import mpmath
import numpy as np
from scipy.optimize import linprog

mpmath.mp.prec = 100


def minimax(basis: np.ndarray, target: np.ndarray, weight: np.ndarray,
            fixed: np.ndarray) -> tuple[np.ndarray, float]:
    """Coefficients c minimising max |weight·(basis @ c + fixed - target)|, and that maximum.

    A least-squares fit first, then the linear program on its scaled residual
    (HiGHS's tolerances are ~1e-7, far above the errors sought here).
    """
    m, n = basis.shape
    c0 = np.linalg.lstsq(weight[:, None] * basis, weight * (target - fixed), rcond=None)[0]
    resid = weight * (target - fixed - basis @ c0)
    scale = 1.0 / max(float(np.max(np.abs(resid))), 1e-300)
    cols = 1.0 / np.max(np.abs(weight[:, None] * basis), 0)
    scaled = weight[:, None] * basis * cols * scale
    a_ub = np.vstack([np.hstack([scaled, -np.ones((m, 1))]), np.hstack([-scaled, -np.ones((m, 1))])])
    b_ub = np.concatenate([resid * scale, -resid * scale])
    res = linprog(np.r_[np.zeros(n), 1.0], A_ub=a_ub, b_ub=b_ub, bounds=[(None, None)] * (n + 1), method="highs",
                  options={"primal_feasibility_tolerance": 1e-10, "dual_feasibility_tolerance": 1e-10})
    return c0 + res.x[:n] * cols, float(res.x[n] / scale)


def fit_rounded(points: np.ndarray, target: np.ndarray, weight: np.ndarray, powers: list[int],
                fixed: dict[int, float]) -> tuple[dict[int, float], float]:
    """Fit the coefficients of ``powers`` (``fixed`` ones given), rounding them to float32 lowest first."""
    coeffs = dict(fixed)
    free = list(powers)
    while free:
        basis = np.stack([points**j for j in free], 1)
        known = sum((c * points**j for j, c in coeffs.items()), np.zeros_like(points))
        c, _ = minimax(basis, target, weight, known)
        coeffs[free[0]] = float(np.float32(c[0]))
        free = free[1:]
    approx = sum(c * points**j for j, c in coeffs.items())
    return coeffs, float(np.max(np.abs(weight * (approx - target))))


def main() -> None:
    r = np.cos(np.linspace(0, np.pi, 4000)) * 0.347
    exact = np.array([float(mpmath.exp(mpmath.mpf(v))) for v in r])
    coeffs, err = fit_rounded(r, exact, 1 / exact, list(range(2, 7)), {0: 1.0, 1: 1.0})
    print(f"exp, degree 6: relative error {err:.3g}")
    for j in sorted(coeffs, reverse=True):
        print(f"  r^{j}: {np.float32(coeffs[j])!r}")

    e = (1 - np.cos(np.linspace(0, np.pi, 6000))) / 2
    e = e[e > 1e-6]
    logs = [mpmath.log1p(mpmath.mpf(v)) for v in e]
    rstar = np.array([float((lg - mpmath.mpf(v)) / mpmath.mpf(v) ** 2) for lg, v in zip(logs, e, strict=True)])
    weight = e**2 / np.array([float(lg) for lg in logs])  # error of r -> relative error of log1p
    coeffs, err = fit_rounded(e, rstar, weight, list(range(9)), {})
    print(f"log1p on [0, 1], r of degree 8: relative error {err:.3g}")
    for j in sorted(coeffs, reverse=True):
        print(f"  e^{j}: {np.float32(coeffs[j])!r}")


if __name__ == "__main__":
    main()
