"""The training loop: Adam(W), early stopping on validation loss, best weights restored.

Recipe ingredients, each switched by a :class:`TrainConfig` field: the optimiser (Adam/AdamW,
or full-batch L-BFGS with an L2 penalty for small heads, :mod:`.lbfgs`), weight decay,
learning-rate schedule (:mod:`.schedule`), mixup (:mod:`.mixup`), label smoothing, class-balanced
loss weights or sampling (:mod:`.sampling`), and a lower learning rate for a pretrained
backbone (models with a ``param_groups(lr, backbone_scale)`` method).

Deterministic on CPU for a given seed: data order, sampling, mixup and dropout are seeded per
epoch and the learning rate is a function of the step, so a run resumed from its epoch
checkpoint ends exactly where an uninterrupted one does.

Data-parallel training (several processes, gradients averaged) passes a context as ``dist``
(:class:`cultural_music.cluster.ddp.DistContext`); the default, :class:`.context.LocalContext`,
is one process (its collectives do nothing).  A full-batch recipe (L-BFGS) is one fit,
:func:`fit_head`, to which :func:`train_model` hands it.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from cultural_music.atomic import atomic_path
from cultural_music.config import TrainConfig
from cultural_music.errors import CulturalMusicError, ParameterError
from cultural_music.training.clip_dataset import ClipDataset
from cultural_music.training.context import LocalContext, TrainContext, has_batch_norm, make_loader
from cultural_music.training.lbfgs import lbfgs_epoch
from cultural_music.training.mixup import mixup_batch
from cultural_music.training.sampling import balanced_class_weights
from cultural_music.training.schedule import lr_factor

__all__ = ["TrainResult", "train_model", "fit_head", "is_full_batch", "predict_logits", "make_optimizer", "CHECKPOINT_NAME"]

CHECKPOINT_NAME = "checkpoint.pt"


@dataclass
class TrainResult:
    """Per-epoch history, the chosen epoch (lowest validation loss) and its weights."""

    history: list[dict[str, float]] = field(default_factory=list)
    best_epoch: int = 0
    best_val_loss: float = float("inf")
    best_state: dict[str, torch.Tensor] = field(default_factory=dict)
    stopped_early: bool = False

    def summary(self) -> dict[str, Any]:
        """model.json's training summary: epochs for an epoch loop; iterations, final loss and
        the validation result once for a full-batch L-BFGS fit (:func:`fit_head`)."""
        h = self.history[0]
        if h.get("fit") == "lbfgs":
            return {"fit": "lbfgs", "iterations": h["iterations"], "final_train_loss": h["train_loss"],
                    "train_accuracy": h["train_accuracy"], "val_loss": h["val_loss"], "val_accuracy": h["val_accuracy"]}
        return {"best_epoch": self.best_epoch, "best_val_loss": self.best_val_loss, "epochs_run": len(self.history),
                "stopped_early": self.stopped_early}


def make_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """Adam (``weight_decay == 0``) or AdamW over the trainable parameters; or full-batch
    L-BFGS (``cfg.optimizer == "lbfgs"``: 20 iterations per epoch, strong-Wolfe line search).

    A model with ``param_groups(lr, backbone_scale)`` (a pretrained backbone being fine-tuned)
    gives its own groups; each group's base learning rate is kept as ``"base_lr"``.
    """
    if hasattr(model, "param_groups"):
        groups = model.param_groups(cfg.learning_rate, cfg.backbone_lr_scale)
    else:
        groups = [{"params": [p for p in model.parameters() if p.requires_grad], "lr": cfg.learning_rate}]
    groups = [g for g in groups if g["params"]]
    for g in groups:
        g["base_lr"] = g["lr"]
    if cfg.optimizer == "lbfgs":
        params = [p for g in groups for p in g["params"]]
        opt = torch.optim.LBFGS(params, lr=cfg.learning_rate, max_iter=20, history_size=20, line_search_fn="strong_wolfe")
        opt.param_groups[0]["base_lr"] = cfg.learning_rate
        return opt
    if cfg.weight_decay > 0:
        return torch.optim.AdamW(groups, lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
    return torch.optim.Adam(groups, lr=cfg.learning_rate)


def _n_classes(model: nn.Module, ds: ClipDataset) -> int:
    """Output classes of ``model`` (one forward pass on one item, in eval mode)."""
    was = model.training
    model.eval()
    with torch.no_grad():
        n = int(model(ds[0][0][None]).shape[1])
    model.train(was)
    return n


@torch.no_grad()
def predict_logits(model: nn.Module, ds: ClipDataset, *, batch_size: int = 32) -> np.ndarray:
    """Logits ``(n_items, n_classes)`` of a dataset, in order, in eval mode."""
    model.eval()
    outs = [model(x).float() for x, _ in make_loader(ds, batch_size, shuffle=False, seed=0)]
    return torch.cat(outs).numpy() if outs else np.zeros((0, 0), dtype=np.float32)


class _Step:
    """The learning-rate schedule over a run's optimisation steps (and the recipe, for mixup)."""

    def __init__(self, cfg: TrainConfig, opt: torch.optim.Optimizer, steps_per_epoch: int) -> None:
        self.cfg, self.opt = cfg, opt
        self.steps_per_epoch = max(1, steps_per_epoch)
        self.total = cfg.epochs * self.steps_per_epoch
        self.warmup = int(round(cfg.warmup_epochs * self.steps_per_epoch))

    def set_lr(self, step: int) -> None:
        """Set every group's learning rate for optimisation step ``step`` (0-based)."""
        f = lr_factor(self.cfg.lr_schedule, step, self.total, warmup_steps=self.warmup)
        for g in self.opt.param_groups:
            g["lr"] = g["base_lr"] * f


