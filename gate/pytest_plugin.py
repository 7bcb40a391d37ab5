"""pytest plugin (issue #4): off unless enabled; see handoffs.gate."""
