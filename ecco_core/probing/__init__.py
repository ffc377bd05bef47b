"""Part-of-speech probes with control tasks: the Ecco paper's Table 1 (sections 4.1 and 5).

A linear softmax probe is trained to predict each word's universal
part-of-speech tag (UPOS) from one representation of the model, named in the
layer vocabulary of :mod:`ecco_core.layers`: the embeddings or a block's
output (``hidden``: "embeddings", "block 2" = ``hidden_states[3]``) or a
block's FFN activations (``ffn``: "block 2 FFN" = ``ffn[2]``). High accuracy alone does not show that a representation *encodes*
part of speech: a rich enough probe can memorise word identities. Hewitt and
Liang (2019) therefore train a second probe on a **control task**, where each
word type gets a fixed random tag, and report **selectivity** = accuracy on
the real tags minus accuracy on the control tags. Non-contextual embeddings
reach high accuracy with low selectivity; contextual layers are more
selective.

The protocol follows the paper: 10,000 tokens of UD English, a 67/33
train/test split drawn anew for every trial, 50 epochs of Adam (learning
rate 1e-3), 5 trials, mean and standard deviation. Every probe of every
layer, both representations, both label sets and all trials is one batched
model: a stacked weight tensor per feature width, multiplied with
``torch.bmm``, so one Adam step updates them all.

The parts, each a module of this package:

- :mod:`.data`: reading CoNLL-U (the library's one reader and its one home:
  :func:`ud_sentences`, the raw sentences that similarity's corpus runs over,
  reads them too) and putting each word's tag on its first sub-token
  (:func:`align`; its docstring has the trap);
- :mod:`.collection`: batched forward passes keeping every labelled token's
  representations (:func:`collect`), in memory or in an on-disk store;
- :mod:`.training`: the batched probes (:func:`train_probes`; the axes of
  their tensors are named in :data:`LOGIT_AXES`; the training loop itself is
  :func:`ecco_core.backends.probes.train_counts`, torch alone);
- :mod:`.traced`: probing through nnsight or on NDIF, the features collected
  and the probes trained where the model runs, only the counts brought back;
- :mod:`.tables`: :func:`probe_table` and the paper's own Table 1
  (:func:`paper_table1`);
- :mod:`.presets`: named settings of a run (:func:`preset`: the paper's
  protocol, a quick look).

Every public name of the parts is also a name of this package
(``ec.probing.collect``, ``ec.probing.UD_ENGLISH_EWT_DEV``).

>>> import ecco_core as ec
>>> enc = ec.load(ec.DEFAULT_ENCODER)
>>> table = ec.probe_table(enc, "en_ewt-ud-dev.conllu")   # Table 1: .to_frame() has one row per probed array
"""

from .collection import IN_MEMORY_BYTES, STORES, ProbeData, collect
from .data import (
    UD_ENGLISH_EWT_DEV, UPOS_TAGS, AlignedSentence, Sentence, align, iter_conllu, read_conllu, ud_sentences,
)
from .presets import PRESETS, QUICK_BLOCKS, ProbeSettings, preset
from .tables import ProbeTable, depth_labels, paper_table1, probe_table, scores_table, table1_markdown
from .training import (
    LEARNING_RATES,
    LOGIT_AXES,
    MIN_TEST_TOKENS,
    PRECISIONS,
    STORED_GROUP_BYTES,
    TEST_FRACTION,
    ProbeScores,
    control_tags,
    small_corpus_warning,
    train_probes,
)
from ._progress import Progress

__all__ = [
    "align",
    "AlignedSentence",
    "collect",
    "control_tags",
    "depth_labels",
    "IN_MEMORY_BYTES",
    "iter_conllu",
    "LEARNING_RATES",
    "LOGIT_AXES",
    "MIN_TEST_TOKENS",
    "paper_table1",
    "PRECISIONS",
    "preset",
    "PRESETS",
    "probe_table",
    "ProbeData",
    "ProbeScores",
    "ProbeSettings",
    "ProbeTable",
    "Progress",
    "QUICK_BLOCKS",
    "read_conllu",
    "scores_table",
    "Sentence",
    "small_corpus_warning",
    "STORED_GROUP_BYTES",
    "STORES",
    "table1_markdown",
    "TEST_FRACTION",
    "train_probes",
    "UD_ENGLISH_EWT_DEV",
    "ud_sentences",
    "UPOS_TAGS",
]
