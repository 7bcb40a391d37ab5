"""What every page shares: the store connection, cached queries, filters, status labels.

The store is opened once per server process (``st.cache_resource``), read-only
(``read_only=True``: writes refused, no migrations); query results are cached for ``CACHE_TTL`` seconds, keyed by the store
URL and the query's parameters, so moving between pages does not re-run the same SQL.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Sequence
from typing import Any, Final

import pandas as pd
import streamlit as st

from handoffs.store import Store, open_store
from handoffs.store.url import default_store_url

from . import ENV_PROJECT, queries

CACHE_TTL: Final = 30  # seconds: fresh enough to watch runs arrive, cheap on page switches
WINDOWS: Final[dict[str, int | None]] = {
    "last 24 hours": 86_400,
    "last 7 days": 7 * 86_400,
    "last 30 days": 30 * 86_400,
    "last 90 days": 90 * 86_400,
    "all time": None,
}
DEFAULT_WINDOW: Final = "all time"
# A table cell with no value (Streamlit writes "None", which reads as a value called None).
MISSING: Final = "—"
MAX_LISTED_PROJECTS: Final = 20
STATUS_LABELS: Final[dict[str, str]] = {
    "failed": "❌ failed",
    "warning": "⚠️ warning",
    "passed": "✅ passed",
    "not checked": "⏳ not checked",
}
# What starts Markdown inline (emphasis, code, links and images, HTML and entities, tables,
# strike-through) and Streamlit's own (`$` LaTeX, `:red[...]` colours, `:emoji:`). Line-start
# marks (#, -, +, 1.) need none: these texts are set inside a line.
_MARKDOWN_SPECIAL = re.compile(r"([\\`*_\[\]!<>$:&|~])")


def literal(text: object) -> str:
    """``text`` to be shown as written inside Markdown. Agent names, run ids and evidence come
    from traces: read as Markdown, a finding's text could render an image that calls a URL,
    links, LaTeX or colours."""
    return _MARKDOWN_SPECIAL.sub(r"\\\1", str(text))


def code(text: object) -> str:
    """``text`` as inline code, fenced by more backticks than it holds so none ends it early."""
    text = str(text)
    if "`" not in text:
        return f"`{text}`"
    fence = "`" * (max(len(run) for run in re.findall("`+", text)) + 1)
    return f"{fence} {text} {fence}"  # the spaces let a backtick begin or end it


# One colour per status, legible on light and dark backgrounds.
STATUS_COLORS: Final[dict[str, str]] = {
    "failed": "#e5484d", "warning": "#f5a524", "passed": "#30a46c", "not checked": "#8b8d98",
}


def store_url() -> str:
    """The store this dashboard reads: ``$HANDOFFS_STORE`` (set by ``handoffs dashboard``)."""
    return default_store_url()


@st.cache_resource(show_spinner=False)
def _open(url: str) -> Store:
    return open_store(url, read_only=True)


def store() -> Store:
    return _open(store_url())


@st.cache_data(ttl=CACHE_TTL, show_spinner=False)
def _cached(url: str, name: str, args: tuple, kwargs: tuple) -> Any:
    return getattr(queries, name)(_open(url), *args, **dict(kwargs))


def q(name: str, *args: Any, **kwargs: Any) -> Any:
    """Call ``queries.<name>`` on this dashboard's store, through the short-lived cache."""
    frozen = tuple(sorted((k, tuple(v) if isinstance(v, list) else v) for k, v in kwargs.items()))
    return _cached(store_url(), name, tuple(args), frozen)


def pinned_project() -> str:
    """The project this dashboard is pinned to, or "" when its users may switch projects."""
    return os.environ.get(ENV_PROJECT, "")


