"""A real multi-node Ray run on one machine: feature extraction survives losing a worker node.

``ray.cluster_utils.Cluster`` starts a head (no CPUs: it only hosts the driver) and two worker
nodes of one CPU each, every node with its own raylet and object store.  Extraction runs through
:class:`~cultural_music.cluster.runner.RayRunner` one file per task; once a few results are in,
one worker node is removed (its raylet and workers killed) while its tasks are in flight.  Every
file must still come back exactly once, with exactly one cache entry, equal to a local run.
Skips, with the reason, only if Ray cannot be imported.
"""

from __future__ import annotations

import threading
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from cultural_music.data.dataset import Recording, scan_folder
from cultural_music.features.cache import FeatureCache
from cultural_music.features.extract import extract_features
from cultural_music.features.jobs import ExtractJob

from conftest import make_tone_dataset
from tiny_model import TINY

pytestmark = pytest.mark.slow

ray = pytest.importorskip("ray", reason="Ray cannot be imported; pip install 'cultural-music[cluster]'")

# the tiny model's settings with one augmented variant per file (pitch-shift / time-stretch): with
# 2 s files, tens of ms of work per file, so both worker nodes are busy when one of them is removed
CFG = TINY.replace(augment={"n_variants": 1})
N_FILES = 30
STORE = 80 * 1024**2  # bytes of object store per node (results are a few hundred bytes)


@pytest.fixture
def two_nodes():  # noqa: ANN201
    from ray.cluster_utils import Cluster

    if ray.is_initialized():  # another module's local instance
        ray.shutdown()
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "object_store_memory": STORE,
                                                            "include_dashboard": False})
    workers = [cluster.add_node(num_cpus=1, object_store_memory=STORE) for _ in range(2)]
    ray.init(address=cluster.address, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    cluster.wait_for_nodes()
    yield cluster, workers
    ray.shutdown()
    cluster.shutdown()


def _jobs(data: Path) -> tuple[list[Recording], list[ExtractJob]]:
    recs = [Recording(r.path, r.rel_path, r.label, r.group, "train") for r in scan_folder(data).recordings]
    return recs, [ExtractJob(str(Path(r.path).resolve()), r.rel_path, True) for r in recs]


def test_extraction_survives_losing_a_worker_node(two_nodes, tmp_path: Path) -> None:  # noqa: ANN001
    from cultural_music.cluster.runner import RayRunner

    cluster, workers = two_nodes
    data = make_tone_dataset(tmp_path / "d", per_class=N_FILES // 3, seconds=2.0)
    recs, jobs = _jobs(data)
    assert len(jobs) == N_FILES
    runner = RayRunner(None, 2, chunk=1)
    got = []
    removed = threading.Event()
    at_kill: list[int] = []

    def _kill() -> None:
        at_kill.append(len(got))
        cluster.remove_node(workers[1])  # its raylet, object store and workers die now
        removed.set()

    for res in runner.run_jobs(jobs, CFG, tmp_path / "c_ray"):
        got.append(res)
        if len(got) == 4:
            threading.Thread(target=_kill, daemon=True).start()
    assert removed.wait(30) and 4 <= at_kill[0] < N_FILES - 4, f"the node was removed after {at_kill} results"
    assert sum(1 for n in ray.nodes() if n["Alive"]) == 2  # head + the surviving worker node
    counts = Counter(r.rel_path for r in got)
    assert counts == Counter(j.rel_path for j in jobs), "a file was lost or done twice"
    assert all(r.error is None and r.entry is not None for r in got), [r.error for r in got if r.error]

    # one cache entry per file (clean + its augmented variant), none half-written, equal to a local run
    entries = sorted(p for p in (tmp_path / "c_ray").rglob("*.npy") if not p.name.startswith("."))
    assert len(entries) == 2 * N_FILES
    local = extract_features(recs, CFG, FeatureCache(tmp_path / "c_local"), workers=1, progress=False)
    by_path = {r.rel_path: r.entry for r in got}
    assert set(by_path) == set(local.entries)
    for rel, a in local.entries.items():
        b = by_path[rel]
        assert b is not None and (b.sha, b.n_clips, b.n_variants) == (a.sha, a.n_clips, a.n_variants)
        assert np.array_equal(np.load(b.clean_path), np.load(a.clean_path))
        assert np.array_equal(np.load(b.aug_path), np.load(a.aug_path))

    # then the last worker node goes too: a clear error after NO_CPU_WAIT_S, not a hang
    from cultural_music.cluster import ray_features
    from cultural_music.errors import CulturalMusicError

    cluster.remove_node(workers[0])
    more = make_tone_dataset(tmp_path / "d2", per_class=1, seconds=1.0, seed=1)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(ray_features, "NO_CPU_WAIT_S", 2.0)
        mp.setattr(ray_features, "_POLL_S", 0.5)
        with pytest.raises(CulturalMusicError, match="no node with a CPU"):
            list(runner.run_jobs(_jobs(more)[1], CFG, tmp_path / "c_ray"))
