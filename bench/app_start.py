"""Time from starting ``streamlit run app.py`` to the first chart drawn in Chromium: warm start, and cold.

Warm: the model cache (``ECCO_EXPLORER_CACHE``, a new temporary folder per
checkout) already holds the safetensors copy of the packaged GGUF SmolLM2, as
on any start after the first; this is the figure (target <= 8 s). Cold: that
folder empty, so the GGUF file is dequantised and written first (target <= 30 s);
it is measured once per checkout, as it fills the folder for the warm starts.
Every start has a fresh server and a fresh browser; the browser is started
before the clock, as a visitor's browser is already running, and the clock
starts with the server and stops at the animation frame in which the chart is
first drawn (stamped in the page, not when Playwright's polling notices it).
Nothing else is cached between starts: the server process is new, so imports,
the model load, the capture and the saliency all run again. The target is the
Saliency page (``pages/1_Saliency.py``); on a checkout without it, the home
page (whose next-token heatmap is its first chart) is measured instead, and
the last line says so.

With ``--against REF`` (a git revision, e.g. ``main`` or ``HEAD~3``) that
revision's tree is exported to a temporary folder and its warm starts alternate
with this checkout's (round-robin, which goes first flips every repeat), so
both see the same load on a shared machine; medians are quoted, with the load
average during the runs.

    python bench/app_start.py [repeats] [--against REF]

Last line: the warm median, its ratio to the 8 s target (and to REF's warm
median measured in the same run), the cold median and the load average.
"""

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from playwright.sync_api import sync_playwright  # noqa: E402

from app_driver import CHART_DRAWN, app_link, free_port, launch_chromium, start_server, stop_server  # noqa: E402

WARM_TARGET_S, COLD_TARGET_S = 8.0, 30.0


# Stamps the first animation frame in which a chart is drawn (has a size): Playwright's own wait polls
# less and less often as it goes on (up to every 0.5 s), so its return is later than the drawing by up to that.
STAMP_FIRST_CHART = f"""
(function stamp() {{
  const chart = document.querySelector('{CHART_DRAWN}');
  const box = chart && chart.getBoundingClientRect();
  if (box && box.width > 0 && box.height > 0) window.__firstChartAt = Date.now();
  else requestAnimationFrame(stamp);
}})();
"""


def time_to_first_chart(playwright, root: Path, page_name: str, cache: Path) -> float:
    """Seconds from launching the server to the frame in which a Plotly chart on ``page_name`` is first drawn."""
    port = free_port()
    browser = launch_chromium(playwright)
    try:
        page = browser.new_page()
        page.add_init_script(STAMP_FIRST_CHART)
        started = time.time()  # the browser's Date.now() reads the same clock
        # That checkout's ecco_core (PYTHONPATH), not this one's; the folder its model cache lives in.
        server = start_server(
            port, {"ECCO_EXPLORER_CACHE": str(cache), "PYTHONPATH": str(root)}, root=root, timeout_s=120
        )
        try:
            page.goto(app_link(f"http://127.0.0.1:{port}", page_name), wait_until="commit")
            page.wait_for_function("window.__firstChartAt !== undefined", timeout=600_000)
            return page.evaluate("window.__firstChartAt") / 1000 - started
        finally:
            stop_server(server)
    finally:
        browser.close()


def export(revision: str, folder: Path) -> Path:
    """The tree of ``revision`` of this repository, written to ``folder``."""
    folder.mkdir(parents=True)
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", revision], check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(folder)], input=archive, check=True)
    return folder


def main(repeats: int = 3, against: str | None = None) -> None:
    page_name = "Saliency" if (ROOT / "pages" / "1_Saliency.py").exists() else ""
    where = "Saliency page" if page_name else "home page (pages/1_Saliency.py not in this checkout)"
    loads = []
    with tempfile.TemporaryDirectory(prefix="ecco-app-start-") as scratch:
        scratch = Path(scratch)
        trees = {"this checkout": ROOT}
        if against:
            trees[against] = export(against, scratch / "reference")
        caches = {name: scratch / f"cache-{index}" for index, name in enumerate(trees)}
        cold = {name: [] for name in trees}
        warm = {name: [] for name in trees}
        with sync_playwright() as playwright:
            for name, root in trees.items():  # fills each checkout's model cache: its cold start
                loads.append(os.getloadavg()[0])
                cold[name].append(time_to_first_chart(playwright, root, page_name, caches[name]))
                print(f"{name}: cold {cold[name][-1]:.1f} s (load average {loads[-1]:.1f})", flush=True)
            for repeat in range(repeats):
                order = list(trees) if repeat % 2 == 0 else list(reversed(trees))
                for name in order:
                    loads.append(os.getloadavg()[0])
                    warm[name].append(time_to_first_chart(playwright, trees[name], page_name, caches[name]))
                    print(f"repeat {repeat + 1}, {name}: warm {warm[name][-1]:.1f} s "
                          f"(load average {loads[-1]:.1f})", flush=True)
    warm_s = statistics.median(warm["this checkout"])
    cold_s = statistics.median(cold["this checkout"])
    versus = ""
    if against:
        reference = statistics.median(warm[against])
        versus = f"; {against}: warm {reference:.1f} s, this/{against} {warm_s / reference:.2f}"
    print(
        f"first chart on the {where}: warm {warm_s:.1f} s (median of {repeats}), "
        f"warm/target {warm_s / WARM_TARGET_S:.2f} (target <= {WARM_TARGET_S:.0f} s){versus}; "
        f"cold {cold_s:.1f} s (target <= {COLD_TARGET_S:.0f} s); "
        f"load average {statistics.median(loads):.1f} (median; 2 cores)"
    )


if __name__ == "__main__":
    arguments = sys.argv[1:]
    reference = None
    if "--against" in arguments:
        at = arguments.index("--against")
        reference = arguments[at + 1]
        del arguments[at:at + 2]
    main(int(arguments[0]) if arguments else 3, reference)
