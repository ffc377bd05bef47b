"""Peak memory of a real ``streamlit run app.py`` server: 4 concurrent sessions at the deployment's limits.

The server is a subprocess with the default deployment's settings
(``dashboard/settings.py``): prompts of ``MAX_PROMPT_TOKENS`` (512) tokens of
real text (UD English EWT) and a given answer of ``MAX_NEW_TOKENS`` (64)
tokens, the largest capture a visitor can ask for (an answer, not generation,
so an early end-of-text cannot make it smaller). Four headless Chromium
sessions, each with its own prompt, open every page, step after step, in one
of three orders, each on a fresh server:

- ``together``: every session opens the same page at once (Home, Layer
  predictions, Attention, Similarity, Neuron factors, Probing, Causal
  tracing, Circuits, Saliency), so the heaviest runs come last, once every
  cache is full, two of them at once (the server runs at most
  ``MAX_CONCURRENT_RUNS`` at a time);
- ``apart``: at each step every session is on a different page (session ``s``
  opens page ``step + s`` of that list), so different analyses run at once,
  the mix a crowd of visitors makes;
- ``encoder``: every session first opens Home with the packaged encoder
  (``ec.DEFAULT_ENCODER``, which the server does not preload) and as much of
  its prompt as the encoder takes, then the ``together`` steps: the server
  then holds both allowed models, their weights paged in by a run, and the
  encoder's captures beside the default's, the most a deployment keeps
  resident while the heaviest runs go.

The peak is what stays resident (the models, the shared captures and results,
each session's state) plus what the runs admitted at once hold while they
run, so these orders, the heaviest runs together once everything is cached
(with one model or both) and every mix of analyses, are where it peaks
highest. Probing runs from a link with its run flag (``probe_ran=true``),
each session with its own settings so that the runs are not shared: the
quick preset (2,000 words, the embeddings and 8 blocks, one trial, 20
epochs) less 10 words per session;
``paper`` as the third argument runs the paper's protocol instead (10,000
words, every layer, 5 trials, 50 epochs: hours on 2 cores for the causal
default). Causal tracing and Circuits have prompts of their own: each
session's prompt as the clean one, a corrupted prompt of the same number of
tokens (its last token replaced, :func:`own_prompts`: exact tracing's
batches that peak highest, 90 of them), the next word of its text as the
answer and a foil, so exact activation patching (then its
approximation beside it) and Circuits' *Verify by patching* (its run flag
``circuits-verify=true``, every part alone too) run at the longest prompts
these pages accept. The peak is the server's resident set as the kernel
records it (Linux ``VmHWM``, reset at each step), so no spike between
samples is missed.

    python bench/memory.py [sessions] [seconds allowed per step] [quick|paper] [all|together,apart,encoder] [pages]

``pages``, comma-separated file names (``Home.py,6_Causal_tracing.py``),
runs those steps alone, in the order above: to measure a few pages at once
on a busy machine.

Lines: the idle server after its preload (the baseline, measured in each
order), the peak during each step, then last: the highest peak of the orders
run / budget (3 GiB for the default deployment; below 1 is within budget). A
step whose runs do not all finish in the time allowed (the paper's probing
protocol takes hours on 2 cores) is measured while it runs for that
long: its line says "still running after N s" and how many sessions had
finished; then its tabs leave the page, which stops their runs at their next
progress report, and once the server is idle again (none of its threads has
work; at most ``SETTLE_MAX_S`` later, and the line says which) the step's
peak is read and the order goes on. Such a peak is a lower bound of that
step's.

``calls`` measures the bound instead: each page's calls at the
deployment's limits (:func:`page_calls`; ``pages``, titles such as
``Saliency,Circuits``, picks some), each in a fresh process (``repeats``
of them, the median quoted; in one process a call's allocations spread over
the heap that earlier ones grew, so it could show their peak instead of its
own), one thread, its peak above the resident set before it. Calls made of
identical batches (the faithfulness check's, Circuits' verification) end
once a batch's peak has been seen twice (:func:`until_steady`): at these
limits they take hours on 2 busy cores. Two sessions may run the same call
at once, on prompts of their own, so the server can never hold more than
its idle resident set (the allowed models loaded and run once, so that
their weights are paged in), both caches full (``CAPTURE_CACHE_MB`` +
``RESULT_CACHE_MB``) and ``MAX_CONCURRENT_RUNS`` times the largest peak
of a call that shares the server, or the largest of the calls that the
pages run alone (:data:`ALONE`); the last line is that bound / budget.

    python bench/memory.py calls [pages] [repeats]
    python bench/memory.py call INDEX     # one call in this process: the line ``calls`` reads
"""

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, NamedTuple

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from playwright.sync_api import TimeoutError as PlaywrightTimeout  # noqa: E402
from playwright.sync_api import sync_playwright  # noqa: E402

