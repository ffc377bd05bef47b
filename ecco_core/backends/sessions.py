"""Each view written once as an nnsight session: run here, serialised as for NDIF, or on NDIF.

A session's body is shipped as source with only the plain values it names
(ints, lists, tensors of token ids), the envoys of the modules the family
table points at (:meth:`Traced.envoys`) and the torch-only functions of
:mod:`ecco_core.backends.served` it calls (shipped by value), so NDIF's
server needs nothing of this project (similarity's session, which runs the
hook path's numpy metrics there, is :mod:`ecco_core.similarity.traced`). It
reduces on the spot (top-k, ranks, effects) and saves one dict: what the view
draws, and nothing vocabulary- or activation-sized beyond what the view's
result holds. One session is one request.

The hook path stays the reference: every function here returns the same
arrays as its hook-path twin (tests compare them), and the analyses package
them with the same code.
"""

from __future__ import annotations

import nnsight
import numpy as np
import torch

from ..models import LM
from . import nmf, probes, served
from .probes import product_dtype, standardise, train_counts
from .served import (ablated_ffn, ablated_heads, add_noise, answer_metric, attribution, batch_targets, by_token,
                     component_tops, frozen_scale, lens_layout, lens_readings, lens_reduce, lens_result, logit_parts,
                     metric_direction, metric_of, next_token, output_tensor, own_readings, path_scales,
                     positive_part, readout, rows_to_run, target_scores)

nnsight.register(served)  # what a session body calls travels with the request, as source: NDIF has no ecco_core
nnsight.register(probes)
nnsight.register(nmf)


def _runner(lm: LM):
    return lm.backend


def _explaining(lm: LM, token_ids, read_positions, explained_ids) -> tuple:
    """What a saliency session starts from: (runner, the model's envoy, the embeddings' envoy, then
    ``token_ids``, ``read_positions`` and ``explained_ids`` as lists of int)."""
    runner = _runner(lm)
    ids = ([int(i) for i in values] for values in (token_ids, read_positions, explained_ids))
    return (runner, runner.envoy, runner.envoys([lm.embeddings])[0], *ids)


def _numpy(result: dict, dtypes: dict) -> dict:
    """The saved tensors named in ``dtypes`` as numpy arrays of those dtypes (None: as they came back)."""
    return {name: result[name].numpy() if dtype is None else result[name].numpy().astype(dtype, copy=False)
            for name, dtype in dtypes.items()}


def capture(lm: LM, input_ids: list[int], new_ids: list[int] | None, *, max_new_tokens: int, do_sample: bool,
            temperature: float, top_k: int | None, seed: int, eos_ids: list[int], k: int) -> dict:
    """Generate (unless ``new_ids`` is given), then read the top predictions of one pass: one session.

    Mirrors :func:`ecco_core.capture.generate` (KV cache, greedy or sampling
    from a private generator seeded with ``seed``, on the CPU) and the top-``k``
    predictions of :func:`ecco_core.capture._recorded`. Only what the capture's
    own view shows comes back: the hidden states and FFN activations stay on
    the server until an analysis reads them (:func:`activations`).

    Returns a dict of ``new_ids`` (list), ``top_ids`` and ``top_probs``
    (n_tokens, k): int64 / float32 numpy arrays.
    """
    runner = _runner(lm)
    model = runner.envoy
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
                        next_id = next_token(logits, do_sample=do_sample, temperature=temperature, top_k=top_k, generator=generator)
                        continuation.append(next_id)
                        if next_id in eos_ids:
                            break
                        step_input = torch.tensor([[next_id]], device=device)
                del cache
            token_ids = list(input_ids) + continuation
            n_tokens = len(token_ids)
            if k:
                with model.trace(torch.tensor([token_ids], device=device), use_cache=False):
                    log_probs = torch.log_softmax(model.output.logits[0].float(), dim=-1)
                    top = torch.topk(log_probs, k, dim=-1)
                    top_ids, top_probs = top.indices.cpu(), top.values.exp().cpu()
            else:
                top_ids, top_probs = torch.zeros((n_tokens, 0), dtype=torch.long), torch.zeros((n_tokens, 0))
            result = nnsight.save({"new_ids": continuation, "top_ids": top_ids, "top_probs": top_probs})
    runner.received(result)
    return {"new_ids": [int(i) for i in result["new_ids"]],
            **_numpy(result, {"top_ids": np.int64, "top_probs": np.float32})}


