"""SAEs in other tools' layouts: import (SAELens, sparsify, sae-bench directories) and export.

`resolve(source)` fixes an import's identity (the sha256 of its files); `import_sae(source)`
loads it as one of our architectures.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import torch

from harness.checkpoint import files_sha256, load_sae
from harness.saes import SparseAutoencoder
from suite.jobs import ImportSource


class ImportError_(RuntimeError):
    pass


def local_dir(source: ImportSource) -> Path:
    path = Path(source.location).expanduser()
    if not path.is_dir():
        raise ImportError_(f"{source.label()}: no such directory")
    return path


def resolve(source: ImportSource) -> ImportSource:
    return replace(source, sha256=files_sha256(local_dir(source)))


def import_sae(source: ImportSource, device: torch.device | str = "cpu") -> tuple[SparseAutoencoder, str]:
    path = local_dir(source)
    if source.format == "sae-bench":
        return load_sae(path, device), str(path)
    raise ImportError_(f"{source.label()}: importing the {source.format} format is not supported yet")
