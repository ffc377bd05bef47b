"""Each view written once as an nnsight session: run here, serialised as for NDIF, or on NDIF.

A session's body is shipped as source with only the plain values it names
(ints, lists, tensors of token ids) and the envoys of the modules the family
table points at (:meth:`Traced.envoys`); it uses torch alone, so NDIF's server
needs nothing of this project. It reduces on the spot (top-k, ranks,
effects) and saves one dict: what the view draws, and nothing vocabulary- or
activation-sized beyond what the view's result holds. One session is one
request.

The hook path stays the reference: every function here returns the same
arrays as its hook-path twin (tests compare them), and the analyses package
them with the same code.
"""

from __future__ import annotations

import nnsight
import numpy as np
import torch

from ..models import LM


def _runner(lm: LM):
    return lm.backend


def capture(lm: LM, input_ids: list[int], new_ids: list[int] | None, *, max_new_tokens: int, do_sample: bool,
            temperature: float, top_k: int | None, seed: int, eos_ids: list[int], k: int) -> dict:
    """Generate (unless ``new_ids`` is given), then record one pass: one session.

    Mirrors :func:`ecco_core.capture.generate` (KV cache, greedy or sampling
    from a private generator seeded with ``seed``, on the CPU) and
    :func:`ecco_core.capture._recorded` (block 0's input, every block's output,
    every FFN projection's input, the top-``k`` predictions).

    Returns a dict of ``new_ids`` (list), ``hidden_states`` (n_layers + 1,
    n_tokens, d_model), ``ffn`` (n_layers, n_tokens, d_ff), ``top_ids`` and
    ``top_probs`` (n_tokens, k): float32 / int64 numpy arrays.
    """
    runner = _runner(lm)
    model = runner.envoy
    blocks = runner.envoys(lm.blocks)
    projections = runner.envoys(lm.ffn_projections)
    generate = new_ids is None
    given = list(new_ids or [])
    k = min(k, lm.vocab_size) if lm.has_head else 0
    with runner.lock, runner.errors():
        with model.session(backend=runner.request()):
            device = model.device
            continuation = list(given)
            if generate and max_new_tokens:
                generator = torch.Generator(device="cpu").manual_seed(seed)
                step_input = torch.tensor([input_ids], device=device)
                cache = None
                with torch.inference_mode():
                    for _ in range(max_new_tokens):
                        output = model(input_ids=step_input, cache=cache, use_cache=True, logits_to_keep=1)
                        cache = output.cache
                        logits = output.logits[0, -1].float().cpu()
                        if do_sample:
                            logits = logits / temperature
                            if top_k:
                                threshold = torch.topk(logits, min(top_k, logits.shape[-1])).values[-1]
                                logits = logits.masked_fill(logits < threshold, float("-inf"))
                            next_id = int(torch.multinomial(torch.softmax(logits, -1), 1, generator=generator))
                        else:
                            next_id = int(logits.argmax())
                        continuation.append(next_id)
                        if next_id in eos_ids:
                            break
                        step_input = torch.tensor([[next_id]], device=device)
                del cache
            token_ids = list(input_ids) + continuation
            n_tokens = len(token_ids)
            with model.trace(torch.tensor([token_ids], device=device), use_cache=False):
                args, kwargs = blocks[0].inputs
                hidden = [(args[0] if args else kwargs["hidden_states"])[0].float().cpu()]
                ffn = []
                for block, projection in zip(blocks, projections):
                    activations = projection.input
                    ffn.append(activations.reshape(n_tokens, -1).float().cpu())  # OPT flattens its FFN input
                    output = block.output
                    hidden.append((output[0] if isinstance(output, (tuple, list)) else output)[0].float().cpu())
                if k:
                    log_probs = torch.log_softmax(model.output.logits[0].float(), dim=-1)
                    top = torch.topk(log_probs, k, dim=-1)
                    top_ids, top_probs = top.indices.cpu(), top.values.exp().cpu()
                else:
                    top_ids, top_probs = torch.zeros((n_tokens, 0), dtype=torch.long), torch.zeros((n_tokens, 0))
            result = nnsight.save({
                "new_ids": continuation, "hidden_states": torch.stack(hidden), "ffn": torch.stack(ffn),
                "top_ids": top_ids, "top_probs": top_probs,
            })
    runner.received(result)
    return {
        "new_ids": [int(i) for i in result["new_ids"]],
        "hidden_states": result["hidden_states"].numpy().astype(np.float32, copy=False),
        "ffn": result["ffn"].numpy().astype(np.float32, copy=False),
        "top_ids": result["top_ids"].numpy().astype(np.int64, copy=False),
        "top_probs": result["top_probs"].numpy().astype(np.float32, copy=False),
    }


