"""Many users at once: one shared model, cached captures, limits, links that carry a page's settings.

The browser test drives the real server with 8 concurrent sessions; the
AppTest ones run the app in this process, so ``ecco_core.capture`` can be
counted with a wrapper around the real function.
"""

import ast
import re
import shutil
import threading
import time

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

import dashboard
import ecco_core
import ecco_core as ec
from browser import (
    FINISHED,
    ROOT,
    RUN_TIMEOUT_MS,
    app_link,
    assert_healthy,
    download_csv,
    draws_charts,
    free_port,
    page_files,
    url_path,
    wait_for_charts,
    wait_for_first_run,
    wait_for_run,
    start_server,
    stop_server,
)
from dashboard import settings

PROMPTS = [
    "The capital of France is",
    "The keys to the cabinet",
    "William Shakespeare was born in the year",
    "My favourite colour is",
    "Water boils at a temperature of",
    "The first person to walk on the moon was",
    "A group of crows is called",
    "The largest planet in the solar system is",
]
N_NEW = 3
DEFAULT_TEXT = dashboard.DEFAULT_PROMPTS[ec.DEFAULT_MODEL]  # what the sidebar starts with

# A page that is only wiring, as every analysis page is: sidebar, guard, then its analysis.
MINIMAL_PAGE = '''
import sys
sys.path.insert(0, {root!r})
import streamlit as st
import dashboard

lm, cap = dashboard.sidebar()
cap = dashboard.require_capture(cap)
st.title("Minimal page")
dashboard.show_tokens(cap)
layer = dashboard.page_param("minimal_layer", 0, choices=range(lm.n_layers))
st.slider("Layer", 0, lm.n_layers - 1, key="minimal_layer")
st.write(f"Layer {{layer}}")
with dashboard.user_errors():
    if st.session_state.get("fail") == "user":
        raise ValueError("this input is refused on purpose")
    if st.session_state.get("fail") == "bug":
        raise RuntimeError("a bug in one analysis")
'''


def _run(app: AppTest) -> AppTest:
    app.run(timeout=180)
    return app


@pytest.fixture
def capture_calls(monkeypatch):
    """Every call the dashboard makes to ``ecco_core.capture`` (the real function, counted)."""
    calls = []
    real = ecco_core.capture

    def counted(*args, **kwargs):
        calls.append(args[1])
        return real(*args, **kwargs)

    dashboard.cached_capture.clear()
    monkeypatch.setattr(ecco_core, "capture", counted)
    yield calls
    dashboard.cached_capture.clear()


@pytest.fixture
def minimal_app(tmp_path):
    """A copy of the real home page with one minimal page beside it, in pages/."""
    shutil.copy(ROOT / "Home.py", tmp_path / "Home.py")
    (tmp_path / "pages").mkdir()
    (tmp_path / "pages" / "1_Minimal.py").write_text(MINIMAL_PAGE.format(root=str(ROOT)))
    return tmp_path


# ---------------------------------------------------------------- the library
@pytest.fixture(scope="module")
def alone(lm):
    """Each prompt's capture on its own, in this process: what every concurrent session must get."""
    return {prompt: ec.capture(lm, prompt, max_new_tokens=N_NEW) for prompt in PROMPTS}


