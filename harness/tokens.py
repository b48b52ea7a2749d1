"""Token streaming: documents from `datasets`, tokenized, joined with EOS and packed into windows.

Each window starts with BOS (when the tokenizer has one) followed by ctx_len - 1 stream tokens,
so every window looks like the start of a document to the model. Nothing is materialised whole.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import torch

from harness import builtin
from harness.hub import ensure_reachable_or_offline, unreachable_hint
from suite.jobs import DatasetRef


LOCAL_BUILDERS = {"json", "text", "parquet", "csv", "arrow", "pandas", "imagefolder", "audiofolder", "webdataset"}


class DatasetLoadError(RuntimeError):
    pass


def open_dataset(ref: DatasetRef):
    """`datasets.load_dataset` for hub names and local json/text/parquet; `builtin:` maps to files."""
    import datasets

    datasets.disable_progress_bars()
    path, data_files = ref.path, list(ref.data_files) if ref.data_files else None
    if builtin.is_builtin(path):
        try:
            files = builtin.corpus_files(path.removeprefix(builtin.PREFIX))
        except ValueError as exc:
            raise DatasetLoadError(str(exc)) from None
        if ref.split not in files:
            raise DatasetLoadError(f"built-in dataset {path} has splits {', '.join(files)}, not {ref.split!r}")
        path, data_files = "json", {ref.split: files[ref.split]}
    on_hub = path not in LOCAL_BUILDERS and not Path(path).exists()
    online = not on_hub or ensure_reachable_or_offline()  # no network: the cache or a fast failure
    try:
        dataset = datasets.load_dataset(path, ref.name, split=ref.split, data_files=data_files,
                                        revision=ref.revision, streaming=ref.streaming)
    except Exception as exc:  # datasets raises many types: FileNotFound, DatasetNotFound, ValueError
        if not online:
            raise DatasetLoadError(f"cannot load dataset {ref.label()}: {unreachable_hint('it')}") from exc
        raise DatasetLoadError(f"cannot load dataset {ref.label()}: {type(exc).__name__}: {exc}") from exc
    return dataset


def iter_documents(ref: DatasetRef) -> Iterator[str]:
    for row in open_dataset(ref):
        if ref.column not in row:
            raise DatasetLoadError(
                f"dataset {ref.label()} has no column {ref.column!r}; columns: {', '.join(row)}")
        text = row[ref.column]
        if isinstance(text, str) and text.strip():
            yield text


def iter_windows(ref: DatasetRef, tokenizer, ctx_len: int, batch_size: int, *, repeat: bool = False,
                 docs_per_call: int = 64) -> Iterator[torch.Tensor]:
    """Batches [batch_size, ctx_len] of token ids. With `repeat`, a short dataset is cycled."""
    bos = tokenizer.bos_token_id
    sep = tokenizer.eos_token_id if tokenizer.eos_token_id is not None else bos
    body = ctx_len - (1 if bos is not None else 0)
    buffer: list[int] = []
    rows: list[list[int]] = []
    while True:
        produced = False
        docs = iter_documents(ref)
        while True:
            chunk = [d for _, d in zip(range(docs_per_call), docs)]
            if not chunk:
                break
            for ids in tokenizer(chunk, add_special_tokens=False)["input_ids"]:
                buffer.extend(ids)
                buffer.append(sep)
            while len(buffer) >= body:
                rows.append(([bos] if bos is not None else []) + buffer[:body])
                del buffer[:body]
                produced = True
                if len(rows) == batch_size:
                    yield torch.tensor(rows, dtype=torch.long)
                    rows = []
        if not repeat:
            break
        if not produced:  # one pass gave no full window: cycling would never help
            raise DatasetLoadError(f"dataset {ref.label()} has fewer than {ctx_len} tokens")
    if rows:
        yield torch.tensor(rows, dtype=torch.long)


def special_mask(input_ids: torch.Tensor, special_ids: torch.Tensor) -> torch.Tensor:
    """True where a position holds BOS/EOS/PAD: excluded from SAE training and scoring."""
    return torch.isin(input_ids, special_ids)