def window() -> tuple[str, int]:
    """The sidebar's project and time window, as (project, since in unix seconds).

    ``since`` is rounded to the minute so cached results are reused within a minute.
    """
    project = pinned_project() or st.session_state.get("project", "")
    seconds = WINDOWS.get(st.session_state.get("window", DEFAULT_WINDOW))
    since = 0 if seconds is None else int(time.time() // 60 * 60) - seconds
    return project, since


def from_url(key: str, options: Sequence[Any], default: Any, multi: bool = False) -> None:
    """Before the widget ``key`` is drawn: its value from the URL's query parameter ``key`` when
    this session has none yet (a reload or a shared link starts a new session), else
    ``default``. Values that are not among ``options`` are left out."""
    if key in st.session_state:
        return
    by_text = {str(o): o for o in options}
    values = [by_text[v] for v in st.query_params.get_all(key) if v in by_text]
    st.session_state[key] = values if multi else values[0] if values else default


def to_url(key: str, default: Any) -> None:
    """After the widget ``key`` is drawn: its value into the URL, left out while it is the
    default (so a link carries only what was chosen). Page switches clear the query
    parameters; every page puts its filters back."""
    value = st.session_state.get(key, default)
    if value == default:
        st.query_params.pop(key, None)
    else:
        st.query_params[key] = [str(v) for v in value] if isinstance(value, list) else str(value)


def shared_params() -> dict[str, str]:
    """The sidebar's filters as they stand in the URL, for a link to another page to carry."""
    return {k: st.query_params[k] for k in ("project", "window") if k in st.query_params}


def no_such_project(project: str, projects: Sequence[str]) -> str:
    """Why a page is empty when its project has no runs, and which projects have some."""
    known = ", ".join(code(p) for p in projects[:MAX_LISTED_PROJECTS])
    more = f" and {len(projects) - MAX_LISTED_PROJECTS} more" if len(projects) > MAX_LISTED_PROJECTS else ""
    return (f"Project {code(project)} has no runs in this store. "
            + (f"Projects with runs: {known}{more}." if projects else "No project has runs."))


def sidebar_filters() -> None:
    """Project and time window, shared by every page (kept in session state and in the URL)."""
    pinned = pinned_project()
    options = q("filter_options", pinned)
    projects = options["projects"]
    if pinned and pinned not in projects:
        # Every page would be empty and advise widening the time window, which cannot help.
        st.error(f"{no_such_project(pinned, projects)} This dashboard is pinned to it "
                 "(`handoffs dashboard --project`): start it with one of those, or without `--project`.")
        st.stop()
    wanted = st.query_params.get("project", "")
    if not pinned and "project" not in st.session_state and wanted and wanted not in projects:
        st.warning(f"{no_such_project(wanted, projects)} Showing all projects.")
    from_url("project", [""] + projects, "")
    from_url("window", list(WINDOWS), DEFAULT_WINDOW)
    with st.sidebar:
        if pinned:
            st.caption(f"Project: {code(pinned)}")
        elif len(projects) > 1:
            st.selectbox("Project", [""] + projects, key="project",
                         format_func=lambda p: p or "all projects")
        st.selectbox("Time window", list(WINDOWS), key="window")
        st.caption(f"Store: `{store().url.redacted()}`")
    if not pinned:
        to_url("project", "")
    to_url("window", DEFAULT_WINDOW)


def status_label(status: str) -> str:
    return STATUS_LABELS.get(status, status)


def fmt_duration(seconds: float | None) -> str:
    if seconds is None or pd.isna(seconds):
        return "–"
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 120:
        return f"{seconds:.1f} s"
    return f"{seconds / 60:.1f} min"


DETECT_HINT: Final = ("Widen the time window in the sidebar, or run `handoffs detect` so findings and "
                      "metrics exist for the stored runs.")
WINDOW_HINT: Final = "Widen the time window in the sidebar."


def empty_state(what: str, hint: str = DETECT_HINT) -> None:
    """A short note instead of an empty chart, saying how to get data onto this page."""
    st.info(f"No {what} in this window yet. {hint}")
