"""How long an analysis takes, from its sizes and this process's pace: to announce long work before it starts.

Each function counts the work's multiply-adds, divides them by a rate
measured on the development machine (2 CPU cores shared with other jobs;
torch 2.13 CPU build, numpy with OpenBLAS on one BLAS thread for similarity
and factors; fitted with ``bench/estimates.py``, which runs each analysis for
real and prints measured over estimated time: re-run it to recalibrate
another machine) and multiplies by :func:`pace`.

Torch's work (model passes, gradients, probes) runs on torch's threads, two
on the 2 cores, and is divided by their speedup over the rates' one thread
(:func:`thread_speedup`); similarity's and the factors' numpy work runs on
one BLAS thread whatever torch's.

Every rate is at one reference: one thread running
:data:`REFERENCE_LOAD_PER_CPU` times slower than on the machine alone (pace
1). ``bench/estimates.py`` times a fixed reference workload between its cases
and compares each case with its estimate at the pace that workload measured,
so the rates of every path were fitted to that one reference whatever the
load of their runs (2026-12-07, load 13-45: each path's median
measured / estimated at the reference's pace between 0.9 and 1.1; before,
paths fitted at different loads ran at 0.5 to 1.5 of it).

The pace is how fast this process runs now. On a shared machine the same
work takes a different time with the load, as one factor for every kind of
work: similarity's cases ran at 0.74-1.49 of a fixed estimate at load 12-16
and at 0.25-0.37 at load 3-4, and no fixed rate covers both. The load cannot
be known in advance, so it is measured: the pace starts from a tenth of a
second of fixed work timed now (:func:`measured_pace`; the load average,
:func:`load_pace`, lags by a minute or more), then after each run :func:`record` takes
its measured and estimated seconds (the dashboard does, for every analysis
it runs) and the pace moves halfway, in log space, towards what that run
measured: an exponential moving average of measured / estimated over this
process's recent runs. It is the one piece of state here, shared by the
threads of the process (the app's sessions), since they share its CPUs.
Once work runs, the dashboard shows the time left from the measured
progress itself.

The counts follow the code: a model forward pass costs about one multiply-add
per parameter per token, probes cost ``3 x tokens x features x outputs`` per
epoch (forward and two backward products), SVDs ``n d min(n, d)``, a
gradient taken with respect to the input about one forward pass per explained
token (:func:`saliency_seconds`); similarity and factor methods count their
own work in their registry entries (``prepare_work`` and ``pair_work``,
``work``), so a method added as one entry is estimated too.

>>> import ecco_core as ec
>>> from ecco_core import estimates
>>> cap = ec.capture(ec.load(), "The keys to the cabinet are on the table.")
>>> seconds = estimates.factors_seconds(cap, "nmf", n_components=5)   # the same arguments as ec.factors
>>> estimates.record(seconds, 2 * seconds)   # a run took twice its estimate: the next estimates grow
"""

from __future__ import annotations

import math
import os
import statistics
import threading
import time
from typing import Sequence

import numpy as np
import torch

from . import _checks as checks
from ._blas import one_blas_thread
from . import circuits  # through the package, which makes ec.circuits callable (a plain import would not)
from .backward import plan
from .capture import DEFAULT_CHUNK_BYTES, Capture
from .factors import METHODS as FACTOR_METHODS
from .factors import default_components, fits_non_negative, matrix_shape
from .layers import EMBEDDINGS, representation_widths
from .models import LM
from .patching import DEFAULT_BATCH_BYTES
from .probing.traced import n_requests
from .tokens import encode_prompt
from .saliency import METHODS as SALIENCY_METHODS
from .saliency import Saliency, explained_positions
from .similarity import KERNELS, positions_compared
from .similarity import METHODS as SIMILARITY_METHODS
from .similarity import Options as SimilarityOptions
from .similarity import Work as SimilarityWork
from .similarity.metrics import check_keep
from .trust import PERCENTS, candidates, rationale_sizes

