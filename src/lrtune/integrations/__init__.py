"""Thin adapters from other training frameworks to lrtune's core (one module per framework)."""
