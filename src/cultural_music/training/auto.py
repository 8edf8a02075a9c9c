"""Choose the model automatically (``--model auto``): compare candidates on the training split.

Every candidate (default :data:`DEFAULT_CANDIDATES`, the registered ones of them; ``res-cnn``
only when asked: :func:`resolve_candidates`) is scored on the **train split only** (validation
and test recordings never reach the choice) by the same group-aware folds: up to 5
``StratifiedGroupKFold`` folds over the training recordings' groups (``head_search.group_folds``
at recording level, seeded with the train seed), so a performer or speaker is never on both
sides and every candidate is judged on the very same partition.

* A frozen-embedding head (a model with ``convex_parts()`` and a full-batch fit: ``musicnn``,
  ``yamnet``, ``yamnet-mid``, ``fusion``): its features (cached extraction, as training does) are pooled by its
  ``convex_parts().pool`` and its head settings (C, class weighting) searched by
  :func:`~cultural_music.training.head_search.choose_head` on those folds.  Its score is the
  recording-level macro-F1 of the chosen setting's out-of-fold answers, per fold (mean ± std
  over folds).  Seconds, with cached embeddings.
* Any other model (``res-cnn``): trained with its own recipe (validation for early stopping: a
  group split of the fold's fitting side) on the first :data:`TRAINED_FOLDS` fold(s) only, scored
  on the held-out fold.  Minutes per fold: one fold instead of five keeps ``--candidates all``
  affordable on a CPU.

The winner has the best mean macro-F1 over the folds **every** candidate was scored on (all of
them when no model is trained; else the first :data:`TRAINED_FOLDS`), so every candidate is
judged on the same held-out recordings; a candidate within :data:`TIE_TOLERANCE` (0.005 macro-F1)
of the best mean is a tie, and ties go to the cheaper model (:data:`COST_ORDER`, FLOPs per second
of audio).  The head search's score is slightly optimistic (C is chosen on the folds it is
scored on) in the same way for every convex candidate.  The winner's config is the candidate's
own (``default_config(name)`` with the user's settings where it allows them); training then fits
it as ``--model NAME`` would.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from cultural_music.config import Config
from cultural_music.data.dataset import Recording
from cultural_music.errors import DatasetError, ParameterError
from cultural_music.features.cache import FeatureCache
from cultural_music.features.extract import ExtractResult, extract_features
from cultural_music.features.jobs import Runner

__all__ = ["AUTO", "DEFAULT_CANDIDATES", "SLOW_CANDIDATES", "COST_ORDER", "TIE_TOLERANCE", "CandidateScore", "ModelChoice",
           "resolve_candidates", "choose_model", "pick_winner", "TRAINED_FOLDS"]

AUTO = "auto"  #: the ``--model`` value that chooses among candidates
DEFAULT_CANDIDATES = ("musicnn", "yamnet", "yamnet-mid", "fusion")  #: compared by default (those registered)
SLOW_CANDIDATES = ("res-cnn",)  #: added by ``--candidates all`` (trained per inner fold)
#: cheapest first (extraction time per second of audio).  ``yamnet-mid`` has 40 % of YAMNet's
#: FLOPs but runs on torch while ``yamnet`` runs on ONNX Runtime: the same time measured
#: (bench/README.md), so the last layer, the more general reading, comes first
COST_ORDER = ("yamnet", "yamnet-mid", "musicnn", "fusion", "res-cnn")
TIE_TOLERANCE = 0.005  #: mean macro-F1 within this of the best is a tie (goes to the cheaper model)
TRAINED_FOLDS = 1  #: inner folds a trained candidate (res-cnn) is trained and scored on


@dataclass
class CandidateScore:
    """One candidate's inner cross-validation: recording macro-F1 per fold (``folds``), their
    ``mean`` and sample ``std``, the wall ``seconds`` (features lookup included), the head
    settings chosen (``C``, ``class_weighting``; ``None`` for a trained model) and how it was
    scored (``method``)."""

    name: str
    mean: float
    std: float
    folds: list[float]
    seconds: float
    method: str
    C: float | None = None
    class_weighting: str | None = None

    def record(self) -> dict[str, Any]:
        """model.json's row of ``model_choice.candidates``."""
        return {"model": self.name, "mean_macro_f1": round(self.mean, 6), "std_macro_f1": round(self.std, 6),
                "fold_macro_f1": [round(f, 6) for f in self.folds], "seconds": round(self.seconds, 2),
                "method": self.method, "C": self.C, "class_weighting": self.class_weighting}


