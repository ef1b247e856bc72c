"""``probloss.grad_hess`` and the XGBoost / LightGBM adapters (docs/gbdt.md).

* every gradient and Hessian diagonal equals ``jax.grad`` / ``jax.hessian`` of the
  probloss loss itself (generic kernels, float64) for every option combination;
* finite derivatives at raw scores of ``±1e4``, non-negative Hessians for the convex losses;
* the same library, dtype and values on every array library;
* the default binary objective reproduces XGBoost's ``binary:logistic`` and LightGBM's
  ``binary``; the softmax objective reaches ``multi:softprob`` / ``multiclass``'s best
  validation log-loss within 1%; both scikit-learn wrappers; the flat layouts of older
  releases; the example in docs/gbdt.md runs.
"""

from __future__ import annotations

import inspect
import itertools
import re
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import library

import probloss
from probloss._boosting import Adapter

RNG_SEED = 20261202


def _binary_losses() -> list[Any]:
    losses = [probloss.BinaryCrossentropy(from_logits=True, label_smoothing=ls) for ls in (0.0, 0.2)]
    for balancing, gamma in itertools.product((False, True), (0.0, 0.5, 2.0, 3.0)):
        losses.append(probloss.BinaryFocalCrossentropy(apply_class_balancing=balancing, alpha=0.3, gamma=gamma,
                                                       from_logits=True))
    losses.append(probloss.BinaryFocalCrossentropy(apply_class_balancing=True, alpha=0.3, gamma=2.0,
                                                   from_logits=True, label_smoothing=0.1))
    return losses


def _softmax_losses() -> list[Any]:
    losses = [probloss.CategoricalCrossentropy(from_logits=True, label_smoothing=ls) for ls in (0.0, 0.1)]
    for alpha, gamma in itertools.product((0.25, [0.1, 0.2, 0.3, 0.4]), (0.0, 0.5, 2.0)):
        losses.append(probloss.CategoricalFocalCrossentropy(alpha=alpha, gamma=gamma, from_logits=True))
    losses.append(probloss.CategoricalFocalCrossentropy(alpha=[0.1, 0.2, 0.3, 0.4], gamma=0.5, from_logits=True,
                                                        label_smoothing=0.1))
    losses += [probloss.SparseCategoricalCrossentropy(from_logits=True, ignore_class=c) for c in (None, 1, -1)]
    return losses


#: Every loss, and every option value at least once; label smoothing with every other option
#: is covered by test_label_smoothing_is_smoothed_labels (smoothing only transforms the labels).
def _loss_id(loss: Any) -> str:
    config = loss.get_config()
    keys = ("label_smoothing", "apply_class_balancing", "alpha", "gamma", "ignore_class")
    return type(loss).__name__ + "".join(f"-{k}={config[k]}" for k in keys if k in config)


ALL_LOSSES = [*_binary_losses(), *_softmax_losses(), probloss.Poisson()]


