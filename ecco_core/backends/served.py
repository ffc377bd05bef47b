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


def lens_layout(positions: list, diagnosed: list, n_layers: int) -> dict:
    """Where each reading of the lens finds its row among the rows a lens session unembeds.

    The session reads every position of ``positions`` (ranked, repeats
    allowed) and ``diagnosed`` once (``read``, ascending), at every layer:
    from the embeddings when anything is diagnosed, else from block 0's
    output; rows run layer by layer. ``ranked_rows`` (n_layers * n_ranked,)
    lists the rows of the blocks' outputs at ``positions``, layer by layer;
    ``diagnosed_rows`` ((n_layers + 1) * n_diagnosed,) those of every layer
    at ``diagnosed``; ``*_columns`` their indices into ``read``.
    """
    read = sorted(set(positions) | set(diagnosed))
    column = {position: index for index, position in enumerate(read)}
    first = 0 if diagnosed else 1
    ranked_columns = torch.tensor([column[position] for position in positions], dtype=torch.long)
    diagnosed_columns = torch.tensor([column[position] for position in diagnosed], dtype=torch.long)
    blocks = torch.arange(1, n_layers + 1) - first
    return {
        "read": read, "first_layer": first, "ranked_columns": ranked_columns, "diagnosed_columns": diagnosed_columns,
        "ranked_rows": (blocks[:, None] * len(read) + ranked_columns).flatten(),
        "diagnosed_rows": (torch.arange(n_layers + 1)[:, None] * len(read) + diagnosed_columns).flatten(),
    }


def lens_readings(layout: dict, model_logits, target_ids, n_layers: int, k: int) -> dict:
    """What a lens session fills chunk by chunk (:func:`lens_reduce`), and what it reads against.

    ``model_logits`` (n_read, vocab_size), float32, the model's own at
    ``layout["read"]``; ``target_ids`` the ranked targets, None for the
    model's own top prediction at each ranked position.
    """
    n_ranked, n_diagnosed = len(layout["ranked_columns"]), len(layout["diagnosed_columns"])
    final_ids = model_logits.argmax(-1)
    targets = final_ids[layout["ranked_columns"]].cpu() if target_ids is None else torch.tensor(target_ids, dtype=torch.long)
    return {
        "model_logits": model_logits, "final_ids": final_ids,
        "final_log_probs": torch.log_softmax(model_logits, dim=-1) if n_diagnosed else None,
        "target_ids": targets, "max_abs_diff": 0.0,
        "ranks": torch.zeros(n_layers * n_ranked, dtype=torch.int32),
        "probs": torch.zeros(n_layers * n_ranked), "top_ids": torch.zeros((n_layers * n_ranked, k), dtype=torch.long),
        "top_probs": torch.zeros((n_layers * n_ranked, k)),
        "kl": torch.zeros((n_layers + 1) * n_diagnosed, dtype=torch.float64),
        "agreement": torch.zeros((n_layers + 1) * n_diagnosed, dtype=torch.bool),
    }


def lens_reduce(readings: dict, layout: dict, logits, start: int, k: int) -> None:
    """Read one chunk of lens logits, rows ``start:start + len(logits)`` of ``layout``, float32, into ``readings``.

    Ranked rows: each target's rank (1 = top) and probability, the top-``k``
    (:func:`lens_rows`), and the last layer's largest difference from the
    model's own logits. Diagnosed rows: ``KL(final || lens)`` in nats,
    ``sum exp(final) * (final - lens)`` summed in float32, and whether the
    lens's top token is the model's.
    """
    stop = start + len(logits)
    rows, columns = layout["ranked_rows"], layout["ranked_columns"]
    entries = ((rows >= start) & (rows < stop)).nonzero()[:, 0]
    if len(entries):
        chunk = logits[(rows[entries] - start).to(logits.device)]
        at = columns[entries % len(columns)]
        target_column = readings["target_ids"][entries % len(columns)].to(logits.device)[:, None]
        for name, values in zip(("ranks", "probs", "top_ids", "top_probs"), lens_rows(chunk, target_column, k)):
            readings[name][entries] = values
        last = entries >= len(rows) - len(columns)
        if bool(last.any()):
            difference = chunk[last.to(logits.device)] - readings["model_logits"][at[last].to(logits.device)]
            readings["max_abs_diff"] = max(readings["max_abs_diff"], float(difference.abs().max()))
    rows, columns = layout["diagnosed_rows"], layout["diagnosed_columns"]
    entries = ((rows >= start) & (rows < stop)).nonzero()[:, 0]
    if len(entries):
        lens = torch.log_softmax(logits[(rows[entries] - start).to(logits.device)], dim=-1)
        at = columns[entries % len(columns)].to(logits.device)
        final = readings["final_log_probs"][at]
        readings["kl"][entries] = (final.exp() * (final - lens)).sum(-1).double().cpu()
        readings["agreement"][entries] = (lens.argmax(-1) == readings["final_ids"][at]).cpu()


