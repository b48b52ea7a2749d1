"""Benchmark: sae-bench's training phase vs EleutherAI sparsify's, SAE tokens per second.

Both train the demo grid: TopK SAEs (k=32, 512 latents, Adam lr 1e-3, AuxK 1/32 on latents dead
for 50k tokens) on layers 1, 3 and 5 of builtin:demo-base, from the same token windows
(builtin:pyref train, 16 x 128 per step), one torch thread each. Each arm runs in its own process
(sparsify in the peers' venv, see ../shared/tools/peers-venv.sh), the arms alternate, and every
process times its own training phase only, in CPU time (the process's, one thread: what
a busy machine does not inflate) and wall time (model loading excluded: sparsify's `Trainer.fit()`,
sae-bench's `train_group`, which also tokenizes its stream while sparsify reads pre-tokenized
windows). SAE tokens/s = tokens each SAE trained on x SAEs / seconds. The output is the median of
the per-pair ratios. `--unfused` adds sae-bench without fused training (the "before").

    python benchmarks/vs_sparsify.py [--peers /work/peers/bin/python] [--tokens 61440] [--repeats 3] [--unfused]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

LAYERS = (1, 3, 5)
K, LATENTS, LR, DEAD, AUX = 32, 512, 1e-3, 50_000, 1 / 32
CTX, BATCH = 128, 16
ROOT = Path(__file__).resolve().parents[1]


def _env(threads: int) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads), HF_HUB_OFFLINE="1",
               HF_DATASETS_OFFLINE="1", WANDB_MODE="disabled", SPARSIFY_DISABLE_TRITON="1", TOKENIZERS_PARALLELISM="false")
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def prepare(tokens: int, workdir: Path) -> tuple[str, Path]:
    """The demo model's folder and the windows both arms train on (a .pt file of token ids)."""
    import torch

    from harness.builtin import model_dir
    from harness.models import load_model
    from harness.tokens import iter_windows
    from suite.jobs import DatasetRef, ModelRef

    lm = load_model(ModelRef("builtin:demo-base"), torch.device("cpu"))
    steps = -(-tokens // (CTX * BATCH))
    windows = iter_windows(DatasetRef("builtin:pyref", "train"), lm.tokenizer, CTX, BATCH, repeat=True)
    ids = torch.cat([next(windows) for _ in range(steps)])
    windows.close()
    path = workdir / "windows.pt"
    torch.save(ids, path)
    return str(model_dir("builtin:demo-base")), path


def arm_ours(model: str, windows: str, tokens: int, fuse: bool) -> dict:
    import torch

    from harness.models import load_model
    from harness.train import train_group
    from suite.jobs import DatasetRef, Job, ModelRef, SaeRef, SaeSettings, TrainSettings

    torch.set_num_threads(1)
    lm = load_model(ModelRef("builtin:demo-base"), torch.device("cpu"))
    train = TrainSettings(DatasetRef("builtin:pyref", "train"), tokens=tokens, ctx_len=CTX, batch_size=BATCH, lr=LR)
    settings = SaeSettings(k=K, latents=LATENTS, aux_coef=AUX, dead_tokens=DEAD)
    jobs = [Job(SaeRef(lm.ref, "resid_post", layer, train, settings), True, ()) for layer in LAYERS]

    class Quiet:
        def train_log(self, job, rows): ...

    cpu = time.process_time()
    group = train_group(lm, train, jobs, Quiet(), fuse=fuse)
    cpu = time.process_time() - cpu
    assert not any(t.failure for t in group.trainers)
    return {"wall": group.seconds, "cpu": cpu, "sae_tokens": group.tokens * len(jobs)}


def arm_sparsify(model: str, windows: str, tokens: int) -> dict:
    import torch
    from datasets import Dataset
    from sparsify import SaeConfig, Trainer, TrainConfig
    from transformers import AutoModelForCausalLM

    torch.set_num_threads(1)
    ids = torch.load(windows)
    lm = AutoModelForCausalLM.from_pretrained(model, torch_dtype=torch.float32)
    data = Dataset.from_dict({"input_ids": ids.tolist()}).with_format("torch")
    with tempfile.TemporaryDirectory() as tmp:
        cfg = TrainConfig(SaeConfig(k=K, num_latents=LATENTS), batch_size=BATCH, optimizer="adam", lr=LR,
                          lr_warmup_steps=0, auxk_alpha=AUX, dead_feature_threshold=DEAD, layers=list(LAYERS),
                          log_to_wandb=False, save_every=10 ** 9, save_dir=tmp)
        trainer = Trainer(cfg, data, lm)
        start, cpu = time.perf_counter(), time.process_time()
        trainer.fit()
        seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    return {"wall": seconds, "cpu": cpu, "sae_tokens": ids.numel() * len(LAYERS)}


def _run(python: str, arm: str, model: str, windows: Path, tokens: int) -> dict:
    cmd = [python, __file__, "--arm", arm, "--model", model, "--windows", str(windows), "--tokens", str(tokens)]
    out = subprocess.run(cmd, env=_env(1), capture_output=True, text=True, cwd=ROOT)
    if out.returncode:
        raise SystemExit(f"{arm} arm failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--peers", default="/work/peers/bin/python", help="python of the peers' venv")
    parser.add_argument("--tokens", type=int, default=61_440, help="tokens each SAE trains on (default 30 steps)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--unfused", action="store_true", help="also run sae-bench without fused training")
    parser.add_argument("--arm", choices=["ours", "ours-unfused", "sparsify"], help=argparse.SUPPRESS)
    parser.add_argument("--model", help=argparse.SUPPRESS)
    parser.add_argument("--windows", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.arm:
        result = (arm_sparsify(args.model, args.windows, args.tokens) if args.arm == "sparsify"
                  else arm_ours(args.model, args.windows, args.tokens, fuse=args.arm == "ours"))
        print(json.dumps(result))
        return
    with tempfile.TemporaryDirectory() as tmp:
        model, windows = prepare(args.tokens, Path(tmp))
        arms = {"sparsify": args.peers, "ours": sys.executable}
        if args.unfused:
            arms["ours-unfused"] = sys.executable
        rates: dict[str, dict[str, list[float]]] = {arm: {"cpu": [], "wall": []} for arm in arms}
        for _ in range(args.repeats):
            for arm, python in arms.items():
                r = _run(python, arm, model, windows, args.tokens)
                for kind in ("cpu", "wall"):
                    rates[arm][kind].append(r["sae_tokens"] / r[kind])
    report: dict = {
        "grid": f"builtin:demo-base layers {LAYERS}, k={K}, {LATENTS} latents, {BATCH}x{CTX} tokens/step, 1 thread",
        "tokens_per_sae": args.tokens, "clock": "cpu (process time; wall beside it, see benchmarks/clock.py)",
        **{f"{arm}_sae_tokens_per_s_{kind}": [round(r) for r in rates[arm][kind]] for arm in arms for kind in ("cpu", "wall")},
    }
    for arm in arms:
        if arm == "sparsify":
            continue
        for kind in ("cpu", "wall"):
            ratios = [o / s for o, s in zip(rates[arm][kind], rates["sparsify"][kind])]
            report[f"ratio_{arm}_vs_sparsify_{kind}"] = [round(r, 3) for r in ratios]
            report[f"median_ratio_{arm}_vs_sparsify_{kind}"] = round(statistics.median(ratios), 3)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
