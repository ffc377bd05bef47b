"""Linear softmax probes for real and control tags, every probe of every representation trained at once.

The training itself (the draws, Adam, the test counts) is
:func:`ecco_core.backends.probes.train_counts`, in torch alone so that a
probing session on NDIF runs the very same function where the features are
(:func:`ecco_core.probing.probe_table` through nnsight). Here: the checks,
each trial's split and control task (:func:`plan_training`), the features
read and standardised a group at a time, and the scores. The axes of the
probes' tensors are named in :data:`LOGIT_AXES` (that module's docstring).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import pandas as pd
import torch

from .. import _checks as checks
from .._heartbeat import heartbeat
from ..backends.probes import ACCURACY_AXES, LOGIT_AXES, PRECISIONS, on_axes, product_dtype, standardise, train_counts
from ..store import StoredArray
from ._progress import Progress, progress_bar

LEARNING_RATES = (0.1, 1e-3, 1e-5)
TEST_FRACTION = 0.33
# Fewer test tokens per trial than this give accuracies too coarse to compare (a warning says so).
MIN_TEST_TOKENS = 100

#: Bytes of standardised features trained together when the features are on disk
#: (:class:`~ecco_core.store.StoredArray`): the representations are trained in groups this size.
STORED_GROUP_BYTES = 512 << 20
#: Seconds between two progress reports within an epoch: a report comes after the first minibatch past them.
REPORT_EVERY_S = 1.0


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
    """Rows ``rows`` of a stack, each standardised (:func:`~ecco_core.backends.probes.standardise`):
    shape (len(rows), n_tokens, width)."""
    out = torch.empty((len(rows), *features.shape[1:]), dtype=dtype, device=device)
    for position, row in enumerate(rows):
        x = features[row]
        out[position] = standardise(
            (torch.from_numpy(x) if isinstance(x, np.ndarray) else x).to(device=device, dtype=torch.float32), dtype)
    return out


def group_rows(shapes, limit_bytes: int, itemsize: int) -> list[list[tuple[int, list[int]]]]:
    """The rows of stacks of ``shapes`` (n_rows, n_tokens, width) in groups of at most ``limit_bytes`` of
    ``itemsize`` values each (a row alone may be more): lists of (stack, its rows), in order."""
    groups, group, size = [], {}, 0
    for index, (n_rows, n_tokens, width) in enumerate(shapes):
        row_bytes = n_tokens * width * itemsize
        for row in range(n_rows):
            if group and size + row_bytes > limit_bytes:
                groups.append(list(group.items()))
                group, size = {}, 0
            group.setdefault(index, []).append(row)
            size += row_bytes
    groups.append(list(group.items()))
    return groups


def _groups(stacks, dtype: torch.dtype) -> list[list[tuple[int, list[int]]]]:
    """Which representations train together: lists of (stack, its rows).

    In memory, all of them at once (one Adam step for every probe). Stacks on
    disk are read in groups of about :data:`STORED_GROUP_BYTES` of
    standardised features, so memory holds one group, never the corpus.
    """
    if not any(isinstance(stack, StoredArray) for stack in stacks):
        return [[(index, list(range(stack.shape[0]))) for index, stack in enumerate(stacks)]]
    itemsize = torch.empty((), dtype=dtype).element_size()
    return group_rows([tuple(stack.shape) for stack in stacks], STORED_GROUP_BYTES, itemsize)


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


@dataclass(frozen=True, eq=False)
class TrainingPlan:
    """What a training needs beside the features, checked, and each trial's draws (:func:`plan_training`).

    Attributes
    ----------
    trials, epochs, batch_size, seed : int
    rates : list of float
    classes : ndarray of shape (n_classes,)
        The tags, sorted.
    real : ndarray of shape (n_tokens,), int64
        Each token's tag, as an index into ``classes``.
    train_mask : ndarray of shape (n_tokens, trials), bool
        True for a token of the trial's training split.
    targets : ndarray of shape (n_tokens, trials, 2), int64
        The real tag and the trial's control tag of every token.
    """

    trials: int
    epochs: int
    batch_size: int
    seed: int
    rates: list
    classes: np.ndarray
    real: np.ndarray
    train_mask: np.ndarray
    targets: np.ndarray

    def scores(self, counts: np.ndarray) -> ProbeScores:
        """The scores from each probe's test tokens tagged right, ``counts`` on ``ACCURACY_AXES``."""
        test = ~self.train_mask
        accuracy = counts / on_axes(test.sum(0), ("trial",), of=ACCURACY_AXES)
        # The rate whose real-tag probes (task 0) do best on average over representations and trials.
        best = int(np.argmax(accuracy[..., 0].mean(axis=(ACCURACY_AXES.index("representation"),
                                                          ACCURACY_AXES.index("trial")))))
        return ProbeScores(
            accuracy=accuracy[:, best, :, 0],
            control_accuracy=accuracy[:, best, :, 1],
            majority_accuracy=_majority_accuracy(self.real, self.train_mask, len(self.classes)),
            lr=float(self.rates[best]),
        )