def _epoch_pass(model: nn.Module, loader: DataLoader, loss_fn: nn.Module, opt: torch.optim.Optimizer | None,
                step: _Step | None = None, epoch: int = 1) -> tuple[float, float, int]:
    """One pass; trains when ``opt`` is given. Returns (mean loss, accuracy, clips).

    With class weights the mean loss is weighted over the whole pass (each batch counts by the
    summed weights of its labels), so it equals the mean over classes of each class's mean loss.
    """
    model.train(opt is not None)
    total, correct, loss_sum, weight_sum = 0, 0, 0.0, 0.0
    class_w = getattr(loss_fn, "weight", None)
    rng = np.random.default_rng([step.cfg.seed, epoch, 17]) if step is not None else None
    with torch.set_grad_enabled(opt is not None):
        for i, (x, y) in enumerate(loader):
            if opt is not None and step is not None and rng is not None:
                step.set_lr((epoch - 1) * step.steps_per_epoch + i)
                mixed = mixup_batch(x, y, alpha=step.cfg.mixup_alpha, rng=rng)
                logits = model(mixed.x)
                loss = mixed.loss(loss_fn, logits)
            else:
                logits = model(x)
                loss = loss_fn(logits, y)
            if opt is not None:
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
            batch_w = float(class_w[y].sum()) if class_w is not None else float(len(y))
            loss_sum += float(loss.detach()) * batch_w
            weight_sum += batch_w
            correct += int((logits.argmax(1) == y).sum())
            total += len(y)
    return loss_sum / max(weight_sum, 1e-12), correct / max(total, 1), total


def is_full_batch(cfg: TrainConfig) -> bool:
    """Whether ``cfg`` fits by full-batch L-BFGS (:func:`fit_head`) rather than mini-batch epochs."""
    return cfg.optimizer == "lbfgs"


