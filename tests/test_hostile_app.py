"""Hostile input to the app (URL parameters, typed text): a clear message, then the next request is served."""

import pytest

import dashboard
from apptest import page, run
from dashboard import settings


def _next_request_is_served(app):
    app.query_params.clear()
    app.sidebar.selectbox[0].set_value(dashboard.ec.DEFAULT_MODEL)
    app.sidebar.text_area[0].set_value("The capital of France is")
    app.sidebar.text_input[1].set_value(" Paris")
    app.sidebar.button[0].click()
    run(app)
    assert not app.error, [e.value for e in app.error]
    assert "1 generated tokens" in app.sidebar.caption[0].value


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"answer": " word" * 100}, "the given answer is 100 new tokens; this deployment allows at most 64"),
        ({"answer": " word" * 5000}, "the given answer is 25000 characters; this deployment allows at most 2048"),
        ({"text": "word " * 20000}, "the prompt is 100000 characters; this deployment allows at most 16384"),
        ({"new": "999999"}, "max new tokens is 999999 new tokens; this deployment allows at most 64"),
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
    monkeypatch.setattr(settings, "ALLOWED_MODELS", (dashboard.ec.DEFAULT_MODEL, dashboard.ec.DEFAULT_ENCODER))
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
    monkeypatch.setattr(settings, "ALLOWED_MODELS", (dashboard.ec.DEFAULT_MODEL,))
    app = page("Home.py")
    app.query_params["model"] = "[click](http://example.com) $x$"
    run(app)
    assert [e.value for e in app.error][0].startswith(r"model '\[click\](http\://example.com) \$x\$' is not")
    _next_request_is_served(app)


def test_literal_escapes_what_markdown_acts_on_and_keeps_plain_text():
    assert dashboard.literal("at most 64 (raise it with ECCO_MAX_NEW_TOKENS): see") == (
        "at most 64 (raise it with ECCO_MAX_NEW_TOKENS): see"
    )
    assert dashboard.literal("<b>*x*</b> www.a.org :smile: a@b.c\n- item") == (
        r"\<b\>\*x\*\</b\> www\.a.org \:smile: a\@b.c" "\n" r"\- item"
    )


def test_uploads_are_bounded_and_the_bound_is_shown_beside_the_uploader():
    app = run(page("pages/5_Probing.py"))
    uploader = app.get("file_uploader")[0].proto
    assert uploader.max_upload_size_mb == settings.MAX_UPLOAD_MB
    assert f"at most {settings.MAX_UPLOAD_MB} MB" in uploader.label
