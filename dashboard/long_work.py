"""Long work announced, shown and stoppable: one helper for every page whose analysis can take seconds.

A page calls it as :func:`analysis` (its input check, the estimate, the work,
input errors shown, the page stopped without a result), the same way on every page.

Quick analyses (a second or two) go through :func:`quick_analysis`
(:func:`cached_analysis`, the same cache without the announcement, checked
and stopped the same way). No page caches an analysis any other way, so
one budget and one lifetime (``settings``) bound every result held.

``long_work`` looks the result up in a cache shared by all sessions; when it
has to be computed, the page first shows the estimate (from the work's sizes,
:mod:`ecco_core.estimates`), then a status box with a progress bar, the time
left and a Stop button. Stop is Streamlit's own: a click reruns the script,
which interrupts the running one at its next progress update; the rerun sees
the click, remembers that these settings were stopped and offers to run them
again. The results area is cleared when new work starts, so a chart of
earlier settings never stands beside the progress of new ones.

The status box and the results area are two places on the page, never one
place refilled: Streamlit's server merges a message into a queued one for the
same place, so the results' first elements, written where the status box's
progress bar was, would be merged into its last queued update, ahead of the
results area itself, which then reaches the browser empty (and the next
element blanks the page: "Bad delta path index").
"""

from __future__ import annotations

import time
from typing import Callable, Hashable, TypeVar

import streamlit as st

from ecco_core import backends as ec_backends
from ecco_core import heartbeats
from ecco_core import estimates

from . import backend
from . import settings as limits
from .shared_cache import SharedCache, pickled_nbytes
from .text import user_errors
from .url import respell_old_link

T = TypeVar("T")
#: progress(fraction in [0, 1], message): what a library function's ``progress`` argument takes.
Progress = Callable[[float, str], None]

RESULTS = SharedCache(limits.RESULT_CACHE_MB * 2**20, limits.CACHE_TTL_SECONDS, nbytes=pickled_nbytes)
_STOPPED = "_long_work_stopped"
_UPDATE_EVERY_S = 0.25
#: Work expected to take less than this runs without a status box (it would only flicker).
QUICK_S = 2.0


def cached_analysis(compute: Callable[[], T], *, key: str, settings: Hashable, spinner: str | None = None) -> T:
    """The result of ``compute()`` for ``settings``, computed at most once for all sessions: a quick analysis.

    The same cache as :func:`long_work` (``settings.RESULT_CACHE_MB``, each
    entry kept ``settings.CACHE_TTL_SECONDS``), for work that takes a second
    or two and needs no estimate or Stop (a page calls it through :func:`quick_analysis`):
    a spinner shows while it computes::

        sal = dashboard.cached_analysis(
            lambda: ec.saliency(lm, cap, method=method), key="saliency",
            settings=(dashboard.capture_key(cap), method), spinner="Attributing…",
        )

    ``key`` names the analysis (unique to the page), ``settings`` everything
    its result depends on besides where the model runs (:func:`backend.place`, always part of the key). The result is shared, not copied: it must be
    read-only, as the library's results are. An exception is not cached.
    """
    cache_key = (key, settings, backend.place())
    found = RESULTS.peek(cache_key)
    if found is not None:
        return found
    if spinner is None:
        return RESULTS.get(cache_key, compute)
    with st.spinner(spinner):
        return RESULTS.get(cache_key, compute)


def duration(seconds: float) -> str:
    """``"about 40 s"``, ``"about 3 min"``: an estimate, rounded as one."""
    if seconds < 1:
        return "under a second"
    if seconds < 90:
        return f"about {max(1, round(seconds)):d} s"
    return f"about {round(seconds / 60):d} min"


def run_button(label: str, *, key: str, settings: Hashable, estimate_s: float, flag: str,
               linkable: bool = True) -> bool:
    """A button that starts a run the page does only on request, its estimate beside it; True once pressed.

    The settings it was pressed for stay pressed for the session, so their
    result stays while the page reruns; ``flag=true`` in the URL says a run is
    shown, so a copied link opens with it (only while ``linkable``: an upload
    is not in the link). ``key`` is the button's widget key.
    """
    respell_old_link(flag)
    pressed = st.session_state.setdefault(
        f"{key}_pressed", {settings} if linkable and st.query_params.get(flag) == "true" else set())
    button, note = st.columns([1, 4], vertical_alignment="center")
    if button.button(label, type="primary", key=key, width="stretch"):
        pressed.add(settings)
    if backend.place() == backend.HERE:
        note.caption(f"These settings: {duration(estimate_s)} on this machine (2 shared CPU cores; busy, it can take "
                     "several times longer).")
    else:
        note.caption(f"These settings: {duration(estimate_s)} {AT_THIS_PACE}; NDIF's wait shows while it runs.")
    showing = settings in pressed
    if showing and linkable:
        st.query_params[flag] = "true"
    else:
        st.query_params.pop(flag, None)
    return showing


