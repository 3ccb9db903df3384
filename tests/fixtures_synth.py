"""Fixtures for the synth area (see conftest.py)."""
