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


def _quick_script(settings: str, problem: str, beside: bool) -> None:
    import streamlit as st

    import dashboard

    def check():
        if problem:
            raise ValueError(problem)

    def compute():
        st.session_state["computed"] = st.session_state.get("computed", 0) + 1
        return 42

    answer = dashboard.quick_analysis("Adding up…", compute, key="quick_sum", settings=settings, check=check,
                                      beside=beside)
    st.markdown(f"answer {answer}")


def test_a_quick_analysis_is_checked_shared_and_stops_the_page_without_a_result():
    """#27 §5: a page's quick analysis is called one way (``dashboard.quick_analysis``), as its long work is."""
    settings = uuid.uuid4().hex
    app = AppTest.from_function(_quick_script, args=(settings, "Prompt is empty", False), default_timeout=60).run()
    assert app.error[0].value == "Prompt is empty" and not app.markdown and "computed" not in app.session_state
    beside = AppTest.from_function(_quick_script, args=(settings, "Prompt is empty", True), default_timeout=60).run()
    assert beside.error[0].value == "Prompt is empty" and beside.markdown[0].value == "answer None"
    app = AppTest.from_function(_quick_script, args=(settings, "", False), default_timeout=60).run().run()
    assert app.markdown[0].value == "answer 42" and not app.error and app.session_state["computed"] == 1


def test_no_page_wraps_an_analysis_in_an_error_block_of_its_own():
    """#27 §5: the check, the input errors and the stop around an analysis are written once, in
    ``dashboard.analysis`` and ``dashboard.quick_analysis``: a page's ``with dashboard.user_errors():`` holds none."""
    import ast
    from pathlib import Path

    calls = {"analysis", "quick_analysis", "cached_analysis", "long_work"}
    wrapped = []
    for path in sorted((Path(__file__).resolve().parent.parent / "pages").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.With) and "user_errors" in ast.unparse(node.items[0].context_expr):
                wrapped += [f"{path.name}:{inner.lineno}" for inner in ast.walk(node) if isinstance(inner, ast.Call)
                            and isinstance(inner.func, ast.Attribute) and inner.func.attr in calls]
    assert not wrapped, wrapped


def test_shared_cache_peeks_without_computing_and_bounds_bytes():
    cache = SharedCache(max_bytes=pickled_nbytes(list(range(100))) + 1, ttl_seconds=60, nbytes=pickled_nbytes)
    assert cache.peek("a") is None
    assert cache.get("a", lambda: list(range(100))) == list(range(100))
    assert cache.peek("a") == list(range(100))
    cache.get("b", lambda: list(range(100)))  # over budget with both: the older one goes
    assert cache.peek("a") is None and cache.peek("b") is not None
    assert cache.get("c", lambda: list(range(10_000)))[-1] == 9_999 and cache.peek("c") is None  # too big to keep


def _browser_tree(messages) -> dict:
    """The element tree a browser builds from ``messages``, by the rules of Streamlit's client (1.67's AppRoot).

    A block at a path that held a block of the same kind keeps that block's
    children; a block of another kind, or an element, starts afresh. A delta
    addressed past a block's last child plus one is refused as the browser
    refuses it ("Bad delta path index ..."), which blanks the page.
    Returns the root: ``{"children": [...]}``; an element is ``{"element": proto}``.
    """
    root = {"children": [{"kind": "main", "children": []}, {"kind": "sidebar", "children": []},
                         {"kind": "event", "children": []}, {"kind": "bottom", "children": []}]}
    for msg in messages:
        if not msg.HasField("delta") or msg.delta.WhichOneof("type") == "new_transient":
            continue
        *parents, index = msg.metadata.delta_path
        block = root
        for step in parents:
            assert "children" in block and step < len(block["children"]), f"no block at {list(msg.metadata.delta_path)}"
            block = block["children"][step]
        assert index <= len(block["children"]), (
            f"Bad delta path index {index} (should be between [0, {len(block['children'])}])")
        old = block["children"][index] if index < len(block["children"]) else {}
        if msg.delta.WhichOneof("type") == "add_block":
            kind = msg.delta.add_block.WhichOneof("type")
            node = {"kind": kind, "children": old["children"] if old.get("kind") == kind else []}
        else:
            node = {"element": msg.delta.new_element}
        block["children"][index:index + 1] = [node]
    return root


def _texts(node) -> list[str]:
    if "element" in node:
        return [node["element"].markdown.body] if node["element"].WhichOneof("type") == "markdown" else []
    return [text for child in node["children"] for text in _texts(child)]


