"""Labelled texts for the sparse-probing eval: built-in tasks from text that ships with Python,
or any dataset `datasets` loads (SAEBench's hub sets when online).

Built-in tasks (offline, deterministic; every fifth text of a class is held out as `test`):
- `builtin:pyref-chapters`: paragraphs of the Python Language Reference (`pydoc_data.topics`,
  the demo models' training text) labelled by the chapter their topic belongs to (`CHAPTERS`);
- `builtin:pylib-areas`: docstrings of the standard-library modules of the `pylib` corpus
  labelled by the area of the package they come from (`AREAS`).

Sampling follows SAEBench's `gather_dataset_from_df` (sae_bench_utils/dataset_utils.py): per
class, `size // 2` texts drawn at random (seeded) from the split; a class with fewer texts uses
all it has (the eval then says so in a warning). SAEBench balances bias_in_bios by gender within
a profession (`get_balanced_dataset`); we draw per class only.
"""

from __future__ import annotations

import importlib
import inspect
import random
import warnings
from dataclasses import dataclass, replace

from harness import builtin
from suite.jobs import ProbingSettings

# Language Reference topics (pydoc_data.topics keys) by chapter; topics not listed are left out.
CHAPTERS: dict[str, tuple[str, ...]] = {
    "statements": ("assert", "assignment", "augassign", "break", "continue", "del", "global", "import",
                   "nonlocal", "pass", "raise", "return", "if", "while", "for", "try", "with", "function",
                   "class", "compound", "else", "async"),
    "expressions": ("atom-identifiers", "atom-literals", "attribute-references", "await", "binary", "bitwise",
                    "booleans", "calls", "comparisons", "conversions", "exprlists", "in", "lambda", "lists", "dict",
                    "operator-summary", "power", "shifting", "slicings", "subscriptions", "unary", "yield"),
    "data model": ("attribute-access", "callable-types", "context-managers", "customization", "numeric-types",
                   "objects", "sequence-types", "specialnames", "types"),
    "built-in types": ("bltin-code-objects", "bltin-ellipsis-object", "bltin-null-object", "bltin-type-objects",
                       "string-methods", "truth", "typesfunctions", "typesmapping", "typesmethods", "typesmodules",
                       "typesseq", "typesseq-mutable", "specialattrs"),
    "lexical and execution": ("identifiers", "integers", "floating", "imaginary", "strings", "numbers",
                              "formatstrings", "id-classes", "execmodel", "naming", "dynamic-features",
                              "exceptions"),
}

# Standard-library modules of the pylib corpus by area.
AREAS: dict[str, tuple[str, ...]] = {
    "text": ("re", "string", "textwrap", "difflib", "codecs", "locale", "gettext", "html.parser", "base64",
             "pprint", "configparser", "csv", "json"),
    "files and processes": ("os", "os.path", "pathlib", "shutil", "tempfile", "zipfile", "tarfile", "io", "shelve",
                            "subprocess", "threading", "queue", "sched", "selectors", "wave", "pickle"),
    "network": ("socket", "http.client", "urllib.parse", "email.message", "smtplib", "ftplib", "imaplib", "poplib",
                "ipaddress", "mailbox", "uuid", "hashlib", "hmac", "secrets"),
    "numbers and data": ("math", "statistics", "decimal", "fractions", "random", "operator", "heapq", "bisect",
                         "array", "struct", "collections", "itertools", "functools", "datetime", "calendar"),
    "development": ("inspect", "doctest", "unittest", "pdb", "profile", "trace", "timeit", "typing",
                    "dataclasses", "abc", "enum", "contextlib", "argparse", "optparse", "getopt", "logging"),
}

BUILTIN_TASKS = ("pyref-chapters", "pylib-areas")
MIN_TEXT_CHARS = 80


class ProbingDataError(ValueError):
    """A labelled dataset that cannot make one-vs-rest tasks; the message says what to fix."""


@dataclass
class LabelledSplit:
    texts: list[str]
    labels: list[str]


def _paragraphs(text: str) -> list[str]:
    return [p.strip() for p in text.split("\n\n") if len(p.strip()) >= MIN_TEXT_CHARS]


def _chapter_texts() -> dict[str, list[str]]:
    import pydoc_data.topics as topics

    seen: set[str] = set()  # a paragraph some topics share (e.g. format examples) counts once, first chapter
    out: dict[str, list[str]] = {}
    for chapter, keys in CHAPTERS.items():
        out[chapter] = []
        for key in keys:
            for paragraph in _paragraphs(topics.topics.get(key, "")):
                if paragraph not in seen:
                    seen.add(paragraph)
                    out[chapter].append(paragraph)
    return out