def own_readings(readings: dict, layout: dict) -> tuple:
    """The model's own rank (1 = top) and probability, float32, of each ranked row's top-k tokens, each
    (n_layers * n_ranked, k): what candidate suggestions sort by, read off the model's logits at the row's column."""
    columns = layout["ranked_columns"]
    ranks = torch.zeros(readings["top_ids"].shape, dtype=torch.long)
    probs = torch.zeros(readings["top_ids"].shape)
    for entry in range(len(ranks)):
        logits = readings["model_logits"][int(columns[entry % len(columns)])]
        ids = readings["top_ids"][entry].to(logits.device)
        ranks[entry] = ((logits[None, :] > logits[ids][:, None]).sum(-1) + 1).cpu()
        probs[entry] = torch.softmax(logits, -1)[ids].cpu()
    return ranks, probs


def lens_result(readings: dict, layout: dict, n_layers: int, k: int) -> dict:
    """What a lens session sends back: the ranked readings (n_layers, n_ranked[, k]), the diagnosed ones
    (n_layers + 1, n_diagnosed) and the model's top token at each diagnosed position."""
    n_ranked, n_diagnosed = len(layout["ranked_columns"]), len(layout["diagnosed_columns"])
    return {
        "ranks": readings["ranks"].view(n_layers, n_ranked), "probs": readings["probs"].view(n_layers, n_ranked),
        "top_ids": readings["top_ids"].view(n_layers, n_ranked, k),
        "top_probs": readings["top_probs"].view(n_layers, n_ranked, k), "target_ids": readings["target_ids"],
        "max_abs_diff": readings["max_abs_diff"], "kl": readings["kl"].view(n_layers + 1, n_diagnosed),
        "agreement": readings["agreement"].view(n_layers + 1, n_diagnosed),
        "final_ids": readings["final_ids"][layout["diagnosed_columns"].to(readings["final_ids"].device)].cpu(),
    }


def target_scores(logits, target: str, explained_ids: list, foil_id):
    """Saliency's targets of logits (..., n_targets, vocab_size) in float64, one explained token per target
    column: its probability, log-probability or logit, minus the foil's with ``foil_id``: (..., n_targets)."""
    logits = logits.double()
    if target != "logit":
        logits = torch.softmax(logits, -1) if target == "prob" else torch.log_softmax(logits, -1)
    scores = logits
    index = torch.tensor(explained_ids, device=scores.device).expand(scores.shape[:-1])[..., None]
    values = scores.gather(-1, index)[..., 0]
    return values - scores[..., foil_id] if foil_id is not None else values


def path_scales(steps: int):
    """The points ``scale * embeddings`` where a gradient method takes its gradients, then the input itself
    (where the targets are read): integrated gradients' ``steps`` midpoints ``(j + 0.5) / steps``, float32."""
    if not steps:
        return torch.ones(1)
    return torch.cat([(torch.arange(steps, dtype=torch.float32) + 0.5) / steps, torch.ones(1)])


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


