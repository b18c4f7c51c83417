"""The error hierarchy of fwscan.

Library code raises these; only :mod:`fwscan.cli` turns them into one-line messages and exit
codes (see ``EXIT_CODES``). Nothing in the library calls ``sys.exit``.
"""

from __future__ import annotations


class FwscanError(Exception):
    """Base of every error fwscan raises on purpose."""

    exit_code = 1


class InputError(FwscanError):
    """The input given on the command line cannot be used (missing, unreadable, unknown)."""

    exit_code = 2


class ManifestError(FwscanError):
    """A build manifest (YAML) is invalid; the message names the field."""

    exit_code = 3


class UnpackError(FwscanError):
    """A container or image is malformed, truncated, or violates a limit."""

    exit_code = 4


class IntegrityError(UnpackError):
    """A hash recorded in the firmware does not match the data (payload operation, partition)."""

    exit_code = 5


class NeedsSourceError(UnpackError):
    """An incremental update can only be applied on top of its source build."""

    exit_code = 6


class LimitError(UnpackError):
    """A size or count read from the input exceeds a configured limit."""

    exit_code = 4


class AnalysisError(FwscanError):
    """An artifact (APK, DEX, ELF, configuration file) cannot be analysed."""

    exit_code = 4


class SignatureError(FwscanError):
    """A signature file in ``signatures/`` is invalid; the message names file, rule and field."""

    exit_code = 8


class ToolError(FwscanError):
    """An external tool the synthesizer needs (mke2fs, ...) is missing or failed."""

    exit_code = 7


EXIT_CODES: dict[int, str] = {
    0: "success",
    1: "internal or unexpected error",
    2: "bad input: file missing, unreadable, or of a format fwscan does not read",
    3: "invalid build manifest",
    4: "malformed or over-limit firmware (truncated, bad magic, bad header, limit exceeded)",
    5: "integrity failure: an operation or partition hash does not match",
    6: "incremental update: the source build is needed",
    7: "an external tool needed to synthesize firmware is missing or failed",
    8: "invalid signature files",
    9: "the gate failed: the build gains findings that --fail-on forbids",
}
