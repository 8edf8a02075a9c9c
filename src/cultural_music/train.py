"""The training loop: Adam, early stopping on validation loss, best weights restored.

Deterministic on CPU for a given seed: data order and dropout are seeded per epoch, so a run
resumed from its epoch checkpoint ends exactly where an uninterrupted one does.
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

from .atomic import atomic_path
from .config import TrainConfig
from .data import ClipDataset
from .errors import CulturalMusicError

__all__ = ["TrainResult", "train_model", "predict_logits", "CHECKPOINT_NAME"]

CHECKPOINT_NAME = "checkpoint.pt"


@dataclass
class TrainResult:
    """Per-epoch history, the chosen epoch (lowest validation loss) and its weights."""

    history: list[dict[str, float]] = field(default_factory=list)
    best_epoch: int = 0
    best_val_loss: float = float("inf")
    best_state: dict[str, torch.Tensor] = field(default_factory=dict)
    stopped_early: bool = False


def _loader(ds: ClipDataset, batch_size: int, *, shuffle: bool, seed: int) -> DataLoader:
    gen = torch.Generator().manual_seed(seed)
    return DataLoader(ds, batch_size=batch_size, shuffle=shuffle, generator=gen, num_workers=0)


@torch.no_grad()
def predict_logits(model: nn.Module, ds: ClipDataset, *, batch_size: int = 32) -> np.ndarray:
    """Logits ``(n_items, n_classes)`` of a dataset, in order, in eval mode."""
    model.eval()
    outs = [model(x).float() for x, _ in _loader(ds, batch_size, shuffle=False, seed=0)]
    return torch.cat(outs).numpy() if outs else np.zeros((0, 0), dtype=np.float32)


def _epoch_pass(model: nn.Module, loader: DataLoader, loss_fn: nn.Module, opt: torch.optim.Optimizer | None) -> tuple[float, float, int]:
    """One pass; trains when ``opt`` is given. Returns (mean loss, accuracy, clips)."""
    model.train(opt is not None)
    total, correct, loss_sum = 0, 0, 0.0
    with torch.set_grad_enabled(opt is not None):
        for x, y in loader:
            logits = model(x)
            loss = loss_fn(logits, y)
            if opt is not None:
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
            loss_sum += float(loss.detach()) * len(y)
            correct += int((logits.argmax(1) == y).sum())
            total += len(y)
    return loss_sum / max(total, 1), correct / max(total, 1), total


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
) -> TrainResult:
    """Fit ``model`` with Adam (``cfg.learning_rate``) and early stopping on validation loss.

    Parameters
    ----------
    checkpoint_dir
        If given, ``checkpoint.pt`` is written there atomically after every epoch.
    resume
        Continue from ``checkpoint_dir/checkpoint.pt`` if it exists.
    class_weights
        Optional per-class loss weights ``(n_classes,)``.

    Returns
    -------
    TrainResult
        ``best_state`` holds the weights of the epoch with the lowest validation loss (chosen
        on validation only); the model is left holding those weights.
    """
    if len(train_ds) == 0 or len(val_ds) == 0:
        raise CulturalMusicError("training needs at least one training clip and one validation clip")
    opt = torch.optim.Adam(model.parameters(), lr=cfg.learning_rate)
    loss_fn = nn.CrossEntropyLoss(weight=class_weights)
    result = TrainResult()
    start_epoch, bad_epochs = 1, 0
    ckpt_path = Path(checkpoint_dir) / CHECKPOINT_NAME if checkpoint_dir else None
    if resume and ckpt_path is not None and ckpt_path.exists():
        start_epoch, bad_epochs = _load_checkpoint(ckpt_path, model, opt, result)
        log(f"resuming from {ckpt_path} at epoch {start_epoch}")
    val_loader = _loader(val_ds, cfg.batch_size, shuffle=False, seed=0)
    for epoch in range(start_epoch, cfg.epochs + 1):
        torch.manual_seed(cfg.seed * 100003 + epoch)
        train_ds.set_epoch(epoch)
        t0 = time.perf_counter()
        tr_loss, tr_acc, n = _epoch_pass(model, _loader(train_ds, cfg.batch_size, shuffle=True, seed=cfg.seed + epoch), loss_fn, opt)
        seconds = time.perf_counter() - t0
        va_loss, va_acc, _ = _epoch_pass(model, val_loader, loss_fn, None)
        result.history.append(
            {"epoch": epoch, "train_loss": tr_loss, "train_accuracy": tr_acc, "val_loss": va_loss,
             "val_accuracy": va_acc, "seconds": seconds, "clips_per_s": n / max(seconds, 1e-9)}
        )
        improved = va_loss < result.best_val_loss - 1e-6
        if improved:
            result.best_val_loss, result.best_epoch, bad_epochs = va_loss, epoch, 0
            result.best_state = copy.deepcopy(model.state_dict())
        else:
            bad_epochs += 1
        log(f"epoch {epoch:3d}/{cfg.epochs}  loss {tr_loss:.4f} acc {tr_acc:.3f}  "
            f"val_loss {va_loss:.4f} val_acc {va_acc:.3f}  {n / max(seconds, 1e-9):.1f} clips/s" + ("  *" if improved else ""))
        if ckpt_path is not None:
            _save_checkpoint(ckpt_path, model, opt, result, epoch, bad_epochs)
        if bad_epochs >= cfg.patience:
            result.stopped_early = True
            log(f"early stopping: no validation-loss improvement for {cfg.patience} epochs; best epoch {result.best_epoch}")
            break
    model.load_state_dict(result.best_state)
    return result


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
