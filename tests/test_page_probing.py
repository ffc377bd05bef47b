"""The Probing page, through Streamlit's AppTest (the library is tested in test_probing.py)."""

import pytest

import ecco_core as ec
from apptest import page, run


def _probe_button(app):
    return next(button for button in app.button if button.label == "Run probes")


def test_page_runs_the_protocol_and_shows_table_1(encoder):
    app = page("pages/5_Probing.py")
    app.query_params["model"] = ec.DEFAULT_ENCODER
    run(app)
    assert "Run probes" in app.info[0].value
    app.number_input(key="probe_tokens").set_value(200)
    app.slider(key="probe_trials").set_value(1)
    app.number_input(key="probe_epochs").set_value(10)
    app.multiselect(key="probe_layers").set_value(["embeddings", "0", str(encoder.n_layers - 1)])
    run(app)
    assert app.radio(key="probe_preset").value == "custom"  # a changed setting leaves the preset
    _probe_button(app).click()
    run(app)
    assert not app.error, [e.value for e in app.error]
    shown = app.dataframe[0].value
    assert list(zip(shown.layer, shown.representation)) == [
        ("embeddings", "hidden"), ("block 0", "hidden"), ("block 0 FFN", "ffn"),
        (f"block {encoder.n_layers - 1}", "hidden"), (f"block {encoder.n_layers - 1} FFN", "ffn"),
    ]
    assert (shown.accuracy > 30).all() and (shown.accuracy <= 100).all()  # percent, well above chance
    assert f"Table 1 for {encoder.name}" in app.subheader[0].value
    assert app.query_params["probe_ran"] in ("true", ["true"]) and app.query_params["probe_tokens"] in ("200", ["200"])

    app.radio(key="probe_data").set_value("upload")
    _probe_button(app).click()
    run(app)
    assert any("upload a .conllu file" in e.value for e in app.error)
    app.radio(key="probe_data").set_value("bundled")
    app.multiselect(key="probe_layers").set_value([])
    _probe_button(app).click()
    run(app)
    assert [e.value for e in app.error] == ["Layers is empty: pick the embeddings or a block to probe"]


def test_each_preset_label_says_the_estimate_the_page_shows_for_it():
    """#31 item 6: the quick preset's label said "under a minute" while the page said "about 86 s" (and it took
    147 s). Each preset's label now carries the estimate the page shows below once it is chosen."""
    app = run(page("pages/5_Probing.py"))
    for index, preset in enumerate(("quick", "paper")):
        app.radio(key="probe_preset").set_value(preset)
        run(app)
        shown = next(caption.value for caption in app.caption if caption.value.startswith("These settings: "))
        estimate = shown.removeprefix("These settings: ").split(" on this machine")[0]
        assert app.radio(key="probe_preset").options[index].endswith(f"({estimate})"), (shown, preset)


@pytest.mark.browser
@pytest.mark.parametrize("preset", ["quick", "paper"])
def test_every_layer_chip_reads_in_full(page, app_url, lm, preset):
    """The chips wrap onto more rows; in one scrolled row they were cut ("ock 21") or out of view."""
    from browser import clipped_text, open_app, screenshot

    open_app(page, app_url, "Probing", probe_preset=preset)
    chips = page.locator('[data-testid="stMultiSelect"] [data-tag]')
    chips.last.wait_for()
    assert chips.all_inner_texts() == (["embeddings"] + [f"block {b}" for b in range(lm.n_layers)] if preset == "paper"
                                       else ["embeddings", "block 0", "block 4", "block 8", "block 12", "block 17",
                                             "block 21", "block 25", "block 29"])
    assert clipped_text(page) == []
    screenshot(page, f"5_Probing_{preset}_chips")