#: Multiply-adds per second on the development machine (see the module docstring).
CAPTURE_RATE = 3.4e9  # ec.capture: one text at a time, the LM head and its top-k at every position
#: Probing's corpus pass (batches of 32 sentences through the blocks alone), its start (the corpus read and
#: tokenised, the store made) and the probed layers written to the disk store in activations per second: fitted to
#: bench/estimates.py's five collections (300 to 2,000 words, 6 layers to all), where the size of what is stored
#: (1,000 words: 35 s for 6 layers, 50 s for all 61) and the start (300 words: 8 s) weighed more than the pass.
FORWARD_RATE = 2.9e10
COLLECTION_START_S = 9.0
STORE_RATE = 2.4e6
# Training the batched probes, fitted to 14 runs (bench/estimates.py probing; 1,000 to 3,000 words, 3 to 61
# representations, 1 to 5 trials, 1 to 8 epochs): the products (torch.bmm forward and backward, and the final
# evaluation) in multiply-adds per second; each Adam step's pass over every probe parameter in parameters per second
# (small minibatches make it the larger part: 16 tokens a step on 1,000 words); a fixed start-up.
PROBE_RATE = 8.5e9
PROBE_STEP_RATE = 3.4e7
PROBE_START_S = 1.3
# ec.saliency: the gradient methods' block-by-block vectorised backwards (is_grads_batched), and erasure's batches
# of erased copies, forward only; refitted to the reference (bench/estimates.py saliency and faithfulness: the
# gradient cases had run at 0.6, erasure's at 0.9 of the paths' common level).
GRADIENT_RATE = 6.2e9
ERASURE_RATE = 4.3e9
#: The vectorised backward's cost besides its points, in passes of the explained tokens through the blocks per chunk:
#: one point (gradient x input, 27 tokens, 20 explained) ran at 1.30 of its estimate where 20 points (integrated
#: gradients, the same text, one chunk) ran at 0.85 (bench/estimates.py, one process, load 20-33), so a chunk costs
#: about 0.6 of a pass more than its points' share, whatever their number: small batches of rows run slower.
GRADIENT_CHUNK_PASSES = 0.6
NUMPY_RATE = 2.7e9  # scikit-learn's NMF, PCA, ICA in float64, on one BLAS thread (ecco_core._blas)
#: Similarity's float64 numpy work on one BLAS thread (:mod:`ecco_core._blas`), fitted 2026-12-07 at load average
#: 8-11 to each step of similarity_matrix timed alone (bench/estimates.py's matrices: 56 to 1,145 positions of the
#: causal default, hidden states and FFN, each method's preparation and pairs): matrix products (Grams,
#: projections, the overlaps of two bases) in multiply-adds per second, symmetric eigendecompositions in
#: ``m^3 + EIG_SQUARES m^2`` per second (:data:`ecco_core.similarity.metrics.EIG_SQUARES`; ``eigh`` with vectors,
#: ``eigvalsh`` without, about 3 times faster) and element-wise passes over (n, n) Grams (centring, a dot product,
#: RBF's exp and median) in elements per second. The rates before (7e9, 6e8 per m^3, 2.8e9, 2e8), fitted to 56-545
#: positions, announced 2-6 times a run over 1,145 positions (40 UD sentences; PWCCA 219 s for 84 s at load 4).
#: Then scaled to the reference (bench/estimates.py similarity: 1.5 times slower than the paths' common level), all
#: but CALL_S: the one-passage cases, where the calls weigh most, already ran at 0.7-0.8 of the scaled estimate.
GEMM_RATE = 1.4e10
EIGH_RATE = 1.6e9
EIGVALS_RATE = 4.9e9
ELEMENT_RATE = 1.8e9
#: Exact patching's batched runs in multiply-adds per second, and its seconds besides them (the clean and corrupted
#: runs it records), fitted to bench/estimates.py patching against the reference: its time grew with the runs
#: (150 runs of the IOI example 11-13 s at the reference's pace, 900 of the Eiffel example 203 s), the start small.
PATCHING_RATE = 5.7e9
PATCHING_START_S = 0.5
#: Multiply-adds per second of circuits.verify's batched ablation passes (one thread's worth of the default's
#: blocks, rows joining at their first ablated block), fitted to bench/estimates.py verify against the reference
#: (its five cases at 0.75-2.1 of the estimate before, the longer prompts' larger batches faster).
ABLATION_RATE = 7.1e9
#: Activations per second gathered from a forward pass into numpy (similarity's pass over texts).
GATHER_RATE = 1.0e9
#: Seconds per small numpy or LAPACK call on top of its counted work (a similarity method's ``Work.calls``; CCA
#: makes one call's worth a pair, PWCCA seven: two eigendecompositions with vectors and the weights). Fitted to
#: 31 x 30 pairs of 56 positions: 0.56 s for CCA, 3.6 s for PWCCA in all. A pair cost 20 ms while the matrices ran
#: on a thread per core, which made every call wait for the other threads (an estimate of 18 s for a 0.13 s run
#: on a quiet machine).
CALL_S = 0.0005
#: Similarity's pass over pooled texts (corpus_similarity): batches of 16 texts padded to their longest, through
#: the blocks alone, in multiply-adds per token of the texts per second (scaled to the reference as the matrix
#: rates), refitted 2026-12-07 on one thread beside
#: the matrix rates: at 4.5e9 the pass ran at 0.23-0.25 of its count (10 UD sentences: 1.5 s with CKA's matrix for
#: 5.6 s counted; 40: 6.8 s for 27 s) where the same run's matrix-bound cases ran at 0.4-1.2 of theirs.
CORPUS_RATE = 6.0e9
#: Model tokens per labelled word in English (sub-words, punctuation), for corpus runs.
TOKENS_PER_WORD = 1.4
#: Universal POS tags a probe chooses from.
N_POS_TAGS = 17


