"""The probes of the sparse-probing eval, after SAEBench's
sae_bench/evals/sparse_probing/probe_training.py (cited per function).

- `binary_task` is `prepare_probe_data`: the class's texts as positives and as many negatives,
  drawn evenly from the other classes, shuffled. Drawn once per class and split here and shared
  by every probe of that task (SAEBench redraws the negatives for each probe it trains, from the
  global torch RNG), so the model's and each SAE's probes see the same texts.
- `train_probe` is `train_probe_gpu` + `test_probe_gpu`, the probe SAEBench's main.py fits on
  all dimensions (the model's activations, all SAE latents): a linear probe (nn.Linear init),
  BCEWithLogitsLoss, AdamW (lr 1e-2, torch's default weight decay 0.01), batches of 250, up
  to 100 epochs; after each epoch the test accuracy is measured, the best one is the result and
  training stops after 10 epochs without improvement. (SAEBench selects on the test split; so
  do we, to report SAEBench's number.) Seeded by a torch.Generator, so it is deterministic.
- `top_k_dims` is `get_top_k_mean_diff_mask`: the k dimensions with the largest |mean over
  positives - mean over negatives| on the training split.
- `sklearn_accuracy` is `train_sklearn_probe`: scikit-learn's
  `LogisticRegression(penalty="l2", C=1.0, max_iter=1000)` (solver lbfgs, deterministic) on
  those k dimensions, scored by `accuracy_score` on the test split.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch


@dataclass
class BinaryTask:
    rows: torch.Tensor  # [2 n_pos] indices into the split's texts
    targets: torch.Tensor  # [2 n_pos] 1 = the class, 0 = another class


def binary_task(labels: list[str], positive: str, generator: torch.Generator) -> BinaryTask:
    """prepare_probe_data: positives are the class's texts; ceil(n_pos / (C-1)) texts drawn from
    each other class, of which n_pos are kept at random; the whole shuffled."""
    classes = list(dict.fromkeys(labels))
    index = {c: torch.tensor([i for i, lab in enumerate(labels) if lab == c], dtype=torch.long) for c in classes}
    positives = index[positive]
    others = [c for c in classes if c != positive]
    per_class = math.ceil(len(positives) / len(others))
    pool = torch.cat([index[c][torch.randperm(len(index[c]), generator=generator)[:per_class]] for c in others])
    negatives = pool[torch.randperm(len(pool), generator=generator)[:len(positives)]]
    rows = torch.cat([positives, negatives])
    targets = torch.cat([torch.ones(len(positives), dtype=torch.long), torch.zeros(len(negatives), dtype=torch.long)])
    order = torch.randperm(len(rows), generator=generator)
    return BinaryTask(rows[order], targets[order])


def _accuracy(weight: torch.Tensor, bias: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> float:
    """test_probe_gpu: the share of texts whose logit's sign (> 0) matches the label."""
    return float(((x @ weight + bias > 0).long() == y).float().mean())


def train_probe(x_train: torch.Tensor, y_train: torch.Tensor, x_test: torch.Tensor, y_test: torch.Tensor, *,
                epochs: int, lr: float, batch_size: int, patience: int, generator: torch.Generator) -> float:
    """train_probe_gpu: the best test accuracy of a logistic probe trained with AdamW."""
    dim = x_train.shape[1]
    device = x_train.device
    bound = 1 / math.sqrt(dim)  # nn.Linear's init: U(-1/sqrt(d), 1/sqrt(d)) for weight and bias
    weight = ((torch.rand(dim, generator=generator) * 2 - 1) * bound).to(device).requires_grad_(True)
    bias = ((torch.rand(1, generator=generator) * 2 - 1) * bound).to(device).requires_grad_(True)
    optimizer = torch.optim.AdamW([weight, bias], lr=lr)
    loss_fn = torch.nn.BCEWithLogitsLoss()
    targets = y_train.to(x_train.dtype)
    best, waited = 0.0, 0
    for _ in range(epochs):
        order = torch.randperm(len(x_train), generator=generator).to(device)
        for start in range(0, len(order), batch_size):
            rows = order[start:start + batch_size]
            loss = loss_fn(x_train[rows] @ weight + bias, targets[rows])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        with torch.no_grad():
            accuracy = _accuracy(weight, bias, x_test, y_test)
        if accuracy > best:
            best, waited = accuracy, 0
        else:
            waited += 1
        if waited >= patience:
            break
    return best


def top_k_dims(x: torch.Tensor, y: torch.Tensor, k: int) -> torch.Tensor:
    """get_top_k_mean_diff_mask: indices of the k largest |mean(x | y=1) - mean(x | y=0)|."""
    difference = (x[y == 1].mean(0) - x[y == 0].mean(0)).abs()
    return torch.argsort(difference, descending=True, stable=True)[:k]


def sklearn_accuracy(x_train: torch.Tensor, y_train: torch.Tensor, x_test: torch.Tensor,
                     y_test: torch.Tensor) -> float:
    """train_sklearn_probe: LogisticRegression(penalty="l2", C=1.0, max_iter=1000), test accuracy."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import accuracy_score

    probe = LogisticRegression(C=1.0, max_iter=1000)  # penalty l2 is the default (the argument is deprecated)
    train_np = x_train.float().cpu().numpy()
    probe.fit(train_np, y_train.cpu().numpy())
    return float(accuracy_score(y_test.cpu().numpy(), probe.predict(x_test.float().cpu().numpy())))


@dataclass
class ProbeScore:
    class_name: str
    k: int | None  # None: all dimensions
    accuracy: float


def probe_scores(train: torch.Tensor, test: torch.Tensor, tasks: dict[str, tuple[BinaryTask, BinaryTask]],
                 ks: tuple[int, ...], *, epochs: int, lr: float, batch_size: int, patience: int, seed: int,
                 device: torch.device) -> list[ProbeScore]:
    """Every probe of one input space (the model's pooled activations or one SAE's pooled
    latents): per class, the all-dimension probe and the top-k probes."""
    scores = []
    for position, (name, (train_task, test_task)) in enumerate(tasks.items()):
        x_train, y_train = train[train_task.rows], train_task.targets
        x_test, y_test = test[test_task.rows], test_task.targets
        generator = torch.Generator().manual_seed(seed * 1000 + position)
        accuracy = train_probe(x_train.to(device), y_train.to(device), x_test.to(device), y_test.to(device),
                               epochs=epochs, lr=lr, batch_size=batch_size, patience=patience, generator=generator)
        scores.append(ProbeScore(name, None, accuracy))
        for k in ks:
            dims = top_k_dims(x_train, y_train, min(k, x_train.shape[1]))
            scores.append(ProbeScore(name, k, sklearn_accuracy(x_train[:, dims], y_train, x_test[:, dims], y_test)))
    return scores


def mean_by_k(scores: list[ProbeScore]) -> dict[int | None, float]:
    """main.py run_eval_single_dataset: the mean accuracy over classes, per k."""
    by_k: dict[int | None, list[float]] = {}
    for score in scores:
        by_k.setdefault(score.k, []).append(score.accuracy)
    return {k: float(np.mean(values)) for k, values in by_k.items()}