def _merge_hazards(messages) -> list[list[int]]:
    """Paths written again after a block above them was replaced: a queue may merge the later write into the earlier.

    Streamlit's server queue merges a delta into a queued one for the same
    path, at the queued one's place; when a block above that path was
    replaced in between, the merged delta lands in the old block and the new
    one misses it, whenever the server happens not to have sent the queue.
    """
    written, hazards = {}, []
    for order, msg in enumerate(messages):
        if not msg.HasField("delta") or msg.delta.WhichOneof("type") == "new_transient":
            continue
        path = tuple(msg.metadata.delta_path)
        if path in written and any(tuple(other.metadata.delta_path) == path[:depth]
                                   for other in messages[written[path] + 1:order] if other.HasField("delta")
                                   for depth in range(2, len(path))):
            hazards.append(list(path))
        written[path] = order
    return hazards


def test_long_work_results_reach_the_browser_whatever_the_server_merges(monkeypatch):
    """The server's queue merges a delta into a queued one at the same path; the browser must still build the page.

    The status box and the results must not share a path, or the results'
    first elements merge into the status box's queued progress updates and the
    results container reaches the browser empty (#31 item 17: a blank page,
    "Bad delta path index 1 (should be between [0, 0])"). AppTest queues a
    whole run without sending any of it, which merges the most; every
    other timing is covered by finding no path written again under a replaced block.
    """
    from streamlit.runtime.forward_msg_queue import ForwardMsgQueue

    enqueued = []
    monkeypatch.setattr(ForwardMsgQueue, "_before_enqueue_msg", enqueued.append)

    def script(settings: str) -> None:
        import streamlit as st

        import dashboard

        def compute(progress):
            for step in range(3):
                progress(step / 3, "adding")
            return list(range(3))

        result, area = dashboard.long_work("Adding up", compute, key="sum", settings=settings, estimate_s=5.0)
        if result is None:
            st.stop()
        with area:
            for value in result:
                st.markdown(f"result {value}")

    def shown_after(run) -> list[str]:
        enqueued.clear()
        run()
        assert not _merge_hazards(enqueued), _merge_hazards(enqueued)
        queue = ForwardMsgQueue()
        for msg in list(enqueued):
            queue.enqueue(msg)
        return _texts(_browser_tree(queue.flush())["children"][0])

    app = AppTest.from_function(script, args=(uuid.uuid4().hex,), default_timeout=120)
    assert shown_after(app.run) == ["result 0", "result 1", "result 2"]

    stopped = uuid.uuid4().hex
    app = AppTest.from_function(script, args=(stopped,), default_timeout=120)
    app.session_state["_long_work_stopped"] = {"sum": stopped}  # as a click on Stop leaves it
    assert shown_after(app.run) == []
    app.button(key="sum_run_again").click()
    assert shown_after(app.run) == ["result 0", "result 1", "result 2"]


def test_the_status_bar_total_and_the_time_left_agree():
    """#31 item 6: the paper preset's box said "about 173 min expected" beside "about 11 min left". Once progress
    measures the pace, the total on the bar is the elapsed time plus the time left."""
    from dashboard.long_work import progress_text

    text = progress_text("epoch 13 of 50", 240.0, 0.25, estimate_s=173 * 60)
    assert text == "epoch 13 of 50: 240 s so far, about 12 min left, about 16 min expected on this machine"
    text = progress_text("Starting…", 10.0, 0.0, estimate_s=600)
    assert text == "Starting…: 10 s so far, about 10 min left, about 10 min expected on this machine"


def test_a_step_past_its_estimate_without_progress_says_so():
    """#31 item 6: a fit that reports no progress (scikit-learn's NMF, the heartbeat's fraction 0) counted down to
    "under a second left" once it ran past its estimate; it now says it runs longer than expected."""
    from dashboard.long_work import progress_text

    text = progress_text("Fitting NMF", 30.0, 0.0, estimate_s=20.0)
    assert text == "Fitting NMF: 30 s so far, longer than the about 20 s expected on this machine"


def test_an_estimate_on_ndif_says_it_is_this_machines_pace_without_ndifs_queue():
    """#28: on NDIF the estimate is still this machine's cost model; the status says so rather than 'on this
    machine', and that NDIF's queue is not in it (its wait shows on the bar as NDIF reports it)."""
    from dashboard.long_work import AT_THIS_PACE, progress_text

    text = progress_text("Erased 40 of 80 variants", 12.0, 0.5, estimate_s=20.0, where=AT_THIS_PACE)
    assert text == ("Erased 40 of 80 variants: 12 s so far, about 12 s left, about 24 s expected at this machine's "
                    "pace (NDIF's queue not included)")