#: How far one run moves the pace towards its own measured / estimated, in log space: the last run counts half,
#: the one before a quarter, and so on, so the pace follows the load within a run or two.
PACE_WEIGHT = 0.5
#: Runs shorter than this are not recorded: their time is mostly fixed costs the counts leave out.
PACE_MIN_S = 1.0
#: The pace stays within this range, whatever a run measured (a run that waited on a debugger, say).
PACE_LIMITS = (0.05, 20.0)
#: The rates' reference: one thread this many times slower than alone on the machine, as runnable tasks per CPU
#: (the load average over the CPUs, plus this process) make it, about load 8.4 on the 2 cores. The pace before any
#: run is recorded is the reference workload's slowdown now over it (:func:`measured_pace`). bench/estimates.py
#: times the workload beside its cases; at load 13-45 the load's pace (:func:`load_pace`) was 0.4-1.4 of the
#: workload's (median 0.8, hence :data:`LOAD_SLOWDOWN`), and 6 times it just after the load fell.
REFERENCE_LOAD_PER_CPU = 4.7
#: How much slower than the runnable tasks per CPU say a thread runs (:func:`load_pace`): the reference workload's
#: median over bench/estimates.py's cases at load 13-45.
LOAD_SLOWDOWN = 1.25
#: The environment variable that fixes the pace (``ECCO_PACE=1``: the rates alone, whatever the load and the runs),
#: for estimates that must not move: the tests set it, so that what they announce does not follow the machine.
PACE_VARIABLE = "ECCO_PACE"
#: The reference workload's seconds on one thread of the development machine alone (its least time over 40 runs):
#: how much slower the machine runs now is its time now over this (:func:`reference_seconds`).
REFERENCE_QUIET_S = 0.036
#: How many times faster torch's work runs on two threads than on one (torch's default on the 2 cores, the app's):
#: bench/estimates.py's torch paths run alternately on one and two threads in one process at load 15-25 (capture 2.0,
#: probe collection 1.6, the corpus pass 2.6, saliency 2.7, patching 2.8, verify 2.7, probe training 3.1); about 1.8
#: on the machine alone. The rates are one thread's, so the app, on two, ran its saliency and tracing in a third to a
#: half of the time it announced (a 506-token prompt: 80 s announced, about 40 s with its capture).
TWO_THREAD_SPEEDUP = 2.2
_pace_lock = threading.Lock()
_pace: float | None = None  # measured with the reference workload at first use
_workload: tuple | None = None


def reference_seconds() -> float:
    """The median wall time of three runs of a fixed workload like the analyses', on one BLAS thread.

    float32 products of the causal default's FFN width and float64
    products and an eigendecomposition of a few hundred rows: about
    :data:`REFERENCE_QUIET_S` on the machine alone, longer as other work
    shares its CPUs. bench/estimates.py runs it between its cases, and
    :func:`pace` once, before the first estimate.
    """
    global _workload
    if _workload is None:
        rng = np.random.default_rng(0)
        _workload = (rng.standard_normal((64, 576), dtype=np.float32),
                     rng.standard_normal((576, 1536), dtype=np.float32), rng.standard_normal((300, 200)))
    x, w, g = _workload
    times = []
    with one_blas_thread():
        for _ in range(3):
            started = time.perf_counter()
            for _ in range(20):
                x @ w
            for _ in range(3):
                np.linalg.eigh(g.T @ g)
                g @ g.T
            times.append(time.perf_counter() - started)
    return statistics.median(times)


def measured_pace() -> float:
    """The pace that :func:`reference_seconds` measures now: its slowdown over :data:`REFERENCE_LOAD_PER_CPU`, at
    least ``1 / REFERENCE_LOAD_PER_CPU`` (the machine alone).

    The load average lags: just after other jobs ended, at load average 18,
    the workload ran at 1.4-2 times its time alone where the load promised
    6.5 (bench/estimates.py: a first estimate 6 times too long). A tenth of
    a second of work on an idle machine, a second at load 40.
    """
    return _within_limits(max(1.0, reference_seconds() / REFERENCE_QUIET_S) / REFERENCE_LOAD_PER_CPU)


def load_pace() -> float:
    """The pace the machine's load average suggests (bench/estimates.py prints it beside the measured one).

    A thread's share of a CPU shrinks as the runnable tasks grow past the
    CPUs, and the work's time grows with it: on the development machine the
    same similarity cases ran at 0.25-0.37 of their estimates at load 3-4,
    about 1 at load 12-16 and 2-3.5 at load 40-48. So the first estimate
    takes ``LOAD_SLOWDOWN x (load + 1) / n_cpus`` over
    :data:`REFERENCE_LOAD_PER_CPU` (the 1-minute load average), at least
    ``1 / REFERENCE_LOAD_PER_CPU`` (a whole CPU); 1 where the load cannot be
    read.
    """
    try:
        load = os.getloadavg()[0]
    except (AttributeError, OSError):
        return 1.0
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return _within_limits(max(1.0, LOAD_SLOWDOWN * (load + 1) / cpus) / REFERENCE_LOAD_PER_CPU)


