"""Versioned, forward-only schema migrations shipped with the package (data files)."""
