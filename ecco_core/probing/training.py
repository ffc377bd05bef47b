"""Linear softmax probes for real and control tags, every probe of every representation trained at once.

Axes. The logits of all probes at once are one tensor whose axes are, in the
order of :data:`LOGIT_AXES`:

- ``representation``: a row of a feature stack (one layer's hidden state or FFN),
- ``token``: a token of the minibatch,
- ``rate``: Adam's learning rate (several are trained side by side),
- ``trial``: each trial has its own split, control task and initialisation,
- ``task``: 0 = the real UPOS tags, 1 = the control task,
- ``class``: the tag predicted.

Every smaller tensor that meets the logits (targets, per-trial loss weights,
test masks) is placed on these axes by :func:`_on_axes`, by name, instead of
with bare ``None`` indices.
"""

from __future__ import annotations

import math
import time
import warnings
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import pandas as pd
import torch

from .. import _checks as checks
from .._heartbeat import heartbeat
from ..store import StoredArray
from ._progress import Progress, progress_bar

LEARNING_RATES = (0.1, 1e-3, 1e-5)
TEST_FRACTION = 0.33
# Fewer test tokens per trial than this give accuracies too coarse to compare (a warning says so).
MIN_TEST_TOKENS = 100

#: The axes of the logits of every probe at once, in order (see the module's docstring).
LOGIT_AXES = ("representation", "token", "rate", "trial", "task", "class")
#: The axes of the test accuracy of every probe: whether it tags each token right, summed over the test tokens.
ACCURACY_AXES = ("representation", "rate", "trial", "task")

#: Bytes of standardised features trained together when the features are on disk
#: (:class:`~ecco_core.store.StoredArray`): the representations are trained in groups this size.
STORED_GROUP_BYTES = 512 << 20
#: Seconds between two progress reports within an epoch: a report comes after the first minibatch past them.
REPORT_EVERY_S = 1.0


def _on_axes(values, axes: Sequence[str], *, of: Sequence[str] = LOGIT_AXES):
    """``values`` (a tensor or array whose dimensions are ``axes``, in ``of``'s order) with a
    length-1 dimension for every other axis of ``of``, ready to broadcast against a tensor on ``of``."""
    if list(axes) != [axis for axis in of if axis in axes] or len(axes) != values.ndim:
        raise ValueError(f"axes {tuple(axes)} are not {values.ndim} axes of {tuple(of)} in its order")
    sizes = iter(values.shape)
    return values.reshape(tuple(next(sizes) if axis in axes else 1 for axis in of))


@dataclass(frozen=True, eq=False)
class ProbeScores:
    """Test accuracies of every probe in every trial.

    Attributes
    ----------
    accuracy : ndarray of shape (n_probes, trials)
        Probes trained on the real tags.
    control_accuracy : ndarray of shape (n_probes, trials)
        Probes trained on the control task (a fixed random tag per word type).
    majority_accuracy : ndarray of shape (trials,)
        Always answering the most frequent training tag: the floor a probe
        that learnt nothing reaches.
    lr : float
        The learning rate used (the best one when several were tried).
    """

    accuracy: np.ndarray
    control_accuracy: np.ndarray
    majority_accuracy: np.ndarray
    lr: float

    @property
    def selectivity(self) -> np.ndarray:
        """``accuracy - control_accuracy``, shape (n_probes, trials)."""
        return self.accuracy - self.control_accuracy

    def to_frame(self) -> pd.DataFrame:
        """One row per probe: mean and standard deviation (over trials, ddof=0) of accuracy and selectivity."""
        return pd.DataFrame(
            {
                "probe": np.arange(len(self.accuracy)),
                "accuracy": self.accuracy.mean(1),
                "accuracy_std": self.accuracy.std(1),
                "selectivity": self.selectivity.mean(1),
                "selectivity_std": self.selectivity.std(1),
                "control_accuracy": self.control_accuracy.mean(1),
            }
        )