def _within_limits(value: float) -> float:
    return min(max(value, PACE_LIMITS[0]), PACE_LIMITS[1])


def pace() -> float:
    """This process's pace now: about how many times the rates' time its work takes.

    Measured with the reference workload (:func:`measured_pace`) at the first
    estimate, then from the runs (:func:`record`); fixed where
    :data:`PACE_VARIABLE` is set.
    """
    global _pace
    fixed = os.environ.get(PACE_VARIABLE)
    if fixed:
        return checks.positive(PACE_VARIABLE, float(fixed))
    with _pace_lock:
        if _pace is None:
            _pace = measured_pace()
        return _pace


def thread_speedup() -> float:
    """How many times faster than the rates' one thread torch's work runs on this process's torch threads.

    :data:`TWO_THREAD_SPEEDUP` per doubling of ``torch.get_num_threads()``
    (at most the CPUs): 1 on one thread, as bench/estimates.py fitted the
    rates, and 1 where :data:`PACE_VARIABLE` fixes the pace (the rates
    alone). Similarity's and the factors' numpy work runs on one BLAS thread
    whatever torch's threads (:mod:`ecco_core._blas`), so only torch's
    work (model passes, gradients, probes) is divided by it.
    """
    if os.environ.get(PACE_VARIABLE):
        return 1.0
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    threads = max(1, min(torch.get_num_threads(), cpus))
    return threads ** math.log2(TWO_THREAD_SPEEDUP)


def record(estimated_s: float, measured_s: float) -> float:
    """Feed one run back: its estimate (made with the pace of its start) and the seconds it took; the new pace.

    The pace moves by ``(measured_s / estimated_s) ** PACE_WEIGHT``, so an
    estimate made now is, in log space, halfway between the last run's pace
    and the earlier ones'. Runs under :data:`PACE_MIN_S` change nothing.
    """
    global _pace
    estimated_s = checks.positive("estimated_s", estimated_s)
    measured_s = checks.positive("measured_s", measured_s)
    current = pace()
    with _pace_lock:
        if measured_s >= PACE_MIN_S and not os.environ.get(PACE_VARIABLE):
            _pace = _within_limits(current * (measured_s / estimated_s) ** PACE_WEIGHT)
        return current if os.environ.get(PACE_VARIABLE) else _pace


def reset_pace(value: float | None = None) -> None:
    """Set the pace (1: the rates as measured), or with None measure it again at its next use."""
    global _pace
    value = None if value is None else checks.positive("value", value)
    with _pace_lock:
        _pace = value


def forward_multiply_adds(lm: LM) -> int:
    """Multiply-adds of one token's forward pass: about one per parameter (the LM head included)."""
    return sum(parameter.numel() for parameter in lm.model.parameters())


def capture_seconds(lm: LM, n_tokens: int) -> float:
    """Seconds of :func:`ecco_core.capture` over texts of ``n_tokens`` tokens in all."""
    return n_tokens * forward_multiply_adds(lm) / CAPTURE_RATE / thread_speedup() * pace()


def block_multiply_adds(lm: LM) -> int:
    """Multiply-adds of one token through the blocks alone: one per block parameter."""
    return sum(parameter.numel() for parameter in lm.blocks.parameters())


def patching_seconds(lm: LM, n_runs: int, n_positions: int) -> float:
    """Seconds of exact :func:`ecco_core.patch`: ``n_runs`` patched runs pushing ``n_positions`` tokens in all.

    Both from :func:`ecco_core.patching.work`. Batched runs go through the
    blocks at :data:`PATCHING_RATE` (each from its first patched position on,
    after the corrupted run's cached keys and values) and read the LM head at
    one position each; plus :data:`PATCHING_START_S`.
    """
    work = n_positions * block_multiply_adds(lm) + n_runs * lm.vocab_size * lm.d_model
    return (work / PATCHING_RATE / thread_speedup() + PATCHING_START_S) * pace()


def verify_seconds(
    lm: LM, result: circuits.Circuits, *, k: int = 10, ablation: str = "mean", corrupted: str | None = None,
    exact: bool = True, threshold: float = circuits.DEFAULT_THRESHOLD, max_batch_bytes: int = DEFAULT_BATCH_BYTES,
    progress=None,
) -> float:
    """Seconds of :func:`ecco_core.circuits.verify` with these arguments (its own; ``k``, ``ablation``,
    ``exact`` and ``threshold`` change the work).

    Its rows are batched ablated runs (every component ablated, DLA's top k,
    all but them, with routes the graph's top k and all but them, with
    ``exact`` the unablated row and one per head and FFN), each from its first
    ablated block on: :func:`ecco_core.circuits.work` counts their
    token-blocks (a row of one component runs about half the blocks), at
    :data:`ABLATION_RATE`.
    """
    token_blocks = circuits.work(lm, result, k=k, ablation=ablation, exact=exact, threshold=threshold)
    return token_blocks * block_multiply_adds(lm) / lm.n_layers / ABLATION_RATE / thread_speedup() * pace()


