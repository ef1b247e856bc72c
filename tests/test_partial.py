"""``Loss.partial`` / ``Loss.combine``: a reduction split into additive numerator and denominator.

Summing the two numbers over any split of a batch must give the one-shot loss under every
reduction, with ``ignore_class`` masks and sample weights, and each part's
``combine(numerator, total denominator)`` must have gradients that add up to the one-shot
gradient. Checked in-process on NumPy for every reduction, and across processes / devices:
``torch.distributed`` (gloo, 2 processes started here) and JAX ``shard_map`` over 4 host
devices (a subprocess with ``--xla_force_host_platform_device_count=4``). The reference is
always the loss called once on the whole batch.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import numpy as np
import pytest

import probloss

REDUCTIONS = ("sum_over_batch_size", "sum", "mean", "mean_with_sample_weight")
RNG = np.random.default_rng(7)


def _cases() -> list[tuple[str, probloss.Loss, np.ndarray, np.ndarray]]:
    labels = RNG.integers(0, 4, (9, 3))
    labels[2] = -1  # a whole sample ignored
    labels[5, 1] = -1
    logits = RNG.normal(size=(9, 3, 4))
    binary = RNG.integers(0, 2, (9, 3, 2)).astype(np.float64)
    probs = RNG.uniform(0.02, 0.98, (9, 3, 2))
    return [
        ("sparse-ignore", lambda r: probloss.SparseCategoricalCrossentropy(
            from_logits=True, ignore_class=-1, reduction=r), labels, logits),
        ("binary-timesteps", lambda r: probloss.BinaryCrossentropy(reduction=r), binary, probs),
    ]


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("weight_shape", [None, (9,), (9, 3)])
def test_parts_combine_to_the_one_shot_loss(reduction: str, weight_shape: tuple[int, ...] | None) -> None:
    for _, make, y_true, y_pred in _cases():
        loss = make(reduction)
        weight = None if weight_shape is None else RNG.uniform(0.0, 2.0, weight_shape)
        expected = float(loss(y_true, y_pred, sample_weight=weight))
        numerator = denominator = 0.0
        for part in (slice(0, 2), slice(2, 3), slice(3, 3), slice(3, 9)):
            w = None if weight is None else weight[part]
            n, d = loss.partial(y_true[part], y_pred[part], sample_weight=w)
            numerator, denominator = numerator + n, denominator + d
        np.testing.assert_allclose(float(loss.combine(numerator, denominator)), expected, rtol=1e-12)


def test_partial_refuses_no_reduction() -> None:
    with pytest.raises(ValueError, match="reducing"):
        probloss.BinaryCrossentropy(reduction="none").partial([[1.0]], [[0.5]])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


_TORCH_RANKS = """
import sys, torch, torch.distributed as dist, torch.multiprocessing as mp, probloss
port = sys.argv[1]

def run(rank):
    dist.init_process_group("gloo", rank=rank, world_size=2, init_method=f"tcp://127.0.0.1:{port}")
    g = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 5, (10, 3), generator=g)
    labels[1] = -1
    labels[6, 2] = -1
    logits = torch.randn(10, 3, 5, generator=g, dtype=torch.float64)
    weight = torch.rand(10, generator=g, dtype=torch.float64)
    mine = slice(0, 3) if rank == 0 else slice(3, 10)  # uneven shards
    for reduction in ("sum_over_batch_size", "mean_with_sample_weight"):  # all four: the NumPy test
        loss = probloss.SparseCategoricalCrossentropy(from_logits=True, ignore_class=-1, reduction=reduction)
        whole = logits.clone().requires_grad_()
        expected = loss(labels, whole, weight)
        expected.backward()
        x = logits.clone().requires_grad_()
        numerator, denominator = loss.partial(labels[mine], x[mine], weight[mine])
        total = denominator.detach().clone()
        dist.all_reduce(total)
        local = loss.combine(numerator, total)
        local.backward()
        value, grad = local.detach().clone(), x.grad.clone()
        dist.all_reduce(value)
        dist.all_reduce(grad)
        torch.testing.assert_close(value, expected.detach(), rtol=1e-12, atol=0)
        torch.testing.assert_close(grad, whole.grad, rtol=1e-12, atol=1e-15)
    dist.destroy_process_group()
    sys.stdout.write(f"rank {rank} ok\\n")  # one write of one short line: the two ranks' lines never interleave
    sys.stdout.flush()

if __name__ == "__main__":
    # fork: the two ranks share this process's imports (importing torch twice is slow).
    mp.start_processes(run, nprocs=2, start_method="fork")
"""


def test_torch_distributed_two_ranks_match_the_whole_batch() -> None:
    done = subprocess.run([sys.executable, "-c", _TORCH_RANKS, str(_free_port())],
                          capture_output=True, text=True, timeout=180, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "rank 0 ok" in done.stdout
    assert "rank 1 ok" in done.stdout


_JAX_SHARDED = """
import jax, jax.numpy as jnp, numpy as np, probloss
from jax.sharding import PartitionSpec as P
jax.config.update("jax_enable_x64", True)
assert jax.device_count() == 4, jax.devices()
rng = np.random.default_rng(3)
labels = rng.integers(0, 5, (8, 3))
labels[2] = -1
labels[5, 0] = -1
logits = jnp.asarray(rng.normal(size=(8, 3, 5)))
weight = jnp.asarray(rng.uniform(0.0, 2.0, 8))
mesh = jax.make_mesh((4,), ("batch",), axis_types=(jax.sharding.AxisType.Auto,))
rows = jax.sharding.NamedSharding(mesh, P("batch"))
labels, weight = jax.device_put(jnp.asarray(labels), rows), jax.device_put(weight, rows)
logits = jax.device_put(logits, rows)
for reduction in ("sum_over_batch_size", "mean_with_sample_weight"):  # all four: the NumPy test
    loss = probloss.SparseCategoricalCrossentropy(from_logits=True, ignore_class=-1, reduction=reduction)

    def local(y, x, w):
        numerator, denominator = loss.partial(y, x, w)
        return loss.combine(jax.lax.psum(numerator, "batch"), jax.lax.psum(denominator, "batch"))

    sharded = jax.shard_map(local, mesh=mesh, in_specs=(P("batch"), P("batch"), P("batch")), out_specs=P())
    value, grad = jax.jit(jax.value_and_grad(lambda x: sharded(labels, x, weight)))(logits)
    expected, expected_grad = jax.value_and_grad(lambda x: loss(labels, x, weight))(logits)
    np.testing.assert_allclose(value, expected, rtol=1e-12)
    np.testing.assert_allclose(grad, expected_grad, rtol=1e-12, atol=1e-15)
print("jax ok")
"""


def test_jax_four_host_devices_match_the_whole_batch() -> None:
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=4", "JAX_PLATFORMS": "cpu"}
    done = subprocess.run([sys.executable, "-c", _JAX_SHARDED], capture_output=True, text=True,
                          env=env, timeout=180, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "jax ok" in done.stdout
