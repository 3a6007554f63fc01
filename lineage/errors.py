"""Every error lineage raises on purpose.

The CLI turns any `LineageError` into one line on stderr and the exit code of its
class, so scripts can tell "not found" from "bad input" without parsing text.
"""

from __future__ import annotations


class LineageError(Exception):
    """Base class: an expected failure with a message meant for the user."""

    exit_code = 1


class UsageError(LineageError):
    """The request itself is malformed (bad name, bad reference, bad option)."""

    exit_code = 2


class MissingExtraError(UsageError):
    """A feature needs an optional part of lineage that is not installed (an extra)."""


class InvalidNameError(UsageError):
    """A model, alias or test name that lineage does not accept."""


class InvalidReferenceError(UsageError):
    """A reference such as `a@@1` that does not parse."""


class WorkspaceNotFoundError(LineageError):
    """No `.lineage/` workspace at or above the given directory."""

    exit_code = 3


class WorkspaceExistsError(LineageError):
    """`lineage init` on a directory that already holds a workspace."""


class NotFoundError(LineageError):
    """A model, version, alias or object that does not exist."""

    exit_code = 4


class ModelNotFoundError(NotFoundError):
    """No model of that name."""


class VersionNotFoundError(NotFoundError):
    """The model exists but the version or alias does not."""


class ModelExistsError(LineageError):
    """`lineage add` with a name that is already taken."""

    exit_code = 5


class CycleError(LineageError):
    """An edge that would make the derivation graph cyclic."""

    exit_code = 6


class WeightsError(LineageError):
    """Weights that cannot be read: missing path, no weights, malformed or pickled files."""

    exit_code = 7


class StoreError(LineageError):
    """The object store failed: missing or corrupt object, backend unreachable."""

    exit_code = 8


class CorruptObjectError(StoreError):
    """An object whose bytes do not hash to its id."""


class RecipeError(LineageError):
    """Unknown recipe, invalid parameters, or a parent the recipe cannot use."""

    exit_code = 9


class DataError(LineageError):
    """A data set that is missing, empty or has the wrong columns."""

    exit_code = 10


class ModelTestError(LineageError):
    """A test declaration that is invalid (unknown kind, non-numeric threshold...)."""

    exit_code = 11


class TestsFailedError(LineageError):
    """`lineage test` ran and at least one test failed."""

    __test__ = False  # not a pytest class
    exit_code = 12


class PromotionError(LineageError):
    """A promotion or rollback that lineage refuses (tests not passed, unknown target)."""

    exit_code = 13


class TrackingError(LineageError):
    """MLflow could not be reached or refused a write."""

    exit_code = 14


class OrchestrationError(LineageError):
    """Prefect could not be reached or a flow could not be run."""

    exit_code = 15


class RunnerError(LineageError):
    """A derive or test step failed inside its runner (process or container)."""

    exit_code = 16


class MissingObjectError(StoreError):
    """An object or manifest the store should hold but does not."""


class MaterializeError(StoreError):
    """A derivable version whose re-made files do not match the stored hashes."""
