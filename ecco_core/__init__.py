"""Ecco Explorer's library: capture a Transformer's internals once, then explain them.

>>> import ecco_core as ec
>>> lm = ec.load()                                   # SmolLM2-135M-Instruct, offline
>>> cap = ec.capture(lm, "The capital of France is", max_new_tokens=5)
>>> cap.hidden_states.shape                          # (n_layers + 1, n_tokens, d_model)
"""

import types

# Modules first: ``ec.capture``, ``ec.saliency``, ``ec.factors``, ``ec.attention`` are the
# modules (their registries and result types inside), callable as their main function below.
from . import attention, capture, factors, layers, lens, models, patching, plots, probing, saliency, similarity
from .attention import METHODS as ATTENTION_METHODS
from .attention import Attention
from .capture import Capture, CaptureSettings, recording
from .factors import Factors, Neurons, neurons
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
from .saliency import Saliency
from .probing import ProbeData, ProbeScores, Sentence, probe_table, read_conllu, train_probes


class _CallableModule(types.ModuleType):
    """A module called as its function of the same name: ``ec.factors(cap)`` is ``ec.factors.factors(cap)``.

    One access style: every module is ``ec.<module>`` (``ec.factors.METHODS``,
    ``ec.capture.Capture``, ``ec.similarity.cka``), and the views whose module
    and main function share a name are called directly, as the public API
    promises (``ec.capture(lm, text)``, ``ec.saliency(lm, cap)``).
    """

    def __call__(self, *args, **kwargs):
        return getattr(self, self.__name__.rpartition(".")[2])(*args, **kwargs)


for _module in (attention, capture, factors, saliency):
    _module.__class__ = _CallableModule
del _module

__all__ = [
    "Attention",
    "attention",
    "ATTENTION_METHODS",
    "Capture",
    "capture",
    "CaptureSettings",
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
    "layers",
    "lens",
    "models",
    "patching",
    "plots",
    "probing",
    "similarity",
    "suggest_candidates",
    "supported_model_types",
    "train_probes",
    "watch",
    "wrap",
]
