"""Ecco Explorer: ``streamlit run app.py`` starts it.

Streamlit serves ``Home.py`` as the home page and ``pages/`` as the views. This
file adds one start-up step, an ``st.App`` lifespan: the default model loads in
the background while the server starts and the first browser loads the app, so
a fresh server (or a Space waking up) shows its first result sooner. Set
``ECCO_PRELOAD_MODEL`` to another model's name, or to nothing to skip it. Then
what the server holds for good is kept out of the garbage collector's walks
(``dashboard.shared_cache.freeze_long_lived``).
"""

import threading
from contextlib import asynccontextmanager

import streamlit as st


def _preload() -> None:
    import dashboard  # torch and transformers: imported here, so the server answers at once
    from dashboard.shared_cache import freeze_long_lived

    dashboard.preload_model()
    freeze_long_lived()  # what the server holds for good, out of the collection after each run


@asynccontextmanager
async def lifespan(_app):
    threading.Thread(target=_preload, name="ecco-explorer-preload", daemon=True).start()
    yield


app = st.App("Home.py", lifespan=lifespan)
