"""The built-in English corpus: real prose that ships with every CPython (PSF licence).

- `pyref`: the Python Language Reference (`pydoc_data.topics`), the "general" domain;
- `pylib`: docstrings of ~80 standard-library modules, the "other domain" slice.
Each domain is split into documents, every tenth one held out as `test`, and written once per
Python version as JSONL under the asset cache (`harness.builtin.cache_root`).
"""

from __future__ import annotations

import importlib
import inspect
import json
import sys
import warnings
from pathlib import Path

from harness.tempdirs import make_temp_dir

SPLITS = ("train", "test")
DOMAINS = ("pyref", "pylib")

_STDLIB_MODULES = (
    "collections itertools functools os os.path pathlib re json csv datetime decimal fractions "
    "statistics random math string textwrap argparse logging subprocess threading queue asyncio "
    "socket http.client urllib.parse email.message sqlite3 zipfile tarfile shutil tempfile heapq "
    "bisect array struct copy pickle typing dataclasses enum abc contextlib inspect unittest doctest "
    "difflib calendar locale gettext io codecs hashlib hmac secrets uuid base64 ftplib smtplib "
    "xml.etree.ElementTree html.parser configparser pprint timeit trace pdb profile wave mailbox "
    "imaplib poplib optparse getopt shelve sched selectors ipaddress operator"
).split()



def _paragraph_documents(text: str, min_chars: int = 600) -> list[str]:
    """Consecutive paragraphs grouped into documents of at least `min_chars`."""
    docs, current = [], []
    for paragraph in (p.strip() for p in text.split("\n\n")):
        if not paragraph:
            continue
        current.append(paragraph)
        if sum(map(len, current)) >= min_chars:
            docs.append("\n\n".join(current))
            current = []
    if current:
        docs.append("\n\n".join(current))
    return docs


def _reference_text() -> str:
    import pydoc_data.topics as topics

    return "\n\n".join(topics.topics[name] for name in sorted(topics.topics))


def _library_text() -> str:
    docs: dict[str, None] = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for module_name in _STDLIB_MODULES:
            try:
                module = importlib.import_module(module_name)
            except Exception:  # a module missing from this Python build: skip it
                continue
            members = [module] + [obj for name, obj in sorted(vars(module).items()) if not name.startswith("_")]
            for obj in members:
                if obj is not module and getattr(obj, "__module__", None) != module.__name__:
                    continue
                doc = inspect.getdoc(obj)
                if doc and len(doc) > 200:
                    docs[doc] = None
    return "\n\n".join(docs)


def corpus_dir() -> Path:
    """The corpus as JSONL files, `{domain}-{split}.jsonl`, written once per Python version."""
    from harness.builtin import _publish, cache_root  # the asset cache and its atomic publish

    tag = f"py{sys.version_info.major}{sys.version_info.minor}"
    root = cache_root() / "corpus" / tag
    if all((root / f"{d}-{s}.jsonl").is_file() for d in DOMAINS for s in SPLITS):
        return root
    tmp = make_temp_dir(cache_root(), ".corpus-")
    for domain, text in (("pyref", _reference_text()), ("pylib", _library_text())):
        documents = _paragraph_documents(text)
        for split in SPLITS:
            chosen = [d for i, d in enumerate(documents) if (i % 10 == 9) == (split == "test")]
            with open(tmp / f"{domain}-{split}.jsonl", "w", encoding="utf-8") as out:
                for doc in chosen:
                    out.write(json.dumps({"text": doc}) + "\n")
    _publish(tmp, root)
    return root


def corpus_files(domain: str) -> dict[str, str]:
    from harness.builtin import PREFIX

    if domain not in DOMAINS:
        raise ValueError(f"unknown built-in dataset {PREFIX}{domain}; built-in datasets: "
                         + ", ".join(PREFIX + d for d in DOMAINS))
    root = corpus_dir()
    return {split: str(root / f"{domain}-{split}.jsonl") for split in SPLITS}


def corpus_texts(domain: str, split: str) -> list[str]:
    with open(corpus_files(domain)[split], encoding="utf-8") as lines:
        return [json.loads(line)["text"] for line in lines]
