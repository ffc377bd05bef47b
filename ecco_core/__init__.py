"""Ecco Explorer's library: capture a Transformer's internals once, then explain them.

>>> import ecco_core as ec
>>> lm = ec.load()                                   # SmolLM2-135M-Instruct, offline
>>> cap = ec.capture(lm, "The capital of France is", max_new_tokens=5)
>>> cap.hidden_states.shape                          # (n_layers + 1, n_tokens, d_model)
"""

import importlib
import types

# Modules first: ``ec.capture``, ``ec.saliency``, ``ec.factors``, ``ec.attention`` are the
# modules (their registries and result types inside), callable as their main function below.
from . import attention, capture, factors, layers, models, plots, readouts, saliency
from ._heartbeat import heartbeats
from .attention import METHODS as ATTENTION_METHODS
from .attention import Attention
from .capture import Capture, CaptureSettings
from .factors import Factors, Neurons, neurons
from .hooks import recording
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
from .readouts import READOUTS
from .saliency import METHODS as SALIENCY_METHODS
from .saliency import TARGETS as SALIENCY_TARGETS
from .saliency import Saliency

# Imported on first use (PEP 562): the app's first page needs none of them, and probing
# brings conllu. ``ec.lens``, ``ec.probing``, ... and the names below work as before.
_LAZY_MODULES = ("circuits", "lens", "patching", "probing", "similarity", "trust")
# Lazy modules called as their function of the same name: ``ec.circuits(lm, text, "Mary", "John")``.
_LAZY_CALLABLE = ("circuits",)
_LAZY_NAMES = {
    "Circuits": ("circuits", "Circuits"),
    "Rankings": ("lens", "Rankings"),
    "rankings": ("lens", "rankings"),
    "suggest_candidates": ("lens", "suggest_candidates"),
    "Suggestions": ("lens", "Suggestions"),
    "watch": ("lens", "watch"),
    "PATCHING_METRICS": ("patching", "METRICS"),
    "PATCHING_SITES": ("patching", "SITES"),
    "Noise": ("patching", "Noise"),
    "Patching": ("patching", "Patching"),
    "patch": ("patching", "patch"),
    "ProbeData": ("probing", "ProbeData"),
    "ProbeScores": ("probing", "ProbeScores"),
    "ProbeTable": ("probing", "ProbeTable"),
    "Sentence": ("probing", "Sentence"),
    "probe_table": ("probing", "probe_table"),
    "read_conllu": ("probing", "read_conllu"),
    "train_probes": ("probing", "train_probes"),
}


def _lazy_module(name: str) -> types.ModuleType:
    module = importlib.import_module(f".{name}", __name__)  # importing sets it on the package too
    if name in _LAZY_CALLABLE:
        module.__class__ = _CallableModule
    return module


def __getattr__(name: str):
    if name in _LAZY_MODULES:
        return _lazy_module(name)
    if name in _LAZY_NAMES:
        module, attribute = _LAZY_NAMES[name]
        value = getattr(_lazy_module(module), attribute)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


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
    "Circuits",
    "circuits",
    "DEFAULT_ENCODER",
    "DEFAULT_MODEL",
    "Factors",
    "factors",
    "FAMILIES",
    "FamilySpec",
    "heartbeats",
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
    "ProbeTable",
    "Rankings",
    "rankings",
    "read_conllu",
    "READOUTS",
    "readouts",
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
    "Suggestions",
    "supported_model_types",
    "train_probes",
    "trust",
    "watch",
    "wrap",
]
