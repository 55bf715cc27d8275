"""Dify's Knowledge (dataset) API under /v1/datasets, with dataset keys (`dataset-…`): datasets, documents by
text and by file, indexing status, segments, and retrieval. Shapes and error codes follow Dify's service API."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import math
import time
from pathlib import Path
from typing import Any

from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from promptd.catalog.schema import KnowledgeChunking
from promptd.engine.call import Origin
from promptd.errors import Forbidden, InputError, NotFound
from promptd.faces.dify.completion import IGNORED_HEADER
from promptd.faces.dify.errors import DifyHTTPError
from promptd.faces.dify.wire import decode_object, int_arg
from promptd.knowledge import models
from promptd.knowledge.parsing import EXTENSIONS
from promptd.knowledge.search import Retrieval, to_blob
from promptd.knowledge.service import Knowledge
from promptd.knowledge.store import IN_PROGRESS, DuplicateName
from promptd.services import Services, services
from promptd.store.repository import KeyInfo
from promptd.uuids import new_uuid

__all__ = ["routes"]

log = logging.getLogger("promptd.knowledge")

MB = 1024 * 1024
#: Dify's `retrieval_model.search_method` → promptd's retrieval mode
SEARCH_METHODS = {
    "keyword_search": "full_text",
    "full_text_search": "full_text",
    "semantic_search": "vector",
    "hybrid_search": "hybrid",
}
MODES_TO_METHOD = {"full_text": "full_text_search", "vector": "semantic_search", "hybrid": "hybrid_search"}
DISPLAY = {"waiting": "queuing", "error": "error", "completed": "available"}


async def _auth(request: Request) -> Services:
    svc = services(request)
    request.scope[_KEY] = await svc.keys.authenticate(request.headers.get("authorization"), role="dataset")
    return svc


_KEY = "promptd.dataset_key"


def _origin(request: Request, d: dict[str, Any]) -> Origin:
    """The origin of the model calls this request makes for dataset `d`: the dataset's own scope, with its key."""
    key: KeyInfo = request.scope[_KEY]
    return models.knowledge_origin(d["name"], face="dify", key_id=key.id, limits=key.limits)


def _ts(value: float | None) -> int | None:
    return None if value is None else int(value)


def _page_args(request: Request) -> tuple[int, int]:
    """A listing's `page` and `limit` (1 to 100, default 20), as Dify's dataset API reads them."""
    return int_arg(request.query_params, "page", 1, 1, 1_000_000), int_arg(request.query_params, "limit", 20, 1, 100)


# --- shapes --------------------------------------------------------------------------------------------------------


def _retrieval_model(r: Retrieval) -> dict[str, Any]:
    return {
        "search_method": MODES_TO_METHOD[r.mode],
        "reranking_enable": r.rerank_model is not None,
        "reranking_mode": "reranking_model" if r.rerank_model else None,
        "reranking_model": {"reranking_provider_name": "", "reranking_model_name": r.rerank_model or ""},
        "weights": None,
        "top_k": r.top_k,
        "score_threshold_enabled": r.score_threshold is not None,
        "score_threshold": r.score_threshold,
    }


def _technique(d: dict[str, Any]) -> str:
    """How dataset `d` indexes documents: with embeddings when it has an embedding model, else for full text."""
    return "high_quality" if Retrieval.of(d["retrieval"]).embedding_model else "economy"


async def _dataset(knowledge: Knowledge, d: dict[str, Any], attached: int) -> dict[str, Any]:
    count, chars = await knowledge.store.dataset_counts(d["id"])
    r = Retrieval.of(d["retrieval"])
    # null until the first document sets it (as in Dify); a dataset given documents before promptd stored it so
    # reports what its documents got
    technique = d["indexing_technique"] or (_technique(d) if count else None)
    return {
        "id": d["id"],
        "name": d["name"],
        "description": d["description"],
        "provider": "vendor",
        "permission": "all_team_members",
        "data_source_type": "upload_file" if count else None,
        "indexing_technique": technique,
        "app_count": attached,
        "document_count": count,
        "word_count": chars,
        "created_by": d["source"],
        "created_at": _ts(d["created_at"]),
        "updated_by": d["source"],
        "updated_at": _ts(d["updated_at"]),
        "embedding_model": r.embedding_model,
        "embedding_model_provider": "promptd" if r.embedding_model else None,
        "embedding_available": True,
        "retrieval_model_dict": _retrieval_model(r),
        "tags": [],
        "doc_form": "text_model",
        "external_knowledge_info": None,
        "external_retrieval_model": None,
        "doc_metadata": [],
        "built_in_field_enabled": False,
        "total_documents": count,
        "enable_api": True,
        "chunking": d["chunking"],  # promptd's own: how documents are split
    }


