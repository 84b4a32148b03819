"""One error tree for the whole package.

The library raises these; only `mbdeploy.cli` turns them into an
`Error: ...` line and an exit code. Each kind carries fields a caller can
branch on, and its message names what was wrong and what is allowed.
"""

from __future__ import annotations


class MbdeployError(Exception):
    """Root of every error mbdeploy raises on purpose."""

    exit_code = 1

    def __init__(self, message: str, **fields: object) -> None:
        super().__init__(message)
        self.message = message
        self.fields = fields


class InvalidInput(MbdeployError):
    """A user-supplied value is out of range or malformed."""

    exit_code = 2


class MissingDependency(MbdeployError):
    """An optional library is not installed; the message names the extra."""

    def __init__(self, module: str, extra: str) -> None:
        super().__init__(
            f"{module} is not installed; install it with: pip install 'mbdeploy[{extra}]'",
            module=module,
            extra=extra,
        )


class WeightsError(MbdeployError):
    """Weights are unreadable, truncated, or do not fit the requested spec."""


class ConversionError(MbdeployError):
    """An export to TFLite, Core ML or ONNX failed."""


class VerificationError(MbdeployError):
    """An exported artifact disagrees with the reference beyond tolerance."""


class ManifestError(MbdeployError):
    """A manifest is missing, unreadable, or names files that do not exist."""


class DeviceError(MbdeployError):
    """A device could not be found, reached, or used."""


class DeviceNotFound(DeviceError):
    """No device, or more than one, matches the requested name."""


class DeviceDisconnected(DeviceError):
    """The device went away while it was in use."""


class RunnerError(MbdeployError):
    """A benchmark runner failed or printed output we cannot parse."""


class OutputError(MbdeployError):
    """An output cannot be written: a full disk, a read-only folder, a file where a folder belongs."""


class ResultsError(MbdeployError):
    """A result record or run folder is invalid, locked or unreadable."""