from app_driver import (  # noqa: E402
    EXCEPTION, FIRST_RUN_FINISHED, PAGES, app_link, errors, free_port, launch_chromium, url_path,
)
from rss import peak_bytes, reset_peak  # noqa: E402

BUDGET_BYTES = 3 * 2**30
# Saliency last: at these limits it is by far the slowest page.
CAPTURE_PAGES = ["Home.py", "2_Layer_predictions.py", "7_Attention.py", "4_Similarity.py", "3_Neuron_factors.py",
                 "5_Probing.py", "6_Causal_tracing.py", "8_Circuits.py", "1_Saliency.py"]
#: A server none of whose threads has work at this many samples in a row, SETTLE_POLL_S apart, has no run left.
SETTLE_SAMPLES = 4
SETTLE_POLL_S = 0.5
SETTLE_MAX_S = 300


ORDERS = ("together", "apart", "encoder")
#: The ``encoder`` order's first step: Home with the packaged encoder (see :func:`encoder_prompts`).
ENCODER_HOME = "Home.py, the encoder"


def steps(order: str, pages: list[str], n_sessions: int) -> list[list[str]]:
    """The page each session opens at each step of ``order`` (see the module's docstring)."""
    if order == "encoder":
        return [[ENCODER_HOME] * n_sessions] + steps("together", pages, n_sessions)
    if order == "together":
        return [[name] * n_sessions for name in pages]
    return [[pages[(step + session) % len(pages)] for session in range(n_sessions)] for step in range(len(pages))]


def largest_inputs(n_sessions: int) -> list[tuple[str, str]]:
    """(prompt, answer) pairs of MAX_PROMPT_TOKENS and MAX_NEW_TOKENS tokens of real text, one per session."""
    import ecco_core as ec
    from dashboard import settings
    from ecco_core import similarity

    tokenizer = ec.load().tokenizer
    sentences = similarity.ud_sentences(2000)
    pairs, start = [], 0
    for _ in range(n_sessions):
        ids = []
        while len(ids) < settings.MAX_PROMPT_TOKENS + settings.MAX_NEW_TOKENS + 8:
            ids += tokenizer.encode(" " + sentences[start], add_special_tokens=False)
            start += 1
        prompt = tokenizer.decode(ids[: settings.MAX_PROMPT_TOKENS])
        answer = tokenizer.decode(ids[settings.MAX_PROMPT_TOKENS:][: settings.MAX_NEW_TOKENS])
        # Decoding and encoding again may merge tokens at the seams: trim until both are within the limits.
        while len(tokenizer.encode(prompt, add_special_tokens=False)) > settings.MAX_PROMPT_TOKENS:
            prompt = prompt[:-1]
        while len(tokenizer.encode(answer, add_special_tokens=False)) > settings.MAX_NEW_TOKENS:
            answer = answer[:-1]
        pairs.append((prompt, answer))
    return pairs


def encoder_prompts(inputs: list[tuple[str, str]]) -> list[str]:
    """Each session's prompt cut to the most the packaged encoder takes (its positions and MAX_PROMPT_TOKENS,
    its special tokens included), at a word's end."""
    import ecco_core as ec
    from dashboard import settings

    encoder = ec.load(ec.DEFAULT_ENCODER)
    most = min(settings.MAX_PROMPT_TOKENS, encoder.model.config.max_position_embeddings)
    prompts = []
    for prompt, _ in inputs:
        while len(encoder.tokenizer(prompt)["input_ids"]) > most:
            prompt = prompt.rsplit(" ", 1)[0]
        prompts.append(prompt)
    return prompts


