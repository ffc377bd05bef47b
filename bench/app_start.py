"""Time from starting ``streamlit run app.py`` to the first chart drawn in Chromium, cold and warm.

Cold: an empty model cache (``ECCO_EXPLORER_CACHE`` pointing at a new temporary
folder), so the packaged GGUF SmolLM2 is dequantised and written as
safetensors. Warm: the same folder, now filled. Each repeat runs one cold and
one warm start in turn (round-robin), each with a fresh server and a fresh
browser; medians are quoted. The browser is started before the clock, as a
visitor's browser is already running; the clock starts with the server. The
target is the Saliency page (``pages/1_Saliency.py``); on a checkout without
it, the home page (whose next-token heatmap is its first chart) is measured
instead, and the last line says so.

    python bench/app_start.py [repeats]

Last line: cold and warm medians in seconds and their ratio (targets: cold <= 30 s, warm <= 8 s).
"""

import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from playwright.sync_api import sync_playwright  # noqa: E402

from browser import CHART_DRAWN, PAGES, app_link, free_port, launch_chromium, start_server, stop_server  # noqa: E402

SALIENCY = PAGES / "1_Saliency.py"


def time_to_first_chart(playwright, page_name: str, cache: Path) -> float:
    """Seconds from launching the server to a drawn Plotly chart on ``page_name``."""
    port = free_port()
    browser = launch_chromium(playwright)
    try:
        page = browser.new_page()
        started = time.perf_counter()
        server = start_server(port, env={"ECCO_EXPLORER_CACHE": str(cache)})
        try:
            page.goto(app_link(f"http://127.0.0.1:{port}", page_name), wait_until="commit")
            page.wait_for_selector(CHART_DRAWN, timeout=300_000)
            return time.perf_counter() - started
        finally:
            stop_server(server)
    finally:
        browser.close()


def main(repeats: int = 2) -> None:
    page_name = "Saliency" if SALIENCY.exists() else ""
    where = "Saliency page" if page_name else "home page (pages/1_Saliency.py not in this checkout)"
    cold, warm = [], []
    with sync_playwright() as playwright:
        for repeat in range(repeats):
            with tempfile.TemporaryDirectory(prefix="ecco-cache-") as cache:
                cold.append(time_to_first_chart(playwright, page_name, Path(cache)))
                warm.append(time_to_first_chart(playwright, page_name, Path(cache)))
            print(f"repeat {repeat + 1}: cold {cold[-1]:.1f} s, warm {warm[-1]:.1f} s", flush=True)
    cold_s, warm_s = statistics.median(cold), statistics.median(warm)
    print(
        f"first chart on the {where}: cold {cold_s:.1f} s (target <= 30), warm {warm_s:.1f} s (target <= 8), "
        f"warm/cold {warm_s / cold_s:.2f}"
    )


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 2)