def activations(lm: LM, token_ids: list[int], name: str, rows: list[int], positions=None) -> np.ndarray:
    """Rows ``rows`` of a capture's ``hidden_states`` or ``ffn`` (``name``) at ``positions``, from one pass over
    ``token_ids``: one session.

    Mirrors :func:`ecco_core.capture._recorded`: ``hidden_states`` row 0 is
    block 0's input (the embedding output), row ``i + 1`` block ``i``'s output;
    ``ffn`` row ``i`` the input of block ``i``'s FFN output projection. Only
    the rows and positions (all by default) asked for come back.

    Returns an ndarray of shape (len(rows), len(positions), d_model or d_ff),
    float32, in the order of ``rows`` (which must be increasing: a pass reads
    its modules in order).
    """
    return _rows(lm, token_ids, name, rows, positions, positive=False).numpy().astype(np.float32, copy=False)


def positive_activations(lm: LM, token_ids: list[int], name: str, rows: list[int],
                         positions=None) -> tuple[np.ndarray, np.ndarray]:
    """:func:`activations` clipped at 0, and how many entries were below 0: one session, about half the bytes.

    The server sends the entries above 0 alone, float32 as they are, and a bit
    per entry saying where they go (:func:`served.positive_part`), so what comes
    back is exactly ``np.maximum(activations(...), 0)``: NMF's input when it
    clips (half a gated FFN's activations are below 0).

    Returns ``(values, negatives)``: values of shape (len(rows),
    len(positions), d_model or d_ff), float32, each entry ``max(x, 0)``, and
    negatives of shape (len(rows), len(positions)), int64, the count of
    entries ``x < 0`` of each row at each position.
    """
    encoded = _rows(lm, token_ids, name, rows, positions, positive=True)
    negatives = encoded["negatives"].numpy().astype(np.int64)
    width = lm.d_model if name == "hidden_states" else lm.d_ff
    positive = np.unpackbits(encoded["mask"].numpy(), count=negatives.size * width).astype(bool)
    values = np.zeros(positive.shape, dtype=np.float32)
    values[positive] = np.ascontiguousarray(encoded["planes"].numpy().T).view(np.float32).reshape(-1)
    return values.reshape(*negatives.shape, width), negatives


def _rows(lm: LM, token_ids, name: str, rows, positions, *, positive: bool):
    """The session of :func:`activations` (a float32 tensor comes back) and, with ``positive``, of
    :func:`positive_activations` (the dict of :func:`served.positive_part`). The pass stops once the last row
    asked for is read: the blocks after it, the final norm and the head never run."""
    runner = _runner(lm)
    model = runner.envoy
    hidden = name == "hidden_states"
    modules = runner.envoys(lm.blocks if hidden else lm.ffn_projections)
    token_ids = [int(i) for i in token_ids]
    rows = [int(i) for i in rows]
    n_tokens = len(token_ids)
    positions = list(range(n_tokens)) if positions is None else [int(i) for i in positions]
    with runner.lock, runner.errors():
        with model.session(backend=runner.request()):
            device = model.device
            keep = torch.tensor(positions, device=device)
            with model.trace(torch.tensor([token_ids], device=device), use_cache=False) as tracer:
                kept = []
                for row in rows:
                    if hidden and row == 0:
                        args, kwargs = modules[0].inputs
                        kept.append((args[0] if args else kwargs["hidden_states"])[0, keep].float())
                    elif hidden:
                        kept.append(output_tensor(modules[row - 1].output)[0, keep].float())
                    else:
                        kept.append(modules[row].input.reshape(n_tokens, -1)[keep].float())  # OPT flattens its FFN input
                tracer.stop()
            stacked = torch.stack(kept)
            result = nnsight.save(positive_part(stacked) if positive else stacked.cpu())
    runner.received(result)
    return result