def own_prompts(inputs: list[tuple[str, str]]) -> list[dict[str, str]]:
    """Causal tracing's and Circuits' prompts for each session: its prompt, a corrupted one of as many tokens.

    The corrupted prompt is the clean one with its last token replaced by
    one of the next session's text (of its own opening, for a single
    session); decoding and encoding again may merge tokens at the seam, so
    the replacement moves on until the token counts agree. Exact tracing
    then patches the last position alone: 90 patched runs instead of ~46,000
    (hours on 2 cores), so every step ends, and two sessions' runs at once
    peak as high as an earlier corruption's (512 tokens, in one process with
    the server's threads, 8 December, once a batch's rows shared the
    corrupted run's prefix: the last token corrupted +699 MiB, the middle one
    +665, the first +703; before, a copy for each row made the last token's
    batches the highest: +572 MiB alone, after 256 tokens +383, after none +385).
    The answer is the first word of the session's answer, the foil another word.
    """
    import ecco_core as ec

    tokenizer = ec.load().tokenizer
    prompts = []
    for session, (prompt, answer) in enumerate(inputs):
        ids = tokenizer.encode(prompt, add_special_tokens=False)
        other = tokenizer.encode(inputs[(session + 1) % len(inputs)][0], add_special_tokens=False)
        for token in other if len(inputs) > 1 else ids:
            corrupted = tokenizer.decode(ids[:-1] + [token])
            if token != ids[-1] and len(tokenizer.encode(corrupted, add_special_tokens=False)) == len(ids):
                break
        else:
            raise RuntimeError(f"no corrupted prompt of {len(ids)} tokens for session {session}")
        word = answer.split()[0]
        prompts.append({"clean": prompt, "corrupted": corrupted, "answer": word,
                        "foil": "the" if word.lower() != "the" else "a"})
    return prompts


def page_params(name: str, session: int, probing: str, own: dict[str, str]) -> list[tuple[str, str]]:
    """The query parameters beyond the sidebar's that session ``session`` opens page ``name`` with."""
    if name == "5_Probing.py":
        return probing_params(session, probing)
    if name == "6_Causal_tracing.py":
        return [("trace-clean", own["clean"]), ("trace-corruption", "prompt"), ("trace-corrupted", own["corrupted"]),
                ("trace-answer", own["answer"]), ("trace-foil", own["foil"])]
    if name == "8_Circuits.py":
        return [("circuits-prompt", own["clean"]), ("circuits-answer", own["answer"]),
                ("circuits-foil", own["foil"]), ("circuits-ablation", "corrupted"),
                ("circuits-corrupted", own["corrupted"]), ("circuits-verify", "true")]
    return []


def busy_threads(pid: int) -> int:
    """Threads of the process that are running or waiting for a CPU (state R), or in uninterruptible sleep (D)."""
    busy = 0
    for stat in Path(f"/proc/{pid}/task").glob("*/stat"):
        try:
            busy += stat.read_text().rsplit(")", 1)[1].split()[0] in "RD"
        except (FileNotFoundError, ProcessLookupError):  # the thread ended meanwhile
            pass
    return busy


def settle(pid: int) -> tuple[float, bool]:
    """Wait until no thread of the process has work (no run left), however little CPU it gets, or SETTLE_MAX_S.

    Returns the seconds waited and whether the process was idle by then.

    A thread that waits for a CPU is runnable (state R) whatever its share of
    a busy machine, so this does not mistake a starved run for an idle server.
    """
    started = time.perf_counter()
    quiet = 0
    while quiet < SETTLE_SAMPLES and time.perf_counter() - started < SETTLE_MAX_S:
        time.sleep(SETTLE_POLL_S)
        quiet = quiet + 1 if busy_threads(pid) == 0 else 0
    return time.perf_counter() - started, quiet >= SETTLE_SAMPLES


