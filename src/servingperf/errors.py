"""The one exception tree of servingperf, and the documented exit codes.

::

    ServingPerfError                 base of everything we raise on purpose
    ├── ConfigError                  bad user input: scenario files, datasets, flags   -> exit 2
    ├── StoreError                   the results store cannot be read or written       -> exit 2
    ├── RunDirError                  a run directory is missing, unreadable or too new -> exit 2
    ├── TargetError                  a model server cannot be reached or misbehaves    -> exit 3
    └── DeployError                  a platform cannot deploy or tear down an instance -> exit 3

A failed *request* is never an exception: it is a record with an error kind (DESIGN.md §3).
Foreign exceptions are translated at the boundary into this tree, chained with ``raise ... from``.
Anything else escaping to the CLI is a bug in the tool and is shown with its traceback.
"""

from __future__ import annotations

import enum


class ExitCode(enum.IntEnum):
    """Process exit codes, documented in the README."""

    OK = 0
    REGRESSION = 1  # a regression or an SLO breach was found
    BAD_INPUT = 2
    TARGET_FAILURE = 3
    INVALID_RUN = 4  # the gate refused to judge: a candidate or reference run is invalid
    INCOMPARABLE = 5  # the gate or compare refused: the two sides' fingerprints differ
    INTERRUPTED = 130


class ServingPerfError(Exception):
    """Base class: every error the tool raises on purpose carries its exit code."""

    exit_code: ExitCode = ExitCode.BAD_INPUT


class ConfigError(ServingPerfError):
    """A scenario file, dataset, or flag is invalid; the message names file, line and field."""

    exit_code = ExitCode.BAD_INPUT


class StoreError(ServingPerfError):
    """The results store cannot be opened, migrated, read or written."""

    exit_code = ExitCode.BAD_INPUT


class RunDirError(ServingPerfError):
    """A run directory is missing, unreadable, or written by a newer servingperf."""

    exit_code = ExitCode.BAD_INPUT


class TargetError(ServingPerfError):
    """A model server is unreachable or never becomes usable."""

    exit_code = ExitCode.TARGET_FAILURE


class DeployError(ServingPerfError):
    """A platform failed to deploy, observe or delete a model instance."""

    exit_code = ExitCode.TARGET_FAILURE
