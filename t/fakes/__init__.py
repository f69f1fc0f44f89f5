"""Fake third-party services for the end-to-end suites."""
