"""Fixtures shared by the whole suite (area fixtures live beside their tests)."""
