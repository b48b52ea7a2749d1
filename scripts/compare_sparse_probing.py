"""Our sparse-probing eval against SAEBench's own code on the same activations, labels and SAE.

    python scripts/compare_sparse_probing.py --db results/demo.duckdb --model base --layer 3

Stage 1 (this venv): loads the model and a TopK SAE checkpoint of the results file, draws the
labelled texts of a built-in task, runs our eval (`score_sparse_probing`) and writes the
per-token activations it probes (zeros at special and padding positions, as SAEBench's
`get_all_llm_activations(mask_bos_pad_eos_tokens=True)` leaves them), the labels and the SAE's
weights to a .pt file. Stage 2 (SAEBench 0.6.0's venv, `--peers-python`, made by
../shared/tools/peers-venv.sh; /work/peers here) feeds them to SAEBench's
sae_bench/evals/sparse_probing code as its main.py `run_eval_single_dataset` does:
`create_meaned_model_activations`, `get_sae_meaned_activations` (the SAE's TopK encode written
out from its weights), `train_probe_on_activations` (torch probe on all dimensions: batch 250,
100 epochs, lr 1e-2; sklearn on the top k) after `random.seed` / `torch.manual_seed` of the seed,
and averages over classes. Over `--seeds` seeds (each draws its texts, negatives and probe inits
anew, on both sides), each metric's mean must agree within SAEBench's own test tolerance, 0.04
(tests/test_sparse_probing.py `test_end_to_end_different_seed`, the tolerance it allows between
runs that differ in their random draws, as ours and SAEBench's do: SAEBench draws negatives and
probe inits from the global torch RNG).

With two classes of equal size (the default task) every one-vs-rest task holds the same texts in
both codes (all of the other class are the negatives), so the top-k sklearn probes should agree
exactly; the all-dimension torch probes differ by their random init and batch order.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
from pathlib import Path

TOLERANCE = 0.04  # SAEBench tests/test_sparse_probing.py test_end_to_end_different_seed


def _ours(args) -> int:
    import duckdb
    import torch

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from harness.activations import HookSite, capture
    from harness.checkpoint import load_sae
    from harness.evals.sparse_probing import _encode_texts, score_sparse_probing
    from harness.models import load_model
    from harness.probing_tasks import load_probing_data
    from harness.tokens import special_mask
    from suite.jobs import DatasetRef, ModelRef, ProbingSettings

    with duckdb.connect(args.db, read_only=True) as con:
        found = con.execute("select model_id, checkpoint_path, arch from saes where model = ? and layer = ? and "
                            "hook = 'resid_post' and status = 'done' order by finished_at desc limit 1",
                            [args.model, args.layer]).fetchone()
    if found is None:
        print(f"no finished resid_post SAE of model {args.model!r} at layer {args.layer} in {args.db}")
        return 2
    model_id, checkpoint, arch = found
    if arch != "topk":
        print(f"the SAEBench side writes out a TopK encoder; this SAE is {arch}")
        return 2
    lm = load_model(ModelRef(model_id, name=args.model), torch.device("cpu"))
    sae = load_sae(checkpoint)
    site = HookSite(args.layer)

    def token_acts(texts: list[str], ctx_len: int) -> torch.Tensor:
        """[n, ctx_len, d]: the site's output per token, zero at special and padding positions."""
        encoded = _encode_texts(lm.tokenizer, texts, ctx_len)
        out = torch.zeros(len(texts), ctx_len, lm.d_model)
        for i, ids in enumerate(encoded):
            tensor = torch.tensor([ids])
            acts, _ = capture(lm, tensor, [site])
            keep = ~special_mask(tensor, lm.special_ids)
            out[i, :len(ids)] = acts[site][0].float() * keep[0, :, None]
        return out

    seeds = list(range(args.seed, args.seed + args.seeds))
    ours, paths = [], []
    for seed in seeds:
        settings = ProbingSettings("compare", DatasetRef(args.task), classes=tuple(args.classes), k=(1, 2, 5),
                                   train_size=args.train_size, test_size=args.test_size, seed=seed)
        data = load_probing_data(settings)
        ours.append(score_sparse_probing(lm, {"sae": (site, sae)}, settings, data=data)["sae"].metrics)
        payload = {"seed": seed, "k": [1, 2, 5], "k_sae": sae.k, "W_enc": sae.W_enc.detach().float(),
                   "b_enc": sae.b_enc.detach().float(), "b_dec": sae.b_dec.detach().float()}
        for split, part in (("train", data.train), ("test", data.test)):
            acts = token_acts(part.texts, settings.ctx_len)
            payload[split] = {c: acts[[i for i, lab in enumerate(part.labels) if lab == c]] for c in data.classes}
        path = Path(args.work) / f"sparse_probing_compare_{seed}.pt"
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(payload, path)
        paths.append(str(path))
    # JAXTYPING_DISABLE: SAEBench's jaxtyping hints bind a train_dataset_size from the per-class tensors of
    # `train_probe_on_activations` and then refuse the two-class binary set it builds itself (2x that size)
    # in `train_sklearn_probe`, with jaxtyping 0.3; the checks are annotations only, the code is unchanged.
    environment = {**os.environ, "JAXTYPING_DISABLE": "1"}
    result = subprocess.run([args.peers_python, __file__, "--saebench", *paths], capture_output=True, text=True,
                            env=environment)
    if result.returncode != 0:
        print(result.stdout[-3000:], result.stderr[-3000:])
        return 1
    theirs = [json.loads(line) for line in result.stdout.strip().splitlines()[-len(seeds):]]
    print(f"task {args.task} classes {', '.join(data.classes)}; model {model_id} layer {args.layer}; "
          f"train/test texts per class {args.train_size // 2}/{args.test_size // 2}; seeds {', '.join(map(str, seeds))}")
    print(f"{'metric':<26}{'sae-bench':>10}{'SAEBench':>10}{'diff':>8}{'max |diff| of a seed':>22}")
    worst = 0.0
    for name in sorted(theirs[0]):
        a = sum(o[name] for o in ours) / len(seeds)
        b = sum(t[name] for t in theirs) / len(seeds)
        per_seed = max(abs(o[name] - t[name]) for o, t in zip(ours, theirs))
        worst = max(worst, abs(a - b))
        print(f"{name:<26}{a:>10.4f}{b:>10.4f}{a - b:>+8.4f}{per_seed:>22.4f}")
    print(f"largest difference of the means over seeds {worst:.4f} (tolerance {TOLERANCE}): "
          f"{'agree' if worst <= TOLERANCE else 'DISAGREE'}")
    return 0 if worst <= TOLERANCE else 1