def control_tags(words: Sequence[str], tags: np.ndarray, n_classes: int, rng: np.random.Generator) -> np.ndarray:
    """Hewitt and Liang's control task: one fixed random tag per word type.

    Each word type (its exact form) draws a tag from the empirical tag
    distribution of ``tags``; every occurrence of the type gets that tag.

    Returns
    -------
    ndarray of shape (n_tokens,), int64
    """
    types, inverse = np.unique(np.asarray(words, dtype=object).astype(str), return_inverse=True)
    frequencies = np.bincount(tags, minlength=n_classes) / len(tags)
    return rng.choice(n_classes, size=len(types), p=frequencies)[inverse].astype(np.int64)


def _as_stack(features, argument: str, n_tokens: int):
    """A stack as a tensor, or a :class:`~ecco_core.store.StoredArray` left on disk (read row by row)."""
    if isinstance(features, StoredArray):
        array = features
    else:
        array = features if isinstance(features, torch.Tensor) else torch.from_numpy(np.asarray(features))
    if array.ndim != 3 or array.shape[1] != n_tokens:
        raise checks.invalid(f"{argument}.shape", tuple(array.shape), f"(n_representations, n_tokens={n_tokens}, width)")
    return array


def _standardised(features, rows: Sequence[int], dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """Rows ``rows`` of a stack, each dimension scaled to mean 0 and standard deviation 1 over all
    tokens (no labels used): shape (len(rows), n_tokens, width)."""
    out = torch.empty((len(rows), *features.shape[1:]), dtype=dtype, device=device)
    for position, row in enumerate(rows):
        x = features[row]
        x = (torch.from_numpy(x) if isinstance(x, np.ndarray) else x).to(device=device, dtype=torch.float32)
        variance, mean = torch.var_mean(x, dim=0)
        out[position] = ((x - mean) / variance.sqrt().clamp_min(1e-6)).to(dtype)
    return out


def _groups(stacks, dtype: torch.dtype) -> list[list[tuple[int, list[int]]]]:
    """Which representations train together: lists of (stack, its rows).

    In memory, all of them at once (one Adam step for every probe). Stacks on
    disk are read in groups of about :data:`STORED_GROUP_BYTES` of
    standardised features, so memory holds one group, never the corpus.
    """
    if not any(isinstance(stack, StoredArray) for stack in stacks):
        return [[(index, list(range(stack.shape[0]))) for index, stack in enumerate(stacks)]]
    itemsize = torch.empty((), dtype=dtype).element_size()
    groups, group, size = [], {}, 0
    for index, stack in enumerate(stacks):
        row_bytes = stack.shape[1] * stack.shape[2] * itemsize
        for row in range(stack.shape[0]):
            if group and size + row_bytes > STORED_GROUP_BYTES:
                groups.append(list(group.items()))
                group, size = {}, 0
            group.setdefault(index, []).append(row)
            size += row_bytes
    groups.append(list(group.items()))
    return groups


def _fast_bfloat16(device: torch.device) -> bool:
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def _n_test(n_tokens: int) -> int:
    """Tokens in each trial's test split."""
    return max(1, int(round(TEST_FRACTION * n_tokens)))


def small_corpus_warning(n_tokens: int) -> str | None:
    """What to tell a user probing ``n_tokens`` tokens, too few for accuracies worth comparing; else None.

    :func:`train_probes` warns with it; a table from :func:`probe_table` keeps
    its token count in ``frame.attrs["n_tokens"]`` so that a page can say it too.
    """
    n_test = _n_test(n_tokens)
    if n_test >= MIN_TEST_TOKENS:
        return None
    return (
        f"each trial tests its probes on only {n_test} of the {n_tokens} tokens, so an accuracy moves in "
        f"steps of {1 / n_test:.0%} and 1.0 or 0.0 may be chance; probe "
        f"{math.ceil((MIN_TEST_TOKENS - 0.5) / TEST_FRACTION)} tokens or more for accuracies worth comparing"
    )


PRECISIONS = {"float32": torch.float32, "bfloat16": torch.bfloat16}



def train_probes(
    stacks: Sequence[np.ndarray],
    tags: Sequence[str],
    words: Sequence[str],
    *,
    trials: int = 5,
    epochs: int = 50,
    lr: float | Sequence[float] = 1e-3,
    seed: int = 0,
    batch_size: int | None = None,
    precision: str = "auto",
    device: str | torch.device = "cpu",
    progress: Progress | None = None,
) -> ProbeScores:
    """Train linear softmax probes for real tags and control tags, all at once.

    Every representation (a row of a stack), label set (real, control) and
    trial has its own probe: a ``(width, n_classes)`` weight matrix and a
    bias. The probes of one stack form one tensor of shape
    ``(n_representations, width, trials * 2 * n_classes)``, so a minibatch
    costs one ``torch.bmm`` per stack and one Adam step updates every probe
    (their losses are summed, so each probe's gradient is its own).

    Each trial draws its own 67/33 token split and its own control task;
    tokens outside a trial's training split carry zero weight in its loss.
    Features are standardised per dimension (mean and standard deviation
    over all tokens; no labels are used), which lets one learning rate fit
    representations whose scales differ by orders of magnitude (Llama-style
    hidden states have a few huge dimensions).

    Parameters
    ----------
    stacks : sequence of array or StoredArray of shape (n_representations, n_tokens, width)
        Features; the widths of different stacks may differ. Stacks on disk
        (:class:`~ecco_core.store.StoredArray`, from ``collect(store="disk")``)
        are read a group of representations at a time (about
        :data:`STORED_GROUP_BYTES` of standardised features), each group
        trained on its own with the same draws (initial weights, minibatch
        order) as if all were trained at once.
    tags : sequence of str, length n_tokens
    words : sequence of str, length n_tokens
        The word of each token, for the control task.
    trials : int, default 5
    epochs : int, default 50
    lr : float or sequence of float, default 1e-3
        Adam's learning rate. Given several (the paper tried
        ``LEARNING_RATES`` = 0.1, 1e-3 and 1e-5), all are trained together and
        the one with the best mean real-tag test accuracy is kept, as in the
        paper (choosing on the test split flatters the result slightly).
    seed : int, default 0
    batch_size : int, optional
        Tokens per Adam step; by default ``n_tokens // 32`` clipped to 16..256,
        so that small corpora still get at least 32 steps per epoch.
    precision : {"auto", "float32", "bfloat16"}, default "auto"
        Precision of the feature-times-weight products; parameters, softmax
        and Adam stay float32. ``"auto"`` takes bfloat16 where the hardware
        multiplies it natively (about twice as fast on such CPUs; the
        standardised features keep 3 significant digits), else float32.
    device : str or torch.device, default "cpu"
        Where to train, e.g. ``"cuda"``.
    progress : callable(fraction, message), optional
        Called after every epoch; a tqdm bar by default.

    Returns
    -------
    ProbeScores
        Rows follow the stacks' rows, stack after stack.
    """
    n_tokens = len(tags)
    if len(words) != n_tokens:
        raise checks.invalid("len(words)", len(words), f"{n_tokens}, one word per tag")
    if n_tokens < 3:
        raise checks.invalid("len(tags)", n_tokens, "at least 3 tokens (to split into train and test)")
    trials = checks.whole("trials", trials, low=1)
    epochs = checks.whole("epochs", epochs, low=1)
    if batch_size is None:
        batch_size = int(np.clip(n_tokens // 32, 16, 256))
    batch_size = checks.whole("batch_size", batch_size, low=1)
    rates = _learning_rates(lr)
    device = torch.device(device)
    dtype = _product_dtype(precision, device)
    stacks = [_as_stack(stack, f"stacks[{i}]", n_tokens) for i, stack in enumerate(stacks)]
    stacks = [stack for stack in stacks if stack.shape[0]]
    if not stacks:
        raise checks.invalid("stacks", "no representation", "at least one stack of features")

    classes, real = np.unique(np.asarray(tags, dtype=object).astype(str), return_inverse=True)
    if (coarse := small_corpus_warning(n_tokens)) is not None:
        warnings.warn(coarse, stacklevel=2)
    train_mask, targets = _trial_tasks(real, words, len(classes), trials, np.random.default_rng(seed))
    correct = _trained_hits(stacks, rates, train_mask, targets, len(classes), epochs=epochs, seed=seed,
                            batch_size=batch_size, dtype=dtype, device=device, progress=progress)
    accuracy = _test_accuracy(correct, train_mask)
    # The rate whose real-tag probes (task 0) do best on average over representations and trials.
    best = int(np.argmax(accuracy[..., 0].mean(axis=(ACCURACY_AXES.index("representation"),
                                                      ACCURACY_AXES.index("trial")))))
    return ProbeScores(
        accuracy=accuracy[:, best, :, 0],
        control_accuracy=accuracy[:, best, :, 1],
        majority_accuracy=_majority_accuracy(real, train_mask, len(classes)),
        lr=float(rates[best]),
    )


def _learning_rates(lr) -> list[float]:
    """:func:`train_probes`' ``lr`` as a non-empty list of positive rates."""
    rates = [lr] if np.isscalar(lr) else list(lr)
    if not rates:
        raise checks.invalid("lr", lr, f"a positive number or a sequence of them (e.g. {LEARNING_RATES})")
    return [checks.positive("lr", rate) for rate in rates]


def _product_dtype(precision: str, device: torch.device) -> torch.dtype:
    """The dtype of the feature-times-weight products for ``precision`` ("auto": bfloat16 where it is fast)."""
    precision = checks.choice("precision", precision, ["auto", *PRECISIONS])
    if precision == "auto":
        return torch.bfloat16 if _fast_bfloat16(device) else torch.float32
    return PRECISIONS[precision]


def _trial_tasks(real: np.ndarray, words: Sequence[str], n_classes: int, trials: int,
                 rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Each trial's 67/33 split and its two tasks, drawn from ``rng`` trial after trial.

    Returns ``train_mask`` of shape (n_tokens, trials), True for a training
    token, and ``targets`` of shape (n_tokens, trials, 2): the real tag and the
    trial's control tag of every token.
    """
    n_tokens = len(real)
    n_test = _n_test(n_tokens)
    train_mask = np.ones((n_tokens, trials), dtype=bool)  # axes (token, trial)
    targets = np.empty((n_tokens, trials, 2), dtype=np.int64)  # axes (token, trial, task)
    for trial in range(trials):
        train_mask[rng.permutation(n_tokens)[:n_test], trial] = False
        targets[:, trial, 0] = real
        targets[:, trial, 1] = control_tags(words, real, n_classes, rng)
    return train_mask, targets


def _majority_accuracy(real: np.ndarray, train_mask: np.ndarray, n_classes: int) -> np.ndarray:
    """Test accuracy of always answering each trial's most frequent training tag, shape (trials,)."""
    return np.array([
        np.mean(real[~train_mask[:, t]] == np.bincount(real[train_mask[:, t]], minlength=n_classes).argmax())
        for t in range(train_mask.shape[1])
    ])


def _trained_hits(stacks: list, rates: list[float], train_mask: np.ndarray, targets: np.ndarray, n_classes: int,
                  *, epochs: int, seed: int, batch_size: int, dtype: torch.dtype, device: torch.device,
                  progress: Progress | None) -> np.ndarray:
    """Train every probe, a group of representations at a time; whether each tags each token right.

    Returns a bool array of shape (n_representations, n_tokens, n_rates,
    trials, 2), the representations of all stacks one after the other.
    """
    n_tokens, trials = train_mask.shape
    # Every random draw comes first, in one fixed order (initial weights per rate and stack, then
    # each epoch's minibatch order), so that training the representations in groups draws the same.
    generator = torch.Generator().manual_seed(seed)
    n_outputs = trials * 2 * n_classes  # the (trial, task, class) axes of one probe stack, flattened
    initial = [
        [(torch.rand(stack.shape[0], stack.shape[2], n_outputs, generator=generator) * 2 - 1) / np.sqrt(stack.shape[2])
         for stack in stacks]
        for _ in rates
    ]
    epoch_orders = [torch.randperm(n_tokens, generator=generator) for _ in range(epochs)]
    targets_t = torch.from_numpy(targets).to(device)
    train_t = torch.from_numpy(train_mask).float().to(device)

    groups = _groups(stacks, dtype)
    first_row = np.cumsum([0] + [stack.shape[0] for stack in stacks])
    # axes (representation, token, rate, trial, task): whether each probe tags each token right
    correct = np.zeros((first_row[-1], n_tokens, len(rates), trials, 2), dtype=bool)
    update, close = progress_bar(progress)
    try:
        for number, group in enumerate(groups):
            def report(epochs_done: float) -> None:
                fraction = (number * epochs + epochs_done) / (len(groups) * epochs)
                message = f"training probes, epoch {min(int(epochs_done) + 1, epochs)} of {epochs}"
                update(fraction, message if len(groups) == 1 else f"{message}, group {number + 1} of {len(groups)}")

            # Reading and scaling a group (hundreds of MiB from disk) and its final evaluation report no steps of
            # their own: the heartbeat reports while they run (8 s without a report for 1,000 words of every layer).
            with heartbeat(update, number / len(groups), f"standardising features, group {number + 1} of "
                           f"{len(groups)}" if len(groups) > 1 else "standardising features"):
                features = [_standardised(stacks[stack], rows, dtype, device) for stack, rows in group]
            hits = _train_group(
                features,
                [[initial[rate][stack][rows] for stack, rows in group] for rate in range(len(rates))],
                rates, epoch_orders, targets_t, train_t, batch_size, trials, n_classes, dtype, report,
            )
            for (stack, rows), stack_hits in zip(group, hits):
                correct[first_row[stack] + np.asarray(rows)] = stack_hits
    finally:
        close()
    return correct


def _test_accuracy(correct: np.ndarray, train_mask: np.ndarray) -> np.ndarray:
    """Each probe's accuracy on its trial's test tokens, on :data:`ACCURACY_AXES`."""
    test = ~train_mask
    return (correct * _on_axes(test, ("token", "trial"), of=LOGIT_AXES[:-1])).sum(1) / _on_axes(
        test.sum(0), ("trial",), of=ACCURACY_AXES
    )


def _train_group(features, initial, rates, epoch_orders, targets_t, train_t, batch_size, trials, n_classes,
                 dtype, report) -> list[np.ndarray]:
    """Train the probes of some representations (``features``: one standardised stack each).

    ``initial[rate][stack]`` holds their initial weights; returns, per stack,
    whether each probe tags each token right: a bool array on the axes
    (representation, token, rate, trial, task).
    """
    device = features[0].device
    weights = [[w.to(device).requires_grad_() for w in per_rate] for per_rate in initial]
    biases = [[torch.zeros(x.shape[0], 1, w.shape[2], device=device, requires_grad=True)
               for x, w in zip(features, per_rate)] for per_rate in initial]
    optimizer = torch.optim.Adam(
        [{"params": weights[i] + biases[i], "lr": float(rate)} for i, rate in enumerate(rates)]
    )
    parameters = [p for group in optimizer.param_groups for p in group["params"]]
    n_tokens = features[0].shape[1]

    def logits(stack: int, index: torch.Tensor) -> torch.Tensor:
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
            if time.perf_counter() - reported >= REPORT_EVERY_S:  # an epoch can take minutes under load
                report(epoch + step / len(minibatches))
                reported = time.perf_counter()
            index = index.to(device)
            in_train = train_t[index]  # (token, trial)
            # Each trial's loss is the mean over its own training tokens of this minibatch.
            weight = _on_axes(in_train / in_train.sum(0).clamp_min(1), ("token", "trial"), of=picked_axes)
            target = _on_axes(targets_t[index][..., None], ("token", "trial", "task", "class"))
            loss = 0
            for stack in range(len(features)):
                log_probs = torch.log_softmax(logits(stack, index), dim=-1)
                picked = log_probs.gather(-1, target.expand(*log_probs.shape[:-1], 1))[..., 0]
                loss = loss - (picked * weight).sum()
            for parameter, gradient in zip(parameters, torch.autograd.grad(loss, parameters)):
                parameter.grad = gradient
            optimizer.step()
        report(epoch + 1)
        reported = time.perf_counter()

    hits = []
    with torch.no_grad(), heartbeat(lambda fraction, message: report(len(epoch_orders)), 1.0, ""):
        for stack in range(len(features)):
            per_batch = []
            for index in torch.arange(n_tokens, device=device).split(4096):
                predicted = logits(stack, index).argmax(-1)  # the axes of LOGIT_AXES but the class
                target = _on_axes(targets_t[index], ("token", "trial", "task"), of=picked_axes)
                per_batch.append((predicted == target).cpu().numpy())
            hits.append(np.concatenate(per_batch, axis=1))
    return hits
