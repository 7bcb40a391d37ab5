"""First-run page: shown while the store holds no runs, or cannot be read at all."""

from __future__ import annotations

import streamlit as st

from handoffs.dashboards import ui
from handoffs.errors import HandoffsError
from handoffs.store.url import redact

st.title("handoffs: is delegation working?")

url = redact(ui.store_url(), "PASSWORD")  # the page may be on a shared screen: never the password
try:
    state = ui.q("store_state")
except HandoffsError as exc:
    text = str(exc)
    if "UNKNOWN_TABLE" in text or "does not exist" in text:
        st.warning(f"The store at `{url}` has no handoffs tables yet.")
        st.markdown(f"Create them with `handoffs migrate --store {url}`, or fill the store "
                    "with `handoffs demo`.")
    else:
        st.error(f"Cannot read the store at `{url}`: {text}")
        st.markdown("Check the `--store` URL (or `$HANDOFFS_STORE`) and that the server or "
                    "the process holding the embedded store is running.")
    st.stop()

st.info("This store has no runs yet. The dashboard fills in as soon as a run span arrives.")
if state["spans"]:
    st.markdown(
        f"It holds **{state['spans']:,} spans** but none of them is a run span "
        "(`handoff.span.type = run` with a `handoff.run.id`). Wrap each execution of your team "
        "in the SDK's run, or import logs with `handoffs import`.")

st.subheader("Get data in")
st.markdown("**See it work now** with the simulated team (injected failures included):")
st.code(f"handoffs demo --store {url}", language="bash")
st.markdown("**Send your own agents' traces** over OTLP/HTTP and judge them:")
st.code(f"handoffs collect --store {url}      # listens on 127.0.0.1:4318\n"
        "export OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:4318\n"
        f"handoffs detect --store {url}", language="bash")
st.markdown("**Import published logs** (Who&When, MAST):")
st.code(f"handoffs import who-and-when PATH... --store {url}", language="bash")
st.caption("Then reload this page. See docs/dashboard.md for what each page shows.")
