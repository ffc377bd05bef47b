"""Linear probes trained in torch alone: probing's one training loop, run here and, shipped as source, on NDIF.

:func:`ecco_core.probing.train_probes` trains with :func:`train_counts` on
this machine; a probing session (:func:`ecco_core.backends.sessions.probe_counts`)
calls the same function on the server, where the features of a whole corpus
are, so that only the test counts come back. :mod:`ecco_core.backends.sessions`
registers this module with ``nnsight.register``, so each function travels by
value with the request: torch and the standard library alone, no numpy and
nothing of this project.

Axes. The logits of all probes at once are one tensor whose axes are, in the
order of :data:`LOGIT_AXES`:

- ``representation``: a row of a feature stack (one layer's hidden state or FFN),
- ``token``: a token of the minibatch,
- ``rate``: Adam's learning rate (several are trained side by side),
- ``trial``: each trial has its own split, control task and initialisation,
- ``task``: 0 = the real UPOS tags, 1 = the control task,
- ``class``: the tag predicted.

Every smaller tensor that meets the logits (targets, per-trial loss weights,
test masks) is placed on these axes by :func:`on_axes`, by name, instead of
with bare ``None`` indices.
"""

from __future__ import annotations

import contextlib
import math
import time

import torch

#: The axes of the logits of every probe at once, in order (see the module's docstring).
LOGIT_AXES = ("representation", "token", "rate", "trial", "task", "class")
#: The axes of the test counts of every probe: how many test tokens it tags right.
ACCURACY_AXES = ("representation", "rate", "trial", "task")
#: The precisions of the feature-times-weight products, by name ("auto" picks one: :func:`product_dtype`).
PRECISIONS = {"float32": torch.float32, "bfloat16": torch.bfloat16}
#: Seconds between two progress reports within an epoch, by default: a report comes after the first minibatch past them.
REPORT_EVERY_S = 1.0


def on_axes(values, axes, *, of=LOGIT_AXES):
    """``values`` (a tensor or array whose dimensions are ``axes``, in ``of``'s order) with a
    length-1 dimension for every other axis of ``of``, ready to broadcast against a tensor on ``of``."""
    if list(axes) != [axis for axis in of if axis in axes] or len(axes) != values.ndim:
        raise ValueError(f"axes {tuple(axes)} are not {values.ndim} axes of {tuple(of)} in its order")
    sizes = iter(values.shape)
    return values.reshape(tuple(next(sizes) if axis in axes else 1 for axis in of))


