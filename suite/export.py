"""Export finished SAEs of a results file as SAELens or sparsify directories.

SAELens: one folder per SAE named by its id (`OUT/<sae_id>/cfg.json + sae_weights.safetensors`),
its config naming model, hook (`metadata.hook_name`, e.g. `model.layers.16`) and our identity
(`metadata.sae_bench`). sparsify: one run folder per model and SAE settings
(`OUT/<model>-<arch>-k<k>-<latents>-<digest>/`), holding one folder per hook point named as sparsify
names hook points (`layers.16`, `layers.16.mlp`), so `SparseCoder.load_many` reads a run folder whole;
the SAE's id is in each hook folder's cfg.json, its whole identity in the run's config.json.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from suite.jobs import ImportSource, digest
from suite.store import Store

FORMATS = ("saelens", "sparsify")


class ExportError(ValueError):
    """Bad selection or output: nothing is written."""


@dataclass(frozen=True)
class StoredSae:
    sae_id: str
    sae_key: str
    source: str  # trained | FORMAT:LOCATION
    model: str  # the alias
    model_id: str
    hook: str
    hook_name: str | None
    layer: int
    arch: str | None
    k: int | None
    latents: int | None
    checkpoint_path: str
    settings: dict[str, Any]
    ctx_len: int | None
    train_dataset: str | None

    @property
    def group(self) -> str:
        """What a sparsify run folder shares: the SAE's identity less its hook site."""
        rest = {key: value for key, value in self.settings.items() if key not in ("hook", "layer")}
        return digest(rest)[:8]


def select(db: Path, sae_ids: list[str] | None = None, models: list[str] | None = None) -> list[StoredSae]:
    """Finished SAEs, all or those named (ids or unique id prefixes) and/or of the given aliases."""
    rows = Store(db).query_dicts(
        "select sae_id, sae_key, source, model, model_id, hook, hook_name, layer, arch, k, latents, checkpoint_path, "
        "settings, ctx_len, train_dataset from saes where status = 'done' order by model, layer, hook, sae_id")
    saes = [StoredSae(**{**r, "settings": json.loads(r["settings"]) if r["settings"] else {}}) for r in rows]
    if models:
        unknown = sorted(set(models) - {s.model for s in saes})
        if unknown:
            raise ExportError(f"--model: no finished SAE of {', '.join(unknown)} (models: "
                              f"{', '.join(sorted({s.model for s in saes})) or 'none'})")
        saes = [s for s in saes if s.model in models]
    if sae_ids:
        chosen = []
        for wanted in sae_ids:
            matches = [s for s in saes if s.sae_id.startswith(wanted)]
            if len(matches) != 1:
                why = "matches no finished SAE" if not matches else f"matches {len(matches)} SAEs"
                raise ExportError(f"--sae {wanted}: {why} (see `sae-bench sql DB \"select sae_id, model, layer from "
                                  "saes\"`)")
            chosen += [m for m in matches if m not in chosen]
        saes = chosen
    if not saes:
        raise ExportError("no finished SAE to export")
    return saes


def load(stored: StoredSae):
    """The SAE's weights, from our checkpoint or from where it was imported."""
    if stored.source == "trained":
        from harness.checkpoint import load_sae

        return load_sae(stored.checkpoint_path)
    from harness.formats import import_sae

    fmt = stored.source.partition(":")[0]
    return import_sae(ImportSource(fmt, stored.checkpoint_path))[0]


def hook_name(stored: StoredSae) -> str:
    if stored.hook_name:
        return stored.hook_name
    config = Path(stored.checkpoint_path) / "cfg.json"
    if config.is_file():
        name = (json.loads(config.read_text()).get("metadata") or {}).get("hook_name")
        if name:
            return str(name)
    raise ExportError(f"SAE {stored.sae_id} has no recorded hook name (a results file of sae-bench 0.1): "
                      "export needs the module path it reads")


def identity(stored: StoredSae, name: str) -> dict[str, Any]:
    return {"sae_id": stored.sae_id, "sae_key": stored.sae_key, "model": stored.model, "model_name": stored.model_id,
            "hook": stored.hook, "hook_name": name, "layer": stored.layer, "source": stored.source,
            "identity": stored.settings}


