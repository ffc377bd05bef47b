"""Hostile input to the app (URL parameters, typed text): a clear message, then the next request is served."""

import pytest

import dashboard
import ecco_core as ec
from apptest import page, run
from dashboard import settings


def _next_request_is_served(app):
    app.query_params.clear()
    app.sidebar.selectbox[0].set_value(ec.DEFAULT_MODEL)
    app.sidebar.text_area[0].set_value("The capital of France is")
    app.sidebar.text_input[1].set_value(" Paris")
    app.sidebar.button[0].click()
    run(app)
    assert not app.error, [e.value for e in app.error]
    assert "1 generated tokens" in app.sidebar.caption[0].value


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"answer": " word" * 100}, "The given answer is 100 new tokens; this deployment allows at most 64"),
        ({"answer": " word" * 5000}, "The given answer is 25000 characters; this deployment allows at most 2048"),
        ({"text": "word " * 20000}, "The prompt is 100000 characters; this deployment allows at most 16384"),
        ({"new": "999999"}, "Max new tokens is 999999 new tokens; this deployment allows at most 64"),
    ],
    ids=["answer-tokens", "answer-characters", "prompt-characters", "new-tokens"],
)
def test_every_path_is_within_the_limits(params, message):
    app = page("Home.py")
    app.query_params.update(params)
    run(app)
    assert any(message in error.value for error in app.error), [e.value for e in app.error]
    _next_request_is_served(app)


def test_a_space_refuses_other_models_with_one_generic_message(monkeypatch, tmp_path):
    monkeypatch.setattr(settings, "ALLOWED_MODELS", (ec.DEFAULT_MODEL, ec.DEFAULT_ENCODER))
    (tmp_path / "config.json").write_text("{}")
    shown = []
    for name in (str(tmp_path), "/no/such/folder", "some-org/some-model"):
        app = page("Home.py")
        app.query_params["model"] = name
        run(app)
        shown.append([e.value.replace(dashboard.literal(name), "NAME") for e in app.error])
    assert shown[0] == shown[1] == shown[2] and "is not available here" in shown[0][0]
    _next_request_is_served(app)


def test_user_text_in_messages_is_literal(monkeypatch):
    monkeypatch.setattr(settings, "ALLOWED_MODELS", (ec.DEFAULT_MODEL,))
    app = page("Home.py")
    app.query_params["model"] = "[click](http://example.com) $x$"
    run(app)
    assert [e.value for e in app.error][0].startswith("model '\\[click\\](http\u2060\\://example.com) \\$x\\$' is not")
    _next_request_is_served(app)


def test_literal_escapes_what_markdown_acts_on_and_keeps_plain_text():
    assert dashboard.literal("at most 64 (raise it with ECCO_MAX_NEW_TOKENS): see") == (
        "at most 64 (raise it with ECCO_MAX_NEW_TOKENS): see"
    )
    assert dashboard.literal("<b>*x*</b> www.a.org :smile: a@b.c\n- item") == (
        "\\<b\\>\\*x\\*\\</b\\> www\u2060.a.org \\:smile: a\\@\u2060b.c\n\\- item"
    )


def test_uploads_are_bounded_and_the_bound_is_shown_beside_the_uploader():
    app = run(page("pages/5_Probing.py"))
    uploader = app.get("file_uploader")[0].proto
    assert uploader.max_upload_size_mb == settings.MAX_UPLOAD_MB
    assert f"at most {settings.MAX_UPLOAD_MB} MB" in uploader.label


@pytest.mark.parametrize(
    ("pasted", "message"),
    [
        ("The cat sat on the mat. " * 2100, "The pasted text is 50400 characters; this deployment allows at most 48000"),
        ("\n".join(["A short line of pasted text, one of many."] * 700), "The texts' length is 8400 tokens; this deployment allows at most 1500"),
    ],
    ids=["characters", "tokens"],
)
def test_pasted_similarity_texts_are_within_ECCO_MAX_SIMILARITY_TOKENS(monkeypatch, pasted, message):
    monkeypatch.setattr(settings, "MAX_SIMILARITY_TOKENS", 1500)
    monkeypatch.setitem(settings._LIMITS, "MAX_SIMILARITY_TOKENS", ("tokens", 1500))
    app = page("pages/4_Similarity.py")
    app.query_params.update(similarity_source="pasted")
    app.session_state["similarity_pasted"] = pasted
    run(app)
    assert any(message in error.value and "ECCO_MAX_SIMILARITY_TOKENS" in error.value for error in app.error), [
        e.value for e in app.error
    ]
    assert not app.get("plotly_chart")  # nothing computed over the limit, no stale chart
    app.text_area(key="similarity_pasted").set_value("The keys to the cabinet are on the table.\nThe cat sat.")
    run(app)
    assert not app.error, [e.value for e in app.error]
    assert app.get("plotly_chart")