def _document(d: dict[str, Any]) -> dict[str, Any]:
    status = d["indexing_status"]
    display = "indexing" if status in IN_PROGRESS else DISPLAY.get(status, status)
    if status == "completed" and not d["enabled"]:
        display = "disabled"
    return {
        "id": d["id"],
        "position": d["position"],
        "data_source_type": d["data_source_type"],
        "data_source_info": {"upload_file_id": d["id"]},
        "data_source_detail_dict": {"upload_file": {"id": d["id"], "name": d["name"]}},
        "dataset_process_rule_id": None,
        "name": d["name"],
        "created_from": d["created_from"],
        "created_by": d["created_from"],
        "created_at": _ts(d["created_at"]),
        "tokens": d["tokens"],
        "indexing_status": status,
        "error": d["error"],
        "enabled": d["enabled"],
        "disabled_at": None,
        "disabled_by": None,
        "archived": False,
        "display_status": display,
        "word_count": d["word_count"],
        "hit_count": 0,
        "doc_form": "text_model",
        "doc_metadata": [],
    }


def _status(d: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": d["id"],
        "indexing_status": d["indexing_status"],
        "processing_started_at": _ts(d["processing_started_at"]),
        "parsing_completed_at": _ts(d["parsing_completed_at"]),
        "cleaning_completed_at": _ts(d["cleaning_completed_at"]),
        "splitting_completed_at": _ts(d["splitting_completed_at"]),
        "completed_at": _ts(d["completed_at"]),
        "paused_at": None,
        "error": d["error"],
        "stopped_at": None,
        "completed_segments": d["completed_segments"],
        "total_segments": d["total_segments"],
    }


def _segment(s: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": s["id"],
        "position": s["position"],
        "document_id": s["document_id"],
        "content": s["content"],
        "sign_content": s["content"],
        "answer": s["answer"],
        "word_count": s["word_count"],
        "tokens": s["tokens"],
        "keywords": s["keywords"] or [],
        "index_node_id": s["id"],
        "index_node_hash": s["index_node_hash"],
        "hit_count": s["hit_count"],
        "enabled": s["enabled"],
        "disabled_at": None,
        "disabled_by": None,
        "status": "completed",
        "created_by": "api",
        "created_at": _ts(s["created_at"]),
        "updated_at": _ts(s["updated_at"]),
        "updated_by": None,
        "indexing_at": _ts(s["created_at"]),
        "completed_at": _ts(s["created_at"]),
        "error": None,
        "stopped_at": None,
        "child_chunks": [],
        "attachments": [],
        "summary": None,
    }


def _page(data: list[Any], total: int, page: int, limit: int, **extra: Any) -> dict[str, Any]:
    return {"data": data, "has_more": page * limit < total, "limit": limit, "total": total, "page": page, **extra}


# --- arguments -----------------------------------------------------------------------------------------------------


