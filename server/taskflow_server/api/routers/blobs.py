"""Uploaded files (blobs): ask whether the server already holds a file before uploading it."""

from __future__ import annotations

import re
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path

from taskflow_server.api.deps import ApiContext, ContextDep
from taskflow_server.api.schemas import BlobInfo, ErrorResponse

router = APIRouter(prefix="/api/v1/blobs", tags=["blobs"])

_SHA256 = re.compile(r"^[0-9a-f]{64}$")

Sha256Path = Annotated[
    str, Path(min_length=64, max_length=64, description="The file's sha256, lower-case hex.")
]


_RESPONSES: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorResponse, "description": "No such file (or it expired)."}
}


@router.get("/{sha256}", response_model=BlobInfo, responses=_RESPONSES, summary="A stored file")
async def blob_info(sha256: Sha256Path, ctx: ContextDep) -> BlobInfo:
    """200 with the size when the file is stored (a pdfxtract task may reference it by sha256),
    404 when it must be uploaded first."""
    return await _info(sha256, ctx)


@router.head(
    "/{sha256}",
    response_model=BlobInfo,
    responses=_RESPONSES,
    summary="Whether the server holds a file",
    operation_id="blob_exists",
)
async def blob_exists(sha256: Sha256Path, ctx: ContextDep) -> BlobInfo:
    """As GET, without a body: 200 when stored, 404 when it must be uploaded."""
    return await _info(sha256, ctx)


async def _info(sha256: str, ctx: ApiContext) -> BlobInfo:
    if not _SHA256.match(sha256):
        raise HTTPException(422, "sha256 must be 64 lower-case hex characters")
    size = await ctx.blobs.size(sha256)
    if size is None:
        raise HTTPException(404, f"no uploaded file with sha256 {sha256}")
    return BlobInfo(sha256=sha256, size=size)