def train_model(
    model: nn.Module,
    train_ds: ClipDataset,
    val_ds: ClipDataset,
    cfg: TrainConfig,
    *,
    checkpoint_dir: str | Path | None = None,
    resume: bool = False,
    class_weights: torch.Tensor | None = None,
    log: Callable[[str], Any] = print,
    dist: TrainContext | None = None,
) -> TrainResult:
    """Fit ``model`` with the recipe of ``cfg`` and early stopping on validation loss.

    A full-batch recipe (``cfg.optimizer == "lbfgs"``, :func:`is_full_batch`) goes to
    :func:`fit_head`; otherwise mini-batch epochs run.

    Parameters
    ----------
    checkpoint_dir
        If given, ``checkpoint.pt`` is written there atomically after every epoch.
    resume
        Continue from ``checkpoint_dir/checkpoint.pt`` if it exists.
    class_weights
        Per-class loss weights ``(n_classes,)``; default: balanced ones from the training clips
        when ``cfg.class_weighting == "balanced"``, else none.  The validation loss uses the
        same weights (without label smoothing or mixup).
    dist
        Where this process stands (default: :class:`~cultural_music.training.context.LocalContext`,
        one process).  A data-parallel rank (:class:`cultural_music.cluster.ddp.DistContext`)
        wraps the model in ``DistributedDataParallel`` and trains on its shard with
        ``batch_size // world_size`` clips per step; metrics and the early-stopping decision
        are shared by all ranks, and only rank 0 logs and writes the checkpoint.

    Returns
    -------
    TrainResult
        ``best_state`` holds the weights of the epoch with the lowest validation loss (chosen
        on validation only); the model is left holding those weights.
    """
    ctx = dist if dist is not None else LocalContext()
    if is_full_batch(cfg):
        return fit_head(model, train_ds, val_ds, cfg, checkpoint_dir=checkpoint_dir, resume=resume,
                        class_weights=class_weights, log=log, dist=ctx)
    run = _Run(model, train_ds, val_ds, cfg, ctx, class_weights, log)
    step = _Step(cfg, run.opt, len(ctx.train_loader(train_ds, cfg, 0)))
    run.resume_from(checkpoint_dir, resume)
    for epoch in range(run.start_epoch, cfg.epochs + 1):
        run.begin(epoch)
        t0 = time.perf_counter()
        train = _epoch_pass(run.net, ctx.train_loader(train_ds, cfg, epoch), run.loss_fn, run.opt, step, epoch)
        h, improved = run.end(epoch, train, time.perf_counter() - t0)
        run.log(_epoch_line(h, cfg.epochs, improved))
        run.checkpoint(epoch)
        if run.out_of_patience():
            run.log(f"early stopping: no validation-loss improvement for {cfg.patience} epochs; best epoch {run.result.best_epoch}")
            break
    model.load_state_dict(run.result.best_state)
    return run.result


def _epoch_line(h: dict[str, Any], epochs: int, improved: bool) -> str:
    """The log line of history record ``h`` (``*``: the best epoch so far)."""
    val = "no validation" if h["val_loss"] is None else f"val_loss {h['val_loss']:.4f} val_acc {h['val_accuracy']:.3f}"
    return (f"epoch {h['epoch']:3d}/{epochs}  loss {h['train_loss']:.4f} acc {h['train_accuracy']:.3f}  "
            f"{val}  {h['clips_per_s']:.1f} clips/s" + ("  *" if improved and h["val_loss"] is not None else ""))


def fit_head(model: nn.Module, train_ds: ClipDataset, val_ds: ClipDataset, cfg: TrainConfig, **options: Any) -> TrainResult:
    """Fit a small model (a linear head on embeddings) by full-batch L-BFGS, as one fit.

    Up to ``cfg.epochs`` rounds of one L-BFGS step (20 iterations, :mod:`.lbfgs`) over the
    whole training set in a fixed order; the weights of the round with the lowest validation
    loss are kept (``cfg.patience`` rounds without improvement end the fit).  ``options``: the
    keyword parameters of :func:`train_model`; the model keeps its memory format (L-BFGS flattens gradients).

    Returns
    -------
    TrainResult
        ``history`` is one record ``{"fit": "lbfgs", "epoch": 1, "steps", "steps_run",
        "iterations", "train_loss", "train_accuracy", "val_loss", "val_accuracy", "seconds"}``
        (figures of the kept round; ``seconds`` summed); ``best_epoch`` is 1.
    """
    if not is_full_batch(cfg):
        raise ParameterError(f"fit_head needs TrainConfig.optimizer 'lbfgs' (a full-batch fit). Got {cfg.optimizer!r} instead: "
                             "use train_model")
    opts = {"checkpoint_dir": None, "resume": False, "class_weights": None, "log": print, "dist": None}
    unknown = set(options) - set(opts)
    if unknown:
        raise TypeError(f"fit_head() got unexpected keyword(s) {sorted(unknown)}")
    opts.update(options)
    ctx = opts["dist"] if opts["dist"] is not None else LocalContext()
    run = _Run(model, train_ds, val_ds, cfg, ctx, opts["class_weights"], opts["log"])
    step = _Step(cfg, run.opt, 1)
    run.resume_from(opts["checkpoint_dir"], opts["resume"])
    for rnd in range(run.start_epoch, cfg.epochs + 1):
        run.begin(rnd)
        t0 = time.perf_counter()
        step.set_lr(rnd - 1)
        full = make_loader(train_ds, max(2, cfg.batch_size), shuffle=False, seed=0)  # batch norm: never 1 clip
        train = lbfgs_epoch(run.net, full, run.loss_fn, run.opt, cfg.weight_decay)  # type: ignore[arg-type]
        h, _ = run.end(rnd, train, time.perf_counter() - t0)
        h["iterations"] = _lbfgs_iterations(run.opt)
        run.checkpoint(rnd)
        if run.out_of_patience():
            break
    model.load_state_dict(run.result.best_state)
    _as_fit(run.result, run.log)
    return run.result


