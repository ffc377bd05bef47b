"""Peak memory of a real ``streamlit run app.py`` server: 4 concurrent sessions at the deployment's limits.

The server is a subprocess with the default deployment's settings
(``dashboard/settings.py``): prompts of ``MAX_PROMPT_TOKENS`` (512) tokens of
real text (UD English EWT) and a given answer of ``MAX_NEW_TOKENS`` (64)
tokens, the largest capture a visitor can ask for (an answer, not generation,
so an early end-of-text cannot make it smaller). Four headless Chromium
sessions, each with its own prompt, open every page at the same time, page
after page (Home, Layer predictions, Attention, Similarity, Neuron factors,
Probing, Saliency: the slowest last). Probing runs from a link with its run
flag (``probe_ran=true``), each session with its own settings so that the four
runs are not shared: the quick preset (2,000 words, the embeddings and 8
blocks, one trial, 20 epochs) less 10 words per session; ``paper`` as the
third argument runs the paper's protocol instead (10,000 words, every layer,
5 trials, 50 epochs: hours on 2 cores for the causal default). The server's
resident set size (the process and any children) is sampled every 50 ms.

    python bench/memory.py [sessions] [seconds allowed per page] [quick|paper]

Lines: the idle server after its preload (the baseline, measured in this run),
the peak during each page, then last: peak / budget (3 GiB for the default
deployment; below 1 is within budget). A page whose runs do not all finish in
the time allowed ends the measurement there; its peak so far still counts.
"""

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from playwright.sync_api import TimeoutError as PlaywrightTimeout  # noqa: E402
from playwright.sync_api import sync_playwright  # noqa: E402

from browser import (  # noqa: E402
    EXCEPTION, FIRST_RUN_FINISHED, PAGES, app_link, errors, free_port, launch_chromium, url_path,
)

BUDGET_BYTES = 3 * 2**30
# Saliency last: at these limits it is by far the slowest page.
CAPTURE_PAGES = ["Home.py", "2_Layer_predictions.py", "7_Attention.py", "4_Similarity.py", "3_Neuron_factors.py",
                 "5_Probing.py", "1_Saliency.py"]


class PeakRss:
    """The largest resident set size of a process and its children, sampled in a thread."""

    def __init__(self, pid: int, interval: float = 0.05):
        self.process = psutil.Process(pid)
        self.interval = interval
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def current(self) -> int:
        total = 0
        try:
            processes = [self.process, *self.process.children(recursive=True)]
        except psutil.Error:  # the server has exited
            return 0
        for process in processes:
            try:
                total += process.memory_info().rss
            except psutil.Error:
                pass
        return total

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.current())
            time.sleep(self.interval)

    def reset(self) -> None:
        self.peak = self.current()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


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


def main(n_sessions: int = 4, page_seconds: int = 2400, probing: str = "quick") -> None:
    import urllib.parse


    inputs = largest_inputs(n_sessions)
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
    try:
        deadline = time.monotonic() + 300
        while "preloaded" not in log.read_text() and time.monotonic() < deadline:
            if server.poll() is not None:
                raise RuntimeError(f"streamlit exited: {log.read_text()[-2000:]}")
            time.sleep(0.5)
        time.sleep(2)
        rss = PeakRss(server.pid)
        idle = rss.current()
        print(f"idle server after preloading the default model: {idle / 2**20:.0f} MiB (baseline)", flush=True)
        print(f"{n_sessions} sessions, each {len(inputs[0][0])} characters of prompt (512 tokens) "
              f"and a given answer of 64 tokens", flush=True)
        present = [name for name in CAPTURE_PAGES if (PAGES / name).exists() or name == "Home.py"]
        with sync_playwright() as playwright:
            browser = launch_chromium(playwright)
            tabs = [browser.new_context(viewport={"width": 1400, "height": 1000}).new_page()
                    for _ in range(n_sessions)]
            overall = 0
            for name in present:
                page_name = "" if name == "Home.py" else url_path(PAGES / name)
                rss.reset()
                started = time.perf_counter()
                for session, (tab, (prompt, answer)) in enumerate(zip(tabs, inputs)):
                    link = app_link(url, page_name, text=prompt, answer=answer)
                    if name == "5_Probing.py":
                        link += "&" + urllib.parse.urlencode(probing_params(session, probing))
                    tab.goto(link, wait_until="commit")
                finished = True
                for tab in tabs:
                    left_ms = max(1, int(1000 * (page_seconds - (time.perf_counter() - started))))
                    try:
                        tab.wait_for_selector(FIRST_RUN_FINISHED, state="attached", timeout=left_ms)
                    except PlaywrightTimeout:
                        finished = False
                        break
                overall = max(overall, rss.peak)
                if not finished:
                    print(f"{name:24s} peak {rss.peak / 2**20:6.0f} MiB so far; not finished in {page_seconds} s, "
                          "measurement ends here", flush=True)
                    break
                problems = [text[:120] for tab in tabs
                            for text in errors(tab) + tab.locator(EXCEPTION).all_inner_texts()]
                print(f"{name:24s} peak {rss.peak / 2**20:6.0f} MiB, {time.perf_counter() - started:5.1f} s"
                      + (f"; shown: {problems}" if problems else ""), flush=True)
            browser.close()
        rss.stop()
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
    print(f"peak RSS {overall / 2**20:.0f} MiB (idle {idle / 2**20:.0f} MiB) / budget {BUDGET_BYTES / 2**20:.0f} MiB "
          f"= {overall / BUDGET_BYTES:.2f}")


if __name__ == "__main__":
    main(*(int(arg) for arg in sys.argv[1:3]), *sys.argv[3:4])