def positive_part(values) -> dict:
    """``values`` (..., width) clipped at 0, exactly and in about half the bytes when half of it is below 0.

    Returns a dict of ``mask``: one bit per entry, 1 where the entry is > 0,
    packed 8 to a uint8 (most significant bit first, the last byte padded
    with 0); ``planes``: the float32 entries > 0 in order, as 4 rows of
    bytes (byte ``i`` of every value in row ``i``: a value's high byte, its
    sign and most of its exponent, takes few values, so the response's zstd
    squeezes that row, which it cannot do with the bytes interleaved); and
    ``negatives``: how many entries of each width-long row are < 0, of shape
    ``values.shape[:-1]``. Every tensor on the CPU.
    """
    values = values.float()
    positive = (values > 0).reshape(-1)
    padded = torch.cat([positive, positive.new_zeros((-len(positive)) % 8)]).reshape(-1, 8).to(torch.uint8)
    weights = torch.tensor([128, 64, 32, 16, 8, 4, 2, 1], dtype=torch.uint8, device=padded.device)
    mask = (padded * weights).sum(-1).to(torch.uint8)
    planes = values.reshape(-1)[positive].contiguous().view(torch.uint8).reshape(-1, 4).T.contiguous()
    return {"mask": mask.cpu(), "planes": planes.cpu(), "negatives": (values < 0).sum(-1).cpu()}


def frozen_scale(kind: str, x, eps: float) -> float:
    """The final norm's scale at the residual stream ``x`` (d_model,), in float64: ``1 / sqrt(var(x) + eps)`` for
    LayerNorm (``kind`` "layer"), ``1 / sqrt(mean(x^2) + eps)`` for RMSNorm ("rms")."""
    x = x.double()
    spread = x.var(unbiased=False) if kind == "layer" else x.pow(2).mean()
    return float(1.0 / torch.sqrt(spread + eps))


def frozen_norm(kind: str, p, scale: float, weight, bias):
    """The final norm of ``p`` (..., d_model) with its scale fixed at ``scale``: an affine map of the last axis.

    LayerNorm centres ``p`` first; ``weight`` and ``bias`` (None where the norm
    has none) are the norm's own.
    """
    if kind == "layer":
        p = p - p.mean(-1, keepdim=True)
    normed = p * scale
    if weight is not None:
        normed = normed * weight
    return normed + bias if bias is not None else normed


def frozen_tail(norm: dict, p):
    """The final norm of ``p`` (..., d_model), its scale frozen, then the modules after it: an affine map.

    ``norm`` holds ``kind``, ``scale``, ``weight`` and ``bias`` as
    :func:`frozen_norm` takes them, and ``after``, the modules that follow the
    norm before the head (OPT's ``project_out``, a linear map; usually none).
    """
    normed = frozen_norm(norm["kind"], p, norm["scale"], norm["weight"], norm["bias"])
    for module in norm["after"]:
        normed = module(normed)
    return normed


def metric_direction(norm: dict, rows, head_bias, like) -> tuple:
    """The map from the residual stream at the read position to the metric, the final norm's scale frozen.

    ``rows`` (1 or 2, d_model) are the LM head's rows of the answer (and the
    foil), ``head_bias`` their biases (or 0.0); ``like`` a tensor of shape
    (d_model,) on the device and of the dtype to differentiate at. Returns
    ``(direction, constant)``: ``metric(p) = direction . p + constant`` for any
    part ``p``, direction (d_model,) float64 by ``torch.autograd.grad``, the
    constant (a float) the metric of a zero stream, the norm's and head's biases.
    """
    with torch.enable_grad():
        p = torch.zeros_like(like, requires_grad=True)
        logits = rows @ frozen_tail(norm, p) + head_bias
        value = logits[0] - logits[1] if len(rows) > 1 else logits[0]
        (direction,) = torch.autograd.grad(value, p)
    return direction.double(), float(value.detach())


def component_logits(norm: dict, vectors, vocabulary):
    """What each of ``vectors`` (n, d_model) adds to every logit, (n, vocab_size): through the frozen final norm
    without its bias (``frozen_tail(v) - frozen_tail(0)``) and the LM head's weight ``vocabulary`` (vocab_size,
    d_model), in its dtype."""
    vectors = vectors.to(vocabulary.dtype)
    return (frozen_tail(norm, vectors) - frozen_tail(norm, torch.zeros_like(vectors[:1]))) @ vocabulary.T


