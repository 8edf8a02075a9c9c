"""Full-batch L-BFGS epochs: fit small models (a linear head on embeddings) to convergence.

With a convex model (standardised inputs, one linear layer) and an L2 penalty this is the
classic regularised logistic regression: the result depends on the data and the penalty, not on
the seed or batch order, unlike a mini-batch run stopped early.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.data import DataLoader

__all__ = ["l2_penalty", "lbfgs_epoch"]


def l2_penalty(model: nn.Module, strength: float) -> torch.Tensor:
    """``strength * sum(w ** 2)`` over the trainable weight matrices/kernels (``ndim >= 2``);
    biases and normalisation parameters are not penalised."""
    terms = [(p**2).sum() for p in model.parameters() if p.requires_grad and p.ndim >= 2]
    return strength * torch.stack(terms).sum() if terms and strength > 0 else torch.zeros(())


def _no_single_clip_batch(batches: list) -> list:
    """Merge a last batch of one clip into the one before: batch norm cannot train on one clip
    (e.g. 66 clips at batch size 65).  The loss is the same weighted mean either way."""
    if len(batches) > 1 and len(batches[-1][1]) == 1:
        (x0, y0), (x1, y1) = batches[-2], batches[-1]
        batches = batches[:-2] + [(torch.cat([x0, x1]), torch.cat([y0, y1]))]
    return batches


def lbfgs_epoch(model: nn.Module, loader: DataLoader, loss_fn: nn.Module, opt: torch.optim.LBFGS,
                weight_decay: float) -> tuple[float, float, int]:
    """One ``opt.step`` on the whole training set: mean loss + L2 penalty, minimised by L-BFGS.

    The set is read once per epoch (a fixed order, so the objective is deterministic); its loss
    is the class-weighted mean over all clips (batches weighted by their summed class weights).
    Dropout should be off: L-BFGS needs the same objective at every evaluation.

    Returns
    -------
    tuple
        (training loss after the step, accuracy after the step, clips): measured at the
        weights the epoch ends with, like the validation figures that follow.
    """
    batches = _no_single_clip_batch(list(loader))
    class_w = getattr(loss_fn, "weight", None)
    weights = [float(class_w[y].sum()) if class_w is not None else float(len(y)) for _, y in batches]
    total_w = max(sum(weights), 1e-12)
    model.train()

    def data_loss() -> tuple[float, int]:
        """Class-weighted mean loss over the whole set (gradients accumulate), correct answers."""
        value, correct = 0.0, 0
        for (x, y), w in zip(batches, weights):
            logits = model(x)
            loss = loss_fn(logits, y) * (w / total_w)
            if torch.is_grad_enabled():
                loss.backward()
            value += float(loss.detach())
            correct += int((logits.detach().argmax(1) == y).sum())
        return value, correct

    def closure() -> torch.Tensor:
        opt.zero_grad(set_to_none=True)
        value, _ = data_loss()
        penalty = l2_penalty(model, weight_decay)
        if penalty.requires_grad:
            penalty.backward()
        return torch.tensor(value + float(penalty.detach()))

    opt.step(closure)
    with torch.no_grad():
        value, correct = data_loss()
    n = sum(len(y) for _, y in batches)
    return value, correct / max(n, 1), n