def _retrieval_args(svc: Services, base: Retrieval, value: Any, embedding_model: str | None) -> Retrieval:
    """A retrieval setting from Dify's `retrieval_model` (and `embedding_model`), over `base`."""
    settings = base.to_json()
    if embedding_model is not None:
        settings["embedding_model"] = embedding_model or None
    if value is not None:
        if not isinstance(value, dict):
            raise InputError("retrieval_model must be an object", param="retrieval_model")
        method = value.get("search_method")
        if method is not None:
            if method not in SEARCH_METHODS:
                raise InputError(f"search_method must be one of {sorted(SEARCH_METHODS)}", param="retrieval_model")
            settings["mode"] = SEARCH_METHODS[method]
        if "top_k" in value:
            top_k = value["top_k"]
            if not isinstance(top_k, int) or isinstance(top_k, bool) or not 1 <= top_k <= 100:
                raise InputError("top_k must be an integer from 1 to 100", param="retrieval_model")
            settings["top_k"] = top_k
        if "score_threshold_enabled" in value or "score_threshold" in value:
            threshold = value.get("score_threshold") if value.get("score_threshold_enabled") else None
            if threshold is not None and (not isinstance(threshold, int | float) or not 0 <= threshold <= 1):
                raise InputError("score_threshold must be a number from 0 to 1", param="retrieval_model")
            settings["score_threshold"] = threshold
        if "reranking_enable" in value or "reranking_model" in value:
            rerank = value.get("reranking_model") or {}
            name = rerank.get("reranking_model_name") if isinstance(rerank, dict) else None
            settings["rerank_model"] = name if value.get("reranking_enable", bool(name)) and name else None
    for key, want in (("embedding_model", "embedding"), ("rerank_model", "rerank")):
        ref = settings[key]
        if ref is not None:
            model = svc.catalog.models.get(ref)
            if model is None or model.type != want:
                known = sorted(k for k, m in svc.catalog.models.items() if m.type == want) or "none"
                raise InputError(f"{key} {ref!r} is not a catalog model of type {want} (known: {known})", param=key)
    if settings["mode"] != "full_text" and not settings["embedding_model"]:
        raise InputError(f"{SEARCH_METHODS_BACK[settings['mode']]} needs an embedding_model", param="retrieval_model")
    return Retrieval.of(settings)


SEARCH_METHODS_BACK = {"vector": "semantic_search", "hybrid": "hybrid_search"}


def _chunking(process_rule: Any, default: dict[str, Any]) -> dict[str, Any] | None:
    """A document's chunking from Dify's `process_rule` (custom segmentation), or None for the dataset's."""
    if process_rule is None:
        return None
    if not isinstance(process_rule, dict):
        raise InputError("process_rule must be an object", param="process_rule")
    if process_rule.get("mode", "automatic") == "automatic":
        return None
    seg = (process_rule.get("rules") or {}).get("segmentation") or {}
    if not isinstance(seg, dict):
        raise InputError("process_rule.rules.segmentation must be an object", param="process_rule")
    # Dify counts in tokens; promptd in characters, about four to a token
    size = seg.get("max_tokens")
    overlap = seg.get("chunk_overlap")
    values = dict(default)
    if size is not None:
        values["size"] = int(size) * 4
    if overlap is not None:
        values["overlap"] = int(overlap) * 4
    if isinstance(seg.get("separator"), str) and seg["separator"]:
        values["separator"] = seg["separator"].encode().decode("unicode_escape")
    try:
        return KnowledgeChunking(**values).model_dump()
    except ValueError as exc:
        raise InputError(f"process_rule: {exc}", param="process_rule") from None


def _attached(svc: Services, d: dict[str, Any]) -> int:
    return sum(1 for p in svc.catalog.projects.values() if d["id"] in p.knowledge or d["name"] in p.knowledge)


async def _get_dataset(svc: Services, request: Request) -> dict[str, Any]:
    d = await svc.knowledge.store.get_dataset(request.path_params["dataset_id"])
    if d is None:
        raise NotFound("Dataset not found.")
    return d


async def _get_document(svc: Services, request: Request, d: dict[str, Any]) -> dict[str, Any]:
    doc = await svc.knowledge.store.get_document(d["id"], request.path_params["document_id"])
    if doc is None:
        raise NotFound("Document not found.")
    return doc


def _catalog_owned(d: dict[str, Any]) -> None:
    if d["source"] == "catalog":
        raise Forbidden(f"Dataset {d['name']!r} is declared in the catalog: change it there.")


# --- datasets ------------------------------------------------------------------------------------------------------


async def create_dataset(request: Request) -> Response:
    svc = await _auth(request)
    body = decode_object(await request.body())
    name = body.get("name")
    if not isinstance(name, str) or not 1 <= len(name.strip()) <= 40:
        raise InputError("Name must be between 1 to 40 characters.", param="name")
    technique = body.get("indexing_technique")
    if technique not in (None, "high_quality", "economy"):
        raise InputError("indexing_technique must be high_quality or economy", param="indexing_technique")
    embedding = body.get("embedding_model")
    retrieval = _retrieval_args(svc, Retrieval(), body.get("retrieval_model"), embedding if embedding else None)
    if technique == "high_quality" and not retrieval.embedding_model:
        raise InputError("high_quality indexing needs an embedding_model (a catalog model of type embedding)")
    dataset_id = new_uuid()
    try:
        await svc.knowledge.store.create_dataset(
            {
                "id": dataset_id,
                "name": name.strip(),
                "description": str(body.get("description") or ""),
                "source": "api",
                "indexing_technique": "high_quality" if retrieval.embedding_model else technique,
                "retrieval": retrieval.to_json(),
                "chunking": KnowledgeChunking().model_dump(),
            }
        )
    except DuplicateName:
        raise DifyHTTPError(
            409, "dataset_name_duplicate", "The dataset name already exists. Please modify your dataset name."
        ) from None
    d = await svc.knowledge.store.get_dataset(dataset_id)
    assert d is not None
    return JSONResponse(await _dataset(svc.knowledge, d, 0))