@dataclass
class ModelChoice:
    """The outcome: the winner's name and config, every candidate's score, the reason in words,
    the number of folds and the training recordings the choice saw (``seen``: rel_paths)."""

    winner: str
    cfg: Config
    scores: list[CandidateScore]
    reason: str
    n_folds: int
    seen: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        """model.json's ``model_choice``."""
        return {"winner": self.winner, "reason": self.reason, "candidates": [s.record() for s in self.scores],
                "folds": self.n_folds, "recordings": len(self.seen), "tie_tolerance": TIE_TOLERANCE,
                "cost_order": list(COST_ORDER),
                "scored_by": "recording macro-F1, group cross-validation on the train split only (mean ± std over folds)"}


def format_choice(summary: Mapping[str, Any]) -> str:
    """The comparison table of a :meth:`ModelChoice.summary` as aligned text (training log)."""
    lines = [f"model choice: {summary['folds']}-fold group cross-validation on the train split "
             f"({summary['recordings']} recordings), recording macro-F1",
             f"  {'candidate':<12} {'mean ± std':>15}  {'per fold':<30} {'C':>7} {'weighting':>9} {'seconds':>8}"]
    for c in summary["candidates"]:
        folds = " ".join(f"{f:.3f}" for f in c["fold_macro_f1"])
        C = "-" if c["C"] is None else f"{c['C']:g}"
        lines.append(f"  {c['model']:<12} {c['mean_macro_f1']:>7.3f} ± {c['std_macro_f1']:.3f}  {folds:<30} {C:>7} "
                     f"{c['class_weighting'] or '-':>9} {c['seconds']:>8.1f}")
    lines.append(f"  chosen: {summary['reason']}")
    return "\n".join(lines)


def resolve_candidates(spec: str | None, available: list[str]) -> tuple[str, ...]:
    """Candidate names from ``--candidates``: ``None`` = the registered ones of
    :data:`DEFAULT_CANDIDATES`; ``"all"`` = those plus :data:`SLOW_CANDIDATES`; else a
    comma-separated list of registered names.  Raises :class:`ParameterError`."""
    if spec is None or spec.strip() == "all":
        names = DEFAULT_CANDIDATES + (SLOW_CANDIDATES if spec is not None else ())
        chosen = tuple(n for n in names if n in available)
    else:
        chosen = tuple(dict.fromkeys(n.strip() for n in spec.split(",") if n.strip()))
        unknown = [n for n in chosen if n not in available]
        if unknown or AUTO in chosen:
            raise ParameterError(f"--candidates: unknown model(s) {', '.join(unknown or [AUTO])}; "
                                 f"choose from {', '.join(available)} or 'all'")
    if not chosen:
        raise ParameterError("--candidates: no candidate model; give e.g. --candidates musicnn")
    return chosen


def _cost(name: str, cost: tuple[str, ...]) -> tuple[int, str]:
    return (cost.index(name) if name in cost else len(cost), name)


def pick_winner(scores: list[CandidateScore], *, tolerance: float = TIE_TOLERANCE,
                cost: tuple[str, ...] = COST_ORDER) -> tuple[str, str]:
    """The winner's name and the reason: the best mean macro-F1; candidates within ``tolerance``
    of it are tied and the cheapest of them (first in ``cost``; unlisted names after, by name) wins."""
    common = min(len(s.folds) for s in scores)  # the folds every candidate was scored on (the first ones)
    where = "" if all(len(s.folds) == common for s in scores) else f" on the first {common} fold(s), which every candidate was scored on"
    scores = [_on_folds(s, common) for s in scores]
    best = max(scores, key=lambda s: s.mean)
    tied = [s for s in scores if s.mean >= best.mean - tolerance - 1e-12]
    win = min(tied, key=lambda s: _cost(s.name, cost))
    others = [s for s in tied if s is not win]

    def fmt(s: CandidateScore) -> str:
        return f"{s.name} {s.mean:.3f} ± {s.std:.3f}"

    if not others:
        rest = sorted((s for s in scores if s is not win), key=lambda s: -s.mean)
        nxt = f" (next: {fmt(rest[0])})" if rest else " (the only candidate)"
        return win.name, f"{win.name}: best mean macro-F1 {win.mean:.3f} ± {win.std:.3f}{where}{nxt}"
    head = "best mean" if win is best else f"mean within {tolerance:g} of the best"
    return win.name, (f"{win.name}: {head} macro-F1 {win.mean:.3f} ± {win.std:.3f}{where} ({', '.join(fmt(s) for s in others)} "
                      f"tied within {tolerance:g}; {win.name} is cheaper)")