def plan_training(tags: Sequence[str], words: Sequence[str], *, trials: int = 5, epochs: int = 50,
                  lr: float | Sequence[float] = 1e-3, seed: int = 0, batch_size: int | None = None) -> TrainingPlan:
    """:func:`train_probes`' arguments checked, and each trial's split and control task drawn from ``seed``
    (a warning when the corpus is too small for accuracies worth comparing)."""
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
    classes, real = np.unique(np.asarray(tags, dtype=object).astype(str), return_inverse=True)
    if (coarse := small_corpus_warning(n_tokens)) is not None:
        warnings.warn(coarse, stacklevel=3)
    train_mask, targets = _trial_tasks(real, words, len(classes), trials, np.random.default_rng(seed))
    return TrainingPlan(trials=trials, epochs=epochs, batch_size=batch_size, seed=int(seed), rates=rates,
                        classes=classes, real=real, train_mask=train_mask, targets=targets)


def check_precision(precision: str) -> str:
    """``precision`` if it is "auto" or a name of :data:`PRECISIONS`, else a ValueError naming them."""
    return checks.choice("precision", precision, ["auto", *PRECISIONS])


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
    plan = plan_training(tags, words, trials=trials, epochs=epochs, lr=lr, seed=seed, batch_size=batch_size)
    device = torch.device(device)
    dtype = product_dtype(check_precision(precision), device)
    stacks = [_as_stack(stack, f"stacks[{i}]", len(tags)) for i, stack in enumerate(stacks)]
    stacks = [stack for stack in stacks if stack.shape[0]]
    if not stacks:
        raise checks.invalid("stacks", "no representation", "at least one stack of features")
    return plan.scores(_trained_counts(stacks, plan, dtype=dtype, device=device, progress=progress))


def _learning_rates(lr) -> list[float]:
    """:func:`train_probes`' ``lr`` as a non-empty list of positive rates."""
    rates = [lr] if np.isscalar(lr) else list(lr)
    if not rates:
        raise checks.invalid("lr", lr, f"a positive number or a sequence of them (e.g. {LEARNING_RATES})")
    return [checks.positive("lr", rate) for rate in rates]


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


def _trained_counts(stacks: list, plan: TrainingPlan, *, dtype: torch.dtype, device: torch.device,
                    progress: Progress | None) -> np.ndarray:
    """Train every probe, a group of representations at a time (:func:`_groups`), with
    :func:`~ecco_core.backends.probes.train_counts`: the test tokens each tags right.

    Returns an int64 array on ``ACCURACY_AXES`` (n_representations, n_rates,
    trials, 2), the representations of all stacks one after the other.
    """
    groups = _groups(stacks, dtype)
    shapes = [(stack.shape[0], stack.shape[2]) for stack in stacks]
    first_row = np.cumsum([0] + [stack.shape[0] for stack in stacks])
    counts = np.zeros((first_row[-1], len(plan.rates), plan.trials, 2), dtype=np.int64)
    train_mask, targets = torch.from_numpy(plan.train_mask), torch.from_numpy(plan.targets)
    update, close = progress_bar(progress)
    try:
        for number, group in enumerate(groups):
            def report(epochs_done: float) -> None:
                fraction = (number * plan.epochs + epochs_done) / (len(groups) * plan.epochs)
                message = f"training probes, epoch {min(int(epochs_done) + 1, plan.epochs)} of {plan.epochs}"
                update(fraction, message if len(groups) == 1 else f"{message}, group {number + 1} of {len(groups)}")

            keep = [dict(group).get(stack, []) for stack in range(len(stacks))]
            trained = [stack for stack in range(len(stacks)) if keep[stack]]
            # Reading and scaling a group (hundreds of MiB from disk) and its final evaluation report no steps of
            # their own: the heartbeat reports while they run (8 s without a report for 1,000 words of every layer).
            with heartbeat(update, number / len(groups), f"standardising features, group {number + 1} of "
                           f"{len(groups)}" if len(groups) > 1 else "standardising features"):
                features = [_standardised(stacks[stack], keep[stack], dtype, device) for stack in trained]
            stack_counts = train_counts(
                features, shapes, keep, plan.rates, train_mask, targets, len(plan.classes), epochs=plan.epochs,
                seed=plan.seed, batch_size=plan.batch_size, dtype=dtype, report=report, report_every_s=REPORT_EVERY_S,
                evaluating=lambda: heartbeat(lambda fraction, message: report(plan.epochs), 1.0, ""),
            )
            for stack, values in zip(trained, stack_counts):
                counts[first_row[stack] + np.asarray(keep[stack])] = values.numpy()
    finally:
        close()
    return counts
