"""A program run as ``python -m tests.compat_progs.mainpkg.app``."""