async def list_datasets(request: Request) -> Response:
    svc = await _auth(request)
    page, limit = _page_args(request)
    rows, total = await svc.knowledge.store.list_datasets(page=page, limit=limit)
    data = [await _dataset(svc.knowledge, d, _attached(svc, d)) for d in rows]
    return JSONResponse(_page(data, total, page, limit))


async def get_dataset(request: Request) -> Response:
    svc = await _auth(request)
    d = await _get_dataset(svc, request)
    return JSONResponse(await _dataset(svc.knowledge, d, _attached(svc, d)))


async def update_dataset(request: Request) -> Response:
    svc = await _auth(request)
    d = await _get_dataset(svc, request)
    _catalog_owned(d)
    body = decode_object(await request.body())
    values: dict[str, Any] = {}
    if "name" in body:
        name = body["name"]
        if not isinstance(name, str) or not 1 <= len(name.strip()) <= 40:
            raise InputError("Name must be between 1 to 40 characters.", param="name")
        values["name"] = name.strip()
    if "description" in body:
        values["description"] = str(body["description"] or "")
    current = Retrieval.of(d["retrieval"])
    embedding = body.get("embedding_model") if "embedding_model" in body else None
    retrieval = _retrieval_args(svc, current, body.get("retrieval_model"), embedding)
    if retrieval.embedding_model != current.embedding_model and (await svc.knowledge.store.dataset_counts(d["id"]))[0]:
        raise InputError("The embedding model of a dataset with documents cannot change.", param="embedding_model")
    values["retrieval"] = retrieval.to_json()
    values["indexing_technique"] = "high_quality" if retrieval.embedding_model else "economy"
    try:
        await svc.knowledge.store.update_dataset(d["id"], values)
    except DuplicateName:
        raise DifyHTTPError(
            409, "dataset_name_duplicate", "The dataset name already exists. Please modify your dataset name."
        ) from None
    updated = await svc.knowledge.store.get_dataset(d["id"])
    assert updated is not None
    return JSONResponse(await _dataset(svc.knowledge, updated, _attached(svc, updated)))


async def delete_dataset(request: Request) -> Response:
    svc = await _auth(request)
    d = await _get_dataset(svc, request)
    _catalog_owned(d)
    if _attached(svc, d):
        raise DifyHTTPError(
            409,
            "dataset_in_use",
            "The dataset is being used by some apps. Please remove the dataset from the apps before deleting it.",
        )
    await svc.knowledge.store.delete_dataset(d["id"])
    return Response(status_code=204)


# --- documents -----------------------------------------------------------------------------------------------------


async def _save_file(svc: Services, d: dict[str, Any], doc_id: str, name: str, data: bytes) -> dict[str, Any]:
    """A document's source file written under the data dir: the document's `path`, `content_hash`, `batch`."""
    folder = svc.knowledge.files_dir / d["id"]
    suffix = ("." + name.rsplit(".", 1)[1].lower()) if "." in name else ".txt"
    path = folder / f"{doc_id}-{time.time_ns()}{suffix}"  # a new name for new content: the old file goes after

    def write() -> None:
        folder.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)

    await asyncio.to_thread(write)
    return {"path": str(path), "content_hash": hashlib.sha256(data).hexdigest(), "batch": _batch()}


def _batch() -> str:
    return time.strftime("%Y%m%d%H%M%S") + f"{int(time.time() * 1e6) % 1_000_000:06d}"


