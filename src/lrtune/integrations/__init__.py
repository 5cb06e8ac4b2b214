"""Thin entry points for other training frameworks, built on the core range test."""
