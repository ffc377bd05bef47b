"""The Probing page's default run (the quick preset) on the causal default, timed for real.

The page promises that its default finishes in under a minute on the 2-core
machine (issue #16, item 11). This script opens the page as a user would
(Streamlit's AppTest, in process: the sidebar loads SmolLM2-135M and captures
its default prompt), checks that the preset is the quick one, then presses
*Run probes* and times that rerun alone: collecting the bundled UD EWT dev
words, training every probe, drawing Table 1. It prints the wall time, the
process's CPU time (wall / CPU shows how loaded the machine was) and the
page's own estimate.

Usage: ``OMP_WAIT_POLICY=PASSIVE python bench/probing_quick.py [repeats]``
(default 1; each repeat is a fresh page and a fresh result cache).
Last line: the median wall time over the 60 s budget (under 1 meets it).
"""

import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from streamlit.testing.v1 import AppTest  # noqa: E402

BUDGET_S = 60.0


def one_run() -> tuple[float, float, str]:
    """(wall s, CPU s, the page's announced estimate) of the quick preset's Run probes."""
    from dashboard.long_work import RESULTS

    RESULTS.clear()
    app = AppTest.from_file(str(ROOT / "pages" / "5_Probing.py"), default_timeout=1800)
    app.run()
    assert not app.exception, [e.value for e in app.exception]
    assert app.radio(key="probe_preset").value == "quick", app.radio(key="probe_preset").value
    announced = next(c.value for c in app.caption if c.value.startswith("These settings:"))
    button = next(b for b in app.button if b.label == "Run probes")
    button.click()
    wall, cpu = time.perf_counter(), time.process_time()
    app.run()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    assert not app.exception and not app.error, [e.value for e in (*app.exception, *app.error)]
    assert app.subheader and app.subheader[0].value.startswith("Table 1 for"), "no table drawn"
    return wall, cpu, announced


def main() -> None:
    repeats = int(sys.argv[1]) if len(sys.argv) > 1 else 1
    walls = []
    for repeat in range(repeats):
        load = os.getloadavg()[0]
        wall, cpu, announced = one_run()
        walls.append(wall)
        print(f"run {repeat + 1}: {wall:.1f} s wall, {cpu:.1f} s CPU, load average {load:.1f} "
              f"(page said: {announced})", flush=True)
    print(f"quick preset, median wall time / {BUDGET_S:.0f} s: {statistics.median(walls) / BUDGET_S:.2f}")


if __name__ == "__main__":
    main()
