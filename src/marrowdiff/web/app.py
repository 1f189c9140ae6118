"""The review station's web layer (FastAPI): a JSON API and one plain page.

Who does what (docs/review.md, "Who may reach the station"):
- With accounts (`marrowdiff users add`), every request but the page, its files and the login
  comes from a logged-in user: a session cookie (HttpOnly, SameSite=Strict) names the user and
  their role, and only a signer signs.
- Without accounts (one desk, this machine only), a change names its user in the header
  `X-User` (percent-encoded UTF-8, as the page sends it), and that user may sign.

Every request must name an allowed host (no DNS rebinding), and every change must carry the
header `X-Requested-With: marrowdiff` (which no other site's page can send without a CORS
preflight this server never grants) and, if it has one, an `Origin` of this server. Errors are
4xx with a reason: 400 bad request, 401 not logged in, 403 not allowed, 404 unknown case/cell,
409 a signed case, 413 too large, 415 not an image, 422 malformed fields, 429 too many failed
logins; never a 500 for bad input.
"""

from __future__ import annotations

import contextlib
import io
import re
import zipfile
from pathlib import Path
from typing import Annotated
from urllib.parse import unquote, urlsplit

from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi import Path as PathParam
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from marrowdiff.classes import VocabularyError
from marrowdiff.web.accounts import (
    SESSION_HOURS,
    AccountError,
    Accounts,
    LockedOut,
    LoginError,
    User,
    user_name,
)
from marrowdiff.web.slides import SlideAccessError
from marrowdiff.web.station import ReviewStation, UploadError
from marrowdiff.web.store import (
    MAX_REVIEWERS,
    ForbiddenError,
    NotFoundError,
    SignedError,
    StoreError,
)

STATIC = Path(__file__).parent / "static"
COOKIE = "marrowdiff_session"
LOOPBACK = ("127.0.0.1", "localhost", "::1")
CHANGE_HEADER = ("x-requested-with", "marrowdiff")
# Pydantic's words for a JSON string no file, database or response can hold ("\\ud800").
UNICODE = "not valid Unicode text (it holds a lone surrogate)"
REVIEW_KEYS = "1234567890qwertyiop"  # one key per class, in order (u, x, f, a, s are taken)


class NewCase(BaseModel):
    name: str = Field(min_length=1, max_length=100)  # the specimen or accession id
    patient: str = Field("", max_length=100)  # optional
    stain: str = Field("", max_length=100)
    reviewers: int = Field(1, ge=1, le=MAX_REVIEWERS)  # 2 or more: a blind double review
    hide_model: bool = False  # ... in which the reviewers do not see the model's class


class Review(BaseModel):
    status: str = Field(pattern="^(confirmed|corrected|not_a_cell|unidentified)$")
    label: str | None = None


class Decision(BaseModel):
    """An adjudicator's decision: a class, "not_a_cell", "unidentified", or a cell between two
    neighbouring stages (`between`: their two codes)."""

    status: str = Field(pattern="^(confirmed|corrected|not_a_cell|unidentified)$")
    label: str | None = None
    between: list[str] | None = Field(None, min_length=2, max_length=2)


class Login(BaseModel):
    name: str = Field(min_length=1, max_length=100)
    password: str = Field(min_length=1, max_length=1000)


class NewCellAt(BaseModel):
    x: float  # field px
    y: float


class SlidePath(BaseModel):
    path: str = Field(min_length=1, max_length=4096)  # in the slide folder (`--slides`)


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