class _Run:
    """What a run carries from epoch to epoch: optimiser, losses, validation data, the result
    so far, the checkpoint; the steps shared by :func:`train_model` and :func:`fit_head`."""

    def __init__(self, model: nn.Module, train_ds: ClipDataset, val_ds: ClipDataset, cfg: TrainConfig,
                 ctx: TrainContext, class_weights: torch.Tensor | None, log: Callable[[str], Any]) -> None:
        if len(train_ds) == 0:
            raise CulturalMusicError("training needs at least one training clip")
        if len(train_ds) < 2 and has_batch_norm(model):
            raise CulturalMusicError(f"training needs at least 2 training clips (batch norm); got {len(train_ds)}: "
                                     "add recordings or use longer clips")
        if not is_full_batch(cfg):  # L-BFGS flattens gradients: it keeps the plain memory format
            ctx.check_batches(model, train_ds, cfg)
            model.to(memory_format=torch.channels_last)  # faster CPU conv/pool kernels (bench/train.py); same maths
        self.model, self.train_ds, self.cfg, self.ctx = model, train_ds, cfg, ctx
        self.opt = make_optimizer(model, cfg)
        if class_weights is None and cfg.class_weighting == "balanced":
            class_weights = balanced_class_weights(train_ds.labels, _n_classes(model, train_ds))
        self.loss_fn = nn.CrossEntropyLoss(weight=class_weights, label_smoothing=cfg.label_smoothing)
        self.val_loss_fn = nn.CrossEntropyLoss(weight=class_weights)
        self.net = ctx.wrap(model)  # forward + backward through net
        self.log = log if ctx.is_writer else _silent
        self.result, self.start_epoch, self.bad_epochs = TrainResult(), 1, 0
        self.ckpt_path: Path | None = None
        # no validation clips (the refit on all data): every epoch runs and the last one is kept
        self.val_loader = make_loader(val_ds, cfg.batch_size, shuffle=False, seed=0) if len(val_ds) else None

    def resume_from(self, checkpoint_dir: str | Path | None, resume: bool) -> None:
        """Checkpoint after every epoch into ``checkpoint_dir``; continue from it if ``resume``."""
        self.ckpt_path = Path(checkpoint_dir) / CHECKPOINT_NAME if checkpoint_dir else None
        if resume and self.ckpt_path is not None and self.ckpt_path.exists():
            self.start_epoch, self.bad_epochs = _load_checkpoint(self.ckpt_path, self.model, self.opt, self.result)
            self.log(f"resuming from {self.ckpt_path} at epoch {self.start_epoch}")

    def begin(self, epoch: int) -> None:
        """Seed epoch ``epoch``'s random streams (dropout; the dataset's augmentation)."""
        torch.manual_seed(self.cfg.seed * 100003 + epoch)
        self.train_ds.set_epoch(epoch)

    def end(self, epoch: int, train: tuple[float, float, int], seconds: float) -> tuple[dict[str, Any], bool]:
        """Merge the training figures over ranks, validate, record the epoch and keep its
        weights if the validation loss improved.  Returns (the history record, improved)."""
        tr_loss, tr_acc, n = self.ctx.merge_train(*train)
        self.ctx.sync_state(self.model)
        va_loss, va_acc = None, None
        if self.val_loader is not None:
            va_loss, va_acc, _ = _epoch_pass(self.model, self.val_loader, self.val_loss_fn, None)
            va_loss, va_acc = self.ctx.from_rank0(va_loss, va_acc)
        record = {"epoch": epoch, "train_loss": tr_loss, "train_accuracy": tr_acc, "val_loss": va_loss,
                  "val_accuracy": va_acc, "seconds": seconds, "clips_per_s": n / max(seconds, 1e-9),
                  "lr": float(self.opt.param_groups[-1]["lr"])}
        self.result.history.append(record)
        improved = self.val_loader is None or va_loss < self.result.best_val_loss - 1e-6
        if improved:
            self.result.best_val_loss, self.result.best_epoch, self.bad_epochs = va_loss, epoch, 0
            self.result.best_state = copy.deepcopy(self.model.state_dict())
        else:
            self.bad_epochs += 1
        return record, improved

    def checkpoint(self, epoch: int) -> None:
        """Write the checkpoint of epoch ``epoch`` (the writer only)."""
        if self.ckpt_path is not None and self.ctx.is_writer:
            _save_checkpoint(self.ckpt_path, self.model, self.opt, self.result, epoch, self.bad_epochs)

    def out_of_patience(self) -> bool:
        """Whether ``cfg.patience`` epochs in a row did not improve (then ``stopped_early``)."""
        self.result.stopped_early = self.bad_epochs >= self.cfg.patience
        return self.result.stopped_early


