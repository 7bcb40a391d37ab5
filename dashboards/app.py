"""The Streamlit entry script: ``streamlit run`` this file (``handoffs dashboard`` does).

It decides between the first-run page (empty or unreachable store) and the dashboard's five
pages, draws the shared sidebar filters, and turns a store error into one readable message.
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from handoffs.dashboards import ui
from handoffs.errors import HandoffsError
from handoffs.store.engines import quiet_client_logs

HERE = Path(__file__).resolve().parent
quiet_client_logs()  # the pages say what is wrong with the store; the client's warnings repeat it

st.set_page_config(page_title="handoffs", page_icon="🤝", layout="wide")

try:
    has_runs = ui.q("store_state")["runs"] > 0
except HandoffsError:
    has_runs = False  # the welcome page explains what is wrong with the store

if not has_runs:
    page = st.navigation([st.Page(HERE / "welcome_page.py", title="Get started", icon="👋",
                                  url_path="welcome", default=True)])
else:
    page = st.navigation({
        "Delegation CI": [
            # The default page is served at / whatever its url_path: naming one made /runs a dead link.
            st.Page(HERE / "runs_page.py", title="Runs", icon="🧪", default=True),
            st.Page(HERE / "run_page.py", title="Run detail", icon="🔎", url_path="run"),
        ],
        "Analysis": [
            st.Page(HERE / "agents_page.py", title="Agents", icon="🤖", url_path="agents"),
            st.Page(HERE / "modes_page.py", title="Failure modes", icon="🧭", url_path="modes"),
            st.Page(HERE / "compare_page.py", title="Compare", icon="⚖️", url_path="compare"),
        ],
    })

try:
    if has_runs:
        ui.sidebar_filters()  # reads the store too: a store gone since the last page fails here
    page.run()
except HandoffsError as exc:
    st.error(f"The store could not answer this page: {exc}")
