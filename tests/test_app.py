"""The home page through Streamlit's AppTest (widget logic; the real browser is in test_browser)."""

import ecco_core as ec
from apptest import charts, page, run


def test_home_page_runs_the_default_model():
    app = run(page("Home.py"))
    assert app.title[0].value == "Ecco Explorer"
    table = app.dataframe[0].value
    assert list(table["token"][:4]) == ["Rome", "o", " and", " Juliet"]
    assert table["generated"].sum() == 20
    assert app.query_params["model"] in (ec.DEFAULT_MODEL, [ec.DEFAULT_MODEL])


def test_bad_input_shows_an_error_and_keeps_serving():
    app = run(page("Home.py"))
    app.sidebar.text_area[0].set_value("   ")
    app.sidebar.button[0].click()
    run(app)
    assert any("empty or whitespace" in e.value for e in app.error)
    # Said of the sidebar's Prompt box (#31 item 15), not of the library's text= argument.
    assert all(e.value.startswith("The prompt is empty") for e in app.error), [e.value for e in app.error]
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
    assert tokens == "The capital of France is Paris.\u21b5"  # the newline as the charts show it (#31 item 16)


def test_a_name_typed_beside_a_packaged_model_is_used_and_its_error_shows_in_the_main_area():
    app = run(page("Home.py"))
    assert app.sidebar.selectbox(key="_model_choice").value == ec.DEFAULT_MODEL
    app.sidebar.text_input(key="_model_other").set_value("no-such-model")
    app.sidebar.button[0].click()
    run(app)
    assert app.query_params["model"] in ("no-such-model", ["no-such-model"])
    assert any("not found" in error.value for error in app.main.error)
    assert any("not found" in error.value for error in app.sidebar.error)


def test_an_error_run_puts_its_own_prompt_in_the_url():
    """#31 item 11: the address bar holds the run on screen, an error run's empty prompt included, so a copied
    link reopens that error rather than the prompt before it."""
    app = page("Home.py")
    app.query_params.update({"text": "The keys to the cabinet", "new": "1"})
    run(app)
    app.sidebar.text_area[0].set_value("")
    app.sidebar.button[0].click()
    run(app)
    assert any("empty or whitespace" in error.value for error in app.error)
    assert app.query_params["text"] in ("", [""])

    reopened = page("Home.py")
    reopened.query_params.update({key: value for key, value in app.query_params.items()})
    run(reopened)
    assert any("empty or whitespace" in error.value for error in reopened.error)


def test_the_default_prompt_and_home_examples_continue_with_a_word():
    """#31 item 3: the default model writes a year as ' ' + digits, so the old default prompt ('... born in the
    year') opened every view on a space. The default run, and each Home example that generates, starts with a word."""
    app = run(page("Home.py"))
    for example in (None, "saliency", "layer_predictions", "causal_tracing"):
        if example:
            app.button(key=f"home_example_{example}").click()
            run(app)
        table = app.dataframe[0].value
        first = table.loc[table["generated"], "token"].iloc[0]
        assert first.strip(), (example, first)


def test_the_tokens_table_shows_whitespace_as_the_charts_do():
    """#31 item 16: a token or prediction that is whitespace alone (a newline after 'Paris.') showed as a blank
    cell; the table writes it as the charts do (plots.display_token), and the CSV keeps the text itself."""
    app = page("Home.py")
    app.query_params.update({"text": "The capital of France is", "new": "3"})
    run(app)
    table = app.dataframe[0].value
    assert list(table["token"][-3:]) == [" Paris", ".", "\u21b5"]
    assert table["next_token_prediction"].str.strip().all()  # no blank cell
    assert "\u21b5" in set(table["next_token_prediction"])


def test_home_links_only_to_pages_that_work_on_the_model_it_leaves_loaded():
    """#31 item 4: the Attention and Probing examples leave the bundled encoder loaded, which has no LM head;
    Home's links to the views that read predictions are then disabled and say why (they errored when opened)."""
    app = run(page("Home.py"))
    assert not [link.proto.label for link in app.get("page_link") if link.proto.disabled]
    app.button(key="home_example_attention").click()
    run(app)
    assert app.query_params["model"] in (ec.DEFAULT_ENCODER, [ec.DEFAULT_ENCODER])
    # The encoder generates nothing: the text's caption promises no underlined tokens (#31 pass).
    assert "Hover a token for its position." in [caption.value for caption in app.main.caption]
    disabled = {link.proto.label: link.proto.disabled for link in app.get("page_link")}
    assert disabled == {f"Open {title} →": title in ("Saliency", "Layer predictions", "Causal tracing", "Circuits")
                        for title in ("Saliency", "Layer predictions", "Neuron factors", "Similarity", "Probing",
                                      "Causal tracing", "Attention", "Circuits")}
    assert all("no language-modelling head" in link.proto.help for link in app.get("page_link") if link.proto.disabled)


def test_a_link_reopens_the_picked_cell_of_the_home_heatmap():
    """#31 item 12: the cell clicked on Home's heatmap is in the URL (home_cell=rank,position); a link reopens it
    outlined, with that position's candidates; another run starts unpicked."""
    app = page("Home.py")
    app.query_params.update({"text": "The capital of France is", "new": "3", "home_cell": "1,4"})
    run(app)
    assert any("After position 4" in text.value for text in app.markdown)
    (shape,) = charts(app)[0]["layout"]["shapes"]
    assert (shape["x0"], shape["x1"], shape["y0"], shape["y1"]) == (3.5, 4.5, 0.5, 1.5)
    assert app.query_params["home_cell"] in ("1,4", ["1,4"])

    app.sidebar.text_area[0].set_value("The keys to the cabinet")
    app.sidebar.button[0].click()
    run(app)
    assert "home_cell" not in app.query_params
    assert not any("After position" in text.value for text in app.markdown)
    assert "shapes" not in charts(app)[0]["layout"]
