"""Thin entry points for other training frameworks, one module each.

Each module imports its framework when it is imported (never this package), and says which
extra to install when the framework is missing, e.g. ``pip install 'lrtune[keras]'``.
"""
