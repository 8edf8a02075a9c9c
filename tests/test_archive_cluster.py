"""Labelling on a real multi-node Ray cluster (``ray.cluster_utils.Cluster``: a head and two worker
nodes, each its own raylet and object store, on this machine): the same rows as a local run, and
every file labelled exactly once even when a worker node is killed mid-run.  Skips, with the
reason, only if Ray cannot be imported."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from cultural_music.cli import main
from cultural_music.inference.batch import run_batch
from cultural_music.inference.classifier import Classifier
from cultural_music.inference.writers import read_rows

from conftest import CORRUPT, write_folder
from tiny_model import SOUNDS, SR, shared_model

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cluster():  # noqa: ANN201
    try:
        import ray
        from ray.cluster_utils import Cluster
    except ImportError as err:
        pytest.skip(f"Ray cannot be imported ({err}); pip install 'cultural-music[cluster]'")
    if ray.is_initialized():
        ray.shutdown()
    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "object_store_memory": 80 * 2**20})
    nodes = [c.add_node(num_cpus=1, object_store_memory=80 * 2**20) for _ in range(2)]
    c.wait_for_nodes()
    ray.init(address=c.address, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    yield c, nodes
    ray.shutdown()
    c.shutdown()


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return shared_model(tmp_path_factory.getbasetemp())


def _folder(root: Path, n: int, seconds: float = 1.5) -> Path:
    files = {f"f{i:02d}.wav": (SOUNDS[["beep", "Deuda", "Newari"][i % 3]], seconds) for i in range(n)}
    return write_folder(root, {**files, "bad.wav": CORRUPT}, sr=SR, seed=3)


def test_ray_rows_equal_local_rows(cluster, model: Path, tmp_path: Path) -> None:  # noqa: ANN001
    folder = _folder(tmp_path / "in", 6)
    run_batch(Classifier.load(model), [folder], out=tmp_path / "local.jsonl", progress=False)
    assert main(["predict", str(model), str(folder), "--out", str(tmp_path / "ray.jsonl"), "--backend", "ray",
                 "--quiet"]) == 0
    local = {r["path"]: r for r in read_rows(tmp_path / "local.jsonl")}
    ray_rows = {r["path"]: r for r in read_rows(tmp_path / "ray.jsonl")}
    assert local.keys() == ray_rows.keys() and len(local) == 7
    for path, a in local.items():
        b = ray_rows[path]
        assert (a["status"], a["label"], a["reason"]) == (b["status"], b["label"], b["reason"])
        if a["status"] == "ok":
            np.testing.assert_allclose(list(a["probabilities"].values()), list(b["probabilities"].values()), atol=1e-6)


def test_killing_a_worker_node_mid_run_still_labels_every_file_once(cluster, model: Path, tmp_path: Path) -> None:  # noqa: ANN001
    from cultural_music.cluster.ray_predict import RayLabeller

    c, nodes = cluster
    folder = _folder(tmp_path / "in", 40)
    seen: list[str] = []

    def on_row(row: dict) -> None:
        seen.append(row["path"])
        if len(seen) == 8:
            c.remove_node(nodes[1])  # its running tasks are lost: Ray retries them on the other node

    out = tmp_path / "r.csv"
    summary = run_batch(None, [folder], out=out, segments=tmp_path / "s.csv", progress=False, on_row=on_row,
                        labeller=RayLabeller(model, chunk=2))
    paths = [r["path"] for r in read_rows(out)]
    assert len(paths) == 41 and Counter(paths).most_common(1)[0][1] == 1
    assert (summary.n_ok, summary.n_failed) == (40, 1)
    assert sorted(r["file"] for r in read_rows(tmp_path / "s.csv")) == sorted(p for p in paths if "bad" not in p)
