"""Reading files to upload (the only file I/O of the clients): a path, bytes or a file object."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import IO, Any

from taskflow_sdk._base import Upload

FileInput = str | os.PathLike[str] | bytes | bytearray | memoryview | IO[bytes]
"""What ``extract_pdf`` accepts: a path, the bytes, or a binary file object."""


def read_upload(file: FileInput, filename: str | None = None) -> Upload:
    """Read ``file`` fully; the name is ``filename``, else the path's or file object's name."""
    name: str | None = filename
    data: bytes
    if isinstance(file, bytes | bytearray | memoryview):
        data = bytes(file)
    elif isinstance(file, str | os.PathLike):
        path = Path(file)
        data = path.read_bytes()
        name = name or path.name
    else:
        raw: Any = file.read()
        if not isinstance(raw, bytes | bytearray):
            raise TypeError("extract_pdf needs a binary file object (open it with 'rb')")
        data = bytes(raw)
        given = getattr(file, "name", None)
        if name is None and isinstance(given, str):
            name = Path(given).name
    return Upload(filename=name or "upload.pdf", data=data, sha256=hashlib.sha256(data).hexdigest())
