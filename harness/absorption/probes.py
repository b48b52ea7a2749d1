"""Steps 3-4 of the eval: the ground-truth letter probes and the k-sparse probes on SAE latents.

- `train_multi_probe` is SAEBench sae_bench/evals/absorption/probing.py `train_multi_probe` +
  `_run_probe_training`: one-vs-rest logistic probes (nn.Linear init), BCEWithLogitsLoss with
  pos_weight = neg/pos per letter (`_calc_pos_weights`), Adam with L2 weight decay, shuffled
  mini-batches (DataLoader shuffle=True, last partial batch kept), and an exponential lr decay
  from lr to end_lr stepped once per epoch (`_get_exponential_decay_scheduler`). Several layers'
  probes train side by side on the same batches; their losses are summed, so each layer's
  gradients and Adam moments are exactly those of training it alone.
- `fit_logistic_balanced` is the sklearn `LogisticRegression(max_iter=500,
  class_weight="balanced")` that k_sparse_probing.py `train_k_sparse_probes` fits per (k, letter):
  L2 penalty 1/2 |w|^2 (C = 1, intercept not penalised), sample weights n / (2 n_class). We solve
  the same strictly convex problem with damped Newton in float64 to a tight tolerance (sklearn's
  lbfgs stops at a gradient tolerance of 1e-4), so the solution is the exact minimiser.
- `k_sparse_main_latents` is `train_k_sparse_probes` + `build_metrics_df` (F1 of the k-sparse
  probe's score > 0 on the test words) + `add_feature_splits_to_metrics_df` (the F1-jump rule).
"""

from __future__ import annotations

import math

import torch

from harness.absorption.prompts import LETTERS

CLASSES = len(LETTERS)
SAEBENCH_SPARSE_PROBE_BATCH = 4096  # eval_config.k_sparse_probe_batch_size
MIN_STEPS_PER_EPOCH = 20  # what the automatic k-sparse probe batch guarantees