async def _add_document(svc: Services, d: dict[str, Any], name: str, data: bytes, process_rule: Any) -> dict[str, Any]:
    chunking = _chunking(process_rule, d["chunking"])
    doc_id = new_uuid()
    saved = await _save_file(svc, d, doc_id, name, data)
    await svc.knowledge.store.add_document(
        {"id": doc_id, "dataset_id": d["id"], "name": name[:255], "created_from": "api", "chunking": chunking, **saved}
    )
    doc = await svc.knowledge.store.get_document(d["id"], doc_id)  # as created (waiting), as Dify answers
    assert doc is not None
    svc.knowledge.indexer.submit(doc_id)
    return {"document": _document(doc), "batch": saved["batch"]}


async def _update_document(
    svc: Services, d: dict[str, Any], doc: dict[str, Any], name: str | None, data: bytes | None, process_rule: Any
) -> dict[str, Any]:
    """Dify's update_by_text / update_by_file (and `original_document_id`): the same document, renamed, with new
    content or a new process rule, indexed again from the start (its segments replaced)."""
    if doc["created_from"] == "catalog":
        raise Forbidden("This document comes from the catalog's files: change the file there.")
    if doc["indexing_status"] in IN_PROGRESS:
        raise DifyHTTPError(400, "document_indexing", "Cannot update document during indexing.")
    values: dict[str, Any] = {"batch": _batch()}
    if name:
        values["name"] = name[:255]
    if process_rule is not None:
        values["chunking"] = _chunking(process_rule, d["chunking"])
    if data is not None:
        values.update(await _save_file(svc, d, doc["id"], name or doc["name"], data))
    if not await svc.knowledge.store.reindex_document(doc["id"], values):  # an indexer took it meanwhile
        if data is not None:
            await asyncio.to_thread(Path(values["path"]).unlink, missing_ok=True)
        raise DifyHTTPError(400, "document_indexing", "Cannot update document during indexing.")
    if data is not None:
        await asyncio.to_thread(Path(doc["path"]).unlink, missing_ok=True)
    updated = await svc.knowledge.store.get_document(d["id"], doc["id"])
    assert updated is not None
    svc.knowledge.indexer.submit(doc["id"])
    return {"document": _document(updated), "batch": values["batch"]}


def _text_file(name: str) -> str:
    return name if name.lower().endswith((".txt", ".md", ".markdown")) else name + ".txt"


async def _original(svc: Services, d: dict[str, Any], ident: Any) -> dict[str, Any] | None:
    """The document an `original_document_id` names (Dify: the create call then updates it), or None."""
    if ident is None or ident == "":
        return None
    doc = await svc.knowledge.store.get_document(d["id"], str(ident))
    if doc is None:
        raise NotFound("Document not found.")
    return doc


async def _create(svc: Services, d: dict[str, Any], name: str, data: bytes, args: dict[str, Any]) -> Response:
    """A create call's document: a new one, or (`original_document_id`) that one updated. A document's indexing
    technique is its dataset's: `high_quality` asked of a dataset without an embedding model (Dify's client asks
    it always) is indexed for full text, and the answer says so (`X-Promptd-Ignored: indexing_technique`). A
    dataset created without a technique takes the one its first document is indexed with, as Dify's does."""
    original = await _original(svc, d, args.get("original_document_id"))
    if original is not None:
        made = await _update_document(svc, d, original, name, data, args.get("process_rule"))
    else:
        made = await _add_document(svc, d, name, data, args.get("process_rule"))
    if d["indexing_technique"] is None:
        await svc.knowledge.store.update_dataset(d["id"], {"indexing_technique": _technique(d)})
    if args.get("indexing_technique") == "high_quality" and _technique(d) == "economy":
        log.info("dataset %r has no embedding model: document %s indexed for full text", d["name"], name)
        return JSONResponse(made, headers={IGNORED_HEADER: "indexing_technique"})
    return JSONResponse(made)


async def create_by_text(request: Request) -> Response:
    svc = await _auth(request)
    d = await _get_dataset(svc, request)
    body = decode_object(await request.body())
    name, text = body.get("name"), body.get("text")
    if not isinstance(name, str) or not name or not isinstance(text, str):
        raise InputError("Both 'text' and 'name' must be non-null values.", param="name" if text else "text")
    if not text.strip():
        raise InputError("text must not be empty", param="text")
    return await _create(svc, d, _text_file(name), text.encode(), body)


