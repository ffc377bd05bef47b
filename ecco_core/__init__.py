"""Ecco Explorer's library: capture a Transformer's internals once, then explain them.

>>> import ecco_core as ec
>>> lm = ec.load()                                   # SmolLM2-135M-Instruct, offline
>>> cap = ec.capture(lm, "The capital of France is", max_new_tokens=5)
>>> cap.hidden_states.shape                          # (n_layers + 1, n_tokens, d_model)
"""

from . import similarity
from .capture import Capture, capture, recording
from .models import (
    DEFAULT_ENCODER,
    DEFAULT_MODEL,
    FAMILIES,
    FamilySpec,
    LM,
    load,
    offline_models,
    supported_model_types,
    wrap,
)

__all__ = [
    "Capture",
    "DEFAULT_ENCODER",
    "DEFAULT_MODEL",
    "FAMILIES",
    "FamilySpec",
    "LM",
    "capture",
    "load",
    "offline_models",
    "recording",
    "similarity",
    "supported_model_types",
    "wrap",
]