def sparse_probe_batch(train_words: int, requested: int = 0) -> tuple[int, str | None]:
    """The k-sparse L1 probe's batch and a warning, if any.

    `requested` 0 chooses the batch from the number of train words: SAEBench's 4096, lowered so
    an epoch has at least MIN_STEPS_PER_EPOCH Adam steps. SAEBench's 4096 on a vocabulary with
    few train words gives one step per epoch (50 in all), too few to rank the latents: on the
    planted test its absorption comes out 0.27-0.35 for a true 0.0865 (seeds 42, 0, 1);
    SAEBench's code errs the same way. A requested batch that leaves fewer steps is used as given, with a warning."""
    if requested:
        steps = math.ceil(train_words / requested) if train_words else 0
        if steps < MIN_STEPS_PER_EPOCH:
            return requested, (f"absorption: sparse_probe_batch_size = {requested} gives the k-sparse probe "
                               f"{steps} optimiser step(s) per epoch on {train_words} train words (fewer than "
                               f"{MIN_STEPS_PER_EPOCH}: its latent ranking may follow its random init); "
                               f"leave it unset (0) to choose one")
        return requested, None
    return max(1, min(SAEBENCH_SPARSE_PROBE_BATCH, train_words // MIN_STEPS_PER_EPOCH)), None


def train_multi_probe(x: torch.Tensor, y: torch.Tensor, *, batch_size: int, epochs: int, lr: float,
                      end_lr: float, weight_decay: float, generator: torch.Generator, l1: float = 0.0,
                      init: tuple[torch.Tensor, torch.Tensor] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """One-vs-rest logistic probes for each of P problems sharing labels.

    x [P, n, d] (float32), y [n] letter index. Returns weight [P, 26, d], bias [P, 26].
    `l1` adds SAEBench's `train_sparse_multi_probe` extra loss l1 * |W|.sum(-1).mean().
    `init` (weight, bias) replaces nn.Linear's random init. Each epoch is a new random order
    (RandomSampler on `generator`, as DataLoader(shuffle=True)), the last partial batch kept.
    """
    from torch.utils.data import BatchSampler, RandomSampler

    problems, n, d = x.shape
    device = x.device
    y = y.to(device)
    targets = torch.nn.functional.one_hot(y, CLASSES).to(x.dtype)
    positives = targets.sum(0)
    # _calc_pos_weights: neg / pos (a letter without training words would make it inf -> nan loss
    # in SAEBench; we let it count as one positive)
    pos_weight = (n - positives) / positives.clamp_min(1)
    if init is None:
        bound = 1 / math.sqrt(d)  # nn.Linear's default init: U(-1/sqrt(d), 1/sqrt(d)) for weight and bias
        init = ((torch.rand(problems, CLASSES, d, generator=generator) * 2 - 1) * bound,
                (torch.rand(problems, CLASSES, generator=generator) * 2 - 1) * bound)
    weight = init[0].to(device, x.dtype).clone().requires_grad_(True)
    bias = init[1].to(device, x.dtype).clone().requires_grad_(True)
    batches = BatchSampler(RandomSampler(range(n), generator=generator), batch_size, drop_last=False)
    optimizer = torch.optim.Adam([weight, bias], lr=lr, weight_decay=weight_decay)
    gamma = math.exp(math.log(end_lr / lr) / epochs)
    scheduler = torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma=gamma)
    loss_fn = torch.nn.BCEWithLogitsLoss(pos_weight=pos_weight, reduction="none")
    for _ in range(epochs):
        for indices in batches:
            rows = torch.tensor(indices, device=device)
            logits = torch.baddbmm(bias[:, None, :], x[:, rows], weight.transpose(1, 2))  # [P, b, 26]
            loss = loss_fn(logits, targets[rows].expand_as(logits)).mean(dim=(1, 2)).sum()
            if l1:
                loss = loss + l1 * weight.abs().sum(-1).mean(-1).sum()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        scheduler.step()
    return weight.detach(), bias.detach()


def f1_per_letter(scores: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """sklearn `f1_score(y == letter, score > 0)` per letter column (0 where undefined).

    scores [..., n, 26] -> [..., 26]."""
    predicted = scores > 0
    actual = torch.nn.functional.one_hot(y, CLASSES).bool()
    tp = (predicted & actual).sum(-2).double()
    fp = (predicted & ~actual).sum(-2).double()
    fn = (~predicted & actual).sum(-2).double()
    denominator = 2 * tp + fp + fn
    return torch.where(denominator > 0, 2 * tp / denominator.clamp_min(1), torch.zeros_like(tp))


def binary_f1(predicted: torch.Tensor, actual: torch.Tensor) -> torch.Tensor:
    """F1 along the last dim of boolean tensors (0 where undefined, as sklearn)."""
    tp = (predicted & actual).sum(-1).double()
    denominator = 2 * tp + (predicted & ~actual).sum(-1) + (~predicted & actual).sum(-1)
    return torch.where(denominator > 0, 2 * tp / denominator.clamp_min(1), torch.zeros_like(tp))


def fit_logistic_balanced(x: torch.Tensor, y: torch.Tensor, tol: float = 1e-10,
                          max_iter: int = 100) -> tuple[torch.Tensor, torch.Tensor]:
    """Batched binary logistic regressions, one per leading index: x [c, n, k], y [c, n] in {0, 1}.

    Minimises sum_i s_i log(1 + exp(-t_i (w.x_i + b))) + 1/2 |w|^2 with s_i = n / (2 n_{y_i})
    (sklearn's class_weight="balanced", C = 1). Returns weight [c, k], bias [c] (float32)."""
    c, n, k = x.shape
    device = x.device
    z = torch.cat([x.double(), torch.ones(c, n, 1, dtype=torch.float64, device=device)], dim=-1)  # bias last
    t = y.double()
    positives = t.sum(1, keepdim=True)
    s = torch.where(t > 0, n / (2 * positives.clamp_min(1)), n / (2 * (n - positives).clamp_min(1)))
    penalty = torch.ones(k + 1, dtype=torch.float64, device=device)
    penalty[-1] = 0.0  # intercept not penalised

    def logits_of(theta: torch.Tensor) -> torch.Tensor:
        return torch.bmm(z, theta[:, :, None])[..., 0]

    def objective(logits: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
        losses = torch.nn.functional.binary_cross_entropy_with_logits(logits, t, reduction="none")
        return (s * losses).sum(1) + 0.5 * (penalty * theta.pow(2)).sum(1)

    theta = torch.zeros(c, k + 1, dtype=torch.float64, device=device)
    logits = logits_of(theta)
    value = objective(logits, theta)
    eye = torch.eye(k + 1, dtype=torch.float64, device=device)
    for _ in range(max_iter):
        p = torch.sigmoid(logits)
        gradient = torch.bmm((s * (p - t))[:, None, :], z)[:, 0] + penalty * theta
        if float(gradient.abs().max()) <= tol * max(1.0, n):
            break
        curvature = s * p * (1 - p)
        hessian = torch.bmm(z.transpose(1, 2) * curvature[:, None, :], z) + torch.diag(penalty) + 1e-12 * eye
        step = torch.linalg.solve(hessian, gradient[..., None])[..., 0]
        decrease = (gradient * step).sum(1)  # the Newton decrement squared
        slack = 1e-12 * value.abs().clamp_min(1)  # what float64 can resolve in the objective
        if bool((decrease <= slack).all()):
            break  # converged as far as the objective can tell
        # backtracking line search per problem (Armijo), so the iteration never diverges
        size = torch.ones(c, 1, dtype=torch.float64, device=device)
        for _ in range(40):
            candidate = theta - size * step
            new_logits = logits_of(candidate)
            new_value = objective(new_logits, candidate)
            ok = new_value <= value - 1e-4 * size[:, 0] * decrease + slack
            if bool(ok.all()):
                break
            size = torch.where(ok[:, None], size, size / 2)
        theta, logits, value = candidate, new_logits, new_value
    return theta[:, :k].float(), theta[:, k].float()


@torch.no_grad()
def k_sparse_main_latents(latents_train: torch.Tensor, y_train: torch.Tensor, latents_test: torch.Tensor,
                          y_test: torch.Tensor, letters: list[int], *, max_k: int, f1_jump: float,
                          l1: float, batch_size: int, epochs: int, lr: float, end_lr: float,
                          weight_decay: float, generator: torch.Generator) -> dict[int, list[int]]:
    """Main (split) latents per letter: SAE latents ranked by an L1-regularised multi-probe
    (`train_sparse_multi_probe`), then for k = 1..max_k a balanced logistic regression on the
    top k (`train_k_sparse_probes`); k grows while test F1 improves by more than `f1_jump`
    (`add_feature_splits_to_metrics_df`: prev_best starts at -100, the first k always counts)."""
    y_train, y_test = y_train.to(latents_train.device), y_test.to(latents_test.device)
    with torch.enable_grad():
        l1_weight, _ = train_multi_probe(latents_train[None].float(), y_train, batch_size=batch_size,
                                         epochs=epochs, lr=lr, end_lr=end_lr, weight_decay=weight_decay,
                                         generator=generator, l1=l1)
    l1_weight = l1_weight[0]
    chosen: dict[int, list[int]] = {}
    best = {letter: -100.0 for letter in letters}
    open_letters = [letter for letter in letters if bool((y_train == letter).any())]
    for k in range(1, max_k + 1):
        if not open_letters:
            break
        ids = torch.stack([l1_weight[letter].topk(k).indices for letter in open_letters])  # [c, k]
        x_train = latents_train[:, ids].permute(1, 0, 2)  # [c, n, k]
        t_train = torch.stack([(y_train == letter) for letter in open_letters]).long()
        weight, bias = fit_logistic_balanced(x_train, t_train)
        scores = torch.einsum("cnk,ck->cn", latents_test[:, ids].permute(1, 0, 2).float(), weight) + bias[:, None]
        actual = torch.stack([(y_test == letter) for letter in open_letters])
        f1 = binary_f1(scores > 0, actual)
        still_open = []
        for row, letter in enumerate(open_letters):
            if float(f1[row]) > best[letter] + f1_jump:
                best[letter] = float(f1[row])
                chosen[letter] = ids[row].tolist()
                still_open.append(letter)
        open_letters = still_open
    return chosen
