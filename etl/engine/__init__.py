"""Run orchestration: extract -> map -> diff -> resolve -> load -> checkpoint."""

from etl.engine.model import Options
from etl.engine.report import EntityReport, RunReport, SideCounts
from etl.engine.run import run_sync

__all__ = ["EntityReport", "Options", "RunReport", "SideCounts", "run_sync"]
