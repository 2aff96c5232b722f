"""Whether the Hugging Face hub can be asked, decided as huggingface_hub would: `HF_HUB_OFFLINE`, and otherwise one
request through huggingface_hub's own HTTP client (`huggingface_hub.get_session()`: its proxies, certificates and
endpoint settings). Without this, an unreachable hub costs about 25 s of huggingface_hub's and datasets' retries
before they fall back to their caches."""

from __future__ import annotations

import functools

from rlvr_cli.core.errors import one_line

#: Seconds the reachability request may take.
TIMEOUT_S = 3.0


def offline() -> bool:
    """Whether `HF_HUB_OFFLINE` is set (`huggingface_hub.constants.HF_HUB_OFFLINE`): the hub is never asked."""
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


@functools.cache
def unreachable() -> str | None:
    """Why the hub cannot be asked, or None when it can. Asked once per process.

    Returns:
        `HF_HUB_OFFLINE is set` when it is; else None when a HEAD request to the endpoint
        (`huggingface_hub.constants.ENDPOINT`, `HF_ENDPOINT`) through `huggingface_hub.get_session()` gets any HTTP
        answer within `TIMEOUT_S` seconds (the client's own proxy settings apply: `HTTPS_PROXY`, ...); else the
        endpoint and the error, e.g. `https://huggingface.co cannot be reached: [Errno -2] Name or service not known`.
    """
    from huggingface_hub import constants, get_session

    if offline():
        return "HF_HUB_OFFLINE is set"
    try:
        get_session().head(constants.ENDPOINT, timeout=TIMEOUT_S)
    except Exception as e:  # httpx's ConnectError, timeouts, proxy errors
        return f"{constants.ENDPOINT} cannot be reached: {one_line(e)}"
    return None