def lens(lm: LM, token_ids, positions, target_ids, *, k: int, max_chunk_bytes: int) -> dict:
    """The logit lens at ``positions`` of one pass over ``token_ids``, reduced on the server: one session.

    Mirrors :func:`ecco_core.lens._lens` on the block outputs of the pass
    (final norm, then head, on every layer alike, in chunks of the same rows):
    the rank (1 = top) and probability of each target, each layer's top-``k``,
    and the largest difference between the last layer's logits and the
    model's own. ``target_ids`` None reads the targets as the model's own top
    prediction at each position (a masked model's masks).

    Returns a dict of ``ranks``, ``probs`` (n_layers, n_columns), ``top_ids``,
    ``top_probs`` (n_layers, n_columns, k), ``target_ids`` (n_columns,) as numpy
    arrays, and ``max_abs_diff`` (float).
    """
    runner = _runner(lm)
    model = runner.envoy
    blocks = runner.envoys(lm.blocks)
    norms = runner.envoys(lm.final_norm)
    heads = runner.envoys(lm.head)
    token_ids = [int(i) for i in token_ids]
    positions = [int(i) for i in positions]
    targets = None if target_ids is None else [int(i) for i in target_ids]
    k = min(k, lm.vocab_size)
    n_layers, n_columns = lm.n_layers, len(positions)
    rows_per_chunk = max(1, max_chunk_bytes // (4 * lm.vocab_size))
    with runner.lock, runner.errors():
        with model.session(backend=runner.request()):
            device = model.device
            keep = torch.tensor(positions)
            with model.trace(torch.tensor([token_ids], device=device), use_cache=False):
                columns = []
                for block in blocks:
                    output = block.output
                    columns.append((output[0] if isinstance(output, (tuple, list)) else output)[0, keep.to(device)])
                model_logits = model.output.logits[0, keep.to(device)].float()
            with torch.inference_mode():
                if targets is None:
                    targets = model_logits.argmax(-1).tolist()
                rows = torch.cat(columns)
                target_column = torch.tensor(targets * n_layers, device=rows.device)[:, None]
                last_layer_start = (n_layers - 1) * n_columns
                ranks, probs, top_ids, top_probs = [], [], [], []
                max_abs_diff = 0.0
                for start in range(0, len(rows), rows_per_chunk):
                    stop = min(start + rows_per_chunk, len(rows))
                    logits = rows[start:stop]
                    for module in norms + heads:
                        logits = module(logits)
                    logits = logits.float()
                    target_logit = logits.gather(-1, target_column[start:stop])
                    log_normaliser = torch.logsumexp(logits, dim=-1, keepdim=True)
                    top = logits.topk(k, dim=-1)
                    ranks.append(((logits > target_logit).sum(-1, dtype=torch.int32) + 1).cpu())
                    probs.append((target_logit - log_normaliser).exp()[:, 0].cpu())
                    top_ids.append(top.indices.cpu())
                    top_probs.append((top.values - log_normaliser).exp().cpu())
                    if stop > last_layer_start:
                        first = max(start, last_layer_start)
                        difference = (logits[first - start:]
                                      - model_logits[first - last_layer_start: stop - last_layer_start])
                        max_abs_diff = max(max_abs_diff, float(difference.abs().max()))
                result = nnsight.save({
                    "ranks": torch.cat(ranks).view(n_layers, n_columns),
                    "probs": torch.cat(probs).view(n_layers, n_columns),
                    "top_ids": torch.cat(top_ids).view(n_layers, n_columns, k),
                    "top_probs": torch.cat(top_probs).view(n_layers, n_columns, k),
                    "target_ids": torch.tensor(targets), "max_abs_diff": max_abs_diff,
                })
    runner.received(result)
    return {
        "ranks": result["ranks"].numpy().astype(np.int64),
        "probs": result["probs"].numpy(),
        "top_ids": result["top_ids"].numpy().astype(np.int64),
        "top_probs": result["top_probs"].numpy(),
        "target_ids": result["target_ids"].numpy().astype(np.int64),
        "max_abs_diff": float(result["max_abs_diff"]),
    }
