"""dashboard.long_work through AppTest: computed once for all sessions, stopped settings wait for Run again.

The real Stop (a click that interrupts running work) is in test_browser.py
(test_probing_long_run_is_announced_shown_and_stopped).
"""

import uuid

from streamlit.testing.v1 import AppTest

from dashboard.shared_cache import SharedCache, pickled_nbytes


def _script(settings: str, estimate_s: float) -> None:
    import streamlit as st

    import dashboard

    def compute(progress):
        progress(0.5, "half way")
        st.session_state["computed"] = st.session_state.get("computed", 0) + 1
        return {"answer": 42, "settings": settings}

    result, area = dashboard.long_work("Adding up", compute, key="sum", settings=settings, estimate_s=estimate_s)
    if result is None:
        st.stop()
    with area:
        st.markdown(f"answer {result['answer']}")


def _app(settings: str, estimate_s: float = 5.0) -> AppTest:
    return AppTest.from_function(_script, args=(settings, estimate_s), default_timeout=120)


def test_long_work_is_computed_once_for_every_session():
    settings = uuid.uuid4().hex
    first = _app(settings)
    first.run()
    assert not first.exception and first.markdown[0].value == "answer 42"
    assert first.session_state["computed"] == 1
    first.run()
    assert first.session_state["computed"] == 1 and first.markdown[0].value == "answer 42"
    other = _app(settings)  # another browser session: the shared result, no new work
    other.run()
    assert "computed" not in other.session_state and other.markdown[0].value == "answer 42"


def test_stopped_settings_wait_for_run_again():
    settings = uuid.uuid4().hex
    app = _app(settings)
    app.session_state["_long_work_stopped"] = {"sum": settings}  # as a click on Stop leaves it
    app.run()
    assert "Adding up: stopped" in app.warning[0].value and "about 5 s" in app.warning[0].value
    assert not app.markdown and "computed" not in app.session_state
    app.run()  # any other rerun keeps it stopped
    assert "computed" not in app.session_state
    app.button(key="sum_run_again").click()
    app.run()
    assert app.session_state["computed"] == 1 and app.markdown[0].value == "answer 42"


def test_quick_work_runs_without_a_status_box():
    app = _app(uuid.uuid4().hex, estimate_s=0.1)
    app.run()
    assert not app.get("expandable") and app.markdown[0].value == "answer 42"


def test_shared_cache_peeks_without_computing_and_bounds_bytes():
    cache = SharedCache(max_bytes=pickled_nbytes(list(range(100))) + 1, ttl_seconds=60, nbytes=pickled_nbytes)
    assert cache.peek("a") is None
    assert cache.get("a", lambda: list(range(100))) == list(range(100))
    assert cache.peek("a") == list(range(100))
    cache.get("b", lambda: list(range(100)))  # over budget with both: the older one goes
    assert cache.peek("a") is None and cache.peek("b") is not None
    assert cache.get("c", lambda: list(range(10_000)))[-1] == 9_999 and cache.peek("c") is None  # too big to keep
