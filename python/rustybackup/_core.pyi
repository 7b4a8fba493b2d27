"""Type stubs for the native module ``rustybackup._core`` (checked by mypy.stubtest)."""

__version__: str

# --- cron (issue 2) ---

# --- scan (issue 3) ---

# --- chain (issues 4, 7) ---

# --- engine (issue 4) ---
