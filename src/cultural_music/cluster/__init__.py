"""Scale-out on a Ray cluster (optional: ``pip install 'cultural-music[cluster]'``).

* :mod:`.session` connects to Ray (a cluster, or a local instance) with a clear error when Ray
  is not installed;
* :mod:`.runner` is the :class:`~cultural_music.features.jobs.Runner` of ``--backend ray``;
* :mod:`.ray_features` runs its feature extraction as Ray tasks (writing the same cache as the
  local path);
* :mod:`.ddp` is the data-parallel core of training (torch ``DistributedDataParallel``, gloo,
  CPU), usable without Ray;
* :mod:`.ray_train` runs that training on N Ray actors.

Nothing here imports Ray until a function needs it, and nothing outside this package imports
this package except the CLI for ``--backend ray``, so the local path never loads Ray.
"""

from __future__ import annotations

__all__ = ["INSTALL_HINT"]

#: how to get Ray, said in every "Ray is missing" error
INSTALL_HINT = "pip install 'cultural-music[cluster]'"