def _on_folds(s: CandidateScore, n: int) -> CandidateScore:
    """``s`` scored on its first ``n`` folds only (itself when it has no more)."""
    if len(s.folds) == n:
        return s
    std = float(np.std(s.folds[:n], ddof=1)) if n > 1 else 0.0
    return CandidateScore(s.name, float(np.mean(s.folds[:n])), std, s.folds[:n], s.seconds, s.method, s.C, s.class_weighting)


def choose_model(train: list[Recording], configs: Mapping[str, Config], *, cache: FeatureCache, runner: Runner,
                 seed: int, progress: bool = False, log: Callable[[str], Any] = print,
                 cost: tuple[str, ...] = COST_ORDER) -> ModelChoice:
    """Score every candidate config (``configs``: name -> config, the first is the fallback) on
    the training recordings ``train`` (only these are read: no validation or test file) and
    return the :class:`ModelChoice`.  See the module docstring."""
    if any(r.split != "train" for r in train):
        raise DatasetError("the model choice reads the train split only; got validation or test recordings")
    classes = sorted({r.label for r in train})
    rec_folds = _recording_folds(train, classes, seed)
    names = list(configs)
    if not rec_folds or len(names) == 1:
        why = "the only candidate" if len(names) == 1 else "too few groups in the train split to cross-validate"
        return ModelChoice(names[0], configs[names[0]], [], f"{names[0]}: {why}", len(rec_folds), [r.rel_path for r in train])
    scores = []
    for name in names:
        t0 = time.perf_counter()
        extracted = extract_features(train, configs[name], cache, runner=runner, progress=progress, desc=f"features ({name})")
        if extracted.skipped:  # one bad file drops the candidate, not the run
            log(f"warning: candidate {name} left out: {len(extracted.skipped)} training file(s) gave no features "
                f"(first: {extracted.skipped[0].path}: {extracted.skipped[0].reason})")
            continue
        scores.append(_score(name, configs[name], train, extracted, classes, rec_folds, seed, t0))
        log(f"  {name}: macro-F1 {scores[-1].mean:.3f} ± {scores[-1].std:.3f} ({scores[-1].seconds:.1f} s)")
    if not scores:
        raise DatasetError("no candidate model could read every training file; see the warnings above")
    winner, reason = pick_winner(scores, cost=cost)
    # the winner's config as given: the final fit searches its head settings again on train + val
    # (seconds), whose out-of-fold answers also calibrate it
    return ModelChoice(winner, configs[winner], scores, reason, len(rec_folds), [r.rel_path for r in train])


