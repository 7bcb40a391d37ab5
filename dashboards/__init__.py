"""The Streamlit dashboard: delegation quality shown the way people watch CI.

``handoffs dashboard --store URL`` serves ``app.py``; every read goes through
``queries.py`` (parameterised SQL, aggregated in ClickHouse, read-only).
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

APP_PATH: Final = Path(__file__).with_name("app.py")
# Set by ``handoffs dashboard --project P``: every page shows that project only, no switching.
ENV_PROJECT: Final = "HANDOFFS_PROJECT"
