"""Read models of the notification log: the board, status intervals, tool calls, and the
runners that keep them exactly once and rebuildable. See docs/projections.md."""

from projections.board_queries import Board, Column, ExecutionPage
from projections.errors import (
    BadEvent,
    InvalidQuery,
    NotFound,
    ProjectionError,
    RebuildInProgress,
    UnknownView,
)
from projections.filters import ExecutionFilter, parse_age
from projections.read_models import ReadModels
from projections.rebuild import RebuildProgress, RebuildReport, rebuild
from projections.registry import VIEWS, ProjectionOptions, datastore_for
from projections.supervisor import ProjectionSupervisor, ViewStatus, start_projections

__all__ = [
    "VIEWS",
    "BadEvent",
    "Board",
    "Column",
    "ExecutionFilter",
    "ExecutionPage",
    "InvalidQuery",
    "NotFound",
    "ProjectionError",
    "ProjectionOptions",
    "ProjectionSupervisor",
    "ReadModels",
    "RebuildInProgress",
    "RebuildProgress",
    "RebuildReport",
    "UnknownView",
    "ViewStatus",
    "datastore_for",
    "parse_age",
    "rebuild",
    "start_projections",
]