def saliency_seconds(
    lm: LM, cap: Capture, method: str = "grad_x_input", *, target: str = "prob", contrast_with: str | None = None,
    steps: int = 20, positions=None, max_chunk_bytes: int = DEFAULT_CHUNK_BYTES, progress=None,
) -> float:
    """Seconds of :func:`ecco_core.saliency` with these arguments (its own; ``target``, ``contrast_with`` and
    ``progress`` change nothing).

    The gradient methods run each chunk of path points (``steps`` of them for
    integrated gradients, else one) forward, twice when the backward re-runs
    segments of blocks (:func:`ecco_core.backward.plan`), take the LM head's
    forward and backward per explained token, and pull every explained token's
    gradient back through the blocks (about one forward's work each). Erasure
    runs ``n_tokens + 1`` copies of the text forward and reads every explained
    token's logits from each. Raises as :func:`ecco_core.saliency` does when
    there is nothing to explain.
    """
    n_explained = len(explained_positions(lm, cap, positions))
    return _saliency(lm, cap.n_tokens, n_explained, method, steps, max_chunk_bytes) * pace()


def _saliency(lm: LM, n_tokens: int, n_explained: int, method: str, steps: int, max_chunk_bytes: int) -> float:
    """:func:`saliency_seconds` of ``n_explained`` tokens of a text of ``n_tokens``, at the rates alone."""
    entry = SALIENCY_METHODS[checks.choice("method", method, SALIENCY_METHODS)]
    length = n_tokens - 1 if lm.is_causal else n_tokens  # up to the last read position
    blocks = block_multiply_adds(lm)
    head = lm.vocab_size * lm.d_model
    if entry.erases:
        copies = n_tokens + 1
        return copies * (n_tokens * blocks + n_explained * head) / ERASURE_RATE / thread_speedup()
    n_points = steps if entry.uses_steps else 1
    work = 0.0
    for chunk in plan(lm, length, n_points, n_explained, max_chunk_bytes):
        points = len(chunk.points)
        forwards = 1 if chunk.whole_graph else 2
        work += (points * length * blocks * (forwards + n_explained) + 3 * points * n_explained * head
                 + GRADIENT_CHUNK_PASSES * length * blocks * n_explained)
    return work / GRADIENT_RATE / thread_speedup()


def faithfulness_seconds(
    lm: LM, cap: Capture, saliencies=("grad_x_input", "gradient", "integrated_gradients", "erasure"), *,
    positions=None, percents=PERCENTS, n_random: int = 10, seed: int = 0,
    max_chunk_bytes: int = DEFAULT_CHUNK_BYTES, progress=None, **options,
) -> float:
    """Seconds of :func:`ecco_core.trust.faithfulness` with these arguments (its own).

    Each method given by name is computed for the explained tokens over the
    text up to the last of them in a causal model (a Saliency given costs
    nothing more); then, per explained token, at most one variant per order
    (methods and ``n_random`` random ones), percent and curve, plus the whole
    text, each through the blocks up to the token and the LM head once.
    """
    saliencies = [saliencies] if isinstance(saliencies, (str, Saliency)) else list(saliencies)
    if positions is None:
        given = [item for item in saliencies if isinstance(item, Saliency)]
        positions = given[0].positions if given else None
    elif isinstance(positions, int):
        positions = [positions]
    positions = explained_positions(lm, cap, positions)
    text = int(positions.max()) + 1 if lm.is_causal else cap.n_tokens
    seconds = sum(_saliency(lm, text, len(positions), name, options.get("steps", 20), max_chunk_bytes)
                  for name in saliencies if isinstance(name, str))
    for position in positions:
        length = position if lm.is_causal else cap.n_tokens
        variants = erased_variants(len(candidates(lm, cap, int(position))), len(saliencies) + n_random, percents)
        seconds += (variants * (length * block_multiply_adds(lm) + lm.vocab_size * lm.d_model) / ERASURE_RATE
                    / thread_speedup())
    return seconds * pace()


