"""One run plan: candidates, measurement, choice (and the older per-backend `auto`)."""
