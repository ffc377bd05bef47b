"""Every view through nnsight as NDIF would run it (remote="local"): requests, payload, time against the hook path.

For each view at the app's default sizes on the causal default (SmolLM2-135M):
the requests it makes (one nnsight session each), the bytes sent (the
serialised, zstd-compressed session, as NDIF receives it) and received
(``torch.save`` of what the session saves, as NDIF returns it: the largest
request's, and all of the view's together; "on the wire", all of the view's
as NDIF sends it, zstd-compressed as nnsight asks by default), and its time
through ``backend="nnsight", remote="local"`` (serialised, deserialised with
this project's modules hidden, run here) against the hook path on the same
machine, each the median of ``--repeats`` round-robin runs on one thread.
A capture brings back what its own view shows; the rows "capture, then ..."
read its hidden states or FFN activations afterwards (fetched then, a group of
layers per request), or reduce them where the model ran (NMF of every block,
fitted there: the factors and their strongest neurons come back), timed with
the capture against the hook path's capture, which records everything at
once. "the factors page" is Neuron factors' page at its defaults (the factors,
then the first factor's strongest neuron and its block's most active ones),
on this prompt and on the app's default text (27 tokens). Probing's quick preset (2,000 words of the bundled
treebank, the embeddings and 8 blocks, one trial, 20 epochs) collects the
features and trains the probes on the server; the hook path keeps its
features in memory, as the server does. Circuits' direct logit attribution
comes back as its parts and each head's and FFN's top tokens; its verification
(the page's defaults: DLA's top 10, a corrupted run, every part alone) as the
ablated runs' metrics, every row a full pass on the server where the hook path
starts each at its first ablated block. Similarity over the Similarity
page's UD default (40 sentences, 1,145 positions; linear CKA of the hidden
states against the FFNs, the first token left out) keeps every layer and
compares them on the server, with the median cell's chance level (100
shuffles) in the same request; the hook path runs the texts twice (the
matrix, then the cell's two layers), as the page does. No network: NDIF itself is not reached.
Last line: the worst payload of one request / 1 MB (and the largest view's
total, and the largest on the wire) and the worst time ratio.
"""

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402

import ecco_core as ec  # noqa: E402
from ecco_core import backends  # noqa: E402

PROMPT = "The capital of France is"
APP_TEXT = "Romeo and Juliet was written by"  # the app's causal default (dashboard.url.DEFAULT_PROMPTS), 20 new tokens
CLEAN = "When Mary and John went to the store, John gave a drink to"
CORRUPTED = "When Mary and John went to the store, Mary gave a drink to"
MB = 2**20


def _factored(cap, method="nmf"):
    """Neuron factors at the page's defaults: every block's FFN, the first token left out (an attention sink)."""
    positions = ec.factors.analysed_positions(cap, skip_first=cap.causal)
    return ec.factors(cap, method, positions=positions)


def _factor_page(cap):
    """Neuron factors' page at its defaults: the factors (NMF, negatives clipped), then its One neuron section,
    the first factor's strongest neuron and the most active neurons of its block."""
    result = _factored(cap)
    strongest = result.top_neurons(10).iloc[0]
    ec.neurons(cap, int(strongest["block"]), ids=[int(strongest["neuron"])])
    ec.neurons(cap, int(strongest["block"]), top_k=10)
    return result


