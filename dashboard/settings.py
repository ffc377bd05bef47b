"""Limits that protect a shared deployment (a hosted Space), in one place.

Each can be raised with an environment variable of the same name for a
private machine, e.g. ``ECCO_MAX_NEW_TOKENS=200 streamlit run app.py``.
"""

import os


def _int_env(name: str, default: int) -> int:
    try:
        return int(os.environ.get(name, default))
    except ValueError:
        return default


MAX_PROMPT_TOKENS = _int_env("ECCO_MAX_PROMPT_TOKENS", 512)
MAX_NEW_TOKENS = _int_env("ECCO_MAX_NEW_TOKENS", 64)
MAX_PROBE_TOKENS = _int_env("ECCO_MAX_PROBE_TOKENS", 20000)
MAX_CACHED_CAPTURES = _int_env("ECCO_MAX_CACHED_CAPTURES", 64)
CACHE_TTL_SECONDS = _int_env("ECCO_CACHE_TTL_SECONDS", 3600)
