"""What a session body calls on the server: plain torch functions, shipped with each request by value.

NDIF has torch but not this project. :mod:`ecco_core.backends.sessions`
registers this module with ``nnsight.register``, so every function of it
that a session body names travels as source with the request and is rebuilt
on the server (``remote="local"`` checks it: it hides this project's modules
while it runs a session). So each function here uses torch alone: no import
of this project, no numpy, nothing of the module around it.
"""

from __future__ import annotations

import torch


def output_tensor(output):
    """A module's output tensor: the first of a tuple (a block's, an attention's), else the output itself."""
    return output[0] if isinstance(output, (tuple, list)) else output


def by_token(tensor, batch: int):
    """``tensor`` as (batch, n_tokens, width): OPT's FFN flattens its input to (batch * n_tokens, width)."""
    return tensor.view(batch, -1, tensor.shape[-1]) if tensor.dim() == 2 else tensor


def next_token(logits, *, do_sample: bool, temperature: float, top_k, generator) -> int:
    """The next token from one position's logits: greedy, or sampled (temperature, top-k) from ``generator``."""
    if not do_sample:
        return int(logits.argmax())
    logits = logits / temperature
    if top_k:
        threshold = torch.topk(logits, min(top_k, logits.shape[-1])).values[-1]
        logits = logits.masked_fill(logits < threshold, float("-inf"))
    return int(torch.multinomial(torch.softmax(logits, -1), 1, generator=generator))


def metric_of(logits, metric: str, answer_id: int, foil_id: int):
    """Patching's metric of rows of logits (n_rows, vocab_size), in float64: (n_rows,)."""
    if metric == "logit_diff":
        return (logits[:, answer_id] - logits[:, foil_id]).double()
    if metric == "prob":
        return torch.softmax(logits.double(), -1)[:, answer_id]
    return torch.log_softmax(logits.double(), -1)[:, answer_id]


def lens_rows(logits, target_column, k: int) -> tuple:
    """One chunk of lens rows (n_rows, vocab_size), float32: each target's rank (1 = top) and probability, the top-k."""
    target_logit = logits.gather(-1, target_column)
    log_normaliser = torch.logsumexp(logits, dim=-1, keepdim=True)
    top = logits.topk(k, dim=-1)
    return (((logits > target_logit).sum(-1, dtype=torch.int32) + 1).cpu(),
            (target_logit - log_normaliser).exp()[:, 0].cpu(),
            top.indices.cpu(), (top.values - log_normaliser).exp().cpu())


def attribution(estimates, metric, clean: dict, corrupted: dict, sites: tuple, wanted: bool):
    """Attribution patching's estimates written into ``estimates`` (n_sites, n_layers, n_tokens), float64, if ``wanted``.

    ``(a_clean - a_corrupted) . d metric / d a`` at the corrupted run, by
    ``torch.autograd.grad`` on the activations ``corrupted[site, layer]`` only.
    """
    keys = [(site, layer) for site in sites for layer in range(estimates.shape[1])] if wanted else []
    gradients = torch.autograd.grad(metric, [corrupted[key] for key in keys], allow_unused=True) if keys else []
    for key, gradient in zip(keys, gradients):
        if gradient is not None:
            delta = by_token(clean[key], 1)[0] - by_token(corrupted[key].detach(), 1)[0]
            estimates[sites.index(key[0]), key[1]] = (delta.double() * by_token(gradient, 1)[0].double()).sum(-1).cpu()
    return estimates


def readout(logits, metric: str, answer_id: int, foil_id: int, k: int) -> tuple:
    """Rows of logits read: the metric (float64) and the top-``k`` predictions (ids, probabilities), on the CPU."""
    top = torch.softmax(logits, -1).topk(k, dim=-1)
    return metric_of(logits, metric, answer_id, foil_id).cpu(), top.indices.cpu(), top.values.cpu()


def add_noise(embeds, positions: list, scale: float, seed: int) -> None:
    """Meng et al.'s Gaussian noise (``scale`` times N(0, 1), drawn from ``seed``) added to ``embeds[0, positions]``."""
    draw = torch.randn((len(positions), embeds.shape[-1]), generator=torch.Generator(device="cpu").manual_seed(int(seed)), dtype=torch.float32)
    embeds[0, list(positions)] += (draw * scale).to(device=embeds.device, dtype=embeds.dtype)


def rows_to_run(patches: list, clean: dict, corrupted: dict) -> list:
    """Indices of the patches that restore at least one activation differing between the two runs."""
    return [index for index, entry in enumerate(patches)
            if any(not torch.equal(by_token(clean[s, l], 1)[0, p], by_token(corrupted[s, l], 1)[0, p])
                   for s, l, p in entry)]


def batch_targets(patches: list, chunk: list, order: list) -> dict:
    """What each row of one patched batch restores: {(site, layer): (rows, positions)}, in the order of the pass.

    A block writes its sites in ``order``; the dict runs layer by layer, so a
    session reads each activation as the forward pass reaches it.
    """
    targets = {}
    for row, index in enumerate(chunk):
        for site, layer, position in patches[index]:
            targets.setdefault((site, layer), ([], []))[0].append(row)
            targets[site, layer][1].append(position)
    return dict(sorted(targets.items(), key=lambda item: (item[0][1], order.index(item[0][0]))))