def _inputs(loss: Any, rng: np.random.Generator, *, soft: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Labels and raw scores (float64, shape (7, 4): one shape keeps JAX's op-by-op compiles cached)."""
    x = 3.0 * rng.normal(size=(7, 4))
    if isinstance(loss, probloss.Poisson):
        return rng.poisson(2.0, size=(7, 4)).astype(np.float64), 0.5 * x
    if isinstance(loss, (probloss.BinaryCrossentropy, probloss.BinaryFocalCrossentropy)):
        y = rng.uniform(size=(7, 4)) if soft else rng.integers(0, 2, size=(7, 4)).astype(np.float64)
        y[0] = [0.0, 1.0, 1.0, 0.0]  # hard labels in every draw
        return y, x
    if isinstance(loss, probloss.SparseCategoricalCrossentropy):
        labels = rng.integers(0, 4, size=7)
        labels[:3] = [1, -1, 3]
        if loss.ignore_class != -1:
            labels[1] = 0
        return labels, x
    y = rng.dirichlet(np.ones(4), size=7) if soft else np.eye(4)[rng.integers(0, 4, size=7)]
    y[0] = [0.0, 0.0, 1.0, 0.0]
    return y, x


def _per_element(loss: Any) -> bool:
    return not isinstance(loss, (probloss.CategoricalCrossentropy, probloss.CategoricalFocalCrossentropy,
                                 probloss.SparseCategoricalCrossentropy))


def _jax_derivatives(loss: Any, y: np.ndarray, x: np.ndarray, w: np.ndarray) -> tuple[Any, Any]:
    """``jax.grad`` and the Hessian's diagonal of ``sum(w · per-sample loss)``, through probloss itself.

    Samples (rows, or elements for the binary losses and Poisson) are independent,
    so the Hessian is block-diagonal and its diagonal is the Hessian-vector
    product with ``e_j`` in every row (one ``jvp`` of ``jax.grad`` per class; one
    with all ones for the elementwise losses): ``jax.hessian``'s diagonal
    without its ``n·k`` directions.
    """
    import jax
    import jax.numpy as jnp

    per_element = _per_element(loss)
    yj, wj = jnp.asarray(y), jnp.asarray(w)

    def total(xj: Any) -> Any:
        if isinstance(loss, probloss.Poisson):  # the loss takes rates; grad_hess, log-rates
            values = probloss.poisson(yj[..., None], jnp.exp(xj)[..., None])
        elif per_element:  # each element its own sample: a class axis of length 1
            values = loss.call(yj[..., None], xj[..., None])
        else:
            values = loss.call(yj, xj)
        return jnp.sum(values * jnp.reshape(wj, wj.shape + (1,) * (values.ndim - 1)))

    xj = jnp.asarray(x)
    grad_fn = jax.grad(total)
    if per_element:
        directions = [jnp.ones_like(xj)]
    else:
        directions = [jnp.broadcast_to(jnp.arange(x.shape[1]) == j, x.shape).astype(xj.dtype)
                      for j in range(x.shape[1])]
    products = [jax.jvp(grad_fn, (xj,), (d,))[1] for d in directions]
    hess = products[0] if per_element else sum(p * d for p, d in zip(products, directions, strict=True))
    return np.asarray(grad_fn(xj)), np.asarray(hess)


def test_derivatives_equal_autodiff_of_the_loss(request: pytest.FixtureRequest) -> None:
    # One test over every option combination (not one per combination): JAX compiles each
    # primitive once per shape, a cost that one process pays once, not once per xdist worker.
    library("jax")  # skips before importing JAX where it is not selected
    request.getfixturevalue("jax_x64")
    rng = np.random.default_rng(RNG_SEED)
    for loss in ALL_LOSSES:
        y, x = _inputs(loss, rng)
        w = rng.uniform(0.5, 2.0, size=x.shape[0])
        epsilon = probloss.epsilon()
        try:
            if isinstance(loss, probloss.Poisson):
                probloss.set_epsilon(1e-300)  # the ε -> 0 limit that grad_hess differentiates
            with probloss.fast_paths(False):  # the generic kernels: differentiable twice
                expected_grad, expected_hess = _jax_derivatives(loss, y, x, w)
        finally:
            probloss.set_epsilon(epsilon)
        grad, hess = probloss.grad_hess(loss, y, x, w)
        assert grad.dtype == hess.dtype == np.float64
        np.testing.assert_allclose(grad, expected_grad, rtol=1e-8, atol=1e-12, err_msg=_loss_id(loss))
        np.testing.assert_allclose(hess, expected_hess, rtol=1e-8, atol=1e-12, err_msg=_loss_id(loss))
        # Sample weights multiply both derivatives.
        unweighted = probloss.grad_hess(loss, y, x)
        np.testing.assert_allclose(grad, unweighted[0] * w[:, None], rtol=1e-15, atol=0)
        np.testing.assert_allclose(hess, unweighted[1] * w[:, None], rtol=1e-15, atol=0)


@pytest.mark.parametrize("gamma", [0.0, 0.5, 2.0])
@pytest.mark.parametrize("balancing", [False, True])
def test_label_smoothing_is_smoothed_labels(gamma: float, balancing: bool) -> None:
    # Smoothing is a transformation of the labels (Keras's formulas): with it, the
    # derivatives are those of the unsmoothed loss on the smoothed labels.
    rng = np.random.default_rng(RNG_SEED)
    y, x = rng.uniform(size=(7, 4)), 3.0 * rng.normal(size=(7, 4))
    y[0] = [0.0, 1.0, 1.0, 0.0]
    w = rng.uniform(0.5, 2.0, size=7)
    options = {"apply_class_balancing": balancing, "alpha": 0.3, "gamma": gamma, "from_logits": True}
    smoothed = probloss.grad_hess(probloss.BinaryFocalCrossentropy(**options, label_smoothing=0.2), y, x, w)
    plain = probloss.grad_hess(probloss.BinaryFocalCrossentropy(**options), 0.8 * y + 0.1, x, w)
    np.testing.assert_allclose(smoothed, plain, rtol=1e-14, atol=0)
    y = rng.dirichlet(np.ones(4), size=7)
    alpha = [0.1, 0.2, 0.3, 0.4] if balancing else 0.25
    options = {"alpha": alpha, "gamma": gamma, "from_logits": True}
    smoothed = probloss.grad_hess(probloss.CategoricalFocalCrossentropy(**options, label_smoothing=0.2), y, x, w)
    plain = probloss.grad_hess(probloss.CategoricalFocalCrossentropy(**options), 0.8 * y + 0.05, x, w)
    np.testing.assert_allclose(smoothed, plain, rtol=1e-14, atol=0)


@pytest.mark.parametrize("loss", ALL_LOSSES, ids=_loss_id)
def test_extreme_scores_are_finite(loss: Any) -> None:
    rng = np.random.default_rng(RNG_SEED)
    for soft in (False, True):
        y, x = _inputs(loss, rng, soft=soft)
        if isinstance(loss, probloss.Poisson):
            x = -np.abs(x)
        for scale in (1e4, 1e300):
            extreme = scale * np.sign(x)  # Poisson: negative; exp(z) is +inf above z = 709.8 (next test)
            extreme[0] = 0.0  # a row of ties among the extreme ones
            grad, hess = probloss.grad_hess(loss, y, extreme)
            assert np.isfinite(grad).all(), (soft, scale)
            assert np.isfinite(hess).all(), (soft, scale)
            if getattr(loss, "gamma", 0.0) == 0.0:  # convex: never a negative Hessian
                assert (hess >= 0).all()
        grad, hess = probloss.grad_hess(loss, y, 3.0 * rng.normal(size=x.shape), hessian_floor=1e-6)
        ignored = getattr(loss, "ignore_class", None)
        counted = np.ones(x.shape[0], bool) if ignored is None else y != ignored  # ignored: hess 0
        assert (hess[counted] >= 1e-6).all()
        assert (hess[~counted] == 0).all()


def test_poisson_beyond_the_float_range_is_inf_not_nan() -> None:
    grad, hess = probloss.grad_hess(probloss.Poisson(), np.array([1.0, 1.0, 0.0]), np.array([-1e4, 1e4, 700.0]))
    np.testing.assert_array_equal(grad, [-1.0, np.inf, np.exp(700.0)])
    np.testing.assert_array_equal(hess, [0.0, np.inf, np.exp(700.0)])


def test_focal_hessian_is_negative_where_documented() -> None:
    # docs/gbdt.md: for gamma = 2 and y = 1 the exact Hessian is negative below a logit of about -2.8.
    focal = probloss.BinaryFocalCrossentropy(gamma=2.0, from_logits=True)
    x = np.array([-10.0, -3.0, -2.7, 0.0, 5.0])
    _, hess = probloss.grad_hess(focal, np.ones(5), x)
    np.testing.assert_array_equal(hess < 0, [True, True, False, False, False])
    _, floored = probloss.grad_hess(focal, np.ones(5), x, hessian_floor=1e-16)
    np.testing.assert_array_equal(floored, np.maximum(hess, 1e-16))


@pytest.mark.parametrize("loss", [
    probloss.BinaryFocalCrossentropy(gamma=2.0, apply_class_balancing=True, from_logits=True, label_smoothing=0.1),
    probloss.CategoricalFocalCrossentropy(alpha=[0.1, 0.2, 0.3, 0.4], gamma=0.5, from_logits=True),
    probloss.SparseCategoricalCrossentropy(from_logits=True, ignore_class=-1),
    probloss.Poisson(),
], ids=_loss_id)
def test_every_array_library(loss: Any, backend: Any) -> None:
    rng = np.random.default_rng(RNG_SEED)
    y, x = _inputs(loss, rng)
    w = rng.uniform(0.5, 2.0, size=x.shape[0])
    expected = probloss.grad_hess(loss, y, x, w)
    for dtype in ("float32",):  # computed in float64 inside, rounded once (float64: the NumPy tests)
        xb = backend.asarray(x, dtype=dtype)
        yb = backend.asarray(y) if y.dtype.kind == "i" else backend.asarray(y, dtype=dtype)
        grad, hess = probloss.grad_hess(loss, yb, xb, backend.asarray(w, dtype=dtype))
        for got, want in zip((grad, hess), expected, strict=True):
            assert backend.is_native(got)
            assert str(got.dtype).endswith(dtype)
            tolerance = 1e-12 if dtype == "float64" else 1e-6  # float32 scores: rounded inputs
            np.testing.assert_allclose(backend.to_numpy(got), want, rtol=tolerance, atol=tolerance)


def test_errors() -> None:
    with pytest.raises(ValueError, match="from_logits=True"):
        probloss.grad_hess(probloss.BinaryCrossentropy(), [0.0, 1.0], [0.1, 0.2])
    with pytest.raises(ValueError, match="from_logits=True"):
        probloss.grad_hess("categorical_crossentropy", [[0.0, 1.0]], [[0.1, 0.2]])
    with pytest.raises(TypeError, match="no raw-score derivative for KLDivergence"):
        probloss.grad_hess(probloss.KLDivergence(), [[0.0, 1.0]], [[0.1, 0.2]])
    with pytest.raises(TypeError, match="needs a probloss loss object"):
        probloss.grad_hess(len, [0.0], [0.0])
    with pytest.raises(ValueError, match="sample_weight"):
        probloss.grad_hess(probloss.CategoricalCrossentropy(from_logits=True), np.eye(3), np.zeros((3, 3)),
                           np.ones(4))
    with pytest.raises(ValueError, match="outside the valid range"):
        probloss.grad_hess(probloss.SparseCategoricalCrossentropy(from_logits=True), [3], [[0.0, 1.0, 2.0]])


def test_missing_library_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    loss = probloss.BinaryCrossentropy(from_logits=True)
    for module in ("xgboost", "lightgbm"):
        monkeypatch.setitem(sys.modules, module, None)  # what `import` sees when it is not installed
        adapters = getattr(probloss, module)
        for make in (adapters.objective, adapters.metric):
            with pytest.raises(ImportError, match=rf"pip install 'probloss\[{module}\]'"):
                make(loss)


@pytest.mark.parametrize("order", ["C", "F"])
def test_flat_layouts_of_older_releases(order: str) -> None:
    # XGBoost 1.x flattens (n, k) scores row-major, LightGBM 3.x class-major.
    rng = np.random.default_rng(RNG_SEED)
    labels, x = rng.integers(0, 3, size=5).astype(np.float64), rng.normal(size=(5, 3))
    adapter = Adapter(probloss.SparseCategoricalCrossentropy(from_logits=True), hessian_floor=None, flat_order=order)
    grad, hess = adapter.derivatives(labels, x, None)
    flat_grad, flat_hess = adapter.derivatives(labels, x.ravel(order=order), None)
    np.testing.assert_array_equal(flat_grad, grad.ravel(order=order))
    np.testing.assert_array_equal(flat_hess, hess.ravel(order=order))
    # The one-hot loss takes class indices and gives the same derivatives.
    onehot = Adapter(probloss.CategoricalCrossentropy(from_logits=True), hessian_floor=None, flat_order=order)
    np.testing.assert_array_equal(onehot.derivatives(labels, x, None)[0], grad)


# ----------------------------------------------------------------- the libraries


def _binary_data(n: int = 400) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(n, 5))
    return X, (X[:, 0] + 0.5 * X[:, 1] + rng.normal(size=n) > 0.3).astype(np.float64)


def _multiclass_data(k: int = 3, n: int = 900) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(1)
    X = rng.normal(size=(n, 5))
    y = np.argmax(1.5 * X[:, :k] + rng.normal(size=(n, k)), axis=1).astype(np.float64)
    return X[:600], y[:600], X[600:], y[600:]


def _log_loss(margin: np.ndarray, y: np.ndarray) -> float:
    """Multi-class log-loss from raw scores, in float64 (independent of probloss)."""
    shifted = margin - margin.max(axis=1, keepdims=True)
    log_p = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    return float(-np.mean(log_p[np.arange(y.size), y.astype(int)]))


def test_xgboost_binary_reproduces_binary_logistic() -> None:
    import xgboost as xgb

    X, y = _binary_data()
    dtrain = xgb.DMatrix(X, label=y, base_margin=np.zeros(y.size))  # the same start: margin 0
    params = {"max_depth": 3, "eta": 0.3, "nthread": 1, "tree_method": "hist", "seed": 0}
    builtin = xgb.train({**params, "objective": "binary:logistic"}, dtrain, num_boost_round=20)
    custom = xgb.train(params, dtrain, num_boost_round=20,
                       obj=probloss.xgboost.objective(probloss.BinaryCrossentropy(from_logits=True)))
    margin = custom.predict(dtrain, output_margin=True)
    np.testing.assert_allclose(1.0 / (1.0 + np.exp(-margin)), builtin.predict(dtrain), rtol=0, atol=1e-6)
    # The metric on the built-in's probabilities is XGBoost's logloss.
    metric = probloss.xgboost.metric(probloss.BinaryCrossentropy(from_logits=True), output_margin=False)
    name, value = metric(builtin.predict(dtrain), dtrain)
    expected = float(builtin.eval(dtrain).split("logloss:")[1])
    assert name == "binary_crossentropy"
    assert value == pytest.approx(expected, rel=1e-5)


def test_lightgbm_binary_reproduces_binary() -> None:
    import lightgbm as lgb

    X, y = _binary_data()
    params = {"num_leaves": 7, "learning_rate": 0.3, "num_threads": 1, "verbose": -1, "seed": 0,
              "deterministic": True}
    builtin = lgb.train({**params, "objective": "binary", "boost_from_average": False}, lgb.Dataset(X, label=y), 20)
    custom = lgb.train({**params, "objective": probloss.lightgbm.objective(probloss.BinaryCrossentropy(
        from_logits=True))}, lgb.Dataset(X, label=y), 20)
    np.testing.assert_allclose(1.0 / (1.0 + np.exp(-custom.predict(X))), builtin.predict(X), rtol=0, atol=1e-6)


def test_xgboost_multiclass_reaches_softprob() -> None:
    import xgboost as xgb

    Xt, yt, Xv, yv = _multiclass_data()
    dtrain, dvalid = xgb.DMatrix(Xt, label=yt), xgb.DMatrix(Xv, label=yv)
    params = {"max_depth": 2, "eta": 0.1, "nthread": 1, "tree_method": "hist", "num_class": 3, "seed": 0}
    builtin = xgb.train({**params, "objective": "multi:softprob"}, dtrain, num_boost_round=100)
    loss = probloss.SparseCategoricalCrossentropy(from_logits=True)
    history: dict[str, Any] = {}
    custom = xgb.train({**params, "disable_default_eval_metric": 1}, dtrain, num_boost_round=100,
                       obj=probloss.xgboost.objective(loss), evals=[(dvalid, "valid")],
                       custom_metric=probloss.xgboost.metric(loss), evals_result=history, verbose_eval=False)
    rounds = range(10, 101, 10)
    best_builtin = min(_log_loss(np.log(builtin.predict(dvalid, iteration_range=(0, r))), yv) for r in rounds)
    curve = [_log_loss(custom.predict(dvalid, output_margin=True, iteration_range=(0, r)), yv) for r in rounds]
    assert min(curve) <= 1.01 * best_builtin
    # The metric XGBoost recorded each round is the log-loss of that round's scores.
    np.testing.assert_allclose(history["valid"]["sparse_categorical_crossentropy"][9::10], curve, rtol=1e-5)


def test_lightgbm_multiclass_reaches_multiclass() -> None:
    import lightgbm as lgb

    Xt, yt, Xv, yv = _multiclass_data()
    params = {"num_leaves": 4, "learning_rate": 0.1, "num_threads": 1, "verbose": -1, "num_class": 3,
              "seed": 0, "deterministic": True}
    builtin = lgb.train({**params, "objective": "multiclass"}, lgb.Dataset(Xt, label=yt), 100)
    loss = probloss.SparseCategoricalCrossentropy(from_logits=True)
    history: dict[str, Any] = {}
    custom = lgb.train({**params, "objective": probloss.lightgbm.objective(loss), "metric": "None"},
                       lgb.Dataset(Xt, label=yt), 100, valid_sets=[lgb.Dataset(Xv, label=yv)],
                       feval=probloss.lightgbm.metric(loss), callbacks=[lgb.record_evaluation(history)])
    rounds = range(10, 101, 10)
    best_builtin = min(_log_loss(np.log(builtin.predict(Xv, num_iteration=r)), yv) for r in rounds)
    curve = [_log_loss(custom.predict(Xv, num_iteration=r), yv) for r in rounds]
    assert min(curve) <= 1.01 * best_builtin
    np.testing.assert_allclose(history["valid_0"]["sparse_categorical_crossentropy"][9::10], curve, rtol=1e-6)


def test_scikit_learn_wrappers() -> None:
    import lightgbm as lgb
    import xgboost as xgb

    Xt, yt, Xv, yv = _multiclass_data()
    yt, yv = yt.astype(int), yv.astype(int)
    weights = np.random.default_rng(2).uniform(0.5, 2.0, size=yv.size)
    loss = probloss.CategoricalCrossentropy(from_logits=True)  # class indices are one-hot by the adapter
    clf = xgb.XGBClassifier(n_estimators=10, max_depth=2, n_jobs=1, objective=probloss.xgboost.objective(loss),
                            eval_metric=probloss.xgboost.metric(loss))
    clf.fit(Xt, yt, eval_set=[(Xv, yv)], sample_weight_eval_set=[weights], verbose=False)
    margin = clf.get_booster().predict(xgb.DMatrix(Xv), output_margin=True)
    recorded = clf.evals_result()["validation_0"]["categorical_crossentropy"][-1]
    shifted = margin - margin.max(axis=1, keepdims=True)
    nll = -(shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True)))[np.arange(yv.size), yv]
    assert recorded == pytest.approx(np.sum(weights * nll) / np.sum(weights), rel=1e-5)
    model = lgb.LGBMClassifier(n_estimators=10, num_leaves=4, n_jobs=1, verbose=-1,
                               objective=probloss.lightgbm.objective(loss))
    # LightGBM 4.7 renamed eval_set to eval_X / eval_y (and warns on the old name).
    evaluation = {"eval_X": (Xv,), "eval_y": (yv,)} if "eval_X" in inspect.signature(model.fit).parameters \
        else {"eval_set": [(Xv, yv)]}
    model.fit(Xt, yt, eval_sample_weight=[weights], eval_metric=probloss.lightgbm.metric(loss), **evaluation)
    margin = model.booster_.predict(Xv)
    shifted = margin - margin.max(axis=1, keepdims=True)
    nll = -(shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True)))[np.arange(yv.size), yv]
    recorded = model.evals_result_["valid_0"]["categorical_crossentropy"][-1]
    assert recorded == pytest.approx(np.sum(weights * nll) / np.sum(weights), rel=1e-5)


def _docs_code() -> str:
    text = (Path(__file__).parents[1] / "docs" / "gbdt.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.DOTALL)
    assert len(blocks) == 2  # the signature line, and the example
    return blocks[1]


def test_docs_example_runs() -> None:
    namespace: dict[str, Any] = {}
    exec(compile(_docs_code(), "docs/gbdt.md", "exec"), namespace)  # our own file, not data
    average_precision = namespace["average_precision"]
    # The example's average precision, against one computed by hand: ranks 1 and 3 are positives.
    assert average_precision(np.array([1.0, 0.0, 1.0, 0.0]), np.array([0.9, 0.8, 0.7, 0.6])) == pytest.approx(
        (1.0 + 2.0 / 3.0) / 2.0)
    # Tied scores form one threshold: precision 1/2 at recall 1.
    assert average_precision(np.array([1.0, 0.0]), np.array([0.5, 0.5])) == pytest.approx(0.5)
    base_rate = namespace["y"][namespace["test"]].mean()
    for ap in (namespace["ap_logistic"], namespace["ap_focal"]):
        assert base_rate < ap <= 1.0  # both models rank far better than chance
