"""Limits that protect a shared deployment (a hosted Space), and the model it preloads, in one place.

Each can be raised with an environment variable of the same name for a
private machine, e.g. ``ECCO_MAX_NEW_TOKENS=200 streamlit run app.py``.
Pages check their inputs with :func:`enforce`, which names the limit and the
variable in the message the user sees::

    settings.enforce(n_tokens, "MAX_PROBE_TOKENS", "the uploaded treebank")
"""

import os

from ecco_core import DEFAULT_MODEL


def _int_env(name: str, default: int) -> int:
    try:
        return int(os.environ.get(name, default))
    except ValueError:
        return default


MAX_PROMPT_TOKENS = _int_env("ECCO_MAX_PROMPT_TOKENS", 512)
MAX_NEW_TOKENS = _int_env("ECCO_MAX_NEW_TOKENS", 64)
MAX_PROBE_TOKENS = _int_env("ECCO_MAX_PROBE_TOKENS", 10000)  # the paper's protocol; ~4 GB of features for the causal default
MAX_CACHED_CAPTURES = _int_env("ECCO_MAX_CACHED_CAPTURES", 64)
CACHE_TTL_SECONDS = _int_env("ECCO_CACHE_TTL_SECONDS", 3600)
# Loaded as the server starts (``app.py``); an empty value loads nothing until a page asks.
PRELOAD_MODEL = os.environ.get("ECCO_PRELOAD_MODEL", DEFAULT_MODEL).strip()

_LIMITS = {
    "MAX_PROMPT_TOKENS": ("tokens", MAX_PROMPT_TOKENS),
    "MAX_NEW_TOKENS": ("new tokens", MAX_NEW_TOKENS),
    "MAX_PROBE_TOKENS": ("tokens", MAX_PROBE_TOKENS),
}


def enforce(value: int, limit: str, what: str) -> int:
    """Return ``value`` if it is within the deployment limit named ``limit``, else raise ValueError.

    Parameters
    ----------
    value : int
        The size asked for (tokens of a prompt, new tokens, tokens of probing data).
    limit : str
        One of ``"MAX_PROMPT_TOKENS"``, ``"MAX_NEW_TOKENS"``, ``"MAX_PROBE_TOKENS"``.
    what : str
        What ``value`` measures, for the message ("the prompt").
    """
    if limit not in _LIMITS:
        raise ValueError(f"limit must be one of {sorted(_LIMITS)}, got {limit!r}")
    unit, allowed = _LIMITS[limit]
    if value > allowed:
        raise ValueError(
            f"{what} is {value} {unit}; this deployment allows at most {allowed} "
            f"(raise it with the environment variable ECCO_{limit})"
        )
    return value
