"""Ecco Explorer's library: capture a Transformer's internals once, then explain them.

>>> import ecco_core as ec
>>> lm = ec.load()                                   # SmolLM2-135M-Instruct, offline
>>> cap = ec.capture(lm, "The capital of France is", max_new_tokens=5)
>>> cap.hidden_states.shape                          # (n_layers + 1, n_tokens, d_model)
"""

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
from .saliency import METHODS as SALIENCY_METHODS
from .saliency import TARGETS as SALIENCY_TARGETS
from .saliency import Saliency, saliency

__all__ = [
    "Capture",
    "DEFAULT_ENCODER",
    "DEFAULT_MODEL",
    "FAMILIES",
    "FamilySpec",
    "LM",
    "SALIENCY_METHODS",
    "SALIENCY_TARGETS",
    "Saliency",
    "capture",
    "load",
    "offline_models",
    "recording",
    "saliency",
    "supported_model_types",
    "wrap",
]
