"""Knowledge bases over HTTP (the web app's /api; owned like every /api resource):

    POST   /api/knowledge-bases                          {name, description?}
    GET    /api/knowledge-bases                          each with document and chunk counts
    GET    /api/knowledge-bases/{id}                     with its documents
    DELETE /api/knowledge-bases/{id}
    POST   /api/knowledge-bases/{id}/documents           multipart, field `files` (several at once)
    GET    /api/knowledge-bases/{id}/documents
    GET    /api/knowledge-bases/{id}/documents/{doc}     with its text (what a citation opens)
    DELETE /api/knowledge-bases/{id}/documents/{doc}     its chunks and vectors go too
    POST   /api/knowledge-bases/{id}/documents/{doc}/reindex   parse, chunk and embed it again
    POST   /api/knowledge-bases/{id}/reindex             every document again
    POST   /api/knowledge-bases/{id}/search              {query, k?} -> {hits: [...]} ([] = no relevant source)

Each uploaded file is indexed on its own: a broken, empty or unsupported one comes back `failed`
with its reason, a file already there comes back `duplicate`, and the others are indexed.
"""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from aigc.apps.chat.replies import SOURCES_PER_TURN
from aigc.knowledge.parsing import MAX_BYTES
from aigc.knowledge.store import KnowledgeError, KnowledgeStore
from aigc.server.app_http import path_id, read_body
from aigc.server.auth import principal_of
from aigc.server.errors import APIError

router = APIRouter(prefix="/api/knowledge-bases")
MAX_FILES = 20
UPLOAD_WAIT_S = 20.0  # how long an upload waits for its documents before answering with progress


class KnowledgeBaseIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=200)
    description: str = Field("", max_length=2000)


class SearchIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    query: str = Field(min_length=1, max_length=2000)
    k: int = Field(5, ge=1, le=50)


def _store(request: Request) -> KnowledgeStore:
    web = request.app.state.webapp
    return web.knowledge.scoped(principal_of(request).owner)


def retriever_for(request: Request):
    """The chat's and studio's search: the principal's knowledge bases only."""
    return owners_retriever(_store(request))


def owners_retriever(knowledge: KnowledgeStore):
    """A search over one owner's knowledge bases (`knowledge` is scoped to them); one deleted since
    it was attached simply has no sources."""

    def retrieve(kb_ids: list[int], query: str) -> list[dict[str, Any]]:
        kept = knowledge.owned(kb_ids)
        return [h.to_dict() for h in knowledge.search(kept, query, SOURCES_PER_TURN)] if kept else []

    return retrieve


async def check_knowledge_ids(request: Request, ids: list[int] | None) -> list[int] | None:
    """Knowledge bases a conversation or studio run names: each must be the principal's (else 404)."""
    if ids is None:
        return None
    return await run_in_threadpool(_store(request).check_access, ids)


async def _call(fn, *args):
    try:
        return await run_in_threadpool(fn, *args)
    except KnowledgeError as e:
        raise APIError(e.status, str(e), code=e.code) from None


@router.post("", status_code=201)
async def create(request: Request) -> JSONResponse:
    body = await read_body(request, KnowledgeBaseIn)
    return JSONResponse(await _call(_store(request).create, body.name, body.description), status_code=201)


@router.get("")
async def list_bases(request: Request) -> JSONResponse:
    return JSONResponse({"data": await _call(_store(request).list)})


@router.get("/{kb_id}")
async def get_base(kb_id: str, request: Request) -> JSONResponse:
    kb = await _call(_store(request).get, path_id(kb_id, "knowledge base"))
    request.app.state.webapp.indexer.annotate(kb["documents_list"])
    return JSONResponse(kb)


@router.delete("/{kb_id}", status_code=204)
async def delete_base(kb_id: str, request: Request) -> Response:
    await _call(_store(request).delete, path_id(kb_id, "knowledge base"))
    return Response(status_code=204)


@router.post("/{kb_id}/documents", status_code=201)
async def upload(kb_id: str, request: Request) -> JSONResponse:
    kb = path_id(kb_id, "knowledge base")
    store = _store(request)
    await _call(store.get, kb)  # 404 before reading any file
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        raise APIError(415, "Upload the documents as multipart/form-data in the field 'files'.",
                       code="unsupported_media_type")
    form = await request.form(max_files=MAX_FILES, max_part_size=MAX_BYTES + 1)
    files = [f for f in form.getlist("files") if hasattr(f, "read")]
    if not files:
        raise APIError(400, "No files: send them in the multipart field 'files'.", param="files", code="no_files")
    indexer = request.app.state.webapp.indexer
    results: list[dict[str, Any]] = []
    waiting: dict[int, asyncio.Future] = {}  # document id -> its indexing
    for f in files:
        data = await f.read(MAX_BYTES + 1)
        try:
            doc = await run_in_threadpool(store.queue_document, kb, f.filename or "document", data)
        except KnowledgeError as e:
            results.append({"filename": f.filename, "status": "duplicate" if e.status == 409 else "failed",
                            "error": str(e)})
            continue
        results.append(doc)
        waiting[doc["id"]] = asyncio.wrap_future(indexer.submit(kb, doc["id"], store.owner))
    # Small files are indexed within this response; big ones answer `queued`/`indexing` with their
    # progress and finish in the background (GET .../documents shows where they are).
    if waiting:
        await asyncio.wait(list(waiting.values()), timeout=UPLOAD_WAIT_S)
    current = {d["id"]: d for d in indexer.annotate(await _call(store.documents, kb))} if waiting else {}
    out = []
    for r in results:
        future = waiting.get(r.get("id"))  # type: ignore[arg-type]
        if future is None:
            out.append(r)
        elif future.done() and future.exception() is None:
            out.append(future.result())
        else:
            future.add_done_callback(lambda f: f.exception())  # its outcome is read from the database
            out.append(current.get(r["id"], r))
    return JSONResponse({"data": out}, status_code=201)


@router.get("/{kb_id}/documents")
async def documents(kb_id: str, request: Request) -> JSONResponse:
    docs = await _call(_store(request).documents, path_id(kb_id, "knowledge base"))
    return JSONResponse({"data": request.app.state.webapp.indexer.annotate(docs)})


@router.get("/{kb_id}/documents/{doc_id}")
async def document(kb_id: str, doc_id: str, request: Request) -> JSONResponse:
    return JSONResponse(await _call(_store(request).document_text, path_id(kb_id, "knowledge base"),
                                    path_id(doc_id, "document")))


@router.delete("/{kb_id}/documents/{doc_id}", status_code=204)
async def delete_document(kb_id: str, doc_id: str, request: Request) -> Response:
    await _call(_store(request).delete_document, path_id(kb_id, "knowledge base"), path_id(doc_id, "document"))
    return Response(status_code=204)


@router.post("/{kb_id}/documents/{doc_id}/reindex")
async def reindex_document(kb_id: str, doc_id: str, request: Request) -> JSONResponse:
    return JSONResponse(await _call(_store(request).index_document, path_id(kb_id, "knowledge base"),
                                    path_id(doc_id, "document")))


@router.post("/{kb_id}/reindex")
async def reindex(kb_id: str, request: Request) -> JSONResponse:
    return JSONResponse({"data": await _call(_store(request).reindex, path_id(kb_id, "knowledge base"))})


@router.post("/{kb_id}/search")
async def search(kb_id: str, request: Request) -> JSONResponse:
    body = await read_body(request, SearchIn)
    hits = await _call(_store(request).search, [path_id(kb_id, "knowledge base")], body.query, body.k)
    return JSONResponse({"hits": [h.to_dict() for h in hits], "no_relevant_source": not hits})