def factors(lm: LM, token_ids: list[int], layers: list[int], positions: list[int], *, n_components: int,
            negatives: str, draw: np.ndarray, max_iter: int, tol: float, top_k: int, loadings: bool = False) -> dict:
    """NMF of the FFN neurons of ``layers`` at ``positions`` of one pass over ``token_ids``, fitted on the server:
    one session.

    Mirrors :func:`ecco_core.factors.factors`' NMF: the blocks' FFN inputs
    stacked side by side, clipped at 0 (``negatives="clip"``) or split into a
    positive and a negated negative part (``"split"``), then scikit-learn's
    coordinate-descent NMF from its NNDSVDa start (:func:`nmf.fit`, started from
    ``draw``), and the fit's squared sums as :func:`ecco_core.factors._fit_sums`
    takes them. Only the factors come back: each one's token activations, its
    ``top_k`` neurons by loading magnitude and their loadings; and the signed
    activations on every token of the block holding the first factor's
    strongest neuron, which the neuron view after a fit reads; with
    ``loadings``, every loading instead (a download's, not a view's). The pass
    stops once the last block is read.

    Returns a dict of ``token_activations`` (n_positions, n_components),
    ``top_columns`` (int64) and ``top_loadings`` (n_components, top_k),
    ``components`` (n_components, n_neurons) or None, float32 numpy arrays;
    ``n_iter``, ``n_negative`` (entries below 0, clipped) and ``empty``
    (nothing to factor: every entry is 0 after clipping); ``residual``,
    ``total`` and ``variance`` (float); ``strongest_block`` (int) and
    ``strongest_row`` (n_tokens, d_ff), or None with ``loadings``.
    """
    runner = _runner(lm)
    model = runner.envoy
    modules = runner.envoys(lm.ffn_projections)
    token_ids = [int(i) for i in token_ids]
    layers = [int(i) for i in layers]
    n_tokens = len(token_ids)
    keep = torch.tensor([int(i) for i in positions])
    draw = torch.from_numpy(np.asarray(draw, dtype=np.float32))
    split = negatives == "split"
    with runner.lock, runner.errors():
        with model.session(backend=runner.request()):
            device = model.device
            with model.trace(torch.tensor([token_ids], device=device), use_cache=False) as tracer:
                rows = []
                for layer in layers:
                    rows.append(modules[layer].input.reshape(n_tokens, -1).float().cpu())  # OPT flattens its FFN input
                tracer.stop()
            with torch.inference_mode():
                signed = torch.cat([row[keep] for row in rows], dim=1)
                n_negative = int((signed < 0).sum())
                matrix = torch.cat([signed.clamp_min(0), (-signed).clamp_min(0)], dim=1) if split else signed.clamp_min(0)
                empty = not bool(matrix.any())
                fitted = nmf.fit(matrix, n_components, draw, max_iter=max_iter, tol=tol) if not empty else None
                result = nmf.summary(matrix, fitted, top_k, loadings) if not empty else {}
                strongest = None if empty or loadings else int(result["top_columns"][0, 0]) % signed.shape[1] // rows[0].shape[1]
                result["strongest_block"] = None if strongest is None else layers[strongest]
                result["strongest_row"] = None if strongest is None else rows[strongest]
                result["empty"], result["n_negative"] = empty, n_negative
                result = nnsight.save(result)
    runner.received(result)
    if result["empty"]:
        return {"empty": True, "n_negative": int(result["n_negative"])}
    out = {"empty": False, "n_negative": int(result["n_negative"]), "n_iter": int(result["n_iter"]),
           **{name: float(result[name]) for name in ("residual", "total", "variance")},
           **_numpy(result, {"token_activations": np.float32, "top_columns": np.int64, "top_loadings": np.float32})}
    out["components"] = None if result["components"] is None else result["components"].numpy()
    out["strongest_block"] = result["strongest_block"]
    out["strongest_row"] = None if result["strongest_row"] is None else result["strongest_row"].numpy()
    return out


