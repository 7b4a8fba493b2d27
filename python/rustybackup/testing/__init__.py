"""Hypothesis strategies for users' own property-based suites (issue 8)."""
