"""The review station's web layer (FastAPI): a JSON API and one plain page, served locally.

Every change names its user (header `X-User`, typed once on the page). Errors are 4xx with a
reason: 400 bad request, 404 unknown case/cell, 409 a signed case, 413 too large, 415 not an
image, 422 malformed fields; never a 500 for bad input.
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path
from typing import Annotated

from fastapi import FastAPI, Header, HTTPException, Request
from fastapi import Path as PathParam
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from marrowdiff.web.station import ReviewStation, UploadError
from marrowdiff.web.store import NotFoundError, SignedError, StoreError

STATIC = Path(__file__).parent / "static"
REVIEW_KEYS = "1234567890qwertyiop"  # one key per class, in order (u, x, f, a are taken)


class NewCase(BaseModel):
    name: str = Field(min_length=1, max_length=100)


class Review(BaseModel):
    status: str = Field(pattern="^(confirmed|corrected|not_a_cell|unidentified)$")
    label: str | None = None


class NewCellAt(BaseModel):
    x: float  # field px
    y: float


class BodyTooLarge(Exception):
    pass


class LimitBody:
    """ASGI middleware: refuse request bodies over `limit` bytes while they arrive (a
    Content-Length can lie or be absent), before anything is parsed or spooled."""

    def __init__(self, app, limit: int):
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        received = 0

        async def counted():
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.limit:
                raise BodyTooLarge()
            return message

        try:
            await self.app(scope, counted, send)
        except BodyTooLarge:
            response = JSONResponse(
                {"detail": f"request body over {self.limit // 2**20} MB"}, status_code=413
            )
            await response(scope, receive, send)


# A record id in a URL: SQLite's integers stop at 2**63 - 1; a larger one is a 422, not a 500.
Id = Annotated[int, PathParam(ge=0, le=2**63 - 1)]


def _user(x_user: str | None) -> str:
    user = (x_user or "").strip()
    if not user or len(user) > 100 or not user.isprintable():
        raise HTTPException(400, "say who you are: a user name (header X-User), 1-100 characters")
    return user


def _jpeg(data: bytes) -> Response:
    """An image that never changes once stored: the browser may keep it for a day."""
    return Response(data, media_type="image/jpeg", headers={"Cache-Control": "max-age=86400"})


def create_app(station: ReviewStation) -> FastAPI:
    app = FastAPI(title="marrowdiff review station", docs_url=None, redoc_url=None)
    limits = station.limits

    @app.exception_handler(StoreError)
    async def store_error(request: Request, error: StoreError):
        status = 409 if isinstance(error, SignedError) else 400
        status = 404 if isinstance(error, NotFoundError) else status
        return JSONResponse({"detail": str(error)}, status_code=status)

    @app.get("/", include_in_schema=False)
    def index():
        return FileResponse(STATIC / "index.html")

    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/api/info")
    def info():
        vocabulary = station.classifier.vocabulary
        return {
            "model": station.model_name,
            "classes": [
                {
                    "code": code,
                    "name": vocabulary[code].name if code in vocabulary.codes else code,
                    "abbrev": vocabulary[code].abbrev if code in vocabulary.codes else code,
                    "key": REVIEW_KEYS[i] if i < len(REVIEW_KEYS) else None,
                }
                for i, code in enumerate(station.classifier.classes)
            ],
            "limits": {"max_file_mb": limits.max_file_bytes / 2**20, "max_files": limits.max_files},
            "target": station.report.target,
            "cell_radius": station.count.detect.cell_diameter / 2,
        }

    @app.get("/api/detection")
    def detection():
        """The detector's precision and recall on the fields of every signed case, by the
        reviewers' verdicts: on this laboratory's own smears."""
        return station.store.detection_tally()

    @app.get("/api/cases")
    def cases():
        return station.store.cases()

    @app.post("/api/cases", status_code=201)
    def create_case(body: NewCase, x_user: str | None = Header(None)):
        name = body.name.strip()
        if not name or not name.isprintable():
            raise HTTPException(422, "a case id is 1-100 printable characters")
        return station.store.create_case(name, _user(x_user))

    @app.get("/api/cases/{case_id}")
    def case(case_id: Id):
        return station.view(case_id)

    @app.post("/api/cases/{case_id}/images")
    async def upload(case_id: Id, request: Request, x_user: str | None = Header(None)):
        user = _user(x_user)
        station.store.case(case_id)
        try:
            form = await request.form(max_files=limits.max_files, max_fields=10)
        except Exception as error:  # malformed multipart: say so, as a 400
            raise HTTPException(400, f"not a multipart upload ({error})") from None
        files = [v for v in form.getlist("files") if hasattr(v, "read")]
        if not files:
            raise HTTPException(400, "no files: send images as multipart field 'files'")
        results = []
        for upload in files:
            data = await upload.read(limits.max_file_bytes + 1)
            try:
                # Counting takes a while: off the event loop, so other requests go on.
                results.append(
                    await run_in_threadpool(
                        station.upload, case_id, user, upload.filename or "upload", data
                    )
                )
            except UploadError as error:
                results.append({"name": upload.filename, "error": str(error)})
        accepted = [r for r in results if "error" not in r]
        if not accepted:
            too_big = all("limit" in r["error"] for r in results)
            raise HTTPException(413 if too_big else 415, "; ".join(r["error"] for r in results))
        return {"results": results, "differential": station.differential(case_id)}

    @app.get("/api/images/{image_id}/field.jpg")
    def field_image(image_id: Id):
        return _jpeg(station.field_jpeg(image_id))

    @app.post("/api/cases/{case_id}/images/{image_id}/cells", status_code=201)
    def add_cell(case_id: Id, image_id: Id, body: NewCellAt, x_user: str | None = Header(None)):
        user = _user(x_user)
        cell = station.add_cell(case_id, image_id, user, body.x, body.y)
        return {"cell": cell, "differential": station.differential(case_id)}

    @app.get("/api/cells/{cell_id}/image.jpg")
    def cell_image(cell_id: Id):
        return _jpeg(station.cell_jpeg(cell_id))

    @app.post("/api/cells/{cell_id}")
    def review(cell_id: Id, body: Review, x_user: str | None = Header(None)):
        user = _user(x_user)
        if body.label is not None and body.label not in station.classifier.classes:
            raise HTTPException(422, f"unknown class {body.label!r}")
        cell = station.store.review(cell_id, user, body.status, body.label)
        return {"cell": cell, "differential": station.differential(cell["case_id"])}

    @app.post("/api/cases/{case_id}/sign")
    def sign(case_id: Id, x_user: str | None = Header(None)):
        return station.sign(case_id, _user(x_user))

    @app.get("/api/cases/{case_id}/log")
    def log(case_id: Id):
        station.store.case(case_id)
        return station.store.log(case_id)

    @app.get("/api/cases/{case_id}/report/{name}")
    def report_file(case_id: Id, name: str):
        if name not in ("report.html", "report.json", "cells.csv"):
            raise HTTPException(404, f"no report file {name!r}")
        path = station.data_dir / "cases" / str(case_id) / "report" / name
        if not station.store.case(case_id)["signed_at"] or not path.is_file():
            raise HTTPException(404, "the report is written when the case is signed")
        return FileResponse(path)

    @app.get("/api/cases/{case_id}/export.zip")
    def export(case_id: Id):
        folder = station.data_dir / "cases" / str(case_id) / "export"
        if not station.store.case(case_id)["signed_at"] or not folder.is_dir():
            raise HTTPException(404, "corrections are exported when the case is signed")
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as archive:
            for path in sorted(folder.rglob("*")):
                if path.is_file():
                    archive.write(path, path.relative_to(folder).as_posix())
        return Response(
            buf.getvalue(),
            media_type="application/zip",
            headers={"Content-Disposition": f'attachment; filename="case{case_id}-reviewed.zip"'},
        )

    app.add_middleware(LimitBody, limit=limits.max_files * limits.max_file_bytes + 2**20)
    return app
