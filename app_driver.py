"""The real app in headless Chromium: its server, its pages' addresses, and what a page shows while it runs.

Shared by the browser tests (``tests/browser.py`` adds their pytest fixtures and
readers) and the benchmarks that drive the app (``bench/app_start.py``,
``bench/memory.py``), so that neither imports the other.

Chromium is Debian's (``apt-get install chromium``); Playwright's own browser
download cannot work offline, and ``playwright install`` is never needed.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent
PAGES = ROOT / "pages"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync",
]

CHART_DRAWN = '[data-testid="stPlotlyChart"] .js-plotly-plot .main-svg'
EXCEPTION = '[data-testid="stException"]'
ERROR = '[data-testid="stAlertContentError"]'
FINISHED = '[data-testid="stApp"][data-test-script-state="notRunning"]'
RUNNING = '[data-testid="stApp"][data-test-script-state="running"]'
# The app reports notRunning before a page load's first run starts too; that run is over
# when the state is notRunning and what every run draws first, the sidebar's Prompt box, is there.
FIRST_RUN_FINISHED = f'{FINISHED} [data-testid="stSidebar"] textarea[aria-label="Prompt"]'

# Each analysis page runs the default model on 2 shared CPU cores: be patient.
RUN_TIMEOUT_MS = 240_000


# ------------------------------------------------------------------- pages
def page_files() -> list[Path]:
    """Every page script of the app, in sidebar order."""
    return sorted(PAGES.glob("[0-9]*_*.py")) if PAGES.is_dir() else []


def url_path(page_file: Path | None) -> str:
    """The URL path Streamlit gives a page file: ``pages/2_Layer_predictions.py`` -> ``Layer_predictions``."""
    if page_file is None:
        return ""
    return re.sub(r"^[0-9]+[_ -]*", "", page_file.stem).replace(" ", "_")


def draws_charts(page_file: Path) -> bool:
    return "plotly_chart" in page_file.read_text(encoding="utf-8")


# ------------------------------------------------------------------ server
def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_server(port: int, env: dict | None = None, *, root: Path = ROOT, timeout_s: float = 60) -> subprocess.Popen:
    """``streamlit run app.py`` of the checkout at ``root`` on a loopback port, headless, offline.

    Returns once it answers its health check (within ``timeout_s``); ``env`` adds to the environment.
    """
    command = [
        sys.executable, "-m", "streamlit", "run", str(root / "app.py"),
        "--server.headless", "true", "--server.port", str(port), "--server.address", "127.0.0.1",
        "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none",
    ]
    environment = {
        **os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "OMP_WAIT_POLICY": "PASSIVE",
        **(env or {}),
    }
    server = subprocess.Popen(
        command, cwd=root, env=environment, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    health = f"http://127.0.0.1:{port}/_stcore/health"
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"streamlit exited with {server.returncode}: {server.stderr.read()[-2000:]}")
        try:
            with urllib.request.urlopen(health, timeout=1) as answer:
                if answer.read().strip() == b"ok":
                    return server
        except OSError:
            time.sleep(0.05)
    stop_server(server)
    raise RuntimeError(f"streamlit did not answer its health check within {timeout_s:g} s")


def stop_server(server: subprocess.Popen) -> None:
    server.terminate()
    try:
        server.wait(timeout=10)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait()


def launch_chromium(playwright):
    return playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)


def app_link(app_url: str, page_name: str = "", **params) -> str:
    """A shareable link: a page (``"Saliency"``, ``""`` for home) with query parameters."""
    query = urllib.parse.urlencode({key: str(value) for key, value in params.items()})
    return f"{app_url}/{page_name}" + (f"?{query}" if query else "")


def errors(page) -> list[str]:
    return page.locator(ERROR).all_inner_texts()