async def update_by_text(request: Request) -> Response:
    """POST /datasets/{id}/documents/{document_id}/update_by_text: a new name, text or process rule."""
    svc = await _auth(request)
    d = await _get_dataset(svc, request)
    doc = await _get_document(svc, request, d)
    body = decode_object(await request.body())
    name, text = body.get("name"), body.get("text")
    if text is not None and (not isinstance(text, str) or not isinstance(name, str) or not name):
        raise InputError("Both text and name must be strings.", param="name")
    if name is not None and not isinstance(name, str):
        raise InputError("name must be a string", param="name")
    if isinstance(text, str) and not text.strip():
        raise InputError("text must not be empty", param="text")
    data = text.encode() if isinstance(text, str) else None
    filename = _text_file(name) if isinstance(name, str) and name else None
    return JSONResponse(await _update_document(svc, d, doc, filename, data, body.get("process_rule")))


Upload = tuple[str | None, bytes | None, dict[str, Any]]


async def _upload(svc: Services, request: Request, *, required: bool) -> Upload:
    """The multipart body of a document upload: (file name, bytes, the `data` JSON arguments). Without a file:
    (None, None, args), or Dify's no_file_uploaded when `required`."""
    limit = svc.settings.upload_limit_mb("document") * MB
    length = request.headers.get("content-length")
    if length and length.isdigit() and int(length) > limit + MB:
        raise DifyHTTPError(413, "file_too_large", f"File size exceeded. {limit / MB:g} MB allowed for documents.")
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        raise DifyHTTPError(400, "no_file_uploaded", "Please upload your file.")
    try:
        async with request.form(max_files=2, max_fields=20) as form:
            uploads = [v for k, v in form.multi_items() if isinstance(v, UploadFile)]
            if not uploads and required:
                raise DifyHTTPError(400, "no_file_uploaded", "Please upload your file.")
            if len(uploads) > 1:
                raise DifyHTTPError(400, "too_many_files", "Only one file is allowed.")
            raw_args = form.get("data")
            name, data = (uploads[0].filename, await uploads[0].read()) if uploads else (None, None)
    except HTTPException as exc:
        if "Too many files" in str(exc.detail):
            raise DifyHTTPError(400, "too_many_files", "Only one file is allowed.") from None
        raise
    args: dict[str, Any] = {}
    if isinstance(raw_args, str) and raw_args:
        try:
            args = json.loads(raw_args)
        except ValueError:
            raise InputError("data must be a JSON object", param="data") from None
        if not isinstance(args, dict):
            raise InputError("data must be a JSON object", param="data")
    if data is None:
        return None, None, args
    if not name:
        raise DifyHTTPError(400, "filename_not_exists_error", "The specified filename does not exist.")
    if "." + name.rsplit(".", 1)[-1].lower() not in EXTENSIONS or "." not in name:
        raise DifyHTTPError(415, "unsupported_file_type", "File type not allowed.")
    if len(data) > limit:
        raise DifyHTTPError(413, "file_too_large", f"File size exceeded. {limit / MB:g} MB allowed for documents.")
    return name.replace("/", "_").replace("\\", "_"), data, args


async def create_by_file(request: Request) -> Response:
    svc = await _auth(request)
    d = await _get_dataset(svc, request)
    name, data, args = await _upload(svc, request, required=True)
    assert name is not None and data is not None
    return await _create(svc, d, name, data, args)


async def update_by_file(request: Request) -> Response:
    """POST /datasets/{id}/documents/{document_id}/update_by_file: a new file (or only a new process rule)."""
    svc = await _auth(request)
    d = await _get_dataset(svc, request)
    doc = await _get_document(svc, request, d)
    name, data, args = await _upload(svc, request, required=False)
    return JSONResponse(await _update_document(svc, d, doc, name, data, args.get("process_rule")))


async def list_documents(request: Request) -> Response:
    svc = await _auth(request)
    d = await _get_dataset(svc, request)
    page, limit = _page_args(request)
    rows, total = await svc.knowledge.store.list_documents(
        d["id"], page=page, limit=limit, keyword=request.query_params.get("keyword") or None
    )
    return JSONResponse(_page([_document(r) for r in rows], total, page, limit))


async def get_document(request: Request) -> Response:
    svc = await _auth(request)
    doc = await _get_document(svc, request, await _get_dataset(svc, request))
    return JSONResponse(_document(doc))


