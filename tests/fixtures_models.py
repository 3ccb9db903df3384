"""Fixtures for the models area (see conftest.py)."""
