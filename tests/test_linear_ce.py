"""``linear_cross_entropy``: the fused, chunked projection + sparse cross-entropy.

The oracle is an unfused float64 NumPy computation written here (logits, then the
per-token loss and its analytic gradient), itself checked against central finite
differences and against Keras's ``SparseCategoricalCrossentropy(from_logits=True)``.
Every option (bias, ignore_class, smoothing, z-loss, soft-cap, sample weights, every
reduction) is compared on every library for the value, and on NumPy, PyTorch, JAX
and the generic kernel for the gradients (loss within 1e-5 relative, gradients
within 1e-4 relative Frobenius norm). Chunks of 4 tokens over 10 tokens exercise
several chunks and a ragged last one.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pytest
from conftest import Library, library

import probloss

N_SHAPE = (2, 5)  # batch x time: leading axes are flattened into tokens
D, V = 6, 13
CHUNK = 4
IGNORE = -1


def _inputs(seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, V, N_SHAPE)
    labels[0, 1] = labels[1, 3] = IGNORE
    return {
        "hidden": rng.standard_normal((*N_SHAPE, D)).astype(np.float32),
        "weight": (rng.standard_normal((V, D)) * 0.8).astype(np.float32),
        "bias": (rng.standard_normal(V) * 0.5).astype(np.float32),
        "labels": labels,
        "sample_weight": rng.uniform(0.2, 2.0, N_SHAPE).astype(np.float32),
    }


def reference(hidden: np.ndarray, weight: np.ndarray, labels: np.ndarray, *, bias: np.ndarray | None = None,
              ignore_class: int | None = None, label_smoothing: float = 0.0, z_loss: float = 0.0,
              logit_softcap: float | None = None, sample_weight: np.ndarray | None = None,
              reduction: str = "sum_over_batch_size") -> tuple[np.ndarray, tuple[Any, Any, Any] | None]:
    """Unfused float64: the loss and (for reducing reductions) its gradients."""
    h = hidden.astype(np.float64).reshape(-1, hidden.shape[-1])
    w = weight.astype(np.float64)
    y = labels.reshape(-1)
    u = h @ w.T + (0.0 if bias is None else bias.astype(np.float64))
    z = u if logit_softcap is None else logit_softcap * np.tanh(u / logit_softcap)
    valid = np.ones(y.shape, bool) if ignore_class is None else y != ignore_class
    y0 = np.where(valid, y, 0)
    target = (1 - label_smoothing) * np.eye(V)[y0] + label_smoothing / V
    lse = np.log(np.sum(np.exp(z - z.max(1, keepdims=True)), 1)) + z.max(1)
    log_softmax = z - lse[:, None]
    per_token = -np.sum(target * log_softmax, 1) + z_loss * lse**2
    per_token = np.where(valid, per_token, 0.0)
    sw = np.ones(y.shape) if sample_weight is None else np.broadcast_to(
        sample_weight.astype(np.float64).reshape(sample_weight.shape + (1,) * (labels.ndim - sample_weight.ndim)),
        labels.shape).reshape(-1)
    weighted = per_token * sw * valid
    if reduction == "none":
        return weighted.reshape(labels.shape), None
    if reduction == "sum":
        coef = sw * valid
    elif reduction == "mean_with_sample_weight":
        total = np.sum(sw * valid)
        coef = sw * valid / total if total else 0 * sw
    else:  # sum_over_batch_size / mean: over the tokens not ignored
        count = valid.sum()
        coef = sw * valid / count if count else 0 * sw
    loss = np.sum(per_token * coef)
    softmax = np.exp(log_softmax)
    d_z = (softmax * (1 + 2 * z_loss * lse[:, None]) - target) * coef[:, None]
    d_u = d_z if logit_softcap is None else d_z * (1 - np.tanh(u / logit_softcap) ** 2)
    d_h = (d_u @ w).reshape(hidden.shape)
    return np.asarray(loss), (d_h, d_u.T @ h, d_u.sum(0))


OPTIONS = {
    "plain": {},
    "bias": {"bias": True},
    "ignore": {"ignore_class": IGNORE},
    "smoothing": {"label_smoothing": 0.2},
    "z_loss": {"z_loss": 1e-2},
    "softcap": {"logit_softcap": 2.5},
    "weights": {"sample_weight": True, "ignore_class": IGNORE},
    "all": {"bias": True, "ignore_class": IGNORE, "label_smoothing": 0.1, "z_loss": 1e-3, "logit_softcap": 3.0,
            "sample_weight": True},
    "sum": {"ignore_class": IGNORE, "reduction": "sum", "sample_weight": True},
    "mean_with_sample_weight": {"ignore_class": IGNORE, "reduction": "mean_with_sample_weight",
                                "sample_weight": True, "z_loss": 1e-3},
}


def _arguments(case: str, data: dict[str, np.ndarray]) -> dict[str, Any]:
    options = dict(OPTIONS[case])
    for key in ("bias", "sample_weight"):
        if options.pop(key, False):
            options[key] = data[key]
    if "ignore_class" not in options:
        data = {**data, "labels": np.where(data["labels"] == IGNORE, 0, data["labels"])}
    return {"hidden": data["hidden"], "weight": data["weight"], "labels": data["labels"], **options}


def _relative(actual: Any, expected: np.ndarray) -> float:
    actual = np.asarray(actual, np.float64)
    return float(np.linalg.norm(actual - expected) / max(np.linalg.norm(expected), 1e-300))


def _check_grads(grads: tuple[Any, Any, Any], expected: tuple[Any, Any, Any], has_bias: bool) -> None:
    for name, actual, wanted in zip(("hidden", "weight", "bias"), grads, expected, strict=True):
        if name == "bias" and not has_bias:
            assert actual is None
            continue
        assert np.asarray(actual).shape == wanted.shape, name
        assert _relative(actual, wanted) < 1e-4, (name, _relative(actual, wanted))


def test_reference_gradient_matches_finite_differences() -> None:
    """The oracle's analytic gradient is right: central differences of its float64 loss."""
    data = _inputs(1)
    args = _arguments("all", data)
    args = {k: (v.astype(np.float64) if isinstance(v, np.ndarray) and v.dtype == np.float32 else v)
            for k, v in args.items()}
    _, (d_h, d_w, d_b) = reference(**args)
    step = 1e-6
    for name, grad, index in (("hidden", d_h, (1, 2, 3)), ("weight", d_w, (4, 5)), ("bias", d_b, (7,))):
        plus, minus = dict(args), dict(args)
        plus[name] = args[name].copy()
        minus[name] = args[name].copy()
        plus[name][index] += step
        minus[name][index] -= step
        numeric = (reference(**plus)[0] - reference(**minus)[0]) / (2 * step)
        assert numeric == pytest.approx(grad[index], rel=1e-6, abs=1e-9), name