def lens(lm: LM, token_ids, positions, target_ids, *, k: int, max_chunk_bytes: int, diagnosed=(),
         own: bool = False) -> dict:
    """The logit lens at ``positions`` of one pass over ``token_ids``, reduced on the server: one session.

    Mirrors :func:`ecco_core.lens._lens` on the block outputs of the pass
    (final norm, then head, on every layer alike, in chunks of the same rows):
    the rank (1 = top) and probability of each target, each layer's top-``k``,
    and the largest difference between the last layer's logits and the
    model's own. ``target_ids`` None reads the targets as the model's own top
    prediction at each position (a masked model's masks). With ``diagnosed``
    positions it also mirrors :func:`ecco_core.trust.lens_diagnostics` there,
    from the embeddings on: ``KL(final || lens)`` and top-1 agreement, read
    off the same logits (each position is unembedded once, whatever reads it;
    chunks of a third of ``max_chunk_bytes``, as the hook path's). With
    ``own``, the model's own rank and probability of every top-``k`` token
    (:func:`ecco_core.lens.suggest_candidates`'s final columns).

    Returns a dict of ``ranks``, ``probs`` (n_layers, n_columns), ``top_ids``,
    ``top_probs`` (n_layers, n_columns, k), ``target_ids`` (n_columns,), ``kl``
    (float64), ``agreement`` (bool) (n_layers + 1, n_diagnosed), ``final_ids``
    (n_diagnosed,) as numpy arrays, ``max_abs_diff`` (float), and with ``own``
    ``own_ranks``, ``own_probs`` (n_layers, n_columns, k).
    """
    runner = _runner(lm)
    model = runner.envoy
    blocks = runner.envoys(lm.blocks)
    norms = runner.envoys(lm.final_norm)
    heads = runner.envoys(lm.head)
    token_ids = [int(i) for i in token_ids]
    positions = [int(i) for i in positions]
    diagnosed = [int(i) for i in diagnosed]
    targets = None if target_ids is None else [int(i) for i in target_ids]
    k = min(k, lm.vocab_size)
    n_layers = lm.n_layers
    rows_per_chunk = max(1, max_chunk_bytes // (3 if diagnosed else 1) // (4 * lm.vocab_size))
    with runner.lock, runner.errors():
        with model.session(backend=runner.request()):
            device = model.device
            layout = lens_layout(positions, diagnosed, n_layers)
            keep = torch.tensor(layout["read"])
            with model.trace(torch.tensor([token_ids], device=device), use_cache=False):
                layers = []
                if diagnosed:
                    args, kwargs = blocks[0].inputs
                    layers.append((args[0] if args else kwargs["hidden_states"])[0, keep.to(device)])
                for block in blocks:
                    layers.append(output_tensor(block.output)[0, keep.to(device)])
                model_logits = model.output.logits[0, keep.to(device)].float()
            with torch.inference_mode():
                readings = lens_readings(layout, model_logits, targets, n_layers, k)
                rows = torch.cat(layers)
                for start in range(0, len(rows), rows_per_chunk):
                    logits = rows[start:start + rows_per_chunk]
                    for module in norms + heads:
                        logits = module(logits)
                    lens_reduce(readings, layout, logits.float(), start, k)
                result = lens_result(readings, layout, n_layers, k)
                result["own"] = own_readings(readings, layout) if own else None
                result = nnsight.save(result)
    runner.received(result)
    mine = {} if result["own"] is None else {name: values.view(n_layers, -1, k).numpy()
                                             for name, values in zip(("own_ranks", "own_probs"), result["own"])}
    return {"max_abs_diff": float(result["max_abs_diff"]), **mine, **_numpy(result, {
        "ranks": np.int64, "probs": None, "top_ids": np.int64, "top_probs": None, "target_ids": np.int64,
        "kl": None, "agreement": None, "final_ids": np.int64})}


#: The order in which a block writes its sites: a session reads (and restores) them in this order.
_SITE_ORDER = ("attention", "ffn", "residual")


def patch(lm: LM, *, clean_ids: list[int], corrupted_ids: list[int] | None, noise: tuple | None,
          read_position: int, answer_id: int, foil_id: int, metric: str, sites: tuple[str, ...],
          patches: list, rows_per_batch: int, k: int, approximate: bool) -> dict:
    """Activation patching (or attribution patching) of ``patches``, all of it in one session.

    Mirrors :func:`ecco_core.patching.patch`'s hook path: the clean and the
    corrupted runs recorded at ``sites``; each patch that restores an
    activation that differs is one row of a batched pass over copies of the
    corrupted input, ``rows_per_batch`` rows at a time (full passes: the
    hook path starts after a cached prefix, which changes nothing but float
    rounding); the others keep the corrupted run's value. With
    ``approximate``, ``(a_clean - a_corrupted) . d metric / d a`` at the
    corrupted run, by ``torch.autograd.grad`` on the activations only.

    ``noise`` is ``(positions, scale, seed)``: Meng et al.'s Gaussian noise on
    the clean embeddings, drawn as :class:`ecco_core.patching.Noise` draws it.
    Only the metric values, top-k predictions and estimates come back.
    """
    runner = _runner(lm)
    model = runner.envoy
    order = [site for site in _SITE_ORDER if site in sites]
    site_envoys = {site: runner.envoys(lm.site_modules(site)) for site in order}
    embedding = runner.envoys([lm.embeddings])[0]
    n_layers, n_tokens = lm.n_layers, len(clean_ids)
    patches = [[(str(site), int(layer), int(position)) for site, layer, position in entry] for entry in patches]
    noise_positions, scale, seed = noise if noise is not None else ([], 0.0, 0)
    # One statement per line up to the last trace: nnsight ships a session as ast.unparse'd source and finds
    # each inner trace by its line, so a statement over several lines, a blank line or a comment above a
    # trace would move it (see tests/test_backends.py).
    with runner.lock, runner.errors():
        with model.session(backend=runner.request()):
            device = model.device
            with torch.no_grad():
                clean_embeds = embedding(torch.tensor([clean_ids], device=device))
                corrupted_embeds = clean_embeds.detach().clone() if noise is not None else embedding(torch.tensor([corrupted_ids], device=device))
                add_noise(corrupted_embeds, noise_positions, scale * float(embedding.weight.detach().float().std()), seed)
                with model.trace(inputs_embeds=clean_embeds, use_cache=False):
                    clean = {}
                    for layer in range(n_layers):
                        for site in order:
                            clean[site, layer] = output_tensor(site_envoys[site][layer].output)
                    clean_logits = model.output.logits[:, read_position].float()
            with torch.enable_grad() if approximate else torch.no_grad():
                embeds = corrupted_embeds.detach().clone().requires_grad_(approximate)
                with model.trace(inputs_embeds=embeds, use_cache=False):
                    corrupted = {}
                    for layer in range(n_layers):
                        for site in order:
                            corrupted[site, layer] = output_tensor(site_envoys[site][layer].output)
                    corrupted_logits = model.output.logits[:, read_position].float()
                corrupted_metric = metric_of(corrupted_logits, metric, answer_id, foil_id)[0]
            clean_value, corrupted_value = float(metric_of(clean_logits, metric, answer_id, foil_id)[0]), float(corrupted_metric.detach())
            clean_top = torch.softmax(clean_logits[0].detach(), -1).topk(k)
            corrupted_top = torch.softmax(corrupted_logits.detach(), -1).topk(k, dim=-1)
            values = torch.full((len(patches),), corrupted_value, dtype=torch.float64)
            top_ids = corrupted_top.indices.cpu().repeat(len(patches), 1)
            top_probs = corrupted_top.values.cpu().repeat(len(patches), 1)
            effect = abs(clean_value - corrupted_value) > 1e-9 * max(1.0, abs(clean_value))
            estimates = attribution(torch.zeros((len(sites), n_layers, n_tokens) if approximate else (0,), dtype=torch.float64), corrupted_metric, clean, corrupted, sites, effect and approximate)
            to_run = rows_to_run(patches, clean, corrupted) if effect else []
            patches_run = len(to_run)
            for start in range(0, len(to_run), rows_per_batch):
                chunk = to_run[start:start + rows_per_batch]
                with torch.no_grad():
                    with model.trace(inputs_embeds=corrupted_embeds.expand(len(chunk), -1, -1), use_cache=False):
                        for (site, layer), (rows, positions) in batch_targets(patches, chunk, order).items():
                            tensor = output_tensor(site_envoys[site][layer].output)
                            by_token(tensor, len(chunk))[rows, positions] = by_token(clean[site, layer], 1)[0, positions].to(tensor.device)
                        logits = model.output.logits[:, read_position].float()
                for part, read in zip((values, top_ids, top_probs), readout(logits, metric, answer_id, foil_id, k)):
                    part[chunk] = read
            result = nnsight.save({"clean_value": clean_value, "corrupted_value": corrupted_value, "values": values, "top_ids": top_ids, "top_probs": top_probs, "estimates": estimates, "patches_run": patches_run, "clean_top": (clean_top.indices.cpu(), clean_top.values.cpu()), "corrupted_top": (corrupted_top.indices[0].cpu(), corrupted_top.values[0].cpu())})
    runner.received(result)
    return {"clean_value": float(result["clean_value"]), "corrupted_value": float(result["corrupted_value"]),
            "patches_run": int(result["patches_run"]),
            **{name: tuple(part.numpy() for part in result[name]) for name in ("clean_top", "corrupted_top")},
            **_numpy(result, {"values": None, "top_ids": np.int64, "top_probs": None, "estimates": None})}


def input_gradients(lm: LM, token_ids, read_positions, explained_ids, *, target: str, foil_id: int | None,
                    method: str, steps: int = 20) -> dict:
    """Gradient-based saliency of every explained token, reduced on the server: one session.

    One pass over the text (up to the last read position in a causal model)
    from embeddings made there and marked as the graph's only leaf; each
    target (``target`` of the explained token at its read position, minus the
    foil's) is differentiated with ``torch.autograd.grad`` with respect to
    those embeddings. For ``"integrated_gradients"`` the leaf is a batch of
    ``steps`` points ``scale * embeddings`` (:func:`served.path_scales`, the
    hook path's midpoints) and the input itself, where the targets are read;
    the gradient is the mean over the points. Only the per-token reductions
    come back: for ``"grad_x_input"`` and ``"integrated_gradients"`` the L2
    norm and the signed sum over d_model of gradient * embedding, for
    ``"gradient"`` the gradient's L2 norm; each of shape (n_targets,
    n_tokens), float64, beside the targets' values (n_targets,).
    """
    runner, model, embedding, token_ids, read_positions, explained_ids = _explaining(
        lm, token_ids, read_positions, explained_ids)
    length = max(read_positions) + 1 if lm.is_causal else len(token_ids)
    n_points = int(steps) if method == "integrated_gradients" else 0
    with runner.lock, runner.errors():
        with model.session(backend=runner.request()):
            device = model.device
            embeddings = embedding(torch.tensor([token_ids], device=device)).detach()
            scales = path_scales(n_points).to(device=device, dtype=embeddings.dtype)
            leaf = (scales[:, None, None] * embeddings[:, :length]).requires_grad_(True)
            with torch.enable_grad():
                with model.trace(inputs_embeds=leaf, use_cache=False):
                    logits = model.output.logits[:, read_positions]
                scores = target_scores(logits, target, explained_ids, foil_id)
                path = max(1, n_points)
                gradients = []
                for column in range(len(explained_ids)):
                    gradient = torch.autograd.grad(scores[:path, column].sum(), leaf, retain_graph=True)[0]
                    gradients.append(gradient[:path].sum(0) / path)
            values = scores[-1]
            signed = method != "gradient"
            per_token = torch.zeros((len(values), len(token_ids), embeddings.shape[-1]), dtype=torch.float64)
            for row, gradient in enumerate(gradients):
                per_token[row, :length] = (gradient * embeddings[0, :length] if signed else gradient).double().cpu()
            result = nnsight.save({
                "raw": torch.linalg.vector_norm(per_token, dim=-1),
                "signed": per_token.sum(dim=-1) if signed else None,
                "values": values.detach().cpu(),
            })
    runner.received(result)
    return {
        "raw": result["raw"].numpy(), "signed": None if result["signed"] is None else result["signed"].numpy(),
        "values": result["values"].numpy(),
    }


def erased_values(lm: LM, token_ids, masks, read_positions, explained_ids, *, target: str, foil_id: int | None,
                  rows_per_batch: int) -> np.ndarray:
    """Saliency's targets with the input embeddings set to zero where ``masks`` is True, reduced on the server:
    one session.

    Mirrors the hook path's erased copies (:func:`ecco_core.saliency.target_values`
    on the embeddings, zeroed): ``masks`` (n_variants, n_tokens) bool, one
    variant a row, run ``rows_per_batch`` at a time. Only the targets come
    back: shape (n_variants, n_targets), float64.
    """
    runner, model, embedding, token_ids, read_positions, explained_ids = _explaining(
        lm, token_ids, read_positions, explained_ids)
    masks = torch.as_tensor(np.asarray(masks, dtype=bool))
    with runner.lock, runner.errors():
        with model.session(backend=runner.request()):
            device = model.device
            values = torch.zeros((len(masks), len(read_positions)), dtype=torch.float64)
            with torch.no_grad():
                embeddings = embedding(torch.tensor([token_ids], device=device))
                for start in range(0, len(masks), rows_per_batch):
                    chunk = masks[start:start + rows_per_batch].to(device)
                    copies = embeddings.repeat(len(chunk), 1, 1)
                    copies[chunk] = 0.0
                    with model.trace(inputs_embeds=copies, use_cache=False):
                        logits = model.output.logits[:, read_positions]
                    values[start:start + len(chunk)] = target_scores(logits, target, explained_ids, foil_id).cpu()
            result = nnsight.save(values)
    runner.received(result)
    return result.numpy()


def probe_counts(lm: LM, batches: list, reads: list, widths: list, n_kept: int, *, shapes: list, keep: list,
                 rates: list, train_mask, targets, n_classes: int, epochs: int, seed: int, batch_size: int,
                 precision: str) -> list:
    """Probes of a group of representations collected and trained where the model runs: one session.

    Mirrors :func:`ecco_core.probing.probe_table`'s hook path: the model runs
    over ``batches`` (:func:`ecco_core.corpus.padded_batches`' ``(ids,
    attention_mask, rows, columns, destination)``, the hook path's own
    batches), keeping at each the labelled tokens' representations that
    ``reads`` names, in the pass's order: ``(kind, index, stack, row)``, kind
    ``"embeddings"`` (block 0's input), ``"ffn"`` (the input of block
    ``index``'s FFN output projection) or ``"block"`` (block ``index``'s
    output), into row ``row`` of the group's stack ``stack`` (float32, of
    width ``widths[stack]``, ``n_kept`` tokens); each pass stops after its
    last read. Then the hook path's training, the same function
    (:func:`ecco_core.backends.probes.train_counts`, whose arguments these
    are) on the standardised stacks; ``precision`` "auto" picks the server's.

    Only the test counts come back: per stack with rows kept, an int64 array
    (len(rows), n_rates, trials, 2).
    """
    runner = _runner(lm)
    model = runner.envoy
    blocks = runner.envoys(lm.blocks)
    projections = runner.envoys(lm.ffn_projections)
    reads = [(str(kind), int(index), int(stack), int(row)) for kind, index, stack, row in reads]
    rows_kept = [len(rows) for rows in keep if len(rows)]
    with runner.lock, runner.errors():
        with model.session(backend=runner.request()):
            device = model.device
            kept = [torch.zeros((n_rows, n_kept, width), device=device) for n_rows, width in zip(rows_kept, widths)]
            with torch.no_grad():
                for ids, attention_mask, rows, columns, destination in batches:
                    with model.trace(input_ids=ids.to(device), attention_mask=attention_mask.to(device), use_cache=False) as tracer:
                        for kind, index, stack, row in reads:
                            if kind == "embeddings":
                                args, kwargs = blocks[0].inputs
                                value = args[0] if args else kwargs["hidden_states"]
                            elif kind == "ffn":
                                value = by_token(projections[index].input, len(ids))
                            else:
                                value = output_tensor(blocks[index].output)
                            kept[stack][row, destination.to(device)] = value[rows.to(value.device), columns.to(value.device)].float().to(device)
                        tracer.stop()
            dtype = product_dtype(precision, device)
            features = [torch.stack([standardise(x, dtype) for x in stack]) for stack in kept]
            del kept
            counts = train_counts(features, shapes, keep, rates, train_mask, targets, n_classes, epochs=epochs, seed=seed, batch_size=batch_size, dtype=dtype)
            result = nnsight.save(counts)
    runner.received(result)
    return [values.numpy() for values in result]


def _final_norm(lm: LM) -> tuple:
    """The final norm's kind (``FamilySpec.norm``), its epsilon, and whether it has a weight and a bias."""
    norm = lm.final_norm[0]
    kind = lm.spec.norm
    eps = float(norm.eps if kind == "layer" else norm.variance_epsilon)
    has_bias = kind == "layer" and getattr(norm, "bias", None) is not None
    return kind, eps, getattr(norm, "weight", None) is not None, has_bias


def circuits(lm: LM, token_ids, metric_ids, *, k: int, max_chunk_bytes: int) -> dict:
    """Direct logit attribution at the last of ``token_ids``, reduced on the server: one session.

    Mirrors :func:`ecco_core.circuits.circuits`' decomposition from one pass
    of the model as it is served (whatever its attention kernel): every
    head's output ``z_h`` is read at the read position as its block's
    attention output projection's input, every FFN's output as its
    projection's output, then the final norm's scale frozen there, the
    metric's direction through it and the head (``metric_ids``: the answer's
    token id, then the foil's if any; :func:`served.metric_direction`), and
    the parts (:func:`served.logit_parts`). With them, the ``k`` tokens each
    head and FFN raises and lowers most (:func:`served.component_tops`, in
    chunks of ``max_chunk_bytes`` of logits). No activation comes back.

    Returns a dict of ``embeddings``, ``final_bias``, ``value``,
    ``final_scale``, ``off`` (floats), ``heads`` (n_layers, n_heads),
    ``attention_bias``, ``ffn`` (n_layers,), float64, and ``top_ids``
    (n_components, 2, k), int64, ``top_logits`` (n_components, 2, k), float32,
    per head (block by block) then per FFN.
    """
    runner = _runner(lm)
    model = runner.envoy
    blocks = runner.envoys(lm.blocks)
    projections = runner.envoys(lm.output_projections)
    ffns = runner.envoys(lm.ffn_projections)
    norm, *after = runner.envoys(lm.final_norm)
    head = runner.envoys(lm.head)[0]
    kind, eps, norm_weighted, norm_biased = _final_norm(lm)
    linear = [isinstance(projection, torch.nn.Linear) for projection in lm.output_projections]
    biased = [getattr(projection, "bias", None) is not None for projection in lm.output_projections]
    head_biased = getattr(lm.head[0], "bias", None) is not None
    token_ids, metric_ids = [int(i) for i in token_ids], [int(i) for i in metric_ids]
    n_layers, n_heads, head_dim, d_model = lm.n_layers, lm.n_heads, lm.head_dim, lm.d_model
    k = min(int(k), lm.vocab_size)
    rows_per_chunk = max(1, int(max_chunk_bytes) // (4 * lm.vocab_size))
    with runner.lock, runner.errors():
        with model.session(backend=runner.request()):
            device = model.device
            with torch.no_grad():
                with model.trace(torch.tensor([token_ids], device=device), use_cache=False):
                    args, kwargs = blocks[0].inputs
                    embedded = (args[0] if args else kwargs["hidden_states"])[0, -1].float()
                    z, ffn_out = [], []
                    for layer in range(n_layers):
                        z.append(by_token(projections[layer].input, 1)[0, -1].float())
                        ffn_out.append(by_token(output_tensor(ffns[layer].output), 1)[0, -1].float())
                    last = norm.input[0, -1].float()
                    logits = model.output.logits[0, -1].float()
                value = float(logits[metric_ids[0]] - logits[metric_ids[1]]) if len(metric_ids) > 1 else float(logits[metric_ids[0]])
                frozen = {"kind": kind, "scale": frozen_scale(kind, last, eps), "weight": norm.weight.detach().float() if norm_weighted else None, "bias": norm.bias.detach().float() if norm_biased else None, "after": after}
                vocabulary = head.weight.detach().float()
                direction, constant = metric_direction(frozen, vocabulary[metric_ids], head.bias.detach()[metric_ids].float() if head_biased else 0.0, last)
                matrices = [(projections[layer].weight.detach().float().T if linear[layer] else projections[layer].weight.detach().float()).reshape(n_heads, head_dim, -1) for layer in range(n_layers)]
                biases = torch.stack([projections[layer].bias.detach().float() if biased[layer] else torch.zeros(d_model, device=last.device) for layer in range(n_layers)])
                ffn_out = torch.stack(ffn_out)
                parts = logit_parts(embedded, torch.stack(z).view(n_layers, n_heads, head_dim), ffn_out, last, matrices, biases, direction)
                top_ids, top_logits = component_tops(frozen, torch.cat([parts["written"].reshape(-1, d_model), ffn_out]), vocabulary, k, rows_per_chunk)
            result = nnsight.save({
                "embeddings": parts["embeddings"], "heads": parts["heads"].cpu(),
                "attention_bias": parts["attention_bias"].cpu(), "ffn": parts["ffn"].cpu(), "off": parts["off"],
                "final_bias": constant, "value": value, "final_scale": frozen["scale"],
                "top_ids": top_ids, "top_logits": top_logits,
            })
    runner.received(result)
    return {**{name: float(result[name]) for name in ("embeddings", "off", "final_bias", "value", "final_scale")},
            **_numpy(result, {"heads": np.float64, "attention_bias": np.float64, "ffn": np.float64,
                              "top_ids": np.int64, "top_logits": np.float32})}


def ablations(lm: LM, token_ids, corrupted_ids, head_masks, ffn_masks, metric_ids, *, rows_per_batch: int) -> np.ndarray:
    """Circuits' verification by ablation, reduced on the server: one session.

    Mirrors :func:`ecco_core.circuits.verify`'s hook path: the run of
    ``token_ids`` records every head's output (its block's attention output
    projection's input) and every FFN's output at every position; an ablated
    one becomes its mean over the positions, or with ``corrupted_ids`` its
    output in the run of those (the same length), position by position
    (:func:`served.ablated_heads`, :func:`served.ablated_ffn`). Each row of
    ``head_masks`` (n_rows, n_layers, n_heads) and ``ffn_masks`` (n_rows,
    n_layers), bool, True where it ablates, is one copy of the text in
    batched passes of ``rows_per_batch``, every block at every position
    (the hook path starts a row at its first ablated block, which changes
    nothing but float rounding); each pass stops at the final norm, whose
    output at the read position gives the metric (``metric_ids``: the
    answer's token id, then the foil's if any; :func:`served.answer_metric`).

    Returns the metric of each row: shape (n_rows,), float64.
    """
    runner = _runner(lm)
    model = runner.envoy
    projections = runner.envoys(lm.output_projections)
    ffns = runner.envoys(lm.ffn_projections)
    normed_by = runner.envoys(lm.final_norm)[-1]  # what the base model returns: the LM head's input
    head = runner.envoys(lm.head)[0]
    head_biased = getattr(lm.head[0], "bias", None) is not None
    head_masks = torch.as_tensor(np.asarray(head_masks, dtype=bool))
    ffn_masks = torch.as_tensor(np.asarray(ffn_masks, dtype=bool))
    runs = [[int(i) for i in token_ids]] + ([[int(i) for i in corrupted_ids]] if corrupted_ids is not None else [])
    metric_ids = [int(i) for i in metric_ids]
    n_layers, n_heads, n_rows = lm.n_layers, lm.n_heads, len(head_masks)
    with runner.lock, runner.errors():
        with model.session(backend=runner.request()):
            device = model.device
            with torch.no_grad():
                recorded = []
                for ids in runs:
                    with model.trace(torch.tensor([ids], device=device), use_cache=False) as tracer:
                        heads_out, ffn_out = [], []
                        for layer in range(n_layers):
                            heads_out.append(by_token(projections[layer].input, 1)[0])
                            ffn_out.append(by_token(output_tensor(ffns[layer].output), 1)[0])
                        tracer.stop()
                    recorded.append((heads_out, ffn_out))
                mean = len(recorded) == 1
                head_replacements = [z.mean(0, keepdim=True) if mean else z for z in recorded[-1][0]]
                ffn_replacements = [out.mean(0, keepdim=True) if mean else out for out in recorded[-1][1]]
                rows = head.weight.detach()[metric_ids]
                bias = head.bias.detach()[metric_ids] if head_biased else 0.0
                values = torch.zeros(n_rows, dtype=torch.float64)
                for start in range(0, n_rows, rows_per_batch):
                    heads_chunk = head_masks[start:start + rows_per_batch].to(device)
                    ffn_chunk = ffn_masks[start:start + rows_per_batch].to(device)
                    with model.trace(torch.tensor([runs[0]], device=device).repeat(len(heads_chunk), 1), use_cache=False) as tracer:
                        for layer in range(n_layers):
                            if bool(heads_chunk[:, layer].any()):
                                projections[layer].input = ablated_heads(projections[layer].input, heads_chunk[:, layer], head_replacements[layer], n_heads)
                            if bool(ffn_chunk[:, layer].any()):
                                ffns[layer].output = ablated_ffn(ffns[layer].output, ffn_chunk[:, layer], ffn_replacements[layer])
                        normed = output_tensor(normed_by.output)[:, -1]
                        tracer.stop()
                    values[start:start + len(heads_chunk)] = answer_metric(normed, rows, bias).cpu()
            result = nnsight.save(values)
    runner.received(result)
    return result.numpy()
