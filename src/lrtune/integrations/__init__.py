"""Thin adapters from training frameworks to lrtune's core (one module per framework)."""