def erased_variants(n_candidates: int, n_orders: int, percents=PERCENTS) -> float:
    """About how many distinct texts :func:`ecco_core.trust.faithfulness` runs for one explained token.

    Each of ``n_orders`` orders (methods, then random ones) removes its top
    ``s`` tokens and keeps them alone (removes the other ``n - s``), for each
    size ``s`` of :func:`~ecco_core.trust.rationale_sizes`, beside the whole
    text; it runs each distinct text once. On a short prefix the sizes repeat
    and the orders' top tokens meet (of 7 candidates, 14 orders can pick only
    7 different tokens as their top one), so fewer run than ``1 + 2 x orders
    x percents`` (an estimate 4 times too long at an early position): counted
    as ``d`` draws among the ``C(n, e)`` sets of each removed size ``e``,
    whose expected number of distinct ones is ``C (1 - (1 - 1 / C) ** d)``.
    """
    draws: dict[int, int] = {}
    for size in set(rationale_sizes(n_candidates, percents).tolist()):
        for removed in (size, n_candidates - size):
            draws[removed] = draws.get(removed, 0) + n_orders
    distinct = 1.0  # the whole text (removing nothing)
    for removed, count in draws.items():
        sets = math.comb(n_candidates, removed)
        if removed:
            distinct += sets * -math.expm1(count * math.log1p(-1 / sets)) if sets > 1 else 1.0
    return distinct


def probe_width(lm: LM, layers: Sequence | None) -> int:
    """Features of all probes together: ``d_model`` per probed layer (hidden states) plus ``d_ff`` per block (FFN).

    ``layers`` as in :func:`ecco_core.probe_table`: block indices and ``"embeddings"``; None for all.
    """
    layers = [EMBEDDINGS, *range(lm.n_layers)] if layers is None else list(layers)
    blocks = sum(1 for layer in layers if layer != EMBEDDINGS)
    return len(layers) * lm.d_model + blocks * lm.d_ff


def probe_collection_seconds(
    lm: LM, corpus, *, n_tokens: int = 10_000, layers=None, batch_size: int = 32, store: str = "auto",
    progress=None,
) -> float:
    """Seconds of :func:`ecco_core.probing.collect` with these arguments (its own; only ``n_tokens`` and
    ``layers`` change the work, and ``corpus`` is not read: a shorter one takes less): a start, the corpus
    pass and storing the probed layers."""
    return _collection(lm, n_tokens, layers) * pace()


def _collection(lm: LM, n_tokens: int, layers) -> float:
    forward = TOKENS_PER_WORD * n_tokens * forward_multiply_adds(lm) / FORWARD_RATE / thread_speedup()
    return COLLECTION_START_S + forward + n_tokens * probe_width(lm, layers) / STORE_RATE


def probe_training_seconds(
    stacks: Sequence, tags: Sequence[str], words: Sequence[str], *, trials: int = 5, epochs: int = 50,
    lr: float | Sequence[float] = 1e-3, seed: int = 0, batch_size: int | None = None, precision: str = "auto",
    device="cpu", progress=None,
) -> float:
    """Seconds of :func:`ecco_core.probing.train_probes` with these arguments (its own; the stacks' shapes, the
    number of tags, ``trials``, ``epochs``, how many rates ``lr`` tries and ``batch_size`` change the work).

    Per epoch: the products (``3 x tokens x width x outputs``, width the
    features of every probe together) and one Adam step over every probe
    parameter (``width x outputs``) per minibatch; then one evaluation pass
    and a fixed start-up.
    """
    width = sum(shape[0] * shape[2] for shape in (tuple(stack.shape) for stack in stacks))
    return _training(len(tags), width, trials, epochs, _n_rates(lr), batch_size) * pace()


def _n_rates(lr) -> int:
    """Learning rates tried: train_probes trains every probe at each."""
    return 1 if np.ndim(lr) == 0 else len(lr)


