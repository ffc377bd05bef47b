"""ERASER AOPC of ``ec.trust.faithfulness`` against ferret-xai's own evaluators: the same scores, the same removal.

ferret-xai 0.4.2 (Attanasio et al. 2023) computes AOPC comprehensiveness and
sufficiency (DeYoung et al. 2020) for a sequence classifier: it takes the
top-k tokens of an explanation, replaces them (or all the others) by the
tokenizer's mask token, decodes, runs the model and averages
``p(full) - p(variant)`` over the thresholds, counting a rationale once when
two thresholds give the same tokens. Here its two evaluators run unchanged;
their model helper and tokenizer are adapters: the "text" is the tuple of
token ids up to the explained token, the mask token is a sentinel whose input
embedding the forward sets to zero (this project's removal, as the erasure
method does), and the "class logits" are the LM head's at the last position,
target = the explained token. The thresholds are ``based_on="k"`` with this
project's sizes (:func:`ecco_core.trust.rationale_sizes` of the bins 1, 5,
10, 20, 50%), so ferret's own top-k selection, dedup and mean make its AOPC.
Its forward is the Hugging Face model's own (``model(inputs_embeds=...)``),
not this project's.

Install it without its dependencies: ``pip install --no-deps ferret-xai==0.4.2``.
They pin transformers < 5, numpy < 2 and pandas < 3 and pull captum, shap,
lime, datasets and opencv, which would downgrade this project's stack; the two
modules used (``evaluators.faithfulness_measures``, ``model_utils``) need only
numpy, scipy, torch, transformers and tqdm. The package's ``__init__`` imports
all of the rest, so the package is entered without running it.

On the default capture ("Romeo and Juliet was written by", 20 generated
tokens), every 4th generated token, the four saliency methods. Last line: the
largest |ours - ferret| over methods, tokens and both curves (target: <= 1e-6).
"""

import importlib.util
import os
import sys
import types
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402

import ecco_core as ec  # noqa: E402

MASK = -1  # the adapters' mask token: its embedding is zero
EVERY = 4  # explain every 4th generated token: 5 tokens, 40 AOPC values compared


def ferret_evaluators():
    """ferret's two AOPC evaluators, imported without running ferret/__init__ (which needs its whole stack)."""
    spec = importlib.util.find_spec("ferret")
    if spec is None or not spec.submodule_search_locations:
        sys.exit("ferret-xai is not installed: pip install --no-deps ferret-xai==0.4.2")
    package = types.ModuleType("ferret")
    package.__path__ = list(spec.submodule_search_locations)
    sys.modules["ferret"] = package
    from ferret.evaluators.faithfulness_measures import AOPC_Comprehensiveness_Evaluation, AOPC_Sufficiency_Evaluation
    from ferret.explainers.explanation import Explanation

    return AOPC_Comprehensiveness_Evaluation, AOPC_Sufficiency_Evaluation, Explanation


class IdTokenizer:
    """What ferret asks of a tokenizer: a mask token id and ``decode``, here the ids themselves."""

    mask_token_id = MASK
    cls_token = None

    def decode(self, ids):
        return tuple(int(i) for i in ids)


class ZeroedEmbeddingHelper:
    """What ferret asks of its model helper: tokenise a "text" (a tuple of ids) and return class logits.

    The logits are the causal LM's at the last position; a ``MASK`` id is a zero input embedding.
    """

    def __init__(self, lm):
        self.model, self.tokenizer = lm.model, IdTokenizer()

    def _tokenize(self, text, **_):
        ids = torch.tensor([list(text)])
        return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}

    @torch.inference_mode()
    def _forward(self, texts, output_hidden_states=False):
        ids = torch.tensor([list(texts)] if isinstance(texts, tuple) else [list(text) for text in texts])
        embeds = self.model.get_input_embeddings()(ids.clamp(min=0))
        embeds[ids == MASK] = 0.0
        return None, self.model(inputs_embeds=embeds).logits[:, -1].double()


def main() -> None:
    comprehensiveness_of, sufficiency_of, Explanation = ferret_evaluators()
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    lm = ec.load()
    cap = ec.capture(lm, "Romeo and Juliet was written by", max_new_tokens=20)
    positions = np.arange(cap.n_input, cap.n_tokens, EVERY)
    saliencies = [ec.saliency(lm, cap, method, positions=positions) for method in ec.SALIENCY_METHODS]
    ours = ec.trust.faithfulness(lm, cap, saliencies)
    comprehensiveness, sufficiency = ours.aopc(ours.comprehensiveness), ours.aopc(ours.sufficiency)
    helper = ZeroedEmbeddingHelper(lm)
    evaluators = {"comprehensiveness": comprehensiveness_of(None, None), "sufficiency": sufficiency_of(None, None)}
    for evaluator in evaluators.values():
        evaluator.helper = helper
    worst = 0.0
    print(f"{'method':<22}{'curve':<19}{'ours (mean over tokens)':>24}{'ferret':>10}{'max |diff|':>12}")
    for m, sal in enumerate(saliencies):
        for curve, ours_aopc in (("comprehensiveness", comprehensiveness), ("sufficiency", sufficiency)):
            theirs = []
            for index, position in enumerate(ours.positions):
                assert not cap.special[:position].any()  # SmolLM2 adds none: every earlier token is a candidate
                assert (sal.row(int(position))[:position] > 0).all()
                explanation = Explanation(
                    text=tuple(int(i) for i in cap.token_ids[:position]), tokens=cap.tokens[:position],
                    scores=sal.row(int(position))[:position], explainer=sal.method,
                    target=int(cap.token_ids[position]),
                )
                theirs.append(evaluators[curve].compute_evaluation(
                    # only_pos=False trips ferret on numpy 2 (``array == []``); the scores are magnitudes, all > 0
                    explanation, target=int(cap.token_ids[position]), remove_first_last=False, only_pos=True,
                    removal_args={"remove_tokens": False, "based_on": "k",
                                  "thresholds": ours.sizes[index].tolist()},
                ).score)
            difference = np.abs(ours_aopc[m] - np.array(theirs)).max()
            worst = max(worst, difference)
            print(f"{sal.method:<22}{curve:<19}{ours_aopc[m].mean():>24.6f}{np.mean(theirs):>10.6f}{difference:>12.2e}")
    print(f"largest |ours - ferret-xai| AOPC over {len(saliencies)} methods x {len(ours.positions)} tokens x 2 "
          f"curves: {worst:.2e}")


if __name__ == "__main__":
    main()
