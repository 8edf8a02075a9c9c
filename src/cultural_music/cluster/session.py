"""Connect to Ray: an existing cluster (``address``) or a local instance on this machine."""

from __future__ import annotations

import logging
from typing import Any

from cultural_music.errors import CulturalMusicError, ParameterError
from cultural_music.cluster import INSTALL_HINT

__all__ = ["require_ray", "connect", "cluster_cpus", "cluster_nodes"]


def require_ray() -> Any:
    """The ``ray`` module, or :class:`ParameterError` saying how to install it."""
    try:
        import ray
    except ImportError as err:
        raise ParameterError(f"--backend ray needs Ray, which is not installed: {INSTALL_HINT}") from err
    return ray


def connect(address: str | None = None, *, num_cpus: int | None = None) -> Any:
    """Join Ray once per process and return the ``ray`` module.

    Parameters
    ----------
    address
        ``"auto"`` (the cluster this node belongs to, started with ``ray start``), or
        ``"HOST:6379"``; ``None`` starts a local instance on this machine.
    num_cpus
        CPUs of a local instance (ignored when joining a cluster, which has its own).

    An already initialised Ray (e.g. a test's fixture) is reused as it is.
    """
    ray = require_ray()
    if ray.is_initialized():
        return ray
    kwargs: dict[str, Any] = {"include_dashboard": False, "logging_level": logging.WARNING}
    try:
        if address:
            ray.init(address=address, **kwargs)
        else:
            ray.init(num_cpus=num_cpus, **kwargs)
    except (ConnectionError, RuntimeError, ValueError) as err:
        where = f"the Ray cluster at {address!r}" if address else "a local Ray instance"
        raise CulturalMusicError(f"cannot start or join {where}: {err}") from err
    return ray


def cluster_cpus() -> int:
    """CPUs of the Ray cluster this process is connected to (at least 1)."""
    ray = require_ray()
    return max(1, int(ray.cluster_resources().get("CPU", 1)))


def cluster_nodes() -> int:
    """Alive nodes of the Ray cluster this process is connected to (at least 1)."""
    ray = require_ray()
    return max(1, sum(1 for n in ray.nodes() if n.get("Alive")))