def _lbfgs_iterations(opt: torch.optim.Optimizer) -> int:
    """L-BFGS iterations run so far (cumulative over steps)."""
    return int(opt.state_dict()["state"].get(0, {}).get("n_iter", 0))


def _as_fit(result: TrainResult, log: Callable[[str], Any]) -> None:
    """A full-batch L-BFGS run is one fit, not an epoch loop: the history becomes one record
    (the kept step: iterations up to it, its losses) and one line is logged."""
    best = result.history[result.best_epoch - 1]
    record = {"fit": "lbfgs", "epoch": 1, "steps": result.best_epoch, "steps_run": len(result.history),
              **{k: best[k] for k in ("iterations", "train_loss", "train_accuracy", "val_loss", "val_accuracy")},
              "seconds": sum(h["seconds"] for h in result.history)}
    result.history, result.best_epoch = [record], 1
    val = ("no validation split" if record["val_loss"] is None
           else f"validation loss {record['val_loss']:.4f}, accuracy {record['val_accuracy']:.3f}")
    log(f"fitted by full-batch L-BFGS: {record['iterations']} iterations, final training loss {record['train_loss']:.4f} "
        f"(accuracy {record['train_accuracy']:.3f}); {val}")


def _silent(line: str) -> None:
    pass


def _save_checkpoint(path: Path, model: nn.Module, opt: torch.optim.Optimizer, result: TrainResult, epoch: int, bad_epochs: int) -> None:
    state = {
        "epoch": epoch,
        "bad_epochs": bad_epochs,
        "model": model.state_dict(),
        "optimizer": opt.state_dict(),
        "best_state": result.best_state,
        "best_epoch": result.best_epoch,
        "best_val_loss": result.best_val_loss,
        "history": result.history,
    }
    with atomic_path(path, suffix=".pt") as tmp:
        torch.save(state, tmp)


def _load_checkpoint(path: Path, model: nn.Module, opt: torch.optim.Optimizer, result: TrainResult) -> tuple[int, int]:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
    except Exception as err:  # noqa: BLE001 - any failure means an unusable checkpoint
        raise CulturalMusicError(f"{path}: cannot resume from this checkpoint ({err})") from err
    result.best_state = state["best_state"]
    result.best_epoch = int(state["best_epoch"])
    result.best_val_loss = float(state["best_val_loss"])
    result.history = list(state["history"])
    return int(state["epoch"]) + 1, int(state["bad_epochs"])