def component_tops(norm: dict, vectors, vocabulary, k: int, rows_per_chunk: int) -> tuple:
    """The ``k`` tokens each of ``vectors`` (n, d_model), what a component writes, raises and lowers most.

    Their logits (:func:`component_logits`) are made ``rows_per_chunk``
    vectors at a time. Returns ``(ids, logits)``, each (n, 2, k), int64 and
    float32, on the CPU: ``[:, 0]`` the raised tokens and their logits,
    ``[:, 1]`` the lowered ones (logits negative).
    """
    ids = torch.zeros((len(vectors), 2, k), dtype=torch.long)
    logits = torch.zeros((len(vectors), 2, k))
    for start in range(0, len(vectors), rows_per_chunk):
        chunk = vectors[start:start + rows_per_chunk]
        pushed = component_logits(norm, chunk, vocabulary).float()
        for side, sign in ((0, 1.0), (1, -1.0)):
            top = (sign * pushed).topk(k, dim=-1)
            ids[start:start + len(chunk), side] = top.indices.cpu()
            logits[start:start + len(chunk), side] = (sign * top.values).cpu()
    return ids, logits


def logit_parts(embedded, z, ffn_out, last, matrices, biases, direction) -> dict:
    """Direct logit attribution at the read position, from one run's reads there (see :mod:`ecco_core.circuits`).

    ``embedded`` (d_model,) is block 0's input, ``z`` (n_layers, n_heads,
    head_dim) every head's output (its block's output projection's input),
    ``ffn_out`` (n_layers, d_model) every FFN's output and ``last`` (d_model,)
    the last block's output; ``matrices[l]`` (n_heads, head_dim, d_model) each
    head's slice of block ``l``'s output projection, ``biases`` (n_layers,
    d_model) the projections' biases (0 without), ``direction`` (d_model,),
    float64, the metric's gradient through the frozen final norm and the head.
    Weights stay in their dtype (one product with the direction per block);
    the parts that must sum exactly are formed in float64.

    Returns a dict of ``embeddings`` (float), ``heads`` (n_layers, n_heads),
    ``attention_bias`` and ``ffn`` (n_layers,), float64 tensors; ``per_head``
    (n_layers, n_heads, head_dim), float64, what one unit of each head's
    output adds to the metric; ``written`` (n_layers, n_heads, d_model), what
    each head writes; and ``off``, how far the parts' sum is from ``last``,
    relative to its size.
    """
    along = direction.to(last.dtype)
    per_head = torch.stack([matrix @ along for matrix in matrices]).double()
    written = torch.stack([torch.einsum("hk,hkd->hd", z[layer], matrices[layer]) for layer in range(len(matrices))])
    residual = embedded + written.sum((0, 1)) + ffn_out.sum(0) + biases.sum(0)
    return {
        "embeddings": float(embedded.double() @ direction),
        "heads": (z.double() * per_head).sum(-1),
        "attention_bias": biases.double() @ direction,
        "ffn": ffn_out.double() @ direction,
        "per_head": per_head,
        "written": written,
        "off": float((residual - last).norm() / last.norm()),
    }


def ablated_heads(z, masks, replacement, n_heads: int):
    """An attention output projection's input ``z`` with heads replaced: where ``masks`` (batch, n_heads) is True,
    that row's head output becomes ``replacement``'s (1 or n_tokens, n_heads * head_dim), at every position.

    ``z`` is (batch, n_tokens, n_heads * head_dim), or flattened to (batch *
    n_tokens, ...) as OPT does; the result has its shape. A replacement of
    more positions than ``z`` (a run read at its last positions only) gives its last ones.
    """
    batch_z = by_token(z, len(masks)).view(len(masks), -1, n_heads, z.shape[-1] // n_heads)
    replacement = replacement[-batch_z.shape[1]:].view(1, -1, n_heads, batch_z.shape[-1])
    return torch.where(masks[:, None, :, None], replacement, batch_z).reshape(z.shape)


def ablated_ffn(out, masks, replacement):
    """An FFN's output ``out`` (batch, n_tokens, d_model), or flattened, with the rows where ``masks`` (batch,) is
    True replaced by ``replacement`` (1 or n_tokens, d_model) at every position; the result has ``out``'s shape."""
    batch = by_token(out, len(masks))
    return torch.where(masks[:, None, None], replacement[-batch.shape[1]:][None], batch).reshape(out.shape)


def answer_metric(normed, rows, bias):
    """Circuits' metric of final norm outputs (n, d_model): the answer's logit, minus the foil's with two ``rows``
    of the LM head (their ``bias``, or 0.0), in float64: (n,)."""
    logits = normed.to(rows.dtype) @ rows.T + bias
    return (logits[:, 0] - logits[:, 1] if len(rows) > 1 else logits[:, 0]).double()
