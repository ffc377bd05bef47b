"""Ecco Explorer's library: capture a Transformer's internals once, then explain them.

>>> import ecco_core as ec
>>> lm = ec.load()                                   # SmolLM2-135M-Instruct, offline
>>> cap = ec.capture(lm, "The capital of France is", max_new_tokens=5)
>>> cap.hidden_states.shape                          # (n_layers + 1, n_tokens, d_model)
"""

from . import similarity
from .attention import METHODS as ATTENTION_METHODS
from .attention import Attention, attention
from .capture import Capture, capture, recording
from .factors import Factors, Neurons, factors, neurons
from .lens import Rankings, rankings, suggest_candidates, watch
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
from .patching import METRICS as PATCHING_METRICS
from .patching import SITES as PATCHING_SITES
from .patching import Noise, Patching, patch
from .saliency import METHODS as SALIENCY_METHODS
from .saliency import TARGETS as SALIENCY_TARGETS
from .saliency import Saliency, saliency
from .probing import ProbeData, ProbeScores, Sentence, probe_table, read_conllu, train_probes

__all__ = [
    "Attention",
    "attention",
    "ATTENTION_METHODS",
    "Capture",
    "capture",
    "DEFAULT_ENCODER",
    "DEFAULT_MODEL",
    "Factors",
    "factors",
    "FAMILIES",
    "FamilySpec",
    "LM",
    "load",
    "Neurons",
    "neurons",
    "Noise",
    "offline_models",
    "patch",
    "Patching",
    "PATCHING_METRICS",
    "PATCHING_SITES",
    "probe_table",
    "ProbeData",
    "ProbeScores",
    "Rankings",
    "rankings",
    "read_conllu",
    "recording",
    "Saliency",
    "saliency",
    "SALIENCY_METHODS",
    "SALIENCY_TARGETS",
    "Sentence",
    "similarity",
    "suggest_candidates",
    "supported_model_types",
    "train_probes",
    "watch",
    "wrap",
]
