"""Browser tests against the real hub."""