def time_left(elapsed: float, fraction: float, estimate_s: float) -> tuple[float, float]:
    """Seconds left and in all, ``elapsed`` seconds into work ``fraction`` done, so that they always agree.

    Once the progress measures the pace (past 2%), the time left is
    extrapolated from it and the total is the elapsed time plus that time
    left; before (or while a step reports no progress), both follow the
    estimate, and a run past its estimate says so rather than count down.
    """
    if fraction > 0.02:
        left = elapsed * (1 - fraction) / fraction
        return left, elapsed + left
    return max(0.0, estimate_s - elapsed), max(estimate_s, elapsed)


#: How an estimate is qualified on NDIF: it is this machine's cost model, and NDIF's queue is not in it.
AT_THIS_PACE = "at this machine's pace (NDIF's queue not included)"


def estimated_where() -> str:
    """Where this session's estimates hold: "on this machine", or on NDIF :data:`AT_THIS_PACE`."""
    return "on this machine" if backend.place() == backend.HERE else AT_THIS_PACE


def progress_text(message: str, elapsed: float, fraction: float, estimate_s: float,
                  where: str = "on this machine") -> str:
    """The status bar's text: the step, the time so far, left and in all (:func:`time_left`), expected ``where``."""
    left, total = time_left(elapsed, fraction, estimate_s)
    if fraction <= 0.02 and elapsed > estimate_s:
        return f"{message}: {elapsed:.0f} s so far, longer than the {duration(estimate_s)} expected {where}"
    return f"{message}: {elapsed:.0f} s so far, {duration(left)} left, {duration(total)} expected {where}"


def long_work(
    title: str,
    compute: Callable[[Progress], T],
    *,
    key: str,
    settings: Hashable,
    estimate_s: float,
    alone: bool = False,
) -> tuple[T | None, st.delta_generator.DeltaGenerator]:
    """The result of ``compute`` for ``settings``, computed at most once for all sessions, with its work on show.

    Call it where the page's results go and draw them in the returned area::

        table, area = dashboard.long_work(
            "Training the probes", lambda progress: ec.probe_table(lm, corpus, progress=progress),
            key="probe", settings=(lm.name, n_tokens, trials), estimate_s=estimates.probing_seconds(...),
        )
        if table is None:
            st.stop()
        with area:
            st.plotly_chart(...)

    Parameters
    ----------
    title : str
        What is being done ("Training the probes").
    compute : callable(progress) -> result
        The work; it calls ``progress(fraction, message)`` now and then (a
        library function's ``progress`` argument). Its result must be picklable
        and read-only: it is shared by every session.
    key : str
        Unique to the page (widget keys derive from it).
    settings : hashable
        Everything the result depends on (model name, sizes, options): the cache key.
    estimate_s : float
        Seconds the work should take on this machine, shown before it starts;
        work under ``QUICK_S`` just runs.
    alone : bool, default False
        Run with no other run of the server at once (``RunGate.turn``): work
        whose peak memory would take the server past its budget beside another.

    Returns
    -------
    (result, area)
        ``result`` is None when the user stopped these settings (a message and
        a *Run again* button are shown in its place). ``area`` is the container
        for the results, just below the status box, which goes once the work is done.
    """
    cache_key = (key, settings, backend.place())
    # The same two places on every run, whatever the branch: the status box, then the results.
    slot = st.empty()
    results = st.empty()  # an element, not a container: the results of earlier settings go at once
    found = RESULTS.peek(cache_key)
    if found is not None:
        return found, results.container()
    stopped = st.session_state.setdefault(_STOPPED, {})
    if estimate_s < QUICK_S:
        return RESULTS.get(cache_key, lambda: _timed(compute, lambda fraction, message: None, estimate_s),
                           alone=alone), results.container()
    if stopped.get(key) == settings:
        with slot.container():
            st.warning(f"{title}: stopped. Change a setting or run it again ({duration(estimate_s)}).")
            # Forgotten before the next run, which then draws the status box here without this notice first.
            st.button("Run again", key=f"{key}_run_again", on_click=stopped.pop, args=(key, None))
        return None, results
    # The label keeps the estimate made before the start; the bar, the time left and in all at the measured pace.
    where = estimated_where()
    status = slot.status(f"{title}: estimated at {duration(estimate_s)} {where}", expanded=True)
    bar = status.progress(0.0, text=progress_text("Starting…", 0.0, 0.0, estimate_s, where))
    if status.button("Stop", key=f"{key}_stop", help="Stops the work; its settings stay as they are."):
        stopped[key] = settings
        st.rerun()  # drawn as stopped, with its Run again button, by the branch above
    started = time.perf_counter()
    last_update, last_fraction = [0.0], [0.0]

    def progress(fraction: float, message: str) -> None:
        now = time.perf_counter()
        if now - last_update[0] < _UPDATE_EVERY_S and fraction < 1:
            return
        last_update[0] = now
        fraction = last_fraction[0] = min(max(float(fraction), 0.0), 1.0)
        bar.progress(fraction, text=progress_text(message, now - started, fraction, estimate_s, where))

    def waiting(status: str, waited_s: float) -> None:  # a request on NDIF, as NDIF reports it (queued, running)
        progress(last_fraction[0], f"NDIF: {status.lower()} for {waited_s:.0f} s")

    def watched(progress: Progress) -> T:
        # The box shows the time, so batches reported as steps beat every second too (ecco_core.heartbeats).
        with ec_backends.watching(waiting), heartbeats():
            return compute(progress)

    try:
        result = RESULTS.get(cache_key, lambda: _timed(watched, progress, estimate_s), alone=alone)
    except Exception:
        status.update(label=f"{title}: failed", state="error", expanded=False)
        raise
    slot.empty()
    return result, results.container()


