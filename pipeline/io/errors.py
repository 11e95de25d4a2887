"""The single exception type raised for unreadable image files, and redaction of identifying DICOM values.

Every failure to turn a file into a pixel array (missing, empty, truncated, not an image, undecodable, rejected by a
policy) surfaces as :class:`ImageReadError`, whose message is ``"<path>: <reason>"``. The file path is the only
identifier a message may carry: values from the DICOM header that identify a patient or an institution never appear
in messages or log lines, which is what :func:`redact` helps guarantee for text that comes from third-party decoders.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

__all__ = ["IDENTIFYING_KEYWORDS", "ImageReadError", "find_image_read_error", "redact"]

# DICOM attributes whose values identify a person, an institution, a device or a study (drawn from the attributes
# that the DICOM basic de-identification profile removes). Used only to scrub third-party error text.
IDENTIFYING_KEYWORDS: tuple[str, ...] = (
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "PatientBirthTime",
    "PatientBirthName",
    "PatientMotherBirthName",
    "PatientAddress",
    "PatientTelephoneNumbers",
    "PatientComments",
    "OtherPatientIDs",
    "OtherPatientNames",
    "IssuerOfPatientID",
    "MedicalRecordLocator",
    "AccessionNumber",
    "StudyID",
    "StudyInstanceUID",
    "SeriesInstanceUID",
    "SOPInstanceUID",
    "InstitutionName",
    "InstitutionAddress",
    "InstitutionalDepartmentName",
    "ReferringPhysicianName",
    "PerformingPhysicianName",
    "RequestingPhysician",
    "OperatorsName",
    "StationName",
    "DeviceSerialNumber",
    "StudyDate",
    "StudyTime",
    "AcquisitionDateTime",
)

_REDACTED = "<redacted>"
# Fragments shorter than this are not scrubbed on their own: they would blank out unrelated words and numbers.
_MIN_FRAGMENT = 3


class ImageReadError(ValueError):
    """An image file that cannot be read into a 2-D array.

    The message is ``"<path>: <reason>"``. ``path`` and ``reason`` are also available as attributes.

    Args:
        path: the file that failed. When given alone (as PyTorch does when it re-raises an error from a DataLoader
            worker) it is taken as the whole message and ``reason`` stays ``None``.
        reason: why the file could not be read, in plain words, without any DICOM header value that identifies a
            person or an institution.
    """

    def __init__(self, path: str | os.PathLike, reason: str | None = None) -> None:
        self.path = os.fspath(path)
        self.reason = reason
        super().__init__(self.path if reason is None else f"{self.path}: {reason}")

    def __reduce__(self):
        return (self.__class__, (self.path, self.reason))


def find_image_read_error(exc: BaseException | None) -> ImageReadError | None:
    """Return the first :class:`ImageReadError` in ``exc``'s cause/context chain, or ``None``.

    MONAI's ``Compose`` wraps transform errors in ``RuntimeError("applying transform ...")``; the reader's error is
    then found as the cause.
    """
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, ImageReadError):
            return exc
        seen.add(id(exc))
        exc = exc.__cause__ if exc.__cause__ is not None else exc.__context__
    return None


def redact(text: str, values: Iterable[str]) -> str:
    """Replace every occurrence of the given identifying ``values`` (and of their ``^``-separated name components)
    in ``text`` by ``<redacted>``.

    Args:
        text: a message that may quote header values, typically a third-party exception message.
        values: identifying strings taken from the file's header.

    Returns:
        The scrubbed text.
    """
    fragments: set[str] = set()
    for value in values:
        value = value.strip().strip("\x00").strip()
        if len(value) >= _MIN_FRAGMENT:
            fragments.add(value)
        for part in value.replace("=", "^").split("^"):
            part = part.strip()
            if len(part) >= _MIN_FRAGMENT:
                fragments.add(part)
    # Longest first, so that a full name is replaced before its components.
    for fragment in sorted(fragments, key=len, reverse=True):
        text = text.replace(fragment, _REDACTED)
    return text