def test_concurrent_captures_on_the_shared_model_equal_single_ones(lm, alone):
    """Hooks on the shared model must record only their own thread's passes."""
    together, failures = {}, []

    def session(prompt):
        try:
            together[prompt] = ec.capture(lm, prompt, max_new_tokens=N_NEW)
        except Exception as error:  # noqa: BLE001 - reported below, with the prompt
            failures.append(f"{prompt!r}: {error!r}")

    threads = [threading.Thread(target=session, args=(prompt,)) for prompt in PROMPTS]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not failures, failures
    for prompt in PROMPTS:
        assert np.array_equal(together[prompt].token_ids, alone[prompt].token_ids)
        np.testing.assert_allclose(together[prompt].hidden_states, alone[prompt].hidden_states, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(together[prompt].ffn, alone[prompt].ffn, rtol=1e-5, atol=1e-5)


# ------------------------------------------------------------- the browser
@pytest.mark.browser
def test_eight_browser_sessions_at_once_get_their_own_results(browser, app_url, alone):
    contexts = [browser.new_context(accept_downloads=True) for _ in PROMPTS]
    tabs = [context.new_page() for context in contexts]
    try:
        for tab, prompt in zip(tabs, PROMPTS):  # all eight ask before any is answered
            tab.set_default_timeout(RUN_TIMEOUT_MS)
            tab.goto(app_link(app_url, text=prompt, new=N_NEW), wait_until="commit")
        for tab in tabs:
            wait_for_first_run(tab)
        for tab, prompt in zip(tabs, PROMPTS):
            assert_healthy(tab)
            shown = download_csv(tab, "Download tokens (CSV)")
            assert list(shown["token"]) == list(alone[prompt].tokens), prompt
            np.testing.assert_allclose(shown["next_token_prediction_prob"], alone[prompt].top_probs[:, 0], atol=1e-5)

        for page_file in [path for path in page_files() if path.stem in ("1_Saliency", "2_Layer_predictions")]:
            for tab in tabs:  # all eight move on before any is answered, by the sidebar's link as a visitor does
                _follow_sidebar_link(tab, url_path(page_file))
            for tab in tabs:
                tab.locator('[data-testid="stMain"] h1', has_text=_title(page_file)).wait_for()  # its run has begun
                tab.wait_for_selector(FINISHED)
                assert_healthy(tab)
                if draws_charts(page_file):
                    wait_for_charts(tab)
    finally:
        for context in contexts:
            context.close()


def _follow_sidebar_link(tab, path: str) -> None:
    """Click the sidebar's link to the page at URL ``path`` (``""`` for home): the session moves, nothing reloads.

    The sidebar's links are drawn a moment after a page's title can show (a walk once found no "/Circuits" yet).
    """
    target = "/" + path
    tab.wait_for_function(
        """target => [...document.querySelectorAll('[data-testid="stSidebarNav"] a')]
            .some(link => new URL(link.href).pathname === target)""",
        arg=target,
    )
    links = tab.locator('[data-testid="stSidebarNav"] a')
    paths = links.evaluate_all("links => links.map(link => new URL(link.href).pathname)")
    links.nth(paths.index(target)).click()


def _every_ordered_pair(nodes: list) -> list:
    """A walk through ``nodes`` that takes every step from one node to another exactly once (Hierholzer)."""
    left = {node: [other for other in nodes if other != node] for node in nodes}
    stack, walk = [nodes[0]], []
    while stack:
        if left[stack[-1]]:
            stack.append(left[stack[-1]].pop())
        else:
            walk.append(stack.pop())
    return walk[::-1]


def _title(script) -> str:
    """The text of the page's title: ``st.title(...)``, or ``dashboard.page(...)``'s first argument."""
    for node in ast.walk(ast.parse(script.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Call) and getattr(node.func, "attr", None) in ("title", "page") and node.args:
            return node.args[0].value
    raise AssertionError(f"{script.name} has no title")


@pytest.mark.browser
def test_moving_between_every_pair_of_pages_under_load_never_blanks_the_page(browser, app_url):
    """#31 item 17: a visitor who moves on while pages still run, on a busy server, always gets a page.

    The visitor clicks through every ordered pair of pages by the sidebar's
    links, moving on as soon as each page's title shows (its analysis still
    running), while two other sessions keep long work going. Streamlit's
    client refuses a delta that does not fit the page it holds ("Bad delta
    path index ...") and the page goes blank: no page error is allowed.
    """
    pages = [ROOT / "Home.py", *page_files()]
    walk = _every_ordered_pair(pages)
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    load = [browser.new_context().new_page() for _ in range(2)]
    try:
        tab = context.new_page()
        tab.set_default_timeout(RUN_TIMEOUT_MS)
        page_errors = []
        tab.on("pageerror", lambda error: page_errors.append(str(error)))
        for number, other in enumerate(load):  # long work of their own: integrated gradients, UD sentences
            other.on("pageerror", lambda error: page_errors.append(f"load session: {error}"))
            other.goto(app_link(app_url, "Saliency" if number == 0 else "Similarity", text=PROMPTS[number], new=N_NEW,
                                saliency_method="integrated_gradients", similarity_source="ud",
                                similarity_n_sentences=10), wait_until="commit")
        tab.goto(app_link(app_url, text=PROMPTS[2], new=N_NEW), wait_until="commit")  # the walk starts at Home
        main = tab.locator('[data-testid="stMain"]')
        main.locator("h1", has_text=_title(walk[0])).wait_for()
        for before, after in zip(walk, walk[1:]):
            _follow_sidebar_link(tab, "" if after.name == "Home.py" else url_path(after))
            main.locator("h1", has_text=_title(after)).wait_for()
            assert not page_errors, (before.name, after.name, page_errors)
        wait_for_run(tab)
        assert_healthy(tab)
        assert not page_errors, page_errors
    finally:
        for other in load:
            other.context.close()
        context.close()


# ----------------------------------------------------------------- start-up
class ServerLog:
    """The lines a server writes to stderr, read as they come."""

    def __init__(self, server):
        self.lines: list[str] = []
        threading.Thread(target=lambda: self.lines.extend(server.stderr), daemon=True).start()

    def wait_for(self, pattern: str, timeout: float = 120) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = [line for line in list(self.lines) if re.search(pattern, line)]
            if found:
                return found[0]
            time.sleep(0.2)
        raise AssertionError(f"no line matching {pattern!r} within {timeout} s:\n{''.join(self.lines)[-2000:]}")


@pytest.mark.browser
def test_the_server_preloads_the_default_model_and_pages_share_it(browser):
    server = start_server(port := free_port())
    try:
        log = ServerLog(server)
        log.wait_for(rf"preloaded {re.escape(ec.DEFAULT_MODEL)} in \d")  # with no browser connected yet
        tab = browser.new_page()
        tab.set_default_timeout(RUN_TIMEOUT_MS)
        tab.goto(app_link(f"http://127.0.0.1:{port}"), wait_until="commit")
        wait_for_first_run(tab)
        assert_healthy(tab)
        assert "20 generated tokens" in tab.locator('[data-testid="stSidebar"]').inner_text()
        tab.close()
    finally:
        stop_server(server)
    # transformers reports each load of the weights; the page's run used the preloaded model.
    assert sum("Loading weights: 100%" in line for line in log.lines) == 1, "".join(log.lines)[-2000:]


def test_a_model_that_cannot_be_preloaded_is_logged_and_the_server_keeps_serving():
    server = start_server(free_port(), env={"ECCO_PRELOAD_MODEL": "/no/such/model"})
    try:
        line = ServerLog(server).wait_for("could not preload")
        assert "/no/such/model" in line and "does not exist" in line
        assert server.poll() is None
    finally:
        stop_server(server)


# ------------------------------------------------------------------ caching
def _page_cases():
    return [(ROOT, path.relative_to(ROOT).as_posix()) for path in page_files()] + [(None, "pages/1_Minimal.py")]


@pytest.mark.parametrize(("root", "page"), _page_cases(), ids=lambda value: str(value).rsplit("/", 1)[-1])
def test_switching_pages_recomputes_nothing(root, page, minimal_app, capture_calls):
    app = _run(AppTest.from_file(str((root or minimal_app) / "Home.py")))
    assert not app.exception
    assert capture_calls == [DEFAULT_TEXT]
    for target in (page, "Home.py", page):
        _run(app.switch_page(target))
        assert not app.exception, [e.value for e in app.exception]
        # Streamlit blanks same-key widgets on a new page; the sidebar refills them.
        assert app.sidebar.text_area[0].value == DEFAULT_TEXT
    assert len(capture_calls) == 1
    assert "20 generated tokens" in app.sidebar.caption[0].value


def test_a_failing_analysis_keeps_the_capture_on_screen(minimal_app, capture_calls):
    app = _run(AppTest.from_file(str(minimal_app / "Home.py")))
    _run(app.switch_page("pages/1_Minimal.py"))
    assert app.title[0].value == "Minimal page" and not app.error

    app.session_state["fail"] = "user"
    _run(app)
    assert [e.value for e in app.error] == ["this input is refused on purpose"]
    assert "generated tokens" in app.sidebar.caption[0].value
    assert app.title[0].value == "Minimal page"

    app.session_state["fail"] = "bug"  # inside user_errors too: a bug is not an input error
    _run(app)
    assert [e.value for e in app.exception] == ["a bug in one analysis"] and not app.error
    assert "generated tokens" in app.sidebar.caption[0].value  # the sidebar and the text were drawn first
    assert app.session_state["_text"] == DEFAULT_TEXT

    app.session_state["fail"] = None
    _run(app)
    assert not app.exception and not app.error
    assert app.sidebar.text_area[0].value == DEFAULT_TEXT
    assert len(capture_calls) == 1  # the capture survived the crash


# ------------------------------------------------------------------- limits
@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"new": str(settings.MAX_NEW_TOKENS + 1)}, f"at most {settings.MAX_NEW_TOKENS} (raise it with the environment variable ECCO_MAX_NEW_TOKENS)"),
        ({"text": "word " * (settings.MAX_PROMPT_TOKENS + 5)}, f"at most {settings.MAX_PROMPT_TOKENS} (raise it with the environment variable ECCO_MAX_PROMPT_TOKENS)"),
    ],
    ids=["new-tokens", "prompt-tokens"],
)
def test_limits_are_shown_when_exceeded(params, message):
    app = AppTest.from_file(str(ROOT / "Home.py"))
    app.query_params.update(params)
    _run(app)
    assert not app.exception
    assert any(message in error.value for error in app.error), [e.value for e in app.error]