def _training(n_tokens: int, width: int, trials: int, epochs: int, n_rates: int, batch_size: int | None) -> float:
    outputs = trials * 2 * N_POS_TAGS * n_rates
    batch = batch_size or min(max(n_tokens // 32, 16), 256)  # train_probes' default minibatch
    steps = -(-n_tokens // batch)
    products = (3 * epochs + 1) * n_tokens * width * outputs
    return ((products / PROBE_RATE + epochs * steps * width * outputs / PROBE_STEP_RATE) / thread_speedup()
            + PROBE_START_S)


def probing_seconds(
    lm: LM, corpus, *, n_tokens: int = 10_000, trials: int = 5, epochs: int = 50,
    lr: float | Sequence[float] = 1e-3, seed: int = 0, layers=None, store: str = "auto", progress=None,
) -> float:
    """Seconds of :func:`ecco_core.probe_table` with these arguments (its own; ``corpus`` is not read):
    :func:`probe_collection_seconds`, then :func:`probe_training_seconds` over what it collects. Through
    nnsight the corpus is run once per request (:func:`ecco_core.probing.traced.n_requests`)."""
    training = _training(n_tokens, probe_width(lm, layers), trials, epochs, _n_rates(lr), None)
    passes = n_requests(lm, n_tokens, layers) if lm.backend.traced else 1
    forward = TOKENS_PER_WORD * n_tokens * forward_multiply_adds(lm) / FORWARD_RATE / thread_speedup()
    return (_collection(lm, n_tokens, layers) + (passes - 1) * forward + training) * pace()


def similarity_seconds(
    A_list, B_list, method: str = "cka", *, kernel: str = "linear", keep: float | int = 0.99, bandwidth: float = 1.0,
    row_labels=None, column_labels=None, progress=None,
) -> float:
    """Seconds of :func:`ecco_core.similarity.similarity_matrix` with these arguments (its own; only the
    matrices' shapes are read, so a StoredArray stays on disk, and the labels and ``progress`` change nothing).

    The method's registry entry counts the work (``prepare_work`` per matrix,
    ``pair_work`` per pair: :class:`ecco_core.similarity.Work`), so a method
    added there is estimated too; here it is priced: matrix products at
    :data:`GEMM_RATE`, symmetric eigendecompositions at :data:`EIGH_RATE` /
    :data:`EIGVALS_RATE`, element-wise passes at :data:`ELEMENT_RATE`, small
    calls at :data:`CALL_S` each.
    """
    same = A_list is B_list  # similarity_matrix decomposes a list compared with itself once
    row_shapes, column_shapes = _matrix_shapes(A_list), _matrix_shapes(B_list)
    n_samples = row_shapes[0][0]
    return _similarity(n_samples, [shape[1] for shape in row_shapes], [shape[1] for shape in column_shapes],
                       method, kernel, keep, bandwidth, same) * pace()


def _matrix_shapes(matrices) -> list[tuple[int, ...]]:
    """The (n_samples, d) shape of each matrix of a sequence (a list, or a 3-D array or StoredArray), read from
    ``.shape`` alone."""
    if len(getattr(matrices, "shape", ())) == 3:
        return [tuple(matrices.shape[1:])] * matrices.shape[0]
    return [tuple(np.shape(matrix)) for matrix in matrices]


def _similarity(n_samples: int, row_widths: Sequence[int], column_widths: Sequence[int], method: str,
                kernel: str, keep, bandwidth: float, same: bool) -> float:
    """:func:`similarity_seconds` over matrices of these widths, at the rates alone."""
    entry, options = _similarity_entry(method, kernel, keep, bandwidth)
    steps = [entry.prepare_work(n_samples, d, options) for d in (*row_widths, *(() if same else column_widths))]
    steps += [entry.pair_work(n_samples, a, b, options) for a in row_widths for b in column_widths]
    return _priced(steps)


def _similarity_entry(method: str, kernel: str, keep, bandwidth: float):
    """The method's registry entry and the options it is run with, checked as the analysis checks them."""
    entry = SIMILARITY_METHODS[checks.choice("method", method, SIMILARITY_METHODS)]
    return entry, SimilarityOptions(kernel=checks.choice("kernel", kernel, KERNELS), keep=check_keep(keep),
                                    bandwidth=bandwidth)


def _priced(steps: Sequence[SimilarityWork]) -> float:
    """Seconds of these similarity steps' counted work at the rates alone."""
    products, eigh, eigvals, elements, calls = (sum(values) for values in zip(*steps))
    return (products / GEMM_RATE + eigh / EIGH_RATE + eigvals / EIGVALS_RATE + elements / ELEMENT_RATE
            + calls * CALL_S)


def corpus_seconds(lm: LM, n_tokens: int, n_kept: int) -> float:
    """Seconds of the model's passes in :func:`ecco_core.similarity.corpus_similarity` over ``n_tokens`` tokens.

    Batches through the blocks alone (no LM head) at :data:`CORPUS_RATE`,
    and ``n_kept`` activations per token (the widths of every compared
    layer together) gathered at :data:`GATHER_RATE`.
    """
    return _corpus(lm, n_tokens, n_kept) * pace()


def _corpus(lm: LM, n_tokens: int, n_kept: int) -> float:
    return n_tokens * block_multiply_adds(lm) / CORPUS_RATE / thread_speedup() + n_tokens * n_kept / GATHER_RATE


def _source_sizes(lm: LM, source, skip_special: bool, skip_first: bool) -> tuple[int, int]:
    """(tokens the model runs over, positions compared) of a comparison over ``source``: a capture (no pass) or
    texts, as :func:`ecco_core.similarity.compare_layers` reads it."""
    compared = positions_compared(lm, source, skip_special=skip_special, skip_first=skip_first)
    if isinstance(source, Capture):
        return 0, compared
    return sum(len(encode_prompt(lm, text)) for text in source), compared


def compare_layers_seconds(
    lm: LM, source, method: str = "cka", *, rows: str = "hidden", columns: str = "ffn", kernel: str = "linear",
    keep: float | int = 0.99, bandwidth: float = 1.0, skip_special: bool = True, skip_first: bool = False,
    batch_size: int = 16, store: str = "auto", progress=None,
) -> float:
    """Seconds of :func:`ecco_core.similarity.compare_layers` with these arguments (its own and the options it
    passes on to :func:`~ecco_core.similarity.layer_similarity` or
    :func:`~ecco_core.similarity.corpus_similarity`; ``batch_size``, ``store`` and ``progress`` change nothing).

    Every layer of ``rows`` against every layer of ``columns`` over the
    positions compared (:func:`similarity_seconds` at their widths); over
    texts the model's passes first, keeping both representations
    (:func:`corpus_seconds`; a capture has them already).
    """
    n_tokens, n_samples = _source_sizes(lm, source, skip_special, skip_first)
    row_widths, column_widths = representation_widths(lm, rows), representation_widths(lm, columns)
    kept = sum(row_widths) + (sum(column_widths) if columns != rows else 0)
    forward = _corpus(lm, n_tokens, kept) if n_tokens else 0.0
    matrix = _similarity(n_samples, row_widths, column_widths, method, kernel, keep, bandwidth, rows == columns)
    return (forward + matrix) * pace()


def cell_baseline_seconds(
    lm: LM, source, row: int, column: int, method: str = "cka", *, rows: str = "hidden", columns: str = "ffn",
    skip_special: bool = True, skip_first: bool = False, n_permutations: int = 100, seed: int = 0,
    kernel: str = "linear", keep: float | int = 0.99, bandwidth: float = 1.0,
) -> float:
    """Seconds of one cell's chance level: :func:`ecco_core.similarity.layer_pair` with its arguments (``lm``
    to ``skip_first``), then :func:`ecco_core.trust.permutation_baseline` of the pair with the rest.

    Each layer decomposed for the unshuffled score and once more for the
    shuffles (``prepare_work``), then ``n_permutations`` scores (and the
    unshuffled one) of one layer of ``rows`` and one of ``columns`` over the
    positions compared (``pair_work``), each shuffle permuting the second
    layer's decomposition (an (n, n) copy at most; a
    method without ``permute`` prepares it again:
    :func:`ecco_core.similarity.shuffled_scores`); over texts, the pass that
    gathers the two layers first.
    """
    n_tokens, n_samples = _source_sizes(lm, source, skip_special, skip_first)
    row_width, column_width = representation_widths(lm, rows)[0], representation_widths(lm, columns)[0]
    entry, options = _similarity_entry(method, kernel, keep, bandwidth)
    shuffle = (SimilarityWork(elements=n_samples**2, calls=1) if entry.permute is not None
               else entry.prepare_work(n_samples, column_width, options))
    decompositions = [entry.prepare_work(n_samples, row_width, options),
                      entry.prepare_work(n_samples, column_width, options)]
    steps = [*decompositions * 2,  # for the unshuffled score, then for the shuffles
             *[entry.pair_work(n_samples, row_width, column_width, options)] * (n_permutations + 1),
             *[shuffle] * n_permutations]
    forward = _corpus(lm, n_tokens, row_width + column_width) if n_tokens else 0.0
    return (_priced(steps) + forward) * pace()


def factors_seconds(
    cap: Capture, method: str = "nmf", *, n_components: int | None = None, layers=None, positions=None,
    seed: int = 0, negatives: str = "clip", fit_on: str = "auto", progress=None,
) -> float:
    """Seconds of :func:`ecco_core.factors` with these arguments (its own; ``seed``, ``fit_on`` and ``progress``
    change nothing: a fit on NDIF is estimated at this machine's pace, as every estimate there).

    The method's registry entry counts one fit's multiply-adds (``work``:
    :class:`ecco_core.factors.FactorMethod`), priced at :data:`NUMPY_RATE`,
    so a method added there is estimated too.
    """
    return _factors(cap, method, n_components, layers, positions, negatives) * pace()


def factor_quality_seconds(
    cap: Capture, methods=tuple(FACTOR_METHODS), *, seeds=(0, 1, 2), fitted=None, progress=None, **options
) -> float:
    """Seconds of :func:`ecco_core.trust.factor_quality` with these arguments: each method at each seed, but the
    ``fitted`` one (its method at the first seed)."""
    seconds = 0.0
    for method in methods:
        method_options = (options if fits_non_negative(method)
                          else {k: v for k, v in options.items() if k != "negatives"})
        fits = len(seeds) - (fitted is not None and fitted.method == method)
        seconds += fits * _factors(cap, method, method_options.get("n_components"), method_options.get("layers"),
                                   method_options.get("positions"), method_options.get("negatives", "clip"))
    return seconds * pace()


def _factors(cap: Capture, method: str, n_components, layers, positions, negatives: str) -> float:
    entry = FACTOR_METHODS[checks.choice("method", method, FACTOR_METHODS)]
    n_positions, n_neurons = matrix_shape(cap, method, layers=layers, positions=positions, negatives=negatives)
    if n_components is None:
        n_components = default_components(n_positions)
    return entry.work(n_positions, n_neurons, n_components) / NUMPY_RATE