def test_tokens_and_foils_in_the_saliency_caption_are_literal():
    app = page("pages/1_Saliency.py")
    # Two dollar signs would open a KaTeX formula between them.
    app.query_params.update(text="The capital of France is", answer=" $", saliency_contrast="$")
    run(app)
    caption = next(c.value for c in app.caption if "Attributed quantity" in c.value)
    assert r"Attributed quantity for the pinned token: prob(' \$') - prob('\$') = " in caption


def test_candidate_notes_on_layer_predictions_are_literal():
    app = page("pages/2_Layer_predictions.py")
    app.query_params.update(text="The capital of France is", new="1", **{"watch_words": "[click](http://example.com)"})
    run(app)
    notes = [c.value for c in app.caption if c.value.startswith("ℹ️")]
    assert notes and notes[0].startswith("ℹ️ '\\[click\\](http\u2060\\://example.com)' is ")


def test_the_capture_cache_holds_at_most_ECCO_CAPTURE_CACHE_MB():
    import json
    import subprocess
    import sys

    script = """
import json, warnings
warnings.simplefilter("ignore")
import dashboard
import ecco_core as ec
cache = dashboard.cached_capture.cache
texts = ["The capital of France is", "William Shakespeare was born in the year", "Cats sleep most of the day",
         "word " * 60]
sizes, kept = [], []
for text in texts:
    cap = dashboard.cached_capture(ec.DEFAULT_MODEL, text, 8, "")
    sizes.append(dashboard.shared_cache.capture_nbytes(cap))
    kept.append([key[1] for key in cache._entries])
print(json.dumps({"max_bytes": cache.max_bytes, "sizes": sizes, "kept": kept, "held": cache.nbytes}))
"""
    env = {**__import__("os").environ, "ECCO_CAPTURE_CACHE_MB": "8"}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600, env=env,
                          cwd=str(__import__("apptest").ROOT))
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["max_bytes"] == 8 * 2**20
    small, large = result["sizes"][:3], result["sizes"][3]
    assert all(2**20 < size < 5 * 2**20 for size in small) and sum(small) > 8 * 2**20
    assert large > 8 * 2**20  # more than the whole budget: returned, never kept
    assert result["kept"][:3] == [["The capital of France is"],
                                  ["The capital of France is", "William Shakespeare was born in the year"],
                                  ["William Shakespeare was born in the year", "Cats sleep most of the day"]]
    assert result["kept"][3] == result["kept"][2] and result["held"] <= 8 * 2**20


@pytest.mark.browser
def test_a_markdown_link_as_model_name_shows_as_text_in_the_browser(page, app_url):
    from browser import ERROR, EXCEPTION, errors, open_app, screenshot

    name = "[click](http://example.com) or www.example.org or a@example.org"
    open_app(page, app_url, model=name)
    shown = [message.replace("\u2060", "") for message in errors(page)]  # the word joiners are invisible
    assert any(f"'{name}'" in message for message in shown), shown
    assert page.locator(f"{ERROR} a").count() == 0
    assert page.locator(EXCEPTION).count() == 0
    screenshot(page, "hostile-markdown-model-name")


def test_the_probing_page_says_when_too_few_tokens_make_accuracies_chance(encoder):
    app = page("pages/5_Probing.py")
    app.query_params["model"] = ec.DEFAULT_ENCODER
    run(app)
    app.number_input(key="probe_tokens").set_value(100)
    app.slider(key="probe_trials").set_value(1)
    app.number_input(key="probe_epochs").set_value(1)
    app.multiselect(key="probe_layers").set_value(["embeddings"])
    next(button for button in app.button if button.label == "Run probes").click()
    run(app)
    assert not app.error, [e.value for e in app.error]
    assert [w.value for w in app.warning] == [
        "Only 100 labelled tokens: each trial tests its probes on only 33 of the 100 tokens, so an accuracy "
        "moves in steps of 3% and 1.0 or 0.0 may be chance; probe 302 tokens or more for accuracies worth comparing."
    ]