def write_saelens(stored: StoredSae, out: Path) -> Path:
    from harness.checkpoint import training_metadata, write_atomically
    from harness.formats import saelens

    sae, name = load(stored), hook_name(stored)
    meta = {"model_name": stored.model_id, "hook_name": name, "hf_hook_name": name,
            **(training_metadata(stored.ctx_len, _dataset_path(stored)) if stored.ctx_len else {}),
            "sae_bench": {**identity(stored, name), "settings": _settings(sae)}}
    return write_atomically(out / stored.sae_id, lambda tmp: saelens.write(sae, tmp, meta))


def _dataset_path(stored: StoredSae) -> str | None:
    """The training dataset's path (`dataset_path` in SAELens), from the SAE's identity."""
    dataset = (stored.settings.get("train") or {}).get("dataset") or {}
    return dataset.get("path") or stored.train_dataset


def run_folder(stored: StoredSae) -> str:
    safe = "".join(c if c.isalnum() or c in "._-" else "_" for c in stored.model)
    k = f"-k{stored.k}" if stored.k else ""
    return f"{safe}-{stored.arch or 'sae'}{k}-{stored.latents or ''}-{stored.group}"


def write_sparsify(stored: StoredSae, out: Path) -> Path:
    from harness.checkpoint import write_atomically
    from harness.formats import sparsify
    from harness.formats.hooks import sparsify_hookpoint

    sae, name = load(stored), hook_name(stored)
    if sae.arch != "topk":
        raise ExportError(f"sparsify holds TopK SAEs only; {stored.sae_id} is {sae.arch} (use --format saelens)")
    run = out / run_folder(stored)
    hookpoint = sparsify_hookpoint(name)
    # only the id in the hook folder: sparsify prints every key it drops on each load
    extra = {"sae_bench": {"sae_id": stored.sae_id}}
    path = write_atomically(run / hookpoint, lambda tmp: sparsify.write(sae, tmp, extra))
    _write_run_config(run, stored, hookpoint, identity(stored, name))
    return path


def _write_run_config(run: Path, stored: StoredSae, hookpoint: str, sae_identity: dict[str, Any]) -> None:
    """config.json as sparsify's trainer leaves it beside the hook folders (RunConfig: `model`,
    `hookpoints`, `sae`), plus the identity of the SAE in every hook folder now in the run."""
    path = run / "config.json"
    previous = json.loads(path.read_text()).get("sae_bench", {}).get("saes", {}) if path.is_file() else {}
    present = sorted(p.name for p in run.iterdir() if p.is_dir() and (p / "cfg.json").is_file())
    saes = {name: previous.get(name) for name in present} | {hookpoint: sae_identity}
    config = json.loads((run / hookpoint / "cfg.json").read_text())
    sae_config = {k: v for k, v in config.items() if k not in ("d_in", "sae_bench")}
    path.write_text(json.dumps({"model": stored.model_id, "sae": sae_config, "hookpoints": present,
                                "sae_bench": {"saes": saes}}, indent=2))


def _settings(sae) -> dict[str, Any]:
    from dataclasses import asdict

    return asdict(sae.settings)


def export(db: Path, out: Path, fmt: str, sae_ids: list[str] | None = None,
           models: list[str] | None = None) -> tuple[list[tuple[StoredSae, Path]], list[tuple[StoredSae, str]]]:
    """Write the selected SAEs; returns (written, failed with the reason). Raises ExportError
    before writing anything when the selection is wrong."""
    if fmt not in FORMATS:
        raise ExportError(f"--format {fmt}: expected one of {', '.join(FORMATS)}")
    saes = select(db, sae_ids, models)
    if out.exists() and not out.is_dir():
        raise ExportError(f"{out} is a file; give a directory")
    writer = write_saelens if fmt == "saelens" else write_sparsify
    written, failed = [], []
    for stored in saes:
        try:
            written.append((stored, writer(stored, out)))
        except Exception as exc:  # one SAE that cannot be written does not stop the others
            failed.append((stored, str(exc) if isinstance(exc, ValueError) else f"{type(exc).__name__}: {exc}"))
    return written, failed
