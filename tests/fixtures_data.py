"""Fixtures for the data area (see conftest.py)."""
