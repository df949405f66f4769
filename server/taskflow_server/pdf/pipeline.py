"""Flatten a ``pdfxtract`` result into one row per article (file, page, title, ... summary)."""

from __future__ import annotations

from typing import Any

ROW_FIELDS = ("file", "issue_date", "page", "title", "subtitle", "author", "body", "summary")
"""The columns of :func:`article_rows`, in order."""


def article_rows(result: dict[str, Any]) -> list[dict[str, Any]]:
    """One dict per article of a pdfxtract result; skipped pages give none."""
    rows: list[dict[str, Any]] = []
    for page in result.get("pages", []):
        for article in page.get("articles", []):
            rows.append(
                {
                    "file": result.get("filename", ""),
                    "issue_date": result.get("issue_date", "unknown"),
                    "page": page.get("page_number"),
                    "title": article.get("title", ""),
                    "subtitle": article.get("subtitle", ""),
                    "author": article.get("author", ""),
                    "body": article.get("body", ""),
                    "summary": article.get("summary", ""),
                }
            )
    return rows


def skipped_pages(result: dict[str, Any]) -> list[tuple[int, str]]:
    """(page number, reason) of every page the extraction skipped."""
    return [
        (int(page["page_number"]), str(page.get("reason") or ""))
        for page in result.get("pages", [])
        if page.get("status") == "skipped"
    ]