async def delete_document(request: Request) -> Response:
    svc = await _auth(request)
    d = await _get_dataset(svc, request)
    doc = await _get_document(svc, request, d)
    if doc["created_from"] == "catalog":
        raise Forbidden("This document comes from the catalog's files: remove the file there.")
    if doc["indexing_status"] in IN_PROGRESS:
        raise DifyHTTPError(400, "document_indexing", "Cannot delete document during indexing.")
    await svc.knowledge.store.delete_document(doc["id"])
    await asyncio.to_thread(Path(doc["path"]).unlink, missing_ok=True)
    return Response(status_code=204)


async def indexing_status(request: Request) -> Response:
    svc = await _auth(request)
    d = await _get_dataset(svc, request)
    docs = await svc.knowledge.store.batch_documents(d["id"], request.path_params["batch"])
    if not docs:
        raise NotFound("Documents not found.")
    return JSONResponse({"data": [_status(doc) for doc in docs]})


# --- segments ------------------------------------------------------------------------------------------------------


def _segment_values(item: Any, *, where: str, partial: bool) -> dict[str, Any]:
    if not isinstance(item, dict):
        raise InputError(f"{where} must be an object", param="segments")
    values: dict[str, Any] = {}
    if "content" in item or not partial:
        content = item.get("content")
        if not isinstance(content, str) or not content.strip():
            raise InputError(f"{where}.content is required", param="content")
        values["content"] = content
        values["word_count"] = len(content)
    if "answer" in item:
        values["answer"] = item["answer"] if isinstance(item["answer"], str) and item["answer"] else None
    if "keywords" in item:
        keywords = item["keywords"]
        if keywords is not None and (not isinstance(keywords, list) or not all(isinstance(k, str) for k in keywords)):
            raise InputError(f"{where}.keywords must be a list of strings", param="keywords")
        values["keywords"] = keywords
    if "enabled" in item and partial:
        if not isinstance(item["enabled"], bool):
            raise InputError(f"{where}.enabled must be true or false", param="enabled")
        values["enabled"] = item["enabled"]
    return values


async def _embed_into(svc: Services, origin: Origin, d: dict[str, Any], values: list[dict[str, Any]]) -> None:
    model = Retrieval.of(d["retrieval"]).embedding_model
    todo = [v for v in values if "content" in v]
    if model and todo:
        vectors, tokens = await models.embed(svc.engine, model, [v["content"] for v in todo], origin)
        for v, vector in zip(todo, vectors, strict=True):
            v["embedding"] = to_blob(vector)
            v["tokens"] = math.ceil(tokens / len(todo))


async def list_segments(request: Request) -> Response:
    svc = await _auth(request)
    doc = await _get_document(svc, request, await _get_dataset(svc, request))
    page, limit = _page_args(request)
    status = request.query_params.get("status")
    enabled = {"enabled": True, "disabled": False}.get(request.query_params.get("enabled", "") or "")
    rows, total = await svc.knowledge.store.list_segments(
        doc["id"], page=page, limit=limit, keyword=request.query_params.get("keyword") or None, enabled=enabled
    )
    if status and status != "completed":
        rows, total = [], 0
    return JSONResponse(_page([_segment(s) for s in rows], total, page, limit, doc_form="text_model"))


async def add_segments(request: Request) -> Response:
    svc = await _auth(request)
    d = await _get_dataset(svc, request)
    doc = await _get_document(svc, request, d)
    if doc["indexing_status"] != "completed":
        raise NotFound("Document is not completed.")
    body = decode_object(await request.body())
    items = body.get("segments")
    if not isinstance(items, list) or not items:
        raise InputError("segments is required", param="segments")
    values = [_segment_values(item, where=f"segments[{i}]", partial=False) for i, item in enumerate(items)]
    await _embed_into(svc, _origin(request, d), d, values)
    start = await svc.knowledge.store.next_segment_position(doc["id"])
    rows = [{"position": start + i, **v} for i, v in enumerate(values)]
    ids = await svc.knowledge.store.add_segments(d["id"], doc["id"], rows)
    await svc.knowledge.store.refresh_document_counts(doc["id"])
    added = [await svc.knowledge.store.get_segment(doc["id"], i) for i in ids]
    return JSONResponse({"data": [_segment(s) for s in added if s is not None], "doc_form": "text_model"})


async def _get_segment(svc: Services, request: Request) -> tuple[dict[str, Any], dict[str, Any]]:
    d = await _get_dataset(svc, request)
    doc = await _get_document(svc, request, d)
    seg = await svc.knowledge.store.get_segment(doc["id"], request.path_params["segment_id"])
    if seg is None:
        raise NotFound("Segment not found.")
    return d, seg


