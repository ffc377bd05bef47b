"""Pages through Streamlit's AppTest, and readers of what a page or a view sends to the browser.

In-process widget logic; the real browser is in ``browser.py`` (test_browser.py).
"""

import base64
import json
from pathlib import Path

import numpy as np
from streamlit.testing.v1 import AppTest

ROOT = Path(__file__).resolve().parent.parent


def page(name: str) -> AppTest:
    """An AppTest of ``Home.py`` or of a page such as ``pages/1_Saliency.py``."""
    return AppTest.from_file(str(ROOT / name))


def run(app: AppTest, timeout: float = 180) -> AppTest:
    """Run the script once more and fail on any uncaught exception it showed."""
    app.run(timeout=timeout)
    assert not app.exception, [e.value for e in app.exception]
    return app


def assert_no_error(app: AppTest) -> None:
    """The run showed no uncaught exception and no ``st.error`` (a browser page's check is browser.assert_healthy)."""
    assert not app.exception, [e.value for e in app.exception]
    assert not app.error, [e.value for e in app.error]


def charts(app: AppTest) -> list[dict]:
    """The Plotly specs (``data``, ``layout``) of the page's charts, in page order."""
    return [json.loads(chart.proto.spec) for chart in app.get("plotly_chart")]


def figure_array(value) -> np.ndarray:
    """A figure array as Plotly's JSON holds it: a list, or base64 ``bdata`` with its dtype and shape."""
    if isinstance(value, dict):
        shape = [int(size) for size in str(value.get("shape", "-1")).split(",")]
        return np.frombuffer(base64.b64decode(value["bdata"]), dtype=value["dtype"]).reshape(shape)
    return np.asarray(value)
