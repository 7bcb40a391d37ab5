"""handoffs: is delegation working? Tracing, detection and gating for LLM multi-agent systems."""

from pathlib import Path as _Path

__version__ = "0.1.0"

# Installed, the subpackages (handoffs.sdk, handoffs.store, ...) sit inside this folder. In a
# source checkout they are its sibling folders (pyproject.toml maps them), and a script run from
# the checkout's root imports this folder directly; let it find them there too.
_checkout = _Path(__file__).resolve().parent.parent
if (_checkout / "pyproject.toml").is_file() and (_checkout / "store" / "__init__.py").is_file():
    __path__.append(str(_checkout))
