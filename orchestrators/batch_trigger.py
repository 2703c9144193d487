"""Batch runs: a file of requests dropped into the ``generation-batches`` container.

The file is a JSON array of request bodies or JSON Lines (one body per line). Each valid
request starts one orchestration (idempotent by ``generation_request_id``, as POST
/generate is); each invalid one gets a clear error, a request whose id holds a different
request a conflict. The report ``<name>.report.json`` is written to the
``generation-batch-reports`` container of the same account, never beside the batch files
(so no report can overwrite a batch file, or start a batch). One bad line never stops the
others: each entry gets POST /generate's checks on its own (at most 64 KiB, nesting, a JSON
object, the request model, the callback policy).
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

import azure.durable_functions as df
import azure.functions as func

from generation.errors import InvalidRequestError
from generation.request import parse_request
from orchestrators import admission, runtime
from orchestrators.body import MAX_BODY_BYTES, MAX_JSON_DEPTH, decode_json, json_depth
from orchestrators.starter import DurableClient, clear_outputs, start_once

logger = logging.getLogger(__name__)

bp = df.Blueprint()

REPORT_SUFFIX = ".report.json"
MAX_BATCH_BYTES = 16 * 1024 * 1024
MAX_BATCH_REQUESTS = 1000


@dataclass
class BatchReport:
    """What happened to each entry of a batch file."""

    batch: str
    started_at: str
    entries: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None

    @property
    def counts(self) -> dict[str, int]:
        outcomes = [e["outcome"] for e in self.entries]
        kinds = ("started", "duplicate", "conflict", "invalid", "error")
        return {k: outcomes.count(k) for k in kinds}

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "counts": self.counts}


def split_entries(data: bytes) -> list[tuple[int, Any | InvalidRequestError]]:
    """The file's entries as ``(line or index, decoded JSON or the decoding error)``.

    A file whose first non-blank character is ``[`` is one JSON array (numbered from 1);
    anything else is JSON Lines (numbered by line; blank lines skipped). Each line, or array
    item, that is larger than ``MAX_BODY_BYTES`` or nested deeper than ``MAX_JSON_DEPTH`` is
    an error of its own, as is a line that is not UTF-8, as it would be at POST /generate.
    Raises ``InvalidRequestError`` only for an array that is not valid UTF-8 JSON.
    """
    data = data.removeprefix(b"\xef\xbb\xbf")  # a UTF-8 byte order mark, as editors write
    if data.lstrip().startswith(b"["):
        try:
            # One level for the array itself, a few more so that a too-deep item is reported
            # as that item's error; the scan still refuses a depth bomb before parsing.
            items = decode_json(
                data, what="the file", max_bytes=MAX_BATCH_BYTES, max_depth=MAX_JSON_DEPTH + 8
            )
        except InvalidRequestError as error:
            raise InvalidRequestError(f"batch file is not a valid JSON array: {error}") from None
        if not isinstance(items, list):
            raise InvalidRequestError("batch file is not a valid JSON array")
        return [(number, _check_item(item)) for number, item in enumerate(items, start=1)]
    entries: list[tuple[int, Any | InvalidRequestError]] = []
    # Line by line, as bytes: a line that is not UTF-8 is that line's error only. Only "\n"
    # ends a line (a "\r" before it is JSON whitespace); str.splitlines() would also split
    # at characters JSON strings may hold raw, such as U+2028.
    for number, line in enumerate(data.split(b"\n"), start=1):
        if not line.strip():
            continue
        try:
            entries.append((number, decode_json(line, what="line")))
        except InvalidRequestError as error:
            entries.append((number, error))
    return entries


def _check_item(item: Any) -> Any | InvalidRequestError:
    """An array item, or the error POST /generate would give for it as a body."""
    if json_depth(item, MAX_JSON_DEPTH) > MAX_JSON_DEPTH:
        return InvalidRequestError(f"item nests arrays/objects deeper than {MAX_JSON_DEPTH} levels")
    if len(json.dumps(item, ensure_ascii=False).encode("utf-8", "surrogatepass")) > MAX_BODY_BYTES:
        return InvalidRequestError(f"item is larger than {MAX_BODY_BYTES} bytes")
    return item


async def run_batch(name: str, data: bytes, client: DurableClient) -> BatchReport:
    """Start an orchestration per valid entry of batch file ``name``; returns the report."""
    report = BatchReport(batch=name, started_at=datetime.now(UTC).isoformat())
    if len(data) > MAX_BATCH_BYTES:
        report.error = f"batch file is larger than {MAX_BATCH_BYTES} bytes; nothing started"
        return report
    try:
        entries = split_entries(data)
    except InvalidRequestError as error:
        report.error = f"{error}; nothing started"
        return report
    if len(entries) > MAX_BATCH_REQUESTS:
        report.error = f"batch has {len(entries)} requests, at most {MAX_BATCH_REQUESTS}"
        return report
    for position, item in entries:
        report.entries.append(await _start_one(position, item, client))
    logger.info("batch %s: %s", name, report.counts)
    return report


async def _start_one(position: int, item: Any, client: DurableClient) -> dict[str, Any]:
    entry: dict[str, Any] = {"line": position}
    if isinstance(item, InvalidRequestError):
        return {**entry, "outcome": "invalid", "errors": item.errors}
    try:
        request = parse_request(item)
        refused = admission.refusal(request)
        if refused is not None:
            raise refused
    except InvalidRequestError as error:
        return {**entry, "outcome": "invalid", "errors": error.errors}
    instance_id = request.generation_request_id
    entry["generation_request_id"] = instance_id
    try:
        outcome = await start_once(client, request, before_restart=clear_outputs)
    except Exception as error:
        logger.exception("batch entry %s: could not start %s", position, instance_id)
        return {**entry, "outcome": "error", "error": f"{type(error).__name__}: {error}"}
    if outcome.conflict:
        return {
            **entry,
            "outcome": "conflict",
            "instance_id": instance_id,
            "runtime_status": outcome.runtime_status,
            "error": "generation_request_id is already in use by a different request",
        }
    if not outcome.started:
        return {
            **entry,
            "outcome": "duplicate",
            "instance_id": instance_id,
            "runtime_status": outcome.runtime_status,
        }
    return {**entry, "outcome": "started", "instance_id": instance_id}


@bp.blob_trigger(
    arg_name="batch", path=f"{runtime.BATCH_CONTAINER}/{{name}}", connection="AzureWebJobsStorage"
)
@bp.durable_client_input(client_name="client")
async def start_batch(batch: func.InputStream, client) -> None:
    """Blob trigger on ``generation-batches/{name}``; writes
    ``generation-batch-reports/{name}.report.json``."""
    await handle_batch_blob(batch.name or "", batch.read(), client)


async def handle_batch_blob(blob_path: str, data: bytes, client: DurableClient) -> str | None:
    """Run the batch in blob ``blob_path`` and write its report; returns the report's name.

    ``blob_path`` is as the host gives it (``generation-batches/<name>``); every batch
    file is run, whatever its name. Reports go to their own container, so writing one
    starts nothing.
    """
    name = blob_path.split("/", 1)[1] if "/" in blob_path else blob_path
    if not name:
        logger.warning("batch trigger fired without a blob name (%r): nothing run", blob_path)
        return None
    report = await run_batch(name, data, client)
    report_name = name + REPORT_SUFFIX
    runtime.batch_report_store().upload_json(report_name, report.to_dict())
    return report_name
