"""Limits that protect a shared deployment (a hosted Space), and the model it preloads, in one place.

Each can be raised with an environment variable of the same name for a
private machine, e.g. ``ECCO_MAX_NEW_TOKENS=200 streamlit run app.py``.
Pages check their inputs with :func:`enforce`, which names the limit and the
variable in the message the user sees::

    settings.enforce(n_tokens, "MAX_PROBE_TOKENS", "The uploaded treebank")

Which models a visitor may load is :data:`ALLOWED_MODELS` (checked by
:func:`check_model` before any file is touched): on a Hugging Face Space
(``SPACE_ID`` is set there) only the packaged offline models, elsewhere any
folder or hub name; ``ECCO_ALLOWED_MODELS`` sets it explicitly, as a
comma-separated list of names or ``*`` for any.
"""

import os

from ecco_core import DEFAULT_ENCODER, DEFAULT_MODEL


def _int_env(name: str, default: int) -> int:
    try:
        return int(os.environ.get(name, default))
    except ValueError:
        return default


MAX_PROMPT_TOKENS = _int_env("ECCO_MAX_PROMPT_TOKENS", 512)
MAX_NEW_TOKENS = _int_env("ECCO_MAX_NEW_TOKENS", 64)
MAX_PROBE_TOKENS = _int_env("ECCO_MAX_PROBE_TOKENS", 10000)  # the paper's protocol; ~4 GB of features for the causal default
# Similarity over many texts keeps every token position of the layers it compares; the page's 200 UD sentences
# are ~5,100 tokens for the causal default, ~5,500 for the encoder. Pasted texts count against it too.
MAX_SIMILARITY_TOKENS = _int_env("ECCO_MAX_SIMILARITY_TOKENS", 6000)
# What the server holds between runs counts against its 3 GB beside the runs themselves (``bench/memory.py``):
# the models (1.1 GB resident once both packaged ones have run), these two caches, and each run admitted at once
# (MAX_CONCURRENT_RUNS, below).
# Captures are held once for all sessions; one at the limits above is ~150 MB for the causal default, so the
# default holds four visitors' captures at the limits (a fifth replaces the least recently used).
CAPTURE_CACHE_MB = _int_env("ECCO_CAPTURE_CACHE_MB", 640)
# The Attention page keeps at most this much of a prompt's maps (blocks x heads x tokens^2 floats) per result;
# a longer prompt's model view shows fewer blocks at a time. All 30 blocks of the causal default fit up to ~240 tokens.
ATTENTION_MB = _int_env("ECCO_ATTENTION_MB", 64)
# Results of every analysis (dashboard.cached_analysis and dashboard.long_work: saliency, rankings, attention,
# probes, similarity, factors...), held once for all sessions. Most are small; the largest, a long prompt's
# attention maps (up to ATTENTION_MB each), are the quickest to compute again.
RESULT_CACHE_MB = _int_env("ECCO_RESULT_CACHE_MB", 128)
# Uploaded files (.conllu): Streamlit refuses bigger ones before they reach the page.
MAX_UPLOAD_MB = _int_env("ECCO_MAX_UPLOAD_MB", 10)
CACHE_TTL_SECONDS = _int_env("ECCO_CACHE_TTL_SECONDS", 3600)
# Captures and analyses computed at once across all sessions; more wait their turn (the page says so). Runs at
# the limits above peak at 0.1-0.9 GB above what the server holds (``python bench/memory.py calls``), so 4
# sessions at once would add their peaks; with 2, the calls' bound (its idle models, both caches full, two of
# the largest run, as two visitors tracing at once) is 0.91x its 3 GB, exact tracing (0.47 GB) twice, though a
# longer tracing's heap creeps higher (README, *Bounded memory*), and a 2-core CPU gains little from more.
# Attribution patching of a long prompt (0.89 GB) runs alone (``long_work(alone=True)``).
MAX_CONCURRENT_RUNS = max(1, _int_env("ECCO_MAX_CONCURRENT_RUNS", 2))
# Loaded as the server starts (``app.py``); an empty value loads nothing until a page asks.
PRELOAD_MODEL = os.environ.get("ECCO_PRELOAD_MODEL", DEFAULT_MODEL).strip()


def _allowed_models() -> tuple[str, ...] | None:
    listed = os.environ.get("ECCO_ALLOWED_MODELS")
    if listed is None:
        return (DEFAULT_MODEL, DEFAULT_ENCODER) if os.environ.get("SPACE_ID") else None
    names = tuple(name.strip() for name in listed.split(",") if name.strip())
    return None if "*" in names else names


# None: any folder or hub name (a private machine); else only these names.
ALLOWED_MODELS = _allowed_models()
# A prompt longer than this many characters per allowed token is refused before it is tokenised.
_CHARS_PER_TOKEN = 32

_LIMITS = {
    "MAX_PROMPT_TOKENS": ("tokens", MAX_PROMPT_TOKENS),
    "MAX_NEW_TOKENS": ("new tokens", MAX_NEW_TOKENS),
    "MAX_PROBE_TOKENS": ("tokens", MAX_PROBE_TOKENS),
    "MAX_SIMILARITY_TOKENS": ("tokens", MAX_SIMILARITY_TOKENS),
}


def check_model(name: str) -> str:
    """Return ``name`` if this deployment lets visitors load it, else raise a ValueError.

    The message is the same for every refused name (whether it is a folder on
    the server, a hub name, or nothing at all), so it tells a visitor nothing
    about the server's files.
    """
    if ALLOWED_MODELS is None or name in ALLOWED_MODELS:
        return name
    raise ValueError(
        f"model {name!r} is not available here; this deployment offers: {', '.join(ALLOWED_MODELS) or 'none'} "
        "(its operator lists the models it allows in the environment variable ECCO_ALLOWED_MODELS)"
    )


def check_text_length(text: str, limit: str, what: str) -> str:
    """Refuse a text too long to be within the token limit named ``limit``, before paying to tokenise it.

    The message starts with ``what``, so it is a sentence's start ("The prompt").
    """
    unit, tokens = _LIMITS[limit]
    allowed = _CHARS_PER_TOKEN * tokens
    if len(text) > allowed:
        raise ValueError(
            f"{what} is {len(text)} characters; this deployment allows at most {allowed} "
            f"({tokens} {unit}; raise it with the environment variable ECCO_{limit})"
        )
    return text


def enforce(value: int, limit: str, what: str) -> int:
    """Return ``value`` if it is within the deployment limit named ``limit``, else raise ValueError.

    Parameters
    ----------
    value : int
        The size asked for (tokens of a prompt, new tokens, tokens of probing data).
    limit : str
        One of ``"MAX_PROMPT_TOKENS"``, ``"MAX_NEW_TOKENS"``, ``"MAX_PROBE_TOKENS"``.
    what : str
        What ``value`` measures; the message starts with it, so it is a sentence's start ("The prompt").
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