def fast_bfloat16(device) -> bool:
    """Whether ``device`` multiplies bfloat16 natively."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def product_dtype(precision: str, device):
    """The dtype of the products for ``precision``, "auto" or a name of :data:`PRECISIONS` (already checked):
    "auto" takes bfloat16 where ``device`` multiplies it natively, else float32."""
    if precision == "auto":
        return torch.bfloat16 if fast_bfloat16(device) else torch.float32
    return PRECISIONS[precision]


def standardise(x, dtype):
    """``x`` (n_tokens, width), float32, each dimension scaled to mean 0 and standard deviation 1 over all
    tokens (no labels used), as ``dtype``."""
    variance, mean = torch.var_mean(x, dim=0)
    return ((x - mean) / variance.sqrt().clamp_min(1e-6)).to(dtype)


def initial_draws(shapes, keep, n_rates: int, n_outputs: int, epochs: int, n_tokens: int, seed: int) -> tuple:
    """Every random draw of a training, in one fixed order, whatever rows are trained.

    The initial weights of every rate and stack (``shapes``: (n_rows, width)
    of each, all of the training's), uniform in +-1/sqrt(width), then each
    epoch's minibatch order, from one generator seeded with ``seed``; so a
    group of rows trained on its own (``keep``: the rows of each stack it
    trains) draws what it would among all of them.

    Returns ``(initial, epoch_orders)``: ``initial[rate][stack]`` of shape
    (len(keep[stack]), width, n_outputs), float32; ``epoch_orders`` a
    permutation of the tokens per epoch.
    """
    generator = torch.Generator().manual_seed(int(seed))
    initial = []
    for _ in range(n_rates):
        per_rate = []
        for (n_rows, width), rows in zip(shapes, keep):
            drawn = (torch.rand(n_rows, width, n_outputs, generator=generator) * 2 - 1) / math.sqrt(width)
            per_rate.append(drawn if len(rows) == n_rows else drawn[torch.tensor(rows, dtype=torch.long)])
        initial.append(per_rate)
    return initial, [torch.randperm(n_tokens, generator=generator) for _ in range(epochs)]


def train_counts(features, shapes, keep, rates, train_mask, targets, n_classes: int, *, epochs: int, seed: int,
                 batch_size: int, dtype, report=None, report_every_s: float = REPORT_EVERY_S,
                 evaluating=None) -> list:
    """Train the probes of some representations; how many test tokens each tags right.

    ``shapes`` are those of every stack of the training, (n_rows, width),
    ``keep`` the rows of each trained here (none of some stacks, perhaps);
    ``features`` holds one standardised stack (:func:`standardise`) per stack
    with rows kept: those rows, of shape (len(rows), n_tokens, width),
    ``dtype``, on the device where they train. Every probe (a
    representation, a rate of ``rates``, a trial, a task) is trained by Adam
    over ``epochs`` on its trial's training tokens (``train_mask``
    (n_tokens, trials), bool) for its targets (``targets`` (n_tokens, trials,
    2), int: the real tag and the trial's control tag); all of them at once,
    one ``torch.bmm`` per stack and minibatch of ``batch_size`` tokens, their
    losses summed (each probe's gradient is its own). ``report(epochs_done)``,
    if given, is called after every epoch and about every ``report_every_s``
    within one; the final evaluation runs inside ``evaluating()``, if given
    (a context manager: the hook path's heartbeat).

    Returns, per stack, an int64 tensor on the CPU on :data:`ACCURACY_AXES`:
    the test tokens (``~train_mask``) each probe tags right.
    """
    trials = train_mask.shape[1]
    initial, epoch_orders = initial_draws(shapes, keep, len(rates), trials * 2 * n_classes, epochs,
                                          train_mask.shape[0], seed)
    initial = [[w for w, rows in zip(per_rate, keep) if len(rows)] for per_rate in initial]
    device = features[0].device
    weights = [[w.to(device).requires_grad_() for w in per_rate] for per_rate in initial]
    biases = [[torch.zeros(x.shape[0], 1, w.shape[2], device=device, requires_grad=True)
               for x, w in zip(features, per_rate)] for per_rate in initial]
    optimizer = torch.optim.Adam(
        [{"params": weights[i] + biases[i], "lr": float(rate)} for i, rate in enumerate(rates)]
    )
    parameters = [p for group in optimizer.param_groups for p in group["params"]]
    targets, train_mask = targets.to(device=device, dtype=torch.long), train_mask.to(device)
    train = train_mask.float()

    def logits(stack: int, index):
        """On the axes LOGIT_AXES: (representation, token, rate, trial, task, class)."""
        weight = torch.cat([w[stack] for w in weights], dim=2) if len(rates) > 1 else weights[0][stack]
        bias = torch.cat([b[stack] for b in biases], dim=2) if len(rates) > 1 else biases[0][stack]
        x = features[stack].index_select(1, index)
        out = torch.bmm(x, weight.to(dtype)).float() + bias
        return out.view(x.shape[0], len(index), len(rates), trials, 2, n_classes)

    picked_axes = LOGIT_AXES[:-1]  # a log-probability per probe and token: the class axis picked away
    reported = time.perf_counter()
    for epoch, order in enumerate(epoch_orders):
        minibatches = order.split(batch_size)
        for step, index in enumerate(minibatches):
            if report is not None and time.perf_counter() - reported >= report_every_s:
                report(epoch + step / len(minibatches))  # an epoch can take minutes under load
                reported = time.perf_counter()
            index = index.to(device)
            in_train = train[index]  # (token, trial)
            # Each trial's loss is the mean over its own training tokens of this minibatch.
            weight = on_axes(in_train / in_train.sum(0).clamp_min(1), ("token", "trial"), of=picked_axes)
            target = on_axes(targets[index][..., None], ("token", "trial", "task", "class"))
            loss = 0
            for stack in range(len(features)):
                log_probs = torch.log_softmax(logits(stack, index), dim=-1)
                picked = log_probs.gather(-1, target.expand(*log_probs.shape[:-1], 1))[..., 0]
                loss = loss - (picked * weight).sum()
            for parameter, gradient in zip(parameters, torch.autograd.grad(loss, parameters)):
                parameter.grad = gradient
            optimizer.step()
        if report is not None:
            report(epoch + 1)
        reported = time.perf_counter()
    with contextlib.nullcontext() if evaluating is None else evaluating():
        return test_counts(logits, len(features), targets, ~train_mask)


def test_counts(logits, n_stacks: int, targets, test) -> list:
    """Per stack, the test tokens (``test`` (n_tokens, trials), bool) each probe tags right: int64 on the CPU,
    on :data:`ACCURACY_AXES`; ``logits(stack, index)`` gives the stack's logits at the tokens ``index``."""
    picked_axes = LOGIT_AXES[:-1]
    counts = []
    with torch.no_grad():
        for stack in range(n_stacks):
            total = 0
            for index in torch.arange(test.shape[0], device=test.device).split(4096):
                predicted = logits(stack, index).argmax(-1)  # the axes of LOGIT_AXES but the class
                right = predicted == on_axes(targets[index], ("token", "trial", "task"), of=picked_axes)
                total = total + (right & on_axes(test[index], ("token", "trial"), of=picked_axes)).sum(1)
            counts.append(total.cpu())
    return counts
