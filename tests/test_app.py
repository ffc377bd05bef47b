"""The home page through Streamlit's AppTest (widget logic; the real browser is in test_browser)."""

import ecco_core as ec
from apptest import page, run


def test_home_page_runs_the_default_model():
    app = run(page("Home.py"))
    assert app.title[0].value == "Ecco Explorer"
    table = app.dataframe[0].value
    assert list(table["token"][:4]) == ["William", " Shakespeare", " was", " born"]
    assert table["generated"].sum() == 20
    assert app.query_params["model"] in (ec.DEFAULT_MODEL, [ec.DEFAULT_MODEL])


def test_bad_input_shows_an_error_and_keeps_serving():
    app = run(page("Home.py"))
    app.sidebar.text_area[0].set_value("   ")
    app.sidebar.button[0].click()
    run(app)
    assert any("empty or whitespace" in e.value for e in app.error)
    app.sidebar.text_area[0].set_value("The keys to the cabinet")
    app.sidebar.button[0].click()
    run(app)
    assert not app.error
    assert app.dataframe[0].value["token"][1] == " keys"


def test_a_shared_link_reproduces_the_view():
    app = page("Home.py")
    app.query_params["text"] = "The capital of France is"
    app.query_params["new"] = "3"
    run(app)
    tokens = "".join(app.dataframe[0].value["token"])
    assert tokens == "The capital of France is Paris.\n"
