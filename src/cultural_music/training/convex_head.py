"""The convex head fit: L2-regularised multinomial logistic regression on pooled embeddings.

A head model that exposes :meth:`convex_parts` (``musicnn`` with ``hidden=0``: pool the patch
embeddings, standardise, one linear layer) is, as a whole, logistic regression on its pooled
features.  It is fitted here with scikit-learn's ``LogisticRegression`` (lbfgs, to convergence, no
early stopping: the objective is convex) and the result written into the network, so the model
folder, ONNX export and ``predict`` stay as they are.  ``C`` is scikit-learn's: the inverse L2
strength on the *summed* (class-weighted) loss, so one C means the same regularisation on a
larger set of clips, which is what the refit on all data relies on.
"""

from __future__ import annotations

import hashlib
import warnings
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from cultural_music.errors import ParameterError
from cultural_music.models import ConvexParts

__all__ = ["HeadFit", "convex_parts", "pooled_features", "fit_logreg", "write_head"]

#: logit given to a class absent from the clips a fit saw (its probability is then ~1e-13)
ABSENT_LOGIT = -30.0


@dataclass
class HeadFit:
    """A fitted head: standardisation ``mean``/``var`` ``(d,)``, ``coef`` ``(k, d)`` and
    ``intercept`` ``(k,)`` over all ``k`` classes, scikit-learn's iteration count, training loss
    (class-weighted mean log loss) and accuracy."""

    mean: np.ndarray
    var: np.ndarray
    coef: np.ndarray
    intercept: np.ndarray
    iterations: int

    def logits(self, z: np.ndarray, eps: float) -> np.ndarray:
        """``(n, d)`` pooled features -> ``(n, k)`` logits, exactly the network's eval formula."""
        zs = (z - self.mean) / np.sqrt(self.var + eps)
        return zs @ self.coef.T + self.intercept


def convex_parts(model: nn.Module) -> ConvexParts | None:
    """The model's convex parts, or ``None`` if it has none (a hidden layer, or not a head)."""
    get = getattr(model, "convex_parts", None)
    return get() if callable(get) else None


@torch.no_grad()
def pooled_features(model: nn.Module, ds: torch.utils.data.Dataset, *, batch_size: int = 256) -> np.ndarray:
    """Pooled features ``(len(ds), d)`` float64 of every clip of ``ds`` (model inputs ``ds[i][0]``)."""
    parts = convex_parts(model)
    if parts is None:
        raise ParameterError(f"{type(model).__name__} has no convex head (pooling + one linear layer)")
    model.eval()
    out = []
    for start in range(0, len(ds), batch_size):
        x = torch.stack([torch.as_tensor(ds[i][0]) for i in range(start, min(len(ds), start + batch_size))])
        out.append(parts.pool(x).double().numpy())
    return np.concatenate(out) if out else np.zeros((0, parts.linear.in_features))


TOL = 1e-6  #: L-BFGS stopping tolerance (scikit-learn's default 1e-4 leaves ~1e-4 in the probabilities)


