"""The home page through Streamlit's AppTest (widget logic; the real browser is in test_browser)."""

from pathlib import Path

from streamlit.testing.v1 import AppTest

import ecco_core as ec

APP = str(Path(__file__).resolve().parent.parent / "app.py")


def _run(app_test: AppTest) -> AppTest:
    app_test.run(timeout=120)
    assert not app_test.exception, [e.value for e in app_test.exception]
    return app_test


def test_home_page_runs_the_default_model():
    app = _run(AppTest.from_file(APP))
    assert app.title[0].value == "Ecco Explorer"
    table = app.dataframe[0].value
    assert list(table["token"][:4]) == ["William", " Shakespeare", " was", " born"]
    assert table["generated"].sum() == 20
    assert app.query_params["model"] in (ec.DEFAULT_MODEL, [ec.DEFAULT_MODEL])


def test_bad_input_shows_an_error_and_keeps_serving():
    app = _run(AppTest.from_file(APP))
    app.sidebar.text_area[0].set_value("   ")
    app.sidebar.button[0].click()
    _run(app)
    assert any("empty or whitespace" in e.value for e in app.error)
    app.sidebar.text_area[0].set_value("The keys to the cabinet")
    app.sidebar.button[0].click()
    _run(app)
    assert not app.error
    assert app.dataframe[0].value["token"][1] == " keys"


def test_a_shared_link_reproduces_the_view():
    app = AppTest.from_file(APP)
    app.query_params["text"] = "The capital of France is"
    app.query_params["new"] = "3"
    _run(app)
    tokens = "".join(app.dataframe[0].value["token"])
    assert tokens == "The capital of France is Paris.\n"