def test_enforce_names_the_limit():
    assert settings.enforce(settings.MAX_PROBE_TOKENS, "MAX_PROBE_TOKENS", "the treebank") == settings.MAX_PROBE_TOKENS
    with pytest.raises(ValueError, match=r"the treebank is \d+ tokens; .* ECCO_MAX_PROBE_TOKENS"):
        settings.enforce(settings.MAX_PROBE_TOKENS + 1, "MAX_PROBE_TOKENS", "the treebank")
    with pytest.raises(ValueError, match="limit must be one of"):
        settings.enforce(1, "MAX_EVERYTHING", "anything")


# -------------------------------------------------------------- page params
def test_a_page_param_round_trips_through_the_url(minimal_app):
    app = AppTest.from_file(str(minimal_app / "Home.py"))
    _run(app)
    app.query_params["minimal_layer"] = "7"
    _run(app.switch_page("pages/1_Minimal.py"))
    assert app.slider(key="minimal_layer").value == 7
    assert "Layer 7" in [item.value for item in app.markdown]

    app.slider(key="minimal_layer").set_value(12)
    _run(app)
    assert app.query_params["minimal_layer"] in ("12", ["12"])
    assert app.query_params["text"] in (DEFAULT_TEXT, [DEFAULT_TEXT])

    app.slider(key="minimal_layer").set_value(0)  # the default: the link stays short
    _run(app)
    assert "minimal_layer" not in app.query_params


def test_a_stale_page_param_falls_back_to_the_default(minimal_app):
    app = AppTest.from_file(str(minimal_app / "Home.py"))
    _run(app)
    app.query_params["minimal_layer"] = "99"  # beyond the model's 30 layers
    _run(app.switch_page("pages/1_Minimal.py"))
    assert not app.exception
    assert app.slider(key="minimal_layer").value == 0
