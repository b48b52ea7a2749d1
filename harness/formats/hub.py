"""Where an import's files are: a local directory as given, or a Hugging Face hub repo
`owner/name[/path][@revision]` fetched through `huggingface_hub` (only `path/*` is downloaded).

The local HF cache is tried first, so a release fetched once imports offline; when it is not
cached and the hub cannot be reached (no network, `HF_HUB_OFFLINE=1`) the error says so at once.
"""

from __future__ import annotations

import re
from pathlib import Path

from harness.formats.common import FormatError

_HUB = re.compile(r"^(?P<repo>[\w.-]+/[\w.-]+)(?:/(?P<path>[^@]+?))?/?(?:@(?P<revision>[\w./-]+))?$")


def is_hub(location: str) -> bool:
    return not Path(location).expanduser().exists() and _HUB.match(location) is not None


def local_path(location: str) -> Path:
    """The directory holding the import's files, downloading them from the hub if needed."""
    path = Path(location).expanduser()
    if path.exists():
        if not path.is_dir():
            raise FormatError(f"{location}: is a file; give the directory holding it")
        return path
    match = _HUB.match(location)
    if match is None:
        raise FormatError(f"{location}: no such directory (a hub release is written owner/name[/path][@revision])")
    return _download(match["repo"], match["path"], match["revision"], location)


def _download(repo: str, sub: str | None, revision: str | None, location: str) -> Path:
    from huggingface_hub import snapshot_download

    patterns = [f"{sub}/*"] if sub else None
    cached_error: Exception | None = None
    try:
        root = Path(snapshot_download(repo, revision=revision, allow_patterns=patterns, local_files_only=True))
        if (root / sub if sub else root).is_dir():
            return root / sub if sub else root
    except Exception as exc:  # not cached: go online
        cached_error = exc
    try:
        root = Path(snapshot_download(repo, revision=revision, allow_patterns=patterns))
    except Exception as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise FormatError(f"{location}: not a local directory, and hub repo {repo!r} could not be fetched "
                          f"({type(exc).__name__}: {reason}); check the name and the network, or download it "
                          "once and give the directory") from cached_error
    target = root / sub if sub else root
    if not target.is_dir():
        raise FormatError(f"{location}: hub repo {repo!r} has no folder {sub!r}")
    return target