def _saebench(paths: list[str]) -> None:
    for path in paths:
        _saebench_one(path)


def _saebench_one(path: str) -> None:
    """Runs in SAEBench's venv: prints its metrics as one JSON line."""
    import contextlib
    import io

    import torch
    import sae_bench.evals.sparse_probing.probe_training as probe_training
    import sae_bench.sae_bench_utils.activation_collection as activation_collection

    payload = torch.load(path)

    class TopK:  # SAELens-style TopK encode from the same weights
        dtype = torch.float32

        def encode(self, x):
            pre = torch.relu((x - payload["b_dec"]) @ payload["W_enc"] + payload["b_enc"])
            values, indices = pre.topk(payload["k_sae"], dim=-1)
            return torch.zeros_like(pre).scatter(-1, indices, values)

    random.seed(payload["seed"])  # run_eval_single_sae
    torch.manual_seed(payload["seed"])
    results: dict[str, dict[str, float]] = {}
    with contextlib.redirect_stdout(io.StringIO()):  # SAEBench prints per probe
        train = activation_collection.create_meaned_model_activations(payload["train"])
        test = activation_collection.create_meaned_model_activations(payload["test"])
        _, results["llm_test_accuracy"] = probe_training.train_probe_on_activations(
            train, test, select_top_k=None, use_sklearn=False, batch_size=250, epochs=100, lr=1e-2)
        for k in payload["k"]:
            _, results[f"llm_top_{k}_test_accuracy"] = probe_training.train_probe_on_activations(
                train, test, select_top_k=k)
        sae_train = activation_collection.get_sae_meaned_activations(payload["train"], TopK(), 125)
        sae_test = activation_collection.get_sae_meaned_activations(payload["test"], TopK(), 125)
        _, results["sae_test_accuracy"] = probe_training.train_probe_on_activations(
            sae_train, sae_test, select_top_k=None, use_sklearn=False, batch_size=250, epochs=100, lr=1e-2)
        for k in payload["k"]:
            _, results[f"sae_top_{k}_test_accuracy"] = probe_training.train_probe_on_activations(
                sae_train, sae_test, select_top_k=k)
    print(json.dumps({name: sum(v.values()) / len(v) for name, v in results.items()}))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--saebench", nargs="+", help=argparse.SUPPRESS)
    parser.add_argument("--db", default="results/demo.duckdb")
    parser.add_argument("--model", default="base")
    parser.add_argument("--layer", type=int, default=3)
    parser.add_argument("--task", default="builtin:pyref-chapters")
    parser.add_argument("--classes", nargs="*", default=["statements", "data model"])
    parser.add_argument("--train-size", type=int, default=480)
    parser.add_argument("--test-size", type=int, default=120)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--seeds", type=int, default=5, help="seeds compared (each draws its own texts and probes)")
    parser.add_argument("--peers-python", default="/work/peers/bin/python")
    parser.add_argument("--work", default="/tmp/sae-bench-compare")
    args = parser.parse_args()
    if args.saebench:
        _saebench(args.saebench)
        return 0
    return _ours(args)


if __name__ == "__main__":
    sys.exit(main())