def probing_params(session: int, preset: str, n_layers: int = 30) -> list[tuple[str, str]]:
    """The Probing page's settings for one session, as a copied link of a run holds them (its own run each)."""
    import numpy as np

    if preset == "paper":
        words, blocks, trials, epochs = 10_000 - 10 * session, range(n_layers), 5, 50
    else:
        words, trials, epochs = 2_000 - 10 * session, 1, 20
        blocks = sorted({int(round(block)) for block in np.linspace(0, n_layers - 1, min(8, n_layers))})
    layers = [("probe_layers", "embeddings")] + [("probe_layers", str(block)) for block in blocks]
    return [("probe_preset", "custom"), ("probe_data", "bundled"), ("probe_tokens", str(words)), *layers,
            ("probe_trials", str(trials)), ("probe_epochs", str(epochs)), ("probe_lr", "0.001"),
            ("probe_ran", "true")]


def run_order(order: str, inputs: list[tuple[str, str]], own: list[dict[str, str]], page_seconds: int,
              probing: str, pages: list[str]) -> int:
    """Every step of ``order`` on a fresh server; print each step's peak and return the highest, in bytes."""
    import urllib.parse

    import ecco_core as ec

    encoded = encoder_prompts(inputs) if order == "encoder" else []
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = Path(os.environ.get("TMPDIR", "/tmp")) / f"ecco-memory-bench-{port}.log"
    environment = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
                   "OMP_WAIT_POLICY": "PASSIVE"}
    command = [sys.executable, "-m", "streamlit", "run", str(PAGES.parent / "app.py"), "--server.headless", "true",
               "--server.port", str(port), "--server.address", "127.0.0.1", "--browser.gatherUsageStats", "false",
               "--server.fileWatcherType", "none"]
    with log.open("w") as log_file:
        server = subprocess.Popen(command, cwd=PAGES.parent, env=environment, stdout=log_file, stderr=log_file)
    overall = 0
    try:
        deadline = time.monotonic() + 300
        while "preloaded" not in log.read_text() and time.monotonic() < deadline:
            if server.poll() is not None:
                raise RuntimeError(f"streamlit exited: {log.read_text()[-2000:]}")
            time.sleep(0.5)
        time.sleep(2)
        idle = reset_peak(server.pid)
        print(f"{order}: idle server after preloading the default model: {idle / 2**20:.0f} MiB (baseline)",
              flush=True)
        present = [name for name in pages if (PAGES / name).exists() or name == "Home.py"]
        with sync_playwright() as playwright:
            browser = launch_chromium(playwright)
            tabs = [browser.new_context(viewport={"width": 1400, "height": 1000}).new_page() for _ in inputs]
            for names in steps(order, present, len(inputs)):
                reset_peak(server.pid)
                started = time.perf_counter()
                for session, (tab, name, (prompt, answer)) in enumerate(zip(tabs, names, inputs)):
                    if name == ENCODER_HOME:
                        tab.goto(app_link(url, model=ec.DEFAULT_ENCODER, text=encoded[session]), wait_until="commit")
                        continue
                    link = app_link(url, "" if name == "Home.py" else url_path(PAGES / name), text=prompt,
                                    answer=answer)
                    extra = page_params(name, session, probing, own[session])
                    tab.goto(link + ("&" + urllib.parse.urlencode(extra) if extra else ""), wait_until="commit")
                finished = []
                for tab in tabs:
                    left_ms = max(1, int(1000 * (page_seconds - (time.perf_counter() - started))))
                    try:
                        tab.wait_for_selector(FIRST_RUN_FINISHED, state="attached", timeout=left_ms)
                        finished.append(tab)
                    except PlaywrightTimeout:
                        pass
                took = time.perf_counter() - started
                what = names[0] if order != "apart" else ", ".join(name.split("_", 1)[-1][:-3] for name in names)
                if len(finished) < len(tabs):
                    # Leaving the page ends the session, which stops its run at its next progress report.
                    for tab in tabs:
                        if tab not in finished:
                            tab.goto("about:blank", wait_until="commit", timeout=120_000)
                    settled, idle_again = settle(server.pid)
                    peak = peak_bytes(server.pid)
                    overall = max(overall, peak)
                    print(f"  {what:44s} peak {peak / 2**20:6.0f} MiB; still running after {page_seconds} s "
                          f"({len(finished)} of {len(tabs)} sessions finished), stopped; "
                          + ("idle again" if idle_again else "the server still busy") + f" {settled:.0f} s later",
                          flush=True)
                    continue
                peak = peak_bytes(server.pid)
                overall = max(overall, peak)
                problems = [text[:120] for tab in tabs
                            for text in errors(tab) + tab.locator(EXCEPTION).all_inner_texts()]
                print(f"  {what:44s} peak {peak / 2**20:6.0f} MiB, {took:5.1f} s"
                      + (f"; shown: {problems}" if problems else ""), flush=True)
            browser.close()
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
    print(f"{order}: peak {overall / 2**20:.0f} MiB (idle {idle / 2**20:.0f} MiB)", flush=True)
    return overall