def test_reference_equals_keras(jax_x64: None) -> None:
    """Without z-loss and soft-cap the oracle is Keras's sparse CE of the logits, every reduction."""
    import keras

    data = _inputs(2)
    logits = data["hidden"].astype(np.float64) @ data["weight"].astype(np.float64).T + data["bias"]
    for reduction in ("sum_over_batch_size", "sum", "mean_with_sample_weight", "none"):
        keras_loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True, ignore_class=IGNORE,
                                                                reduction=reduction, dtype="float64")
        expected = keras_loss(data["labels"], logits, sample_weight=data["sample_weight"].astype(np.float64))
        ours, _ = reference(data["hidden"], data["weight"], data["labels"], bias=data["bias"],
                            ignore_class=IGNORE, sample_weight=data["sample_weight"], reduction=reduction)
        np.testing.assert_allclose(ours, np.asarray(expected), rtol=1e-10, err_msg=reduction)
    everything_ignored = np.full_like(data["labels"], IGNORE)
    keras_loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True, ignore_class=IGNORE, dtype="float64")
    assert float(keras_loss(everything_ignored, logits)) == 0.0  # what test_all_ignored_batch_is_zero expects


@pytest.mark.parametrize("case", sorted(OPTIONS))
def test_numpy_every_option(case: str) -> None:
    """NumPy's fused kernel: the reduced value, the per-token values and the three gradients."""
    data = _inputs()
    args = _arguments(case, data)
    expected, grads = reference(**args)
    result = probloss.linear_cross_entropy(**args, chunk_size=CHUNK)
    assert isinstance(result, np.ndarray)
    assert result.dtype == np.float32
    np.testing.assert_allclose(result, expected, rtol=1e-5, atol=1e-6)
    per_token = probloss.linear_cross_entropy(**{**args, "reduction": "none"}, chunk_size=CHUNK)
    assert per_token.shape == N_SHAPE
    np.testing.assert_allclose(per_token, reference(**{**args, "reduction": "none"})[0], rtol=1e-5, atol=1e-6)
    with_grad = probloss.linear_cross_entropy_with_grad(**args, chunk_size=CHUNK)
    np.testing.assert_allclose(with_grad.loss, expected, rtol=1e-5)
    _check_grads(tuple(with_grad[1:]), grads, "bias" in args)


