"""Typed errors. Every message says the value, what was allowed, and how to fix it.

PipelineError
 ├─ ConfigError     bad option / preset / config value (exit code 2)
 ├─ InputError      unreadable or malformed input data (exit code 3)
 └─ IntegrityError  an artifact does not match its manifest or format (exit code 4)
"""

from __future__ import annotations


def _rebuild(cls: type, args: tuple, state: dict) -> PipelineError:
    e = cls.__new__(cls, *args)
    e.args = args
    e.__dict__.update(state)
    return e


class PipelineError(Exception):
    """Base class of every error the pipeline raises on purpose."""

    exit_code = 1

    def __reduce__(self):
        # Errors cross process boundaries (pool workers, later Ray tasks). Exception's own pickling
        # calls cls(*self.args), which breaks for subclasses whose __init__ takes other
        # arguments (a BrokenProcessPool instead of the error): rebuild without calling __init__.
        return _rebuild, (type(self), self.args, self.__dict__)


class ConfigError(PipelineError, ValueError):
    exit_code = 2


class InputError(PipelineError):
    exit_code = 3


class IntegrityError(PipelineError):
    exit_code = 4