async def get_segment(request: Request) -> Response:
    svc = await _auth(request)
    _, seg = await _get_segment(svc, request)
    return JSONResponse({"data": _segment(seg), "doc_form": "text_model"})


async def update_segment(request: Request) -> Response:
    svc = await _auth(request)
    d, seg = await _get_segment(svc, request)
    body = decode_object(await request.body())
    values = _segment_values(body.get("segment"), where="segment", partial=True)
    await _embed_into(svc, _origin(request, d), d, [values])
    if values:
        await svc.knowledge.store.update_segment(d["id"], seg["id"], values)
        await svc.knowledge.store.refresh_document_counts(seg["document_id"])
    updated = await svc.knowledge.store.get_segment(seg["document_id"], seg["id"])
    assert updated is not None
    return JSONResponse({"data": _segment(updated), "doc_form": "text_model"})


async def delete_segment(request: Request) -> Response:
    svc = await _auth(request)
    d, seg = await _get_segment(svc, request)
    await svc.knowledge.store.delete_segment(d["id"], seg["id"])
    await svc.knowledge.store.refresh_document_counts(seg["document_id"])
    return Response(status_code=204)


# --- retrieval -----------------------------------------------------------------------------------------------------


async def retrieve(request: Request) -> Response:
    """POST /datasets/{id}/retrieve (and Dify's older /hit-testing): the dataset searched as a prompt would be,
    or with the request's `retrieval_model`."""
    svc = await _auth(request)
    d = await _get_dataset(svc, request)
    body = decode_object(await request.body())
    query = body.get("query")
    if not isinstance(query, str) or not query.strip():
        raise InputError("Query is required.", param="query")
    if len(query) > 250:
        raise InputError("Query cannot exceed 250 characters.", param="query")
    settings = _retrieval_args(svc, Retrieval.of(d["retrieval"]), body.get("retrieval_model"), None)
    hits = await svc.knowledge.retriever.search(d, query, settings, _origin(request, d))
    records = [
        {
            "segment": {
                **_segment(h.segment),
                "document": {
                    "id": h.segment["document_id"],
                    "data_source_type": h.segment["data_source_type"],
                    "name": h.segment["document_name"],
                },
            },
            "child_chunks": None,
            "score": h.score,
            "tsne_position": None,
            "files": None,
        }
        for h in hits
    ]
    return JSONResponse({"query": {"content": query}, "records": records})


def routes() -> list[BaseRoute]:
    base = "/datasets/{dataset_id}"
    doc = base + "/documents/{document_id}"
    return [
        Route("/datasets", create_dataset, methods=["POST"]),
        Route("/datasets", list_datasets, methods=["GET"]),
        Route(base, get_dataset, methods=["GET"]),
        Route(base, update_dataset, methods=["PATCH"]),
        Route(base, delete_dataset, methods=["DELETE"]),
        Route(base + "/document/create_by_text", create_by_text, methods=["POST"]),
        Route(base + "/document/create-by-text", create_by_text, methods=["POST"]),
        Route(base + "/document/create_by_file", create_by_file, methods=["POST"]),
        Route(base + "/document/create-by-file", create_by_file, methods=["POST"]),
        Route(base + "/documents", list_documents, methods=["GET"]),
        Route(base + "/documents/{batch}/indexing-status", indexing_status, methods=["GET"]),
        Route(doc + "/update_by_text", update_by_text, methods=["POST"]),
        Route(doc + "/update-by-text", update_by_text, methods=["POST"]),
        Route(doc + "/update_by_file", update_by_file, methods=["POST"]),
        Route(doc + "/update-by-file", update_by_file, methods=["POST"]),
        Route(doc, get_document, methods=["GET"]),
        Route(doc, delete_document, methods=["DELETE"]),
        Route(doc + "/segments", list_segments, methods=["GET"]),
        Route(doc + "/segments", add_segments, methods=["POST"]),
        Route(doc + "/segments/{segment_id}", get_segment, methods=["GET"]),
        Route(doc + "/segments/{segment_id}", update_segment, methods=["POST", "PATCH"]),
        Route(doc + "/segments/{segment_id}", delete_segment, methods=["DELETE"]),
        Route(base + "/retrieve", retrieve, methods=["POST"]),
        Route(base + "/hit-testing", retrieve, methods=["POST"]),
    ]
