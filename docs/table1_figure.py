"""Draw docs/table1.png: probing accuracy and selectivity by layer, this project's encoder beside the paper's BERT.

Runs the paper's protocol (10,000 UD EWT dev tokens, 5 trials x 50 epochs) on
the encoder default, builds the figure with ``ecco_core.plots.probe_lines``,
and renders it to PNG in headless Chromium (Debian's ``/usr/bin/chromium``):

    python docs/table1_figure.py
"""

import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from plotly.subplots import make_subplots  # noqa: E402
from playwright.sync_api import sync_playwright  # noqa: E402

import ecco_core as ec  # noqa: E402
from ecco_core import probing  # noqa: E402
from ecco_core.plots import probe_lines  # noqa: E402

CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def main() -> None:
    encoder = ec.load(ec.DEFAULT_ENCODER)
    ours = ec.probe_table(encoder, probing.UD_ENGLISH_EWT_DEV, progress=lambda fraction, message: None).to_frame()
    panels = [(ours, f"{encoder.name} (this project)"), (probing.paper_table1(), "BERT-base (the paper's Table 1)")]
    figure = make_subplots(
        rows=2, cols=2, horizontal_spacing=0.08, vertical_spacing=0.16,
        subplot_titles=[f"{title}: {metric}" for title in (t for _, t in panels) for metric in ("accuracy", "selectivity")],
    )
    colours = {"hidden states": "#2962ff", "FFN activations": "#ff6d00"}
    for row, (frame, _) in enumerate(panels, start=1):
        for col, metric in enumerate(("accuracy", "selectivity"), start=1):
            for trace in probe_lines(frame, metric).data:
                trace.update(line={"color": colours[trace.name]}, marker={"color": colours[trace.name]},
                             legendgroup=trace.name, showlegend=row == 1 and col == 1)
                figure.add_trace(trace, row=row, col=col)
            figure.update_xaxes(type="category", title_text="layer", row=row, col=col)
            figure.update_yaxes(title_text=f"{metric} (%)", row=row, col=col)
    figure.update_layout(width=1100, height=720, margin={"l": 40, "r": 20, "t": 60, "b": 40},
                         legend={"orientation": "h", "y": 1.09, "x": 0.5, "xanchor": "center"})
    with tempfile.TemporaryDirectory() as folder:
        page = Path(folder) / "table1.html"
        figure.write_html(page, include_plotlyjs=True, full_html=True)
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
            tab = browser.new_page(viewport={"width": 1120, "height": 740})
            tab.goto(page.as_uri())
            tab.wait_for_selector(".main-svg")
            tab.screenshot(path=str(HERE / "table1.png"))
            browser.close()
    print(f"wrote {HERE / 'table1.png'}")


if __name__ == "__main__":
    main()