LIBRARY_CASES = ["all", "mean_with_sample_weight"]


@pytest.mark.parametrize("case", LIBRARY_CASES)
def test_every_library(backend: Library, case: str) -> None:
    """Each library's path (generic kernel on strict and Dask): values, per-token values, gradients."""
    data = _inputs()
    args = _arguments(case, data)
    expected, grads = reference(**args)
    converted = {k: backend.asarray(v) if isinstance(v, np.ndarray) else v for k, v in args.items()}
    result = probloss.linear_cross_entropy(**converted, chunk_size=CHUNK)
    assert backend.is_native(result)
    assert str(result.dtype).endswith("float32")
    np.testing.assert_allclose(backend.to_numpy(result), expected, rtol=1e-5, atol=1e-6)
    per_token = backend.to_numpy(probloss.linear_cross_entropy(**{**converted, "reduction": "none"},
                                                               chunk_size=CHUNK))
    np.testing.assert_allclose(per_token, reference(**{**args, "reduction": "none"})[0], rtol=1e-5, atol=1e-6)
    with_grad = probloss.linear_cross_entropy_with_grad(**converted, chunk_size=CHUNK)
    np.testing.assert_allclose(backend.to_numpy(with_grad.loss), expected, rtol=1e-5)
    _check_grads(tuple(None if g is None else backend.to_numpy(g) for g in with_grad[1:]), grads,
                 "bias" in args)


@pytest.mark.parametrize("case", sorted(OPTIONS))
def test_torch_autograd(case: str) -> None:
    """Gradients through the autograd.Function: reduced (saved in the forward pass) and per token."""
    torch = library("torch").module
    data = _inputs()
    args = _arguments(case, data)
    has_bias = "bias" in args
    for reduction in (args.get("reduction", "sum_over_batch_size"), "none"):
        _, grads = reference(**{**args, "reduction": reduction if reduction != "none" else "sum"})
        tensors = {k: torch.asarray(v) for k, v in args.items() if isinstance(v, np.ndarray)}
        leaves = [tensors[k].requires_grad_() for k in ("hidden", "weight", "bias") if k in tensors]
        out = probloss.linear_cross_entropy(**{**args, **tensors, "reduction": reduction}, chunk_size=CHUNK)
        (out if reduction != "none" else out.sum()).backward()
        _check_grads((leaves[0].grad, leaves[1].grad, leaves[2].grad if has_bias else None), grads, has_bias)


def test_torch_sample_weight_gradient_and_float16() -> None:
    """The loss is differentiable in sample_weight; half precision is computed in float32."""
    torch = library("torch").module
    data = _inputs()
    args = _arguments("weights", data)
    sw = torch.asarray(args.pop("sample_weight"), dtype=torch.float64).requires_grad_()
    hidden, weight = torch.asarray(args.pop("hidden")), torch.asarray(args.pop("weight"))
    out = probloss.linear_cross_entropy(hidden, weight, torch.asarray(args.pop("labels")), sample_weight=sw,
                                        chunk_size=CHUNK, **args)
    out.backward()
    step, index = 1e-4, (1, 2)
    base = data["sample_weight"].astype(np.float64)
    values = []
    for sign in (1, -1):
        shifted = base.copy()
        shifted[index] += sign * step
        values.append(reference(data["hidden"], data["weight"], data["labels"], ignore_class=IGNORE,
                                sample_weight=shifted)[0])
    assert float(sw.grad[index]) == pytest.approx((values[0] - values[1]) / (2 * step), rel=1e-4)
    half = probloss.linear_cross_entropy(hidden.half().requires_grad_(), weight.half(),
                                         torch.asarray(data["labels"]), ignore_class=IGNORE)
    assert half.dtype == torch.float16
    expected, _ = reference(hidden.half().float().numpy(), weight.half().float().numpy(), data["labels"],
                            ignore_class=IGNORE)
    assert float(half.detach()) == pytest.approx(float(expected), rel=2e-3)


