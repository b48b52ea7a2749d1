"""Fail fast without a network: is the Hugging Face hub reachable at all?

Without a network, `from_pretrained` and `load_dataset` retry every request with back-off for
about a minute before they fail (or fall back to the local cache). One TCP connection attempt of
two seconds tells whether the hub (or the proxy in front of it) answers; if not, the process
switches to the libraries' documented offline mode (HF_HUB_OFFLINE): cached models and datasets
load as usual, anything else fails at once with the hint.
"""

from __future__ import annotations

import os
import socket
import threading
from functools import lru_cache
from urllib.parse import urlparse

PROBE_SECONDS = 2.0
_TRUE = {"1", "on", "yes", "true"}


def offline_requested() -> bool:
    return any(os.environ.get(name, "").lower() in _TRUE for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE",
                                                                         "HF_DATASETS_OFFLINE"))


def endpoint() -> str:
    return os.environ.get("HF_ENDPOINT", "https://huggingface.co").rstrip("/")


def _target() -> tuple[str, int]:
    """The host to probe: the hub, or the HTTPS proxy requests would go through."""
    proxy = os.environ.get("HTTPS_PROXY") or os.environ.get("https_proxy")
    url = urlparse(proxy if proxy else endpoint())
    default = 443 if url.scheme == "https" else 80
    return url.hostname or "huggingface.co", url.port or default


@lru_cache(maxsize=1)
def hub_reachable() -> bool:
    """One connection attempt, at most PROBE_SECONDS (DNS included); cached per process."""
    if offline_requested():
        return False
    host, port = _target()
    answer: list[bool] = []

    def probe() -> None:
        try:
            with socket.create_connection((host, port), timeout=PROBE_SECONDS):
                answer.append(True)
        except OSError:
            answer.append(False)

    thread = threading.Thread(target=probe, daemon=True)  # getaddrinfo has no timeout of its own
    thread.start()
    thread.join(PROBE_SECONDS + 0.5)
    return bool(answer and answer[0])


def go_offline() -> None:
    """HF_HUB_OFFLINE for this process, also in libraries that read it at import."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    try:
        from huggingface_hub import constants

        constants.HF_HUB_OFFLINE = True
    except ImportError:
        pass
    try:
        from datasets import config

        config.HF_HUB_OFFLINE = True
        config.HF_DATASETS_OFFLINE = True
    except ImportError:
        pass


def ensure_reachable_or_offline() -> bool:
    """Called before anything is fetched from the hub; returns whether the hub is reachable."""
    if hub_reachable():
        return True
    go_offline()
    return False


def unreachable_hint(what: str) -> str:
    return (f"{what} is not in the local Hugging Face cache and {endpoint()} cannot be reached (no network?): "
            f"check the id and your connection, or download it beforehand (e.g. `huggingface-cli download`)")