#: Calls the pages run alone (``dashboard.long_work(..., alone=True)``): no other run is admitted beside them.
ALONE = {"patch, approximate"}
#: A bounded call ends once the peak of one of its batches has been seen again (within STEADY_MIB), or after
#: STEADY_MAX_BATCHES batches counted; see :func:`until_steady`.
STEADY_MIB = 4
STEADY_MAX_BATCHES = 8
#: The Saliency page's most integrated-gradients steps (its faithfulness check computes them at the page's steps).
MAX_IG_STEPS = 64


class Call(NamedTuple):
    """One call a page makes: ``run()``, or with ``batches`` set, ``run(progress)`` measured by :func:`until_steady`
    from that fraction of its progress on (its last stage of identical batches); ``needs`` names the call of the
    same page whose result it reads (run first, unmeasured, in a process of its own)."""
    page: str
    name: str
    run: Callable
    needs: str | None = None
    batches: float | None = None


class _Steady(Exception):
    """Ends a bounded call: its batches have shown their peak twice."""


def until_steady(run: Callable[[Callable], Any], counted_from: float = 0.0) -> tuple[int, list[int], bool]:
    """Peak of ``run(progress)`` above the resident set before it, ended once its batches have shown their peak twice.

    Every batch of the calls measured this way (the faithfulness check's
    erased variants and path points, Circuits' ablated passes) is the same
    size and frees what it made before the next, so the call's peak is a
    batch's: each window between two progress reports has its own peak
    (VmHWM reset at each report, so the windows cover the whole run, no
    spike missed; a report that repeats the last fraction, a heartbeat
    while a step runs, ends no window), and once a window counted (those
    after ``counted_from`` of the progress: the call's last stage) comes
    within STEADY_MIB of the highest counted before it (not above it), the
    peak has been seen twice and the call ends (at most STEADY_MAX_BATCHES
    windows are counted). Returns the peak in bytes, the window peaks, and
    whether the peak was seen twice.
    """
    before = reset_peak()
    windows: list[int] = []
    counted: list[int] = []
    last = [-1.0]

    def seen_twice() -> bool:
        return len(counted) > 1 and abs(counted[-1] - max(counted[:-1])) <= STEADY_MIB * 2**20

    def progress(fraction: float, message: str) -> None:
        if fraction == last[0]:  # a heartbeat while a step runs (the same fraction again): no batch has ended
            return
        last[0] = fraction
        windows.append(peak_bytes() - before)
        reset_peak()
        if fraction <= counted_from:  # an earlier stage's last report comes at counted_from
            return
        counted.append(windows[-1])
        if seen_twice() or len(counted) >= STEADY_MAX_BATCHES:
            raise _Steady

    try:
        run(progress)
    except _Steady:
        pass
    windows.append(peak_bytes() - before)
    return max(windows), windows, seen_twice()