def _views(cap):
    """(name, function of an LM) for each view at its default sizes."""
    def captured(lm):
        return ec.capture(lm, PROMPT, max_new_tokens=8)

    return [
        ("capture (8 generated)", captured),
        ("capture, then its hidden states", lambda lm: captured(lm).hidden_states),
        ("capture, then block 20's FFN", lambda lm: ec.factors.neurons(captured(lm), 20)),
        ("capture, then factors (NMF, clip)", lambda lm: _factored(captured(lm))),
        ("capture, then the factors page", lambda lm: _factor_page(captured(lm))),
        ("app's text, then the factors page", lambda lm: _factor_page(ec.capture(lm, APP_TEXT, max_new_tokens=20))),
        ("capture, then factors (PCA)", lambda lm: _factored(captured(lm), "pca")),
        ("capture, then all of it (save)", lambda lm: captured(lm).fetch()),
        ("logit lens rankings", lambda lm: ec.rankings(lm, cap)),
        ("lens rankings + KL, agreement", lambda lm: ec.trust.rankings_and_diagnostics(lm, cap)),
        ("logit lens watch", lambda lm: ec.watch(lm, "The keys to the cabinet", ["is", "are"])),
        ("candidate suggestions", lambda lm: ec.suggest_candidates(lm, "The keys to the cabinet")),
        ("saliency grad x input", lambda lm: ec.saliency(lm, cap)),
        ("saliency integrated gradients", lambda lm: ec.saliency(lm, cap, method="integrated_gradients")),
        ("saliency erasure", lambda lm: ec.saliency(lm, cap, method="erasure")),
        ("faithfulness (4 methods, 1 token)", lambda lm: ec.trust.faithfulness(lm, cap, positions=cap.n_input)),
        ("attribution patching", lambda lm: ec.patch(lm, CLEAN, CORRUPTED, "Mary", "John", approximate=True)),
        ("activation patching (residual)", lambda lm: ec.patch(lm, CLEAN, CORRUPTED, "Mary", "John",
                                                                sites=("residual",))),
        ("probing, quick preset (Table 1)", lambda lm: ec.probe_table(
            lm, ec.probing.UD_ENGLISH_EWT_DEV, **ec.probing.preset("quick", lm.n_layers).arguments(), store="memory",
            progress=lambda fraction, message: None)),
        ("similarity, 40 UD sentences + chance", lambda lm: ec.trust.similarity_with_baseline(
            lm, ec.similarity.ud_sentences(40), "cka", skip_first=True)),
        ("similarity, a clicked cell's chance", lambda lm: ec.trust.cell_baseline(
            lm, ec.similarity.ud_sentences(40), 16, 28, "cka", skip_first=True)),
        ("causal tracing (noise)", lambda lm: ec.patch(lm, "The Eiffel Tower is in the city of", ec.Noise([1, 2, 3]),
                                                        "Paris", sites=("residual",))),
        ("circuits DLA + top tokens (IOI)", lambda lm: ec.circuits.top_tokens(lm, _circuits(lm))),
        ("circuits DLA, then verify (page)", lambda lm: ec.circuits.verify(
            lm, _circuits(lm), ablation="corrupted", corrupted=CORRUPTED)),
    ]


def _circuits(lm):
    """Circuits' direct logit attribution of the IOI prompt, as its page asks on either backend (no routes)."""
    return ec.circuits(lm, CLEAN, "Mary", "John")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--views", nargs="*", default=(),
                        help="run only the views whose name holds one of these words (all by default)")
    arguments = parser.parse_args()
    torch.set_num_threads(1)
    hooked = ec.load()
    traced = backends.use(hooked, "nnsight", remote="local")
    cap = ec.capture(hooked, PROMPT, max_new_tokens=8)
    print(f"{'view':34} {'requests':>8} {'sent':>10} {'received':>10} {'in all':>10} {'on the wire':>11} "
          f"{'hooks s':>8} {'nnsight s':>9} {'ratio':>6}")
    worst_payload, worst_total, worst_wire, worst_ratio = 0, (0, ""), (0, ""), 0.0
    for name, view in _views(cap):
        if arguments.views and not any(word in name for word in arguments.views):
            continue
        view(traced)  # warm: nnsight's first session scans the environment once
        times = {"hooks": [], "nnsight": []}
        for _ in range(arguments.repeats):
            for kind, lm in (("hooks", hooked), ("nnsight", traced)):
                with backends.ledger() as record:
                    start = time.perf_counter()
                    view(lm)
                    times[kind].append(time.perf_counter() - start)
                if kind == "nnsight":
                    sent, received, requests = max(record.sent), max(record.received), record.requests
                    total, wire = sum(record.received), sum(record.wire)
        hooks_s, nnsight_s = statistics.median(times["hooks"]), statistics.median(times["nnsight"])
        worst_payload = max(worst_payload, sent, received)
        worst_total = max(worst_total, (total, name))
        worst_wire = max(worst_wire, (wire, name))
        worst_ratio = max(worst_ratio, nnsight_s / hooks_s)
        print(f"{name:34} {requests:8d} {sent:10,d} {received:10,d} {total:10,d} {wire:11,d} {hooks_s:8.2f} "
              f"{nnsight_s:9.2f} {nnsight_s / hooks_s:6.2f}", flush=True)
    print(f"worst payload / 1 MB: {worst_payload / MB:.3f} per request ({worst_total[0] / MB:.3f} in all for "
          f"{worst_total[1]}; on the wire {worst_wire[0] / MB:.3f} for {worst_wire[1]}); "
          f"worst time ratio nnsight/hooks: {worst_ratio:.2f}")


if __name__ == "__main__":
    main()