def analysis(
    title: str,
    compute: Callable[[Progress], T],
    *,
    key: str,
    settings: Hashable,
    estimate: Callable[[], float],
    check: Callable[[], object] | None = None,
    beside: bool = False,
    alone: bool = False,
) -> tuple[T | None, st.delta_generator.DeltaGenerator | None]:
    """A page's call of its analysis, the same on every page: checked, estimated, run as :func:`long_work`.

    ``check()`` raises the page's input errors in the words of its controls
    (before anything runs), ``estimate()`` gives the seconds announced (after
    the check: sizing the work may find bad input too); both, and the work
    itself, show an input error as ``st.error`` (:func:`~dashboard.text.user_errors`)::

        result, area = dashboard.analysis(
            "Factoring the neuron activations", lambda progress: ec.factors(cap, method, progress=progress),
            key="factors", settings=(dashboard.capture_key(cap), method),
            estimate=lambda: estimates.factors_seconds(cap, method),
        )
        with area:
            st.plotly_chart(...)

    Without a result (an input error shown, or the settings stopped, with
    their *Run again* button) the page stops there; a check drawn ``beside``
    the page's result (faithfulness, a baseline) returns ``(None, None)``
    instead, so that the page goes on. The other arguments and the returned
    ``(result, area)`` are :func:`long_work`'s.
    """
    def run() -> tuple[T, st.delta_generator.DeltaGenerator] | None:
        result, area = long_work(title, compute, key=key, settings=settings, estimate_s=estimate(), alone=alone)
        return None if result is None else (result, area)

    return _called(run, check, beside) or (None, None)


def quick_analysis(
    spinner: str | None,
    compute: Callable[[], T],
    *,
    key: str,
    settings: Hashable,
    check: Callable[[], object] | None = None,
    beside: bool = False,
) -> T | None:
    """A page's call of a quick analysis, the same on every page: checked, run as :func:`cached_analysis`.

    As :func:`analysis`, for work of a second or two: ``check()`` first, then
    ``compute()`` with ``spinner`` showing (if any), an input error of either shown as
    ``st.error``; without a result the page stops there, or, ``beside`` the
    page's result, the call returns None and the page goes on::

        att = dashboard.quick_analysis(
            "Computing attention…", lambda: ec.attention(lm, cap, method),
            key="attention", settings=(dashboard.capture_key(cap), method),
        )
        st.plotly_chart(plots.attention_heatmap(att, 0, 0))

    ``key`` and ``settings`` are :func:`cached_analysis`'s; the result, shared by every session, is read-only.
    """
    return _called(lambda: cached_analysis(compute, key=key, settings=settings, spinner=spinner), check, beside)


def _called(run: Callable[[], T | None], check: Callable[[], object] | None, beside: bool) -> T | None:
    """``run()`` after ``check()``, input errors shown; None without a result (the page stopped unless ``beside``)."""
    found = None
    with user_errors():
        if check is not None:
            check()
        found = run()
    if found is None and not beside:
        st.stop()
    return found


def _timed(compute: Callable[[Progress], T], progress: Progress, estimate_s: float) -> T:
    """``compute(progress)``, its time fed back to the estimates' pace (:func:`ecco_core.estimates.record`).

    Timed here, inside the cache's computation, so that a session that waits
    for another's run of the same settings records nothing; nor does a run on NDIF.
    """
    started = time.perf_counter()
    result = compute(progress)
    if estimate_s > 0 and backend.place() == backend.HERE:  # a run on NDIF says nothing of this machine's pace
        estimates.record(estimate_s, time.perf_counter() - started)
    return result