def test_torch_compile() -> None:
    """One graph through the autograd.Function, forward and backward, equal to eager."""
    torch = library("torch").module
    dynamo = torch._dynamo

    data = _inputs()
    args = _arguments("all", data)
    tensors = {k: torch.asarray(v) for k, v in args.items() if isinstance(v, np.ndarray)}
    options = {k: v for k, v in args.items() if k not in tensors}

    def step(hidden: Any, weight: Any, bias: Any) -> Any:
        return probloss.linear_cross_entropy(hidden, weight, tensors["labels"], bias=bias,
                                             sample_weight=tensors["sample_weight"], **options)

    leaves = [tensors[k].clone().requires_grad_() for k in ("hidden", "weight", "bias")]
    dynamo.reset()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            # fullgraph: a graph break would raise. aot_eager traces the backward too.
            compiled = torch.compile(step, backend="aot_eager", fullgraph=True)
            out = compiled(*leaves)
            out.backward()
    finally:
        dynamo.reset()
    expected, grads = reference(**args)
    assert float(out.detach()) == pytest.approx(float(expected), rel=1e-5)
    _check_grads(tuple(leaf.grad for leaf in leaves), grads, True)


@pytest.mark.parametrize(("case", "reduction"), [("bias", "reducing"), ("all", "none")])
def test_jax_jit_grad(case: str, reduction: str) -> None:
    jax = library("jax").module
    import jax.numpy as jnp

    data = _inputs()
    args = _arguments(case, data)
    if reduction == "none":
        args["reduction"] = "none"
    has_bias = "bias" in args
    expected, grads = reference(**{**args, "reduction": args.get("reduction", "sum_over_batch_size")
                                   if reduction != "none" else "sum"})
    rest = {k: (jnp.asarray(v) if isinstance(v, np.ndarray) else v) for k, v in args.items()
            if k not in ("hidden", "weight", "bias")}

    @jax.jit
    def f(hidden: Any, weight: Any, bias: Any) -> Any:
        out = probloss.linear_cross_entropy(hidden, weight, bias=bias, chunk_size=CHUNK, **rest)
        return jnp.sum(out)

    bias = jnp.asarray(args["bias"]) if has_bias else None
    value, (d_h, d_w, d_b) = jax.value_and_grad(f, argnums=(0, 1, 2))(
        jnp.asarray(args["hidden"]), jnp.asarray(args["weight"]), bias)
    assert float(value) == pytest.approx(float(np.sum(expected)), rel=1e-5)
    _check_grads((d_h, d_w, d_b), grads, has_bias)


@pytest.mark.parametrize("chunk_size", [CHUNK, None])
@pytest.mark.parametrize("case", sorted(OPTIONS))
def test_jax_vocabulary_blocks(case: str, chunk_size: int | None, monkeypatch: pytest.MonkeyPatch) -> None:
    """The JAX gradient loop over blocks of classes (13 = 5 + 5 + a ragged 3), float32-only mode.

    The blocks' size comes from ``_BLOCK_ELEMENTS`` (shrunk here from 2**22 numbers) and is
    part of the jitted call's static options, so no earlier trace is reused. Reduced
    values (gradients made in the forward pass) and per-token values (rescanned in the
    backward pass with the incoming cotangents) against the float64 oracle.
    """
    jax = library("jax").module
    import jax.numpy as jnp
    from conftest import jax_x64_mode

    from probloss._backends import _jax_linear_ce

    monkeypatch.setattr(_jax_linear_ce, "_BLOCK_ELEMENTS", 5 * D)
    data = _inputs(3)
    args = _arguments(case, data)
    has_bias = "bias" in args
    reduction = args.pop("reduction", "sum_over_batch_size")
    rest = {k: (jnp.asarray(v) if isinstance(v, np.ndarray) else v) for k, v in args.items()
            if k not in ("hidden", "weight", "bias")}
    cotangent = np.random.default_rng(4).uniform(0.5, 1.5, N_SHAPE)
    with jax_x64_mode(False):
        for mode in (reduction, "none"):
            def f(hidden: Any, weight: Any, bias: Any, mode: str = mode) -> Any:
                out = probloss.linear_cross_entropy(hidden, weight, bias=bias, chunk_size=chunk_size,
                                                    reduction=mode, **rest)
                return out if mode != "none" else jnp.sum(out * jnp.asarray(cotangent, jnp.float32))

            bias = jnp.asarray(args["bias"]) if has_bias else None
            value, grads = jax.jit(jax.value_and_grad(f, argnums=(0, 1, 2)))(
                jnp.asarray(args["hidden"]), jnp.asarray(args["weight"]), bias)
            assert value.dtype == jnp.float32
            if mode == "none":
                per_token, _ = reference(**args, reduction="none")
                expected = np.sum(per_token * cotangent)
                # The per-token gradients are those of the sum weighted by the cotangents.
                weights = cotangent * args.get("sample_weight", 1.0)
                _, wanted = reference(**{**args, "sample_weight": weights.astype(np.float32)}, reduction="sum")
            else:
                expected, wanted = reference(**args, reduction=reduction)
            assert float(value) == pytest.approx(float(expected), rel=1e-5), mode
            _check_grads(grads, wanted, has_bias)