def _area_texts() -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    seen: set[str] = set()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for area, modules in AREAS.items():
            texts = out.setdefault(area, [])
            for module_name in modules:
                try:
                    module = importlib.import_module(module_name)
                except Exception:  # a module missing from this Python build
                    continue
                members = [module] + [obj for name, obj in sorted(vars(module).items()) if not name.startswith("_")]
                for obj in members:
                    if obj is not module and getattr(obj, "__module__", None) != module.__name__:
                        continue
                    doc = inspect.getdoc(obj)
                    if doc and len(doc) >= MIN_TEXT_CHARS and doc not in seen:
                        seen.add(doc)
                        texts.append(doc)
    return out


def builtin_task(name: str, split: str) -> LabelledSplit:
    """A built-in task's split: the texts of each class in a fixed order, every fifth one `test`."""
    bare = name.removeprefix(builtin.PREFIX)
    if bare not in BUILTIN_TASKS:
        raise ProbingDataError(f"unknown built-in probing dataset {name}; built-in: "
                               + ", ".join(builtin.PREFIX + t for t in BUILTIN_TASKS))
    if split not in builtin.SPLITS:
        raise ProbingDataError(f"built-in probing dataset {name} has splits train, test, not {split!r}")
    by_class = _chapter_texts() if bare == "pyref-chapters" else _area_texts()
    texts, labels = [], []
    for label, items in by_class.items():
        for i, text in enumerate(items):
            if (i % 5 == 4) == (split == "test"):
                texts.append(text)
                labels.append(label)
    return LabelledSplit(texts, labels)


def _dataset_split(settings: ProbingSettings, split: str) -> LabelledSplit:
    from harness.tokens import DatasetLoadError, open_dataset

    ref = replace(settings.dataset, split=split)
    if builtin.is_builtin(ref.path) and ref.path.removeprefix(builtin.PREFIX) in BUILTIN_TASKS:
        return builtin_task(ref.path, split)
    texts, labels = [], []
    for row in open_dataset(ref):
        for column in (ref.column, settings.label_column):
            if column not in row:
                raise DatasetLoadError(f"probing dataset {ref.label()} has no column {column!r}; columns: "
                                       f"{', '.join(row)}")
        text = row[ref.column]
        if isinstance(text, str) and text.strip():
            texts.append(text)
            labels.append(str(row[settings.label_column]))
    return LabelledSplit(texts, labels)


def _sample(split: LabelledSplit, classes: list[str], per_class: int, rng: random.Random) -> LabelledSplit:
    """gather_dataset_from_df: per class `per_class` texts drawn at random (all if fewer)."""
    texts, labels = [], []
    for label in classes:
        pool = [t for t, lab in zip(split.texts, split.labels) if lab == label]
        chosen = rng.sample(pool, per_class) if len(pool) > per_class else pool
        texts += chosen
        labels += [label] * len(chosen)
    return LabelledSplit(texts, labels)


@dataclass
class ProbingData:
    train: LabelledSplit
    test: LabelledSplit
    classes: list[str]
    warning: str | None = None


def load_probing_data(settings: ProbingSettings) -> ProbingData:
    """The train and test texts of every class the eval probes, sampled as SAEBench does."""
    train = _dataset_split(settings, settings.dataset.split)
    test = _dataset_split(settings, settings.test_split)
    found = sorted(set(train.labels) & set(test.labels))
    if settings.classes:
        missing = [c for c in settings.classes if c not in found]
        if missing:
            raise ProbingDataError(f"probing.{settings.name}.classes: {', '.join(map(repr, missing))} not found in "
                                   f"both splits; labels found: {', '.join(found[:20])}")
        classes = list(settings.classes)
    else:
        classes = found
    if len(classes) < 2:
        raise ProbingDataError(f"probing.{settings.name}: one-vs-rest tasks need at least 2 classes with texts in "
                               f"both splits; found {len(classes)} ({', '.join(found) or 'none'})")
    rng = random.Random(settings.seed)
    data = ProbingData(_sample(train, classes, settings.train_size // 2, rng),
                       _sample(test, classes, settings.test_size // 2, rng), classes)
    short = [f"{c} ({data.train.labels.count(c)}/{data.test.labels.count(c)})" for c in classes
             if data.train.labels.count(c) < settings.train_size // 2 or data.test.labels.count(c) < settings.test_size // 2]
    if short:
        data.warning = (f"probing {settings.name}: fewer texts than train_size/2 = {settings.train_size // 2} and "
                        f"test_size/2 = {settings.test_size // 2} per class for {', '.join(short)} (train/test): "
                        f"the probes use what there is")
    return data
