"""Dask end to end: losses and metrics on dask arrays chunked along rows and along the class
axis, and ``probloss score --dask`` on a ``dask.distributed.LocalCluster`` of two workers.

The reference is always NumPy: the same probloss call on the computed arrays (whose
values are checked against Keras and formulas elsewhere), and ``probloss score``
without Dask on the same files.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import probloss
from probloss import metrics
from probloss._cli import main

da = pytest.importorskip("dask.array", reason="Dask is a test dependency; this never skips in CI")
distributed = pytest.importorskip("distributed", reason="a test dependency; this never skips in CI")

RNG = np.random.default_rng(31)
N, K = 60, 6


def _data() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    labels = RNG.integers(0, K, N)
    labels[::7] = -1
    logits = RNG.normal(0, 2, (N, K)).astype(np.float32)
    return labels, logits, RNG.uniform(0.5, 1.5, N)


@pytest.mark.parametrize("chunks", [(13, K), (N, 2), (17, 4)], ids=["rows", "classes", "both"])
def test_losses_and_metrics_on_chunked_dask_arrays(chunks: tuple[int, int]) -> None:
    labels, logits, weight = _data()
    x = da.from_array(logits, chunks=chunks)
    y = da.from_array(labels, chunks=chunks[0])
    onehot = np.eye(K, dtype=np.float32)[np.maximum(labels, 0)]
    loss = probloss.SparseCategoricalCrossentropy(from_logits=True, ignore_class=-1)
    w = da.from_array(weight, chunks=chunks[0])
    np.testing.assert_allclose(loss(y, x, w).compute(), loss(labels, logits, weight), rtol=1e-6)
    cce = probloss.categorical_crossentropy(da.from_array(onehot, chunks=chunks), x, from_logits=True)
    np.testing.assert_allclose(cce.compute(), probloss.categorical_crossentropy(onehot, logits, from_logits=True),
                               rtol=1e-6)
    streamed, reference = (metrics.SparseCategoricalCrossentropy(from_logits=True, ignore_class=-1)
                           for _ in range(2))
    streamed.update_state(y, x, sample_weight=w)
    reference.update_state(labels, logits, sample_weight=weight)
    np.testing.assert_allclose(float(streamed.result()), float(reference.result()), rtol=1e-6)


def test_score_dask_on_a_local_cluster_matches_numpy(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    labels, logits, weight = _data()
    np.save(tmp_path / "y.npy", labels)
    np.save(tmp_path / "x.npy", logits)
    np.save(tmp_path / "w.npy", weight)
    pq.write_table(pa.table({"label": labels, "scores": pa.array(list(logits), type=pa.list_(pa.float32()))}),
                   tmp_path / "t.parquet", row_group_size=16)
    common = ["score", "--json", "--loss", "sparse_categorical_crossentropy", "--from-logits",
              "--ignore-class", "-1", "--chunk-mb", "0.0005"]
    files = [[str(tmp_path / "y.npy"), str(tmp_path / "x.npy"), "--sample-weight", str(tmp_path / "w.npy")],
             [f"{tmp_path / 't.parquet'}:label", f"{tmp_path / 't.parquet'}:scores"]]
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                                  dashboard_address=None) as cluster:
        for arguments in files:
            assert main([*common, *arguments]) == 0
            expected = json.loads(capsys.readouterr().out)
            assert main([*common, "--dask", "--scheduler", cluster.scheduler_address, *arguments]) == 0
            result = json.loads(capsys.readouterr().out)
            np.testing.assert_allclose(result["loss"], expected["loss"], rtol=1e-12)
            assert result["count"] == pytest.approx(expected["count"])
            assert result["rows"] == N
            np.testing.assert_allclose([c["loss"] for c in result["per_class"]],
                                       [c["loss"] for c in expected["per_class"]], rtol=1e-12)
        # Bad data found on a worker is still a one-line error with the row.
        bad = labels.copy()
        bad[45] = K
        np.save(tmp_path / "bad.npy", bad)
        assert main([*common, "--dask", "--scheduler", cluster.scheduler_address,
                     str(tmp_path / "bad.npy"), str(tmp_path / "x.npy")]) == 2
        assert "label 6 at row 45 is outside [0, 6)" in capsys.readouterr().err


def test_losses_and_metrics_on_dask_dataframes() -> None:
    pd = pytest.importorskip("pandas", reason="dask.dataframe's dependency; a test dependency")
    import dask.dataframe as dd

    labels, logits, weight = _data()
    frame = pd.DataFrame({"label": labels, "w": weight, **{f"s{k}": logits[:, k] for k in range(K)}})
    ddf = dd.from_pandas(frame, npartitions=3)
    scores = ddf[[f"s{k}" for k in range(K)]]
    loss = probloss.SparseCategoricalCrossentropy(from_logits=True, ignore_class=-1)
    np.testing.assert_allclose(loss(ddf["label"], scores, ddf["w"]).compute(), loss(labels, logits, weight),
                               rtol=1e-6)
    m, reference = (metrics.SparseCategoricalCrossentropy(from_logits=True, ignore_class=-1) for _ in range(2))
    m.update_state(ddf["label"], scores, sample_weight=ddf["w"])
    reference.update_state(labels, logits, sample_weight=weight)
    np.testing.assert_allclose(float(m.result()), float(reference.result()), rtol=1e-6)