def page_calls(lm, prompt: str, answer: str, own: dict[str, str]) -> list[Call]:
    """Every call the pages make at the deployment's limits, in the pages' order.

    The capture is the sidebar's (``prompt`` and its given ``answer``); each
    call after it reads it, with the page's default settings and its
    optional checks (the factors' quality, the chance of a similarity cell;
    the faithfulness check of the last explained token, the longest text
    before it, at the page's most integrated-gradients steps, one method
    computed at a time, which is how the check computes them, each through
    its batches until their peak repeats); Probing runs its quick preset;
    Causal tracing and Circuits run at ``own``'s prompts of
    ``MAX_PROMPT_TOKENS`` tokens.
    """
    import numpy as np

    import ecco_core as ec
    from dashboard import settings
    from ecco_core import circuits, patching, probing
    from ecco_core import similarity as sim

    cap = ec.capture(lm, prompt, answer=answer)
    state: dict[str, Any] = {}
    attention_bytes = settings.ATTENTION_MB * 2**20
    shown = list(range(ec.attention.blocks_that_fit(lm, cap.n_tokens, "raw", max_bytes=attention_bytes)))
    compared = dict(rows="hidden", columns="ffn", skip_special=True, skip_first=lm.is_causal)
    positions = list(ec.factors.analysed_positions(cap, skip_special=True, skip_first=lm.is_causal))
    factored = dict(n_components=ec.factors.default_components(len(positions)), layers=range(lm.n_layers),
                    positions=positions, negatives="clip")
    quick = probing.preset("quick", lm.n_layers, max_tokens=settings.MAX_PROBE_TOKENS)
    ud = sim.ud_sentences(40)
    last = cap.n_tokens - 1

    def kept(name: str, value):
        state[name] = value
        return value

    def median_cell(result) -> tuple[int, int]:
        flat = np.argsort(result.values, axis=None)[result.values.size // 2]
        return tuple(int(i) for i in np.unravel_index(flat, result.values.shape))

    def chance(source, result_name: str):
        pair = sim.layer_pair(lm, source, *median_cell(state[result_name]), **compared)
        return ec.trust.permutation_baseline(*pair, "cka", n_permutations=100)

    def faithfulness(*methods: str) -> Callable:
        return lambda progress: ec.trust.faithfulness(lm, cap, methods, positions=last, steps=MAX_IG_STEPS,
                                                      progress=progress)

    return [
        Call("Home", "capture (512 + 64 tokens)", lambda: ec.capture(lm, prompt, answer=answer)),
        Call("Layer predictions", "rankings_and_diagnostics",
             lambda: ec.trust.rankings_and_diagnostics(lm, cap, k=5)),
        Call("Layer predictions", "watch", lambda: ec.watch(lm, prompt, ["the", "a"], k=5)),
        Call("Attention", f"attention, {len(shown)} blocks",
             lambda: ec.attention(lm, cap, "raw", layers=shown, max_bytes=attention_bytes)),
        Call("Similarity", "compare_layers, the capture",
             lambda: kept("capture", sim.compare_layers(lm, cap, "cka", **compared))),
        Call("Similarity", "permutation_baseline, the capture", lambda: chance(cap, "capture"),
             needs="compare_layers, the capture"),
        Call("Similarity", "compare_layers, 40 UD sentences",
             lambda: kept("ud", sim.compare_layers(lm, ud, "cka", store="disk", **compared))),
        Call("Similarity", "permutation_baseline, 40 UD sentences", lambda: chance(ud, "ud"),
             needs="compare_layers, 40 UD sentences"),
        Call("Neuron factors", "factors (NMF)", lambda: kept("factors", ec.factors(cap, "nmf", **factored))),
        Call("Neuron factors", "factor_quality",
             lambda: ec.trust.factor_quality(cap, seeds=(0, 1), fitted=state["factors"], **factored),
             needs="factors (NMF)"),
        Call("Probing", "probe_table, quick preset",
             lambda: ec.probe_table(lm, str(probing.UD_ENGLISH_EWT_DEV), n_tokens=quick.n_tokens,
                                    trials=quick.trials, epochs=quick.epochs, lr=quick.lr, layers=quick.layers,
                                    store="disk")),
        Call("Saliency", "saliency (grad_x_input)", lambda: ec.saliency(lm, cap, method="grad_x_input")),
        # The check computes each method in turn, then erases: each method's stage measured on its own (the
        # erasures after the two gradients, as the real check's last stage).
        Call("Saliency", "faithfulness: 2 gradients, erasures", faithfulness("grad_x_input", "gradient"),
             batches=2 / 3),
        Call("Saliency", f"faithfulness: integrated grads, {MAX_IG_STEPS} steps", faithfulness("integrated_gradients"),
             batches=0.0),
        Call("Saliency", "faithfulness: erasure saliency", faithfulness("erasure"), batches=0.0),
        Call("Circuits", "circuits (512 tokens)",
             lambda: kept("circuits", ec.circuits(lm, own["clean"], own["answer"], own["foil"], routes=False))),
        Call("Circuits", "top_tokens", lambda: circuits.top_tokens(lm, state["circuits"], 5),
             needs="circuits (512 tokens)"),
        Call("Circuits", "attention of one block",
             lambda: ec.attention(lm, ec.capture(lm, own["clean"]), "raw", layers=[lm.n_layers - 1])),
        Call("Circuits", "verify (k 10, corrupted, exact)",
             lambda progress: circuits.verify(lm, state["circuits"], k=10, ablation="corrupted",
                                              corrupted=own["corrupted"], progress=progress),
             needs="circuits (512 tokens)", batches=0.0),
        Call("Causal tracing", "patching.work", lambda: patching.work(lm, own["clean"], own["corrupted"],
                                                                      own["answer"], own["foil"])),
        Call("Causal tracing", "patch, exact",
             lambda: ec.patch(lm, own["clean"], own["corrupted"], own["answer"], own["foil"])),
        Call("Causal tracing", "patch, approximate",
             lambda: ec.patch(lm, own["clean"], own["corrupted"], own["answer"], own["foil"], approximate=True)),
    ]


def warm_models() -> tuple[list, int]:
    """The two packaged models (all that a hosted deployment allows), loaded and run once so that their weights
    are paged in, and this process's resident set then, in bytes. Keep the models: their weights are resident
    only while they are."""
    import ecco_core as ec
    from dashboard.shared_cache import release_memory

    models = [ec.load(name) for name in (ec.DEFAULT_MODEL, ec.DEFAULT_ENCODER)]
    for lm in models:
        ec.capture(lm, "The keys to the cabinet")
    release_memory()
    return models, reset_peak()


def measure_call(index: int) -> None:
    """Call ``index`` of :func:`page_calls` in this fresh process (after the call it needs, unmeasured): one line,
    ``idle peak seconds steady windows`` (bytes; steady is 1, 0, or - for a call run to its end)."""
    from dashboard.shared_cache import release_memory

    (lm, _), idle = warm_models()
    inputs = largest_inputs(1)
    calls = page_calls(lm, *inputs[0], own_prompts(inputs)[0])
    call = calls[index]
    if call.needs:
        next(needed for needed in calls if needed.name == call.needs).run()
    release_memory()
    started = time.perf_counter()
    if call.batches is None:
        before = reset_peak()
        call.run()
        peak, windows, steady = peak_bytes() - before, [], "-"
    else:
        peak, windows, flat = until_steady(call.run, call.batches)
        steady = str(int(flat))
    print(f"{idle} {peak} {time.perf_counter() - started:.1f} {steady} {','.join(str(w) for w in windows)}",
          flush=True)


def measure_calls(pages: str = "", repeats: int = 1) -> None:
    """Each page's calls, each in ``repeats`` fresh processes; the bound on the server's peak / budget (last line).

    A fresh process for each: in one process a call's allocations spread
    over the heap that earlier calls grew, and their trimmed pages become
    resident again, so a call measured after a larger one could show that
    one's peak instead of its own. Each call's figure is the median of its
    repeats.
    """
    import statistics

    from dashboard import settings

    import ecco_core as ec

    inputs = largest_inputs(1)
    names = [(call.page, call.name, call.batches is not None)
             for call in page_calls(ec.load(), *inputs[0], own_prompts(inputs)[0])]
    chosen = [i for i, (page, _, _) in enumerate(names) if not pages or page in pages.split(",")]
    idles, peaks, alone = [], {}, {}
    for index in chosen:
        page, name, bounded = names[index]
        runs = []
        for _ in range(repeats):
            child = subprocess.run([sys.executable, __file__, "call", str(index)], capture_output=True, text=True,
                                   env={**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1",
                                        "TOKENIZERS_PARALLELISM": "false"})
            if child.returncode:
                raise RuntimeError(f"{name}: {child.stderr[-2000:]}")
            idle, peak, seconds, steady, windows = (child.stdout.strip().splitlines()[-1].split(" ") + [""])[:5]
            idles.append(int(idle))
            runs.append((int(peak), float(seconds), steady, windows))
        peak = statistics.median(run[0] for run in runs)
        (alone if name in ALONE else peaks)[name] = peak
        detail = "; ".join(
            f"+{run[0] / 2**20:.0f} in {run[1]:.0f} s"
            + ("" if run[2] == "-" else (", batches " if run[2] == "1" else ", batches not steady ")
               + "/".join(f"{int(w) / 2**20:.0f}" for w in run[3].split(",") if w))
            for run in runs)
        print(f"  {page:18s} {name:42s} +{peak / 2**20:5.0f} MiB (median of {len(runs)}: {detail})"
              + (", runs alone" if name in ALONE else ""), flush=True)
    idle = statistics.median(idles)
    caches = (settings.CAPTURE_CACHE_MB + settings.RESULT_CACHE_MB) * 2**20
    largest, name = max((peak, name) for name, peak in peaks.items()) if peaks else (0, "none")
    # Two sessions may run the same call at once (on prompts of their own): the turns may all hold the largest.
    shared = settings.MAX_CONCURRENT_RUNS * largest
    single = max(alone.values(), default=0)
    bound = idle + caches + max(shared, single)
    print(f"idle, the allowed models run once: {idle / 2**20:.0f} MiB (median of {len(idles)})")
    print(f"bound {bound / 2**20:.0f} MiB = idle {idle / 2**20:.0f} + caches {caches / 2**20:.0f} + the larger of "
          f"{settings.MAX_CONCURRENT_RUNS} x the largest shared run ({name}, {largest / 2**20:.0f}) and the largest "
          f"run alone ({single / 2**20:.0f}) MiB / budget {BUDGET_BYTES / 2**20:.0f} MiB = {bound / BUDGET_BYTES:.2f}")


def main(n_sessions: int = 4, page_seconds: int = 2400, probing: str = "quick", order: str = "all",
         pages: str = ",".join(CAPTURE_PAGES)) -> None:
    orders = ORDERS if order == "all" else tuple(order.split(","))
    if not set(orders) <= set(ORDERS):
        raise ValueError(f"order must be among {', '.join(ORDERS)} (comma-separated) or all; got {order!r}")
    chosen = pages.split(",")
    if not set(chosen) <= set(CAPTURE_PAGES):
        raise ValueError(f"pages must be among {', '.join(CAPTURE_PAGES)}; got {pages!r}")
    chosen = [name for name in CAPTURE_PAGES if name in chosen]
    inputs = largest_inputs(n_sessions)
    own = own_prompts(inputs)
    print(f"{n_sessions} sessions, each {len(inputs[0][0])} characters of prompt (512 tokens) "
          f"and a given answer of 64 tokens", flush=True)
    highest = max(run_order(name, inputs, own, page_seconds, probing, chosen) for name in orders)
    print(f"peak RSS {highest / 2**20:.0f} MiB ({', '.join(orders)}) / budget {BUDGET_BYTES / 2**20:.0f} MiB "
          f"= {highest / BUDGET_BYTES:.2f}")


if __name__ == "__main__":
    if sys.argv[1:2] == ["call"]:
        measure_call(int(sys.argv[2]))
    elif sys.argv[1:2] == ["calls"]:
        measure_calls(*sys.argv[2:3], *(int(arg) for arg in sys.argv[3:4]))
    else:
        main(*(int(arg) for arg in sys.argv[1:3]), *sys.argv[3:6])
