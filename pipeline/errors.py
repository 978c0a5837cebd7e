"""Typed errors. Every message says the value, what was allowed, and how to fix it.

PipelineError
 ├─ ConfigError     bad option / preset / config value (exit code 2)
 ├─ InputError      unreadable or malformed input data (exit code 3)
 └─ IntegrityError  an artifact does not match its manifest or format (exit code 4)
"""

from __future__ import annotations


class PipelineError(Exception):
    """Base class of every error the pipeline raises on purpose."""

    exit_code = 1


class ConfigError(PipelineError, ValueError):
    exit_code = 2


class InputError(PipelineError):
    exit_code = 3


class IntegrityError(PipelineError):
    exit_code = 4