class ChangeGuard:
    """ASGI middleware: a change (any method but GET and HEAD) must carry CHANGE_HEADER, and an
    `Origin`, if sent, must be this server's: a page on another site cannot post here."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and scope["method"] not in ("GET", "HEAD"):
            headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
            origin = headers.get("origin")
            reason = None
            if headers.get(CHANGE_HEADER[0]) != CHANGE_HEADER[1]:
                reason = f"a change needs the header X-Requested-With: {CHANGE_HEADER[1]}"
            elif origin and urlsplit(origin).netloc != headers.get("host"):
                reason = f"a change from another site ({origin}) is refused"
            if reason:
                return await JSONResponse({"detail": reason}, status_code=403)(scope, receive, send)
        return await self.app(scope, receive, send)


class AllowedHosts:
    """ASGI middleware: the `Host` header must name this server (no DNS rebinding). An IPv6
    literal ("[::1]:8000") is read as the address it is, which Starlette's TrustedHost
    middleware does not (it would refuse every request to `serve --host ::1`)."""

    def __init__(self, app, hosts: tuple[str, ...]):
        self.app, self.hosts = app, {h.lower().strip("[]") for h in hosts}

    async def __call__(self, scope, receive, send):
        if scope["type"] in ("http", "websocket"):
            header = dict(scope["headers"]).get(b"host", b"").decode("latin-1")
            if host_name(header) not in self.hosts:
                refusal = JSONResponse({"detail": "Invalid host header"}, status_code=400)
                return await refusal(scope, receive, send)
        return await self.app(scope, receive, send)


def host_name(header: str) -> str:
    """The host a `Host` header names, without its port: "[::1]:8000" -> "::1"."""
    try:
        return (urlsplit("//" + header).hostname or "").lower()
    except ValueError:  # "[::1" and other malformed hosts
        return ""


def typed_user(header: str | None) -> str:
    """The user named by `X-User` (stations without accounts): percent-encoded UTF-8 as the page
    sends it; raw UTF-8 bytes (which the server sees as Latin-1) are read as UTF-8 too."""
    text = header or ""
    with contextlib.suppress(UnicodeError):  # a Latin-1 name sent as Latin-1 stays as it is
        text = text.encode("latin-1").decode("utf-8")
    try:
        return user_name(unquote(text, errors="strict"))
    except (AccountError, UnicodeError):
        raise HTTPException(
            400, "say who you are: a user name (header X-User), 1-100 characters"
        ) from None


def viewer(request: Request) -> User | None:
    """Whoever may read cases: a logged-in user (None without accounts: anyone here)."""
    accounts: Accounts | None = request.app.state.accounts
    if accounts is None:
        return None
    user = accounts.session(request.cookies.get(COOKIE))
    if user is None:
        raise HTTPException(401, "log in first (your session has ended or never began)")
    return user


def reviewer(request: Request, seen: Annotated[User | None, Depends(viewer)]) -> User:
    """Whoever makes a change: the logged-in user, or the user the page names."""
    return seen or User(typed_user(request.headers.get("x-user")), "signer")


Reviewer = Annotated[User, Depends(reviewer)]


def asker(request: Request, seen: Annotated[User | None, Depends(viewer)]) -> str | None:
    """Who reads a case, for what a blind review lets them see: the logged-in user, or the
    name the page sends (stations without accounts), or None."""
    if seen is not None:
        return seen.name
    try:
        return typed_user(request.headers.get("x-user")) if request.headers.get("x-user") else None
    except HTTPException:
        return None


Asker = Annotated[str | None, Depends(asker)]


def signer(user: Reviewer) -> User:
    if not user.may_sign:
        raise HTTPException(403, f"only a signer signs; {user.name} is a {user.role}")
    return user


Signer = Annotated[User, Depends(signer)]
Viewer = [Depends(viewer)]


def _jpeg(data: bytes) -> Response:
    """An image that never changes once stored: the browser may keep it for a day."""
    return Response(data, media_type="image/jpeg", headers={"Cache-Control": "max-age=86400"})


def create_app(
    station: ReviewStation,
    accounts: Accounts | None = None,
    allowed_hosts: tuple[str, ...] = LOOPBACK,
) -> FastAPI:
    """The station's app. `accounts`: log-in required (None: one desk, names typed);
    `allowed_hosts`: the host names clients reach it by (the `Host` header), nothing else."""
    # No schema, no docs pages: only the page, its files and the login are open (docs/review.md)
    app = FastAPI(
        title="marrowdiff review station", docs_url=None, redoc_url=None, openapi_url=None
    )
    limits = station.limits

    app.state.accounts = accounts

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, error: RequestValidationError):
        """A 422 sentence that names each field and its problem, never echoing what was sent
        (it may not even be encodable)."""
        problems = [
            f"{'.'.join(_printable(part) for part in e['loc'][1:]) or 'the body'}: "
            + (UNICODE if e["type"] == "string_unicode" else _printable(e["msg"]))
            for e in error.errors()
        ]
        return JSONResponse({"detail": "; ".join(problems)}, status_code=422)

    @app.exception_handler(StoreError)
    async def store_error(request: Request, error: StoreError):
        status = 409 if isinstance(error, SignedError) else 400
        status = 404 if isinstance(error, NotFoundError) else status
        status = 403 if isinstance(error, ForbiddenError) else status
        return JSONResponse({"detail": str(error)}, status_code=status)

    @app.get("/", include_in_schema=False)
    def index():
        return FileResponse(STATIC / "index.html")

    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/favicon.ico", include_in_schema=False)
    def favicon():
        return FileResponse(STATIC / "favicon.svg", media_type="image/svg+xml")

    @app.get("/api/me")
    def me(request: Request):
        """Who this browser is logged in as, and whether the station has accounts."""
        user = accounts.session(request.cookies.get(COOKIE)) if accounts else None
        if accounts and user is None:
            return JSONResponse({"accounts": True, "detail": "log in first"}, status_code=401)
        return {"accounts": accounts is not None} | (
            {"name": user.name, "role": user.role} if user else {}
        )

    @app.post("/api/login")
    async def login(body: Login, request: Request):
        if accounts is None:
            raise HTTPException(404, "this station has no accounts: type your name on the page")
        try:
            # argon2 takes a while: off the event loop, so other requests go on
            source = request.client.host if request.client else "unknown"
            user, token = await run_in_threadpool(accounts.log_in, body.name, body.password, source)
        except LoginError as error:
            raise HTTPException(429 if isinstance(error, LockedOut) else 401, str(error)) from None
        response = JSONResponse({"accounts": True, "name": user.name, "role": user.role})
        response.set_cookie(
            COOKIE, token, httponly=True, samesite="strict", path="/",
            secure=request.url.scheme == "https",  # behind a TLS proxy
            max_age=int(3600 * SESSION_HOURS),
        )  # fmt: skip
        return response

    @app.post("/api/logout")
    def logout(request: Request):
        if accounts is not None:
            accounts.log_out(request.cookies.get(COOKIE))
        response = JSONResponse({"accounts": accounts is not None})
        response.delete_cookie(COOKIE, path="/")
        return response

    @app.get("/api/info", dependencies=Viewer)
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
                    # False: a platelet, red cell or debris, set aside, never counted
                    "counted": bool(station.classifier.counted[i]),
                }
                for i, code in enumerate(station.classifier.classes)
            ],
            "limits": {"max_file_mb": limits.max_file_bytes / 2**20, "max_files": limits.max_files},
            "target": station.report.target,
            "cell_radius": station.count.detect.cell_diameter / 2,
            "slides": station.slides_root is not None,  # `serve --slides DIR`
        }

    @app.get("/api/detection", dependencies=Viewer)
    def detection():
        """The detector's precision and recall on the fields of every signed case, by the
        reviewers' verdicts: on this laboratory's own smears."""
        return station.store.detection_tally()

    @app.get("/api/cases", dependencies=Viewer)
    def cases():
        return station.store.cases()

    @app.post("/api/cases", status_code=201)
    def create_case(body: NewCase, user: Reviewer):
        name, patient, stain = (text.strip() for text in (body.name, body.patient, body.stain))
        if not name or not all(text.isprintable() for text in (name, patient, stain)):
            raise HTTPException(422, "a case id is 1-100 printable characters")
        return station.store.create_case(
            name, user.name, patient, stain, body.reviewers, body.hide_model
        )

    @app.get("/api/cases/{case_id}")
    def case(case_id: Id, who: Asker):
        return station.view(case_id, who)

    @app.post("/api/cases/{case_id}/images")
    async def upload(case_id: Id, request: Request, user: Reviewer):
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
                        station.upload, case_id, user.name, upload.filename or "upload", data
                    )
                )
            except UploadError as error:
                results.append({"name": upload.filename, "error": str(error)})
        accepted = [r for r in results if "error" not in r]
        if not accepted:
            too_big = all("limit" in r["error"] for r in results)
            raise HTTPException(413 if too_big else 415, "; ".join(r["error"] for r in results))
        return {"results": results, "differential": station.shown_differential(case_id)}

    @app.post("/api/cases/{case_id}/slides", status_code=201)
    async def register_slide(case_id: Id, body: SlidePath, user: Reviewer):
        """Count a slide of the slide folder (`serve --slides DIR`) into the case."""
        try:
            result = await run_in_threadpool(station.register_slide, case_id, user.name,
                                             body.path)  # fmt: skip
        except SlideAccessError as error:
            raise HTTPException(error.status, str(error)) from None
        except UploadError as error:
            raise HTTPException(415, str(error)) from None
        return {"result": result, "differential": station.shown_differential(case_id)}

    @app.get("/api/images/{image_id}/slide.dzi", dependencies=Viewer)
    def slide_dzi(image_id: Id):
        try:
            return Response(station.dzi(image_id), media_type="application/xml")
        except SlideAccessError as error:
            raise HTTPException(error.status, str(error)) from None

    @app.get("/api/images/{image_id}/slide_files/{level}/{tile}", dependencies=Viewer)
    def slide_tile(image_id: Id, level: int, tile: str):
        match = re.fullmatch(r"(\d{1,6})_(\d{1,6})\.jpeg", tile)
        if not match or not 0 <= level < 64:
            raise HTTPException(404, f"no tile {level}/{_printable(tile)}")
        try:
            return _jpeg(station.dz_tile(image_id, level, int(match[1]), int(match[2])))
        except SlideAccessError as error:
            raise HTTPException(error.status, str(error)) from None

    @app.get("/api/images/{image_id}/field.jpg", dependencies=Viewer)
    def field_image(image_id: Id):
        return _jpeg(station.field_jpeg(image_id))

    @app.post("/api/cases/{case_id}/images/{image_id}/cells", status_code=201)
    def add_cell(case_id: Id, image_id: Id, body: NewCellAt, user: Reviewer):
        cell = station.add_cell(case_id, image_id, user.name, body.x, body.y)
        return {
            "cell": station.shown_cell(cell, user.name),
            "differential": station.shown_differential(case_id),
        }

    @app.get("/api/cells/{cell_id}/image.jpg", dependencies=Viewer)
    def cell_image(cell_id: Id):
        return _jpeg(station.cell_jpeg(cell_id))

    @app.post("/api/cells/{cell_id}")
    def review(cell_id: Id, body: Review, user: Reviewer):
        if body.label is not None and body.label not in station.classifier.classes:
            raise HTTPException(422, f"unknown class {body.label!r}")
        cell = station.store.review(cell_id, user.name, body.status, body.label)
        return {
            "cell": station.shown_cell(cell, user.name),
            "differential": station.shown_differential(cell["case_id"]),
        }

    @app.post("/api/cells/{cell_id}/adjudicate")
    def adjudicate(cell_id: Id, body: Decision, user: Reviewer):
        """Decide a cell the blind reviewers disagreed on (an adjudicator or a signer who
        gave no verdict on it)."""
        if not user.may_adjudicate:
            raise HTTPException(403, f"only an adjudicator decides; {user.name} is a {user.role}")
        label = body.label
        classes = station.classifier.classes
        for code in [label] if body.between is None else body.between:
            if code is not None and code not in classes:
                raise HTTPException(422, f"unknown class {code!r}")
        if body.between is not None:
            try:
                label = station.classifier.vocabulary.between(*body.between)
            except VocabularyError as error:
                raise HTTPException(422, str(error)) from None
        cell = station.store.adjudicate(cell_id, user.name, body.status, label)
        return {"cell": station.shown_cell(cell, user.name),
                "differential": station.shown_differential(cell["case_id"])}  # fmt: skip

    @app.get("/api/cases/{case_id}/verdicts")
    def verdicts(case_id: Id, who: Asker, reviewer: str | None = None):
        """A blind case's verdicts: while it is blind, only the asker's own (another
        reviewer's: 403); once opened, everyone's (or `reviewer`'s)."""
        return station.verdicts(case_id, who, reviewer)

    @app.get("/api/cases/{case_id}/agreement", dependencies=Viewer)
    def case_agreement(case_id: Id):
        """How the case's blind reviewers agreed (once its verdicts are opened)."""
        return station.agreement([case_id])

    @app.get("/api/agreement", dependencies=Viewer)
    def agreement(case: Annotated[list[int] | None, Query()] = None):
        """How the reviewers agreed over cases (default: every case whose blind review is
        over)."""
        ids = case or [
            c["id"] for c in station.store.cases() if c["reviewers"] > 1 and c["unblinded_at"]
        ]
        if not ids:
            raise HTTPException(404, "no case has finished a blind double review yet")
        return station.agreement(ids)

    @app.post("/api/cases/{case_id}/sign")
    def sign(case_id: Id, user: Signer):
        return station.sign(case_id, user.name)

    @app.get("/api/cases/{case_id}/log")
    def log(case_id: Id, who: Asker):
        return station.log(case_id, who)

    @app.get("/api/cases/{case_id}/report/{name}", dependencies=Viewer)
    def report_file(case_id: Id, name: str):
        if name not in ("report.html", "report.json", "cells.csv"):
            raise HTTPException(404, f"no report file {name!r}")
        path = station.data_dir / "cases" / str(case_id) / "report" / name
        if not station.store.case(case_id)["signed_at"] or not path.is_file():
            raise HTTPException(404, "the report is written when the case is signed")
        return FileResponse(path)

    @app.get("/api/cases/{case_id}/export.zip", dependencies=Viewer)
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
    app.add_middleware(ChangeGuard)
    app.add_middleware(AllowedHosts, hosts=allowed_hosts)
    return app


def serving_hosts(host: str, allowed: list[str], accounts: bool) -> tuple[str, ...]:
    """The Host names the station answers to; refused beyond this machine without accounts,
    and on every address (0.0.0.0, ::) without the names clients will use."""
    if host not in LOOPBACK and not accounts:
        raise AccountError(
            f"serving on {host} without accounts would let anyone who reaches the port sign a "
            "count: add accounts first (marrowdiff users add NAME --role signer), or serve on "
            "127.0.0.1"
        )
    if host in ("0.0.0.0", "::", "") and not allowed:
        raise AccountError(
            f"--host {host} listens on every address: name the host names clients use with "
            "--allowed-host (e.g. --allowed-host marrow.lab.example)"
        )
    named = [] if host in ("0.0.0.0", "::") else [host]
    return tuple(dict.fromkeys([*LOOPBACK, *allowed, *named]))


def _printable(part) -> str:
    return str(part).encode("utf-8", "backslashreplace").decode("utf-8")
