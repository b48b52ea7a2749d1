"""SAEs in other tools' layouts: import (SAELens, sparsify, sae-bench directories) and export.

One module per format: `saelens`, `sparsify`, and our own checkpoints in `harness.checkpoint`
(a SAELens directory carrying our identity). `resolve` runs at validate time: it finds the files
(a local directory or a hub release), reads the config and the weights' header without loading
weights, checks the SAE against the hook site and model width it is attached to, and fixes the
import's identity (the sha256 of its files). `import_sae` loads it as one of our architectures,
built through the `harness.saes` registry.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import torch

from harness.formats import hub, saelens, sparsify
from harness.formats.common import FormatError, SaeInfo, build
from harness.formats.hooks import UnsupportedHook, describe, site_of
from harness.saes import SparseAutoencoder
from suite.jobs import ImportSource

FORMATS = ("saelens", "sparsify", "sae-bench")

__all__ = ["FORMATS", "FormatError", "SaeInfo", "describe_sae", "import_sae", "locate", "resolve"]


def locate(source: ImportSource, layer: int | None = None, hook: str | None = None) -> Path:
    """The directory holding the SAE's own files. A sparsify run folder given with a hook site
    resolves to that site's hook point folder."""
    directory = hub.local_path(source.location)
    if source.format == "sparsify" and not sparsify.is_sparsify_dir(directory) and layer is not None:
        if hub.is_hub(source.location):
            raise FormatError(f"{source.label()}: give the hook point folder, e.g. {source.location}/layers.{layer}")
        return sparsify.hook_folder(directory, layer, hook or "resid_post")
    return directory


def describe_sae(fmt: str, directory: Path) -> SaeInfo:
    """What the directory holds, read without loading the weights."""
    if fmt == "saelens":
        return saelens.read_info(directory)[0]
    if fmt == "sparsify":
        return sparsify.read_info(directory)
    if fmt == "sae-bench":
        from harness.checkpoint import describe_checkpoint

        return describe_checkpoint(directory)
    raise FormatError(f"unknown format {fmt!r} (known: {', '.join(FORMATS)})")


def check_site(info: SaeInfo, layer: int, hook: str) -> None:
    """The SAE must read the hook site it is attached to, where its files say which one."""
    if not info.hook_name:
        return
    try:
        site = site_of(info.hook_name)
    except UnsupportedHook as exc:
        raise FormatError(f"the SAE reads {exc}") from None
    if site is not None and site != (layer, hook):
        fix = [f"layer = {site[0]}"] * (site[0] != layer) + [f'hook = "{site[1]}"'] * (site[1] != hook)
        raise FormatError(f"the SAE reads {info.hook_name} ({describe(*site)}) but the spec attaches it to "
                          f"{describe(layer, hook)}: set {' and '.join(fix)}")


def resolve(source: ImportSource, layer: int, hook: str, d_model: int | None = None) -> ImportSource:
    """The import with its files found, checked against its site and model width, and its identity
    fixed (raises FormatError with a one-line reason)."""
    from harness.checkpoint import files_sha256

    directory = locate(source, layer, hook)
    info = describe_sae(source.format, directory)
    check_site(info, layer, hook)
    if d_model is not None and info.d_in != d_model:
        raise FormatError(f"the SAE reads {info.d_in}-dimensional activations but the model's width (d_model) is "
                          f"{d_model}: it was trained on another model")
    location = source.location if hub.is_hub(source.location) else str(directory)
    return replace(source, location=location, sha256=files_sha256(directory))


def import_sae(source: ImportSource, device: torch.device | str = "cpu") -> tuple[SparseAutoencoder, str]:
    """The SAE as one of our architectures, and the directory its files are in."""
    directory = locate(source)
    if source.format == "sae-bench":
        from harness.checkpoint import load_sae

        return load_sae(directory, device), str(directory)
    if source.format == "saelens":
        info, config = saelens.read_info(directory)
        tensors = saelens.load_tensors(directory, info, config)
    elif source.format == "sparsify":
        info = sparsify.read_info(directory)
        tensors = sparsify.load_tensors(directory)
    else:
        raise FormatError(f"unknown format {source.format!r} (known: {', '.join(FORMATS)})")
    return build(info, tensors, device), str(directory)