def _recording_folds(train: list[Recording], classes: list[str], seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """``(fit, held)`` recording-index pairs shared by every candidate (whole groups held out)."""
    from cultural_music.training.head_search import group_folds

    y = np.array([classes.index(r.label) for r in train])
    groups = np.array([r.group for r in train])
    return group_folds(y, groups, seed)


def _score(name: str, cfg: Config, train: list[Recording], extracted: ExtractResult, classes: list[str],
           rec_folds: list[tuple[np.ndarray, np.ndarray]], seed: int, t0: float) -> CandidateScore:
    """One candidate's :class:`CandidateScore` (convex head: searched head; else trained per fold)."""
    import torch

    from cultural_music.models import build_model
    from cultural_music.training.convex_head import convex_parts
    from cultural_music.training.loop import is_full_batch

    torch.manual_seed(seed)
    model = build_model(name, n_classes=len(classes), n_rows=cfg.features.n_rows)
    if is_full_batch(cfg.train) and convex_parts(model) is not None:
        return _score_convex(name, model, cfg, train, extracted, classes, rec_folds, seed, t0)
    return _score_trained(name, cfg, train, extracted, classes, rec_folds, seed, t0)


def _clip_folds(rels: list[str], train: list[Recording], rec_folds: list[tuple[np.ndarray, np.ndarray]]
                ) -> list[tuple[np.ndarray, np.ndarray]]:
    """The recording folds as clip-index pairs (a clip goes where its recording goes)."""
    index = {r.rel_path: i for i, r in enumerate(train)}
    rec_of = np.array([index[r] for r in rels])
    return [(np.flatnonzero(np.isin(rec_of, fit)), np.flatnonzero(np.isin(rec_of, held))) for fit, held in rec_folds]


def _fold_f1(rels: list[str], labels: np.ndarray, logits: np.ndarray, extracted: ExtractResult, cfg: Config) -> float:
    """Recording-level macro-F1 of clip logits ``(n, k)`` (clips weighted by real audio)."""
    from sklearn.metrics import f1_score

    from cultural_music.training.calibrate import recording_level

    proba, y = recording_level(rels, logits, labels, extracted, cfg)
    return float(f1_score(y, proba.argmax(1), average="macro", labels=np.unique(y), zero_division=0))


def _stats(name: str, folds: list[float], t0: float, method: str, **head: Any) -> CandidateScore:
    std = float(np.std(folds, ddof=1)) if len(folds) > 1 else 0.0
    return CandidateScore(name, float(np.mean(folds)), std, folds, time.perf_counter() - t0, method, **head)


def _score_convex(name: str, model: Any, cfg: Config, train: list[Recording], extracted: ExtractResult, classes: list[str],
                  rec_folds: list[tuple[np.ndarray, np.ndarray]], seed: int, t0: float) -> CandidateScore:
    """A convex head: pooled features, head settings searched on the shared folds, the chosen
    setting's out-of-fold answers scored per fold."""
    from cultural_music.training.clip_dataset import ClipDataset, build_items
    from cultural_music.training.convex_head import convex_parts, pooled_features
    from cultural_music.training.head_search import C_GRID, WEIGHTINGS, choose_head

    tc, k = cfg.train, len(classes)
    ds = ClipDataset(build_items(train, extracted, classes, "train"))
    z, y, rels = pooled_features(model, ds), ds.labels, [it.rel_path for it in ds.items]
    folds = _clip_folds(rels, train, rec_folds)
    search = choose_head(z, y, np.zeros(len(y)), k, eps=convex_parts(model).eps, seed=seed,
                         score=lambda oof: _fold_f1(rels, y, oof, extracted, cfg),
                         C_values=C_GRID if "logreg_c" in tc.tune else (tc.logreg_c,),
                         weightings=WEIGHTINGS if "class_weighting" in tc.tune else (tc.class_weighting,),
                         default=(tc.logreg_c, tc.class_weighting), folds=folds)
    assert search.oof_logits is not None
    per_fold = [_fold_f1([rels[i] for i in held], y[held], search.oof_logits[held], extracted, cfg) for _, held in folds]
    return _stats(name, per_fold, t0, "frozen-embedding head: C and class weighting searched on the folds",
                  C=search.C, class_weighting=search.class_weighting)


def _score_trained(name: str, cfg: Config, train: list[Recording], extracted: ExtractResult, classes: list[str],
                   rec_folds: list[tuple[np.ndarray, np.ndarray]], seed: int, t0: float) -> CandidateScore:
    """A model trained by epochs: one training on each of the first :data:`TRAINED_FOLDS` folds
    (its own recipe, early stopping on a group validation split of the fitting side), scored on
    the held-out fold."""
    import torch

    from cultural_music.data.folds import validation_split
    from cultural_music.models import build_model
    from cultural_music.training.clip_dataset import ClipDataset, build_items
    from cultural_music.training.loop import predict_logits, train_model

    per_fold = []
    for i, (fit, held) in enumerate(rec_folds[:TRAINED_FOLDS]):
        side = validation_split([train[j] for j in fit], val_fraction=cfg.train.val_fraction, seed=seed + i)
        test = [Recording(train[j].path, train[j].rel_path, train[j].label, train[j].group, "test") for j in held]
        torch.manual_seed(seed)
        model = build_model(name, n_classes=len(classes), n_rows=cfg.features.n_rows)
        train_ds = ClipDataset(build_items(side, extracted, classes, "train"), train=True, seed=seed, augment=cfg.augment)
        val_ds = ClipDataset(build_items(side, extracted, classes, "val"))
        train_model(model, train_ds, val_ds, cfg.train, log=lambda _line: None)
        test_ds = ClipDataset(build_items(test, extracted, classes, "test"))
        per_fold.append(_fold_f1([it.rel_path for it in test_ds.items], test_ds.labels, predict_logits(model, test_ds), extracted, cfg))
    return _stats(name, per_fold, t0, f"trained on the first {len(per_fold)} of {len(rec_folds)} folds "
                  f"({cfg.train.epochs} epochs at most, early stopping)")
