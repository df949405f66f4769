"""Files to upload: what the clients know about one before sending it, and when they read it.

A file given by its path is hashed in chunks (:func:`hash_file`) and only its path, size and
sha256 are kept: its bytes are read when the request that uploads it is built, and dropped once
it has been sent. A batch of a thousand PDFs therefore holds a thousand paths, not a thousand
files. Bytes and file objects, which cannot be read again later, are kept as given.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from taskflow_sdk.errors import FileChangedError

__all__ = ["HASH_CHUNK", "FileInput", "Upload", "hash_file", "read_upload"]

FileInput = str | os.PathLike[str] | bytes | bytearray | memoryview | IO[bytes]
"""What ``extract_pdf`` accepts: a path, the bytes, or a binary file object."""

HASH_CHUNK = 1 << 20
"""Bytes read at a time when hashing a file (1 MiB)."""
PDF = "application/pdf"
"""The content type uploads are sent with unless told otherwise."""


def hash_file(path: Path) -> tuple[str, int]:
    """The sha256 (hex) and size of a file, read :data:`HASH_CHUNK` bytes at a time."""
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as handle:
        while chunk := handle.read(HASH_CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


@dataclass(frozen=True)
class Upload:
    """A file to upload: its name, sha256 (hex) and size, and where its bytes come from.

    ``path``: read when the upload request is built (:meth:`read`); ``data``: the bytes, for
    inputs that cannot be read again (given as bytes or as a file object). Exactly one is set.
    """

    filename: str
    sha256: str
    size: int
    path: Path | None = None
    data: bytes | None = field(default=None, repr=False)
    content_type: str = PDF

    def __post_init__(self) -> None:
        if (self.path is None) == (self.data is None):
            raise ValueError("an Upload needs exactly one of path= or data=")

    def read(self) -> bytes:
        """The bytes to send: those held, or the file read now.

        Raises :class:`~taskflow_sdk.errors.FileChangedError` when the file's content is no
        longer the one hashed.
        """
        if self.data is not None:
            return self.data
        assert self.path is not None
        data = self.path.read_bytes()
        if hashlib.sha256(data).hexdigest() != self.sha256:
            raise FileChangedError(f"{self.path} changed since it was hashed; submit it again")
        return data


def read_upload(file: FileInput, filename: str | None = None) -> Upload:
    """An :class:`Upload` of ``file``: a path is hashed (not kept in memory), bytes and file
    objects are read and kept. The name is ``filename``, else the path's or file object's."""
    if isinstance(file, str | os.PathLike):
        path = Path(file)
        sha256, size = hash_file(path)
        return Upload(filename=filename or path.name, sha256=sha256, size=size, path=path)
    name: str | None = filename
    data: bytes
    if isinstance(file, bytes | bytearray | memoryview):
        data = bytes(file)
    else:
        raw: Any = file.read()
        if not isinstance(raw, bytes | bytearray):
            raise TypeError("extract_pdf needs a binary file object (open it with 'rb')")
        data = bytes(raw)
        given = getattr(file, "name", None)
        if name is None and isinstance(given, str):
            name = Path(given).name
    return Upload(
        filename=name or "upload.pdf",
        sha256=hashlib.sha256(data).hexdigest(),
        size=len(data),
        data=data,
    )
