"""Optional Weights & Biases mirroring: each SAE a run finishes becomes one W&B run.

The results file stays the source of truth: what is mirrored is read back from the store once
the SAE's scores of this run are all stored (its training curve, its current metrics and gate
counts, its settings and key as config), and the W&B run's URL is written into
`saes.wandb_url` (in offline mode, `WANDB_MODE=offline`, the local run directory that
`wandb sync` uploads). The driver calls it, so it works the same under every executor. Any W&B
failure (package missing, no network, a refused login) prints one warning line and turns the
mirror off for the rest of the run; the run itself never fails because of it.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.markup import escape

from suite.provenance import DISTRIBUTION

if TYPE_CHECKING:
    from suite.store import Store

INSTALL_HINT = f"pip install '{DISTRIBUTION}[wandb]' (or pip install wandb)"
TRAIN_COLUMNS = ("tokens", "loss", "fvu", "l0", "dead_fraction")
CONFIG_COLUMNS = ("sae_id", "sae_key", "source", "suite", "model", "label", "model_id", "model_revision",
                  "model_dtype", "loaded_dtype", "hook", "hook_name", "layer", "arch", "k", "latents", "d_model",
                  "lr", "batch_size", "ctx_len", "train_tokens", "seed", "train_dataset", "run_id", "device_name",
                  "checkpoint_path")


def project_name(text: str) -> str:
    """`--wandb PROJECT`, checked by the spec's rule for `[suite] wandb.project`."""
    import argparse

    from suite.spec import _wandb_project

    try:
        return _wandb_project(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


@dataclass(frozen=True)
class WandbTarget:
    project: str
    entity: str | None = None


def wandb_target(spec_wandb: Any, cli_project: str | None) -> WandbTarget | None:
    """`--wandb PROJECT` (entity from the spec or WANDB_ENTITY), else the spec's `[suite] wandb`."""
    entity = getattr(spec_wandb, "entity", None)
    if cli_project:
        return WandbTarget(cli_project, entity)
    if spec_wandb is None:
        return None
    return WandbTarget(spec_wandb.project, entity)


class WandbMirror:
    """Mirrors SAEs of one `sae-bench run` into one W&B project."""

    def __init__(self, target: WandbTarget, store: "Store", console: Console):
        self.target, self.store, self.console = target, store, console
        self.directory = Path(os.environ.get("WANDB_DIR") or store.path.absolute().parent)
        self.active = True
        self.mirrored: dict[str, str] = {}  # sae_id -> url or offline directory

    def mirror(self, sae_id: str) -> None:
        """One W&B run for `sae_id` from what the store holds; never raises (but Ctrl-C)."""
        if not self.active:
            return
        try:
            location = self._log(sae_id)
            self.store.set_wandb_url(sae_id, location)
            self.mirrored[sae_id] = location
        except Exception as exc:  # a mirror never fails the run
            self.active = False
            first = " ".join(str(exc).split())[:300] or type(exc).__name__
            self.console.print(f"[yellow]warning[/yellow] Weights & Biases mirroring is off for this run "
                               f"({escape(first)}); the results file has everything", highlight=False)

    def _log(self, sae_id: str) -> str:
        try:
            import wandb
        except ImportError:
            raise RuntimeError(f"the wandb package is not installed: {INSTALL_HINT}") from None
        sae = self.store.query_dicts(f"select {', '.join(CONFIG_COLUMNS)}, settings from saes where sae_id = ?",
                                     [sae_id])[0]
        curve = self.store.query_dicts(f"select step, {', '.join(TRAIN_COLUMNS)} from train_log where sae_id = ? "
                                       f"order by step", [sae_id])
        metrics = self.store.query("select s.eval_name, m.metric, m.value from current_scores s "
                                   "join metrics m using (score_id) where s.sae_id = ? order by all", [sae_id])
        gates = self.store.query("select eval_name, gates_passed, gates_total from health where sae_id = ?",
                                 [sae_id])
        config = {**{k: _plain(v) for k, v in sae.items() if k != "settings"},
                  "settings": json.loads(sae["settings"])}
        self.directory.mkdir(parents=True, exist_ok=True)
        run = wandb.init(
            project=self.target.project, entity=self.target.entity, dir=str(self.directory),
            name=f"{sae['model']}-{sae['hook']}-L{sae['layer']}-{sae_id}", group=sae["suite"], job_type="sae",
            tags=[t for t in (sae["model"], sae["arch"], sae["hook"]) if t], config=config, reinit="create_new",
            settings=wandb.Settings(silent=True, console="off", x_disable_stats=True, init_timeout=60))
        try:
            for row in curve:
                run.log({f"train/{name}": row[name] for name in TRAIN_COLUMNS if row[name] is not None},
                        step=row["step"])
            for eval_name, metric, value in metrics:
                run.summary[f"{eval_name}/{metric}"] = value
            for eval_name, passed, total in gates:
                run.summary[f"{eval_name}/gates_passed"] = passed
                run.summary[f"{eval_name}/gates_total"] = total
            location = run.url or str(Path(run.settings.sync_dir).absolute())
        finally:
            run.finish()
        return location


def _plain(value: Any) -> Any:
    """W&B config values: numbers and strings as they are, anything else (timestamps) as text."""
    return value if value is None or isinstance(value, (bool, int, float, str)) else str(value)