def fit_logreg(z: np.ndarray, y: np.ndarray, n_classes: int, *, C: float, class_weighting: str, eps: float,
               warm: HeadFit | None = None) -> HeadFit:
    """Standardise ``z`` ``(n, d)`` with its own mean and variance, then fit scikit-learn's
    ``LogisticRegression(C=C, class_weight=None | "balanced")`` on labels ``y`` ``(n,)`` in
    ``0..n_classes-1``.  Classes absent from ``y`` get zero weights and :data:`ABSENT_LOGIT`;
    two present classes become the equivalent two-row softmax.  ``warm`` starts from an earlier
    fit on the same rows (a C path).

    With more dimensions than rows (embeddings: ``d`` 3012-5060, a few hundred recordings) the fit
    runs in the rows' span: the L2-penalised optimum ``w`` is a combination of the rows, so with
    the thin SVD ``zs = U S Vt`` fitting ``zs @ Vt.T`` (``(n, n)``) and mapping back ``w = b @ Vt``
    gives the same solution (same objective: ``|w| = |b|``), many times faster."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression

    mean, var = z.mean(axis=0), z.var(axis=0)
    zs = (z - mean) / np.sqrt(var + eps)
    present = np.unique(y)
    if len(present) < 2:
        raise ParameterError(f"a head fit needs clips of at least 2 classes; got {len(present)}")
    basis = _row_span(zs)  # (r, d) orthonormal rows, or None
    clf = LogisticRegression(C=C, class_weight="balanced" if class_weighting == "balanced" else None, max_iter=1000,
                             tol=TOL, warm_start=warm is not None)
    if warm is not None:
        coef0, clf.intercept_ = _sk_params(warm, present)
        clf.coef_ = coef0 if basis is None else coef0 @ basis.T
        clf.classes_ = present
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(zs if basis is None else zs @ basis.T, y)
    if basis is not None:
        clf.coef_ = clf.coef_ @ basis
    coef = np.zeros((n_classes, z.shape[1]))
    intercept = np.full(n_classes, ABSENT_LOGIT)
    if len(present) == 2:  # binary: p1 = sigmoid(w.z + b) = softmax([-(w.z+b)/2, (w.z+b)/2])[1]
        coef[present[0]], coef[present[1]] = -clf.coef_[0] / 2, clf.coef_[0] / 2
        intercept[present[0]], intercept[present[1]] = -clf.intercept_[0] / 2, clf.intercept_[0] / 2
    else:
        coef[present], intercept[present] = clf.coef_, clf.intercept_
    return HeadFit(mean, var, coef, intercept, int(np.max(clf.n_iter_)))


_SPANS: "OrderedDict[bytes, np.ndarray | None]" = OrderedDict()  #: recent bases by content digest (see _row_span)
_SPAN_CACHE_BYTES = 256 * 2**20  #: at most this much memory kept in :data:`_SPANS`


def _row_span(zs: np.ndarray) -> np.ndarray | None:
    """Orthonormal basis ``(r, d)`` of the rows of ``zs`` ``(n, d)`` when ``d > n`` (else ``None``).

    A head search fits the same rows for every C and class weighting (12 fits a fold), so the
    bases of recent matrices are kept, keyed by a digest of their bytes (same rows, same basis)."""
    n, d = zs.shape
    if d <= n:
        return None
    key = hashlib.blake2b(np.ascontiguousarray(zs).view(np.uint8), digest_size=16).digest() + repr(zs.shape).encode()
    if key in _SPANS:
        _SPANS.move_to_end(key)
        return _SPANS[key]
    basis = _compute_span(zs)
    _SPANS[key] = basis
    while len(_SPANS) > 1 and sum(b.nbytes for b in _SPANS.values() if b is not None) > _SPAN_CACHE_BYTES:
        _SPANS.popitem(last=False)
    return basis


def _compute_span(zs: np.ndarray) -> np.ndarray | None:
    """:func:`_row_span` itself (no cache)."""
    eigval, u = np.linalg.eigh(zs @ zs.T)  # the Gram matrix (n, n) = U S^2 U^T: cheaper than an SVD of zs
    keep = eigval > max(float(eigval[-1]), 0.0) * 1e-10
    if not keep.any():
        return None
    return (u[:, keep].T @ zs) / np.sqrt(eigval[keep])[:, None]  # rows of Vt


def _sk_params(fit: HeadFit, present: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's ``coef_``/``intercept_`` for the present classes of an earlier fit."""
    if len(present) == 2:
        a, b = present
        return (fit.coef[b] - fit.coef[a])[None, :], np.array([fit.intercept[b] - fit.intercept[a]])
    return fit.coef[present].copy(), fit.intercept[present].copy()


@torch.no_grad()
def write_head(model: nn.Module, fit: HeadFit) -> None:
    """Put a fit into the network: standardisation buffers and the linear layer."""
    parts = convex_parts(model)
    if parts is None:
        raise ParameterError(f"{type(model).__name__} has no convex head")
    parts.mean.copy_(torch.as_tensor(fit.mean, dtype=parts.mean.dtype))
    parts.var.copy_(torch.as_tensor(fit.var, dtype=parts.var.dtype))
    parts.linear.weight.copy_(torch.as_tensor(fit.coef, dtype=parts.linear.weight.dtype))
    parts.linear.bias.copy_(torch.as_tensor(fit.intercept, dtype=parts.linear.bias.dtype))
