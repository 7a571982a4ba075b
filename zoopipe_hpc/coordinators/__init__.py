"""Coordinators: sharding the input, and committing or rolling back the outputs."""

from .base import BaseCoordinator, CompositeCoordinator
from .file_merge import FileMergeCoordinator, MergeTarget

__all__ = ["BaseCoordinator", "CompositeCoordinator", "FileMergeCoordinator", "MergeTarget"]
