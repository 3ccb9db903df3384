"""Reproduce the papers' tables: ``reproduce_table("wang2025-table3", corpus=...)`` or
``lmm-apa reproduce TABLE``. Sits on top of train / infer / evaluate, like ``lmm_apa.demo``."""

from lmm_apa.reproduce.runner import reproduce_table
from lmm_apa.reproduce.tables import TABLES, get_table

__all__ = ["TABLES", "get_table", "reproduce_table"]
