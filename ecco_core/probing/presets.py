"""Named settings of :func:`~ecco_core.probing.probe_table`: the paper's protocol, and a quick look at it.

>>> settings = preset("quick", lm.n_layers)
>>> probe_table(lm, corpus, **settings.arguments())      # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from .. import _checks as checks
from ..layers import EMBEDDINGS

#: Preset name -> what it runs (the help of a picker).
PRESETS = {
    "quick": "a quick look: 2,000 words, the embeddings and 8 blocks evenly spaced, one trial, 20 epochs",
    "paper": "the paper's protocol (Table 1): 10,000 words, every layer, 5 trials, 50 epochs",
}
#: Blocks the quick preset probes beside the embeddings, evenly spaced from the first to the last.
QUICK_BLOCKS = 8


@dataclass(frozen=True)
class ProbeSettings:
    """The settings of one :func:`~ecco_core.probing.probe_table` run, named as its arguments.

    Attributes
    ----------
    n_tokens : int
    layers : tuple of (``"embeddings"`` or int)
        The embeddings and block indices, in depth order.
    trials, epochs : int
    lr : float
    """

    n_tokens: int
    layers: tuple
    trials: int
    epochs: int
    lr: float

    def arguments(self) -> dict:
        """The keyword arguments of :func:`~ecco_core.probing.probe_table` these settings stand for."""
        return asdict(self)


def preset(name: str, n_layers: int, *, max_tokens: int | None = None) -> ProbeSettings:
    """The settings of a :data:`PRESETS` entry for a model of ``n_layers`` blocks.

    ``"paper"`` is the Ecco paper's Table 1 protocol (10,000 words, every
    layer, 5 trials, 50 epochs, Adam at 1e-3); ``"quick"`` a subset of it
    that answers in about a minute on a CPU (2,000 words, the embeddings and
    :data:`QUICK_BLOCKS` blocks evenly spaced from block 0 to the last, one
    trial, 20 epochs). ``max_tokens`` caps the words (a deployment's limit).
    """
    name = checks.choice("preset", name, PRESETS)
    n_layers = checks.whole("n_layers", n_layers, low=1)
    most = 10**9 if max_tokens is None else checks.whole("max_tokens", max_tokens, low=1)
    if name == "paper":
        return ProbeSettings(min(10_000, most), (EMBEDDINGS, *range(n_layers)), trials=5, epochs=50, lr=1e-3)
    spaced = sorted({int(round(block)) for block in np.linspace(0, n_layers - 1, min(QUICK_BLOCKS, n_layers))})
    return ProbeSettings(min(2_000, most), (EMBEDDINGS, *spaced), trials=1, epochs=20, lr=1e-3)