def test_jax_default_chunk_rows() -> None:
    """Equal chunks of at most max(2**23 // V, 3 D // 4) tokens, covering every token."""
    from probloss._backends._jax_linear_ce import default_chunk_rows
    from probloss._kernels._linear_ce import CHUNK_ELEMENTS

    assert default_chunk_rows(4096, 1024, 64000) == 683  # the benchmark's shapes: 6 chunks
    assert default_chunk_rows(0, 8, 10) == 1
    for tokens, features, vocabulary in [(1, 1, 1), (1000, 64, 64000), (4097, 1024, 64000), (10, 6, 13),
                                         (100_000, 4096, 256_000), (7, 3, 2**24)]:
        rows = default_chunk_rows(tokens, features, vocabulary)
        most = max(1, CHUNK_ELEMENTS // vocabulary, 3 * features // 4)
        count = -(-tokens // rows)
        assert 1 <= rows <= min(most, tokens)
        assert count == -(-tokens // most)  # no more chunks than the bound needs
        assert count * rows - tokens < count  # equal chunks: less than one token of padding per chunk


def test_all_ignored_batch_is_zero(backend: Library) -> None:
    """Keras's ignore_class with every token ignored: loss 0 (divide_no_nan), no NaN."""
    data = _inputs()
    labels = np.full(N_SHAPE, IGNORE)
    for reduction in ("sum_over_batch_size", "sum", "mean_with_sample_weight"):
        result = probloss.linear_cross_entropy(backend.asarray(data["hidden"]), backend.asarray(data["weight"]),
                                               backend.asarray(labels), ignore_class=IGNORE, reduction=reduction)
        assert float(backend.to_numpy(result)) == 0.0
    grads = probloss.linear_cross_entropy_with_grad(data["hidden"], data["weight"], labels, ignore_class=IGNORE)
    assert float(grads.loss) == 0.0
    assert not np.any(grads.hidden)
    assert not np.any(grads.weight)


def test_class_config_and_call() -> None:
    data = _inputs()
    loss = probloss.LinearCrossEntropy(ignore_class=IGNORE, label_smoothing=0.1, z_loss=1e-3, logit_softcap=3.0,
                                       chunk_size=CHUNK, reduction="sum")
    config = loss.get_config()
    assert config == {"name": "linear_cross_entropy", "reduction": "sum", "ignore_class": IGNORE,
                      "label_smoothing": 0.1, "z_loss": 1e-3, "logit_softcap": 3.0, "chunk_size": CHUNK}
    rebuilt = probloss.deserialize(probloss.serialize(loss))
    assert rebuilt.get_config() == config
    assert probloss.serialize(loss)["module"] == "probloss"
    assert type(probloss.get("LinearCrossEntropy")) is probloss.LinearCrossEntropy
    expected, _ = reference(data["hidden"], data["weight"], data["labels"], bias=data["bias"], ignore_class=IGNORE,
                            label_smoothing=0.1, z_loss=1e-3, logit_softcap=3.0,
                            sample_weight=data["sample_weight"], reduction="sum")
    value = loss(data["labels"], (data["hidden"], data["weight"], data["bias"]), sample_weight=data["sample_weight"])
    np.testing.assert_allclose(value, expected, rtol=1e-5)
    per_token, _ = reference(data["hidden"], data["weight"], data["labels"], ignore_class=IGNORE,
                             label_smoothing=0.1, z_loss=1e-3, logit_softcap=3.0, reduction="none")
    np.testing.assert_allclose(loss.call(data["labels"], (data["hidden"], data["weight"])), per_token, rtol=1e-5,
                               atol=1e-6)
    mean = probloss.LinearCrossEntropy(ignore_class=IGNORE)
    n1, d1 = mean.partial(data["labels"][:1], (data["hidden"][:1], data["weight"]))
    n2, d2 = mean.partial(data["labels"][1:], (data["hidden"][1:], data["weight"]))
    np.testing.assert_allclose(mean.combine(n1 + n2, d1 + d2), mean(data["labels"], (data["hidden"], data["weight"])),
                               rtol=1e-6)
    with pytest.raises(TypeError, match=r"\(hidden, weight\)"):
        loss(data["labels"], data["hidden"])


def test_default_chunk_size_and_float64() -> None:
    """No chunk_size: one chunk here (2**23 // V rows); float64 stays float64 and exact."""
    data = _inputs()
    args = {k: (v.astype(np.float64) if isinstance(v, np.ndarray) and v.dtype == np.float32 else v)
            for k, v in _arguments("all", data).items()}
    expected, grads = reference(**args)
    result = probloss.linear_cross_entropy_with_grad(**args)
    assert result.loss.dtype == np.float64
    assert result.weight.dtype == np.float64
    np.testing.assert_allclose(result.loss, expected, rtol=1e-12)
    for actual, wanted in zip(result[1:], grads, strict=True):
        np.testing.assert_allclose(actual, wanted, rtol=1e-10, atol=1e-13)


def _bad(**changes: Any) -> dict[str, Any]:
    data = _inputs()
    args = {"hidden": data["hidden"], "weight": data["weight"], "labels": np.where(data["labels"] < 0, 0,
                                                                                   data["labels"])}
    args.update(changes)
    return args


@pytest.mark.parametrize(("changes", "error", "match"), [
    ({"weight": np.zeros((V, D + 1), np.float32)}, ValueError, r"weight.*shape \(V, D\)"),
    ({"labels": np.zeros((2, 4), np.int64)}, ValueError, r"labels.*hidden.shape\[:-1\]"),
    ({"hidden": np.zeros(D, np.float32)}, ValueError, r"at least one token axis"),
    ({"bias": np.zeros(V + 1, np.float32)}, ValueError, r"bias.*shape \(V,\)"),
    ({"labels": np.full(N_SHAPE, V)}, ValueError, r"must be in \[0, 13\).*\[13"),
    ({"labels": np.full(N_SHAPE, -2), "ignore_class": -1}, ValueError, r"out-of-range labels such as \[-2"),
    ({"weight": np.zeros((V, D), np.float64)}, TypeError, r"weight.*dtype of `hidden`"),
    ({"labels": np.zeros(N_SHAPE, np.float32)}, TypeError, r"integer class indices"),
    ({"hidden": np.zeros((*N_SHAPE, D), np.int64), "weight": np.zeros((V, D), np.int64)}, TypeError, "floating"),
    ({"z_loss": -1.0}, ValueError, "z_loss"),
    ({"logit_softcap": 0.0}, ValueError, "logit_softcap"),
    ({"chunk_size": 0}, ValueError, "chunk_size"),
    ({"label_smoothing": 1.5}, ValueError, "label_smoothing"),
    ({"sample_weight": np.ones(3, np.float32)}, ValueError, "sample_weight"),
    ({"reduction": "avg"}, ValueError, "reduction"),
], ids=lambda v: v if isinstance(v, str) else None)
def test_bad_input_errors(changes: dict[str, Any], error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        probloss.linear_cross_entropy(**_bad(**changes))


def test_bad_input_errors_torch_and_grad() -> None:
    torch = library("torch").module
    args = _bad(labels=np.full(N_SHAPE, V + 2))
    with pytest.raises(ValueError, match=r"must be in \[0, 13\)"):
        probloss.linear_cross_entropy(*(torch.asarray(args[k]) for k in ("hidden", "weight", "labels")))
    with pytest.raises(TypeError, match="different array libraries"):
        probloss.linear_cross_entropy(torch.asarray(args["hidden"]), args["weight"], args["labels"])
    with pytest.raises(ValueError, match="reducing `reduction`"):
        probloss.linear_cross_entropy_with_grad(**_bad(), reduction="none")


def test_traced_out_of_range_label_gives_nan() -> None:
    """Under jit the labels cannot be read: a bad token's loss is NaN, never a wrong number."""
    jax = library("jax").module
    args = _bad()
    labels = args["labels"].copy()
    labels[0, 0] = V + 3
    per_token = jax.jit(lambda h, w, y: probloss.linear_cross_entropy(h, w, y, reduction="none"))(
        args["hidden"], args["weight"], labels)
    assert np.isnan(np.asarray(per_token)[0, 0])
    assert np.isfinite(np.asarray(per_token)[1:]).all()
