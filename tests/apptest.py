"""Pages through Streamlit's AppTest: in-process widget logic (the real browser is in test_browser.py)."""

from pathlib import Path

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
