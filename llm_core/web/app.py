"""The web chat's HTTP API and page (`create_app`).

    GET  /                  the page (static/index.html, with static/base.js, page.js and style.css)
    GET  /api/models        the served models, the default first, and the server's limits
    GET  /api/status        the queue: replies being written, waiting, done, cancelled
    POST /api/chat          a reply, streamed as server-sent events (see `worker` for the events)
    POST /api/feedback      thumbs up/down on a reply, with a better answer when edited: a rankings row
    POST /api/arena         two anonymous replies to one prompt, streamed (events carry `side`: A or B)
    POST /api/arena/vote    the vote on a battle: a rankings row; the answer names the two models
    GET  /api/leaderboard   Bradley-Terry ratings and win rates of the arena's models, with 95% intervals

Every error is JSON `{"detail": reason}` with a 4xx status (503 when the queue is full). With a token, every request
(the page and its files included) must carry it: `Authorization: Bearer TOKEN`, or once `?token=TOKEN` in the
page's address, which sets a same-site cookie for the rest. Only the listed model keys are reachable; the only file
written is the feedback file.
"""

from __future__ import annotations

import asyncio
import hmac
import random
import uuid
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, JSONResponse, StreamingResponse
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from llm_core.chat.chat_model import load_chat_model
from llm_core.preference.rankings import append_rankings, read_rankings, record_chat_feedback
from llm_core.store import ArtifactStore
from llm_core.web.arena import Battle, leaderboard, vote_row
from llm_core.web.models import Engines, ModelLoader, ServedModel
from llm_core.web.requests import (
    ArenaRequest,
    ChatRequest,
    FeedbackRequest,
    RequestError,
    VoteRequest,
    WebSettings,
    check_conversation,
    dump,
    fit,
    labeler,
    messages_of,
    parse,
)
from llm_core.web.worker import Busy, Event, GenerationQueue, Job

STATIC = Path(__file__).with_name("static")
COOKIE = "llmpipe_token"
MAX_BATTLES = 1000  # battles kept in memory for their vote
KEEPALIVE_S = 5.0


class TokenGuard:
    """ASGI middleware: 401 for any request without the token (header, cookie, or `?token=` that sets the cookie)."""

    def __init__(self, app: ASGIApp, token: str):
        self.app, self.token = app, token

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        bearer = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
        in_query = request.query_params.get("token", "")
        given = bearer or request.cookies.get(COOKIE, "") or in_query
        if not hmac.compare_digest(given.encode(), self.token.encode()):
            reason = "this server needs its token: open the page as /?token=TOKEN, or send Authorization: Bearer " \
                     "TOKEN" if not given else "wrong token"
            await JSONResponse({"detail": reason}, 401)(scope, receive, send)
            return
        if not in_query:
            await self.app(scope, receive, send)
            return

        async def set_cookie(message: Message) -> None:
            if message["type"] == "http.response.start":
                cookie = f"{COOKIE}={self.token}; Path=/; HttpOnly; SameSite=Strict"
                message["headers"] = [*message.get("headers", []), (b"set-cookie", cookie.encode())]
            await send(message)

        await self.app(scope, receive, set_cookie)


def _error(e: RequestError) -> JSONResponse:
    return JSONResponse({"detail": e.reason}, e.status)


def create_app(store: ArtifactStore, models: Sequence[ServedModel], settings: WebSettings,
               load: ModelLoader = load_chat_model) -> FastAPI:
    """The app serving `models` (the first is the default) from `store`."""
    assert models, "serve at least one model"
    app = FastAPI(title="llm-pipeline chat", docs_url=None, redoc_url=None, openapi_url=None)
    served = {m.key: m for m in models}
    engines = Engines(store, settings.tools, load)
    queue = GenerationQueue(settings.max_active, settings.max_pending)
    battles: OrderedDict[str, Battle] = OrderedDict()
    app.state.engines, app.state.queue = engines, queue
    app.router.add_event_handler("shutdown", queue.close)

    async def body_of(request: Request, model: type) -> Any:
        declared = int(request.headers.get("content-length") or 0)
        if declared > settings.max_body_bytes:  # refused before reading it
            raise RequestError(413, f"the request is {declared:,} bytes; this server takes at most "
                                    f"{settings.max_body_bytes:,}")
        return parse(await request.body(), model, settings.max_body_bytes)

    def model_of(key: str) -> ServedModel:
        if key not in served:
            raise RequestError(404, f"unknown model {key!r}; this server serves {', '.join(served)}")
        return served[key]

    async def stream(jobs: list[Job], events: asyncio.Queue,
                     on_event: Callable[[Event], None] | None = None) -> StreamingResponse:
        """Queue the jobs (503 when full) and stream their events until each is done; a client that goes away
        cancels them."""
        try:
            queue.submit(jobs)
        except Busy as e:
            raise RequestError(503, str(e)) from None

        async def body() -> AsyncIterator[str]:
            left = len(jobs)
            try:
                while left:
                    try:
                        event = await asyncio.wait_for(events.get(), KEEPALIVE_S)
                    except asyncio.TimeoutError:
                        yield ": waiting\n\n"  # an SSE comment: writing to a client that went away ends the stream
                        continue
                    left -= event["type"] in ("done", "error")
                    if on_event:
                        on_event(event)
                    yield dump(event)
            finally:
                for job in jobs:
                    job.cancelled.set()

        return StreamingResponse(body(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})

    def sink() -> tuple[asyncio.Queue, Callable[[Event], None]]:
        loop, events = asyncio.get_running_loop(), asyncio.Queue()
        return events, lambda event: loop.call_soon_threadsafe(events.put_nowait, event)

    @app.exception_handler(RequestError)
    async def _request_error(request: Request, e: RequestError) -> JSONResponse:
        return _error(e)

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-store"})

    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/api/models")
    async def list_models() -> dict[str, Any]:
        return {"models": [m.to_json() for m in models], "default": models[0].key, "max_tokens": settings.max_tokens,
                "tools": settings.tools}

    @app.get("/api/status")
    async def status() -> dict[str, int]:
        return queue.stats()

    @app.post("/api/chat")
    async def chat(request: Request) -> StreamingResponse:
        body: ChatRequest = await body_of(request, ChatRequest)
        served_model = model_of(body.model)
        messages = messages_of(body)
        check_conversation(messages, answered=False)
        engine = await run_in_threadpool(engines.get, served_model.key)
        prompt, params = fit(engine.tokenizer, served_model.block_size, messages, body, settings)
        events, emit = sink()
        return await stream([Job(engine, prompt, params, emit, body.seed)], events)

    @app.post("/api/feedback")
    async def feedback(request: Request) -> dict[str, Any]:
        body: FeedbackRequest = await body_of(request, FeedbackRequest)
        model_of(body.model)
        messages = messages_of(body)
        check_conversation(messages, answered=True)
        rows = await run_in_threadpool(record_chat_feedback, settings.feedback, messages[:-1],
                                       messages[-1]["content"], body.up, body.better or None, labeler(body.name),
                                       f"chat:{body.model}")
        return {"saved": "ranking" if body.better.strip() else "rating", "rows": rows}

    @app.post("/api/arena")
    async def arena(request: Request) -> StreamingResponse:
        body: ArenaRequest = await body_of(request, ArenaRequest)
        messages = messages_of(body)
        check_conversation(messages, answered=False)
        keys = random.sample(list(served), 2) if len(served) > 1 else [models[0].key] * 2
        battle_id = uuid.uuid4().hex
        battle = Battle(messages, (keys[0], keys[1]))
        events, emit = sink()
        jobs = []
        for i, (side, key) in enumerate(zip("AB", keys)):
            engine = await run_in_threadpool(engines.get, key)
            prompt, params = fit(engine.tokenizer, served[key].block_size, messages, body, settings)
            seed = None if body.seed is None else body.seed + i
            jobs.append(Job(engine, prompt, params, emit, seed, tag={"side": side}))
        emit({"type": "battle", "battle": battle_id})

        def record(event: Event) -> None:
            if event["type"] != "done":
                return
            battle.answers[event["side"]] = event["message"]["content"]
            if len(battle.answers) == 2:  # both finished: open to a vote
                battles[battle_id] = battle
                while len(battles) > MAX_BATTLES:
                    battles.popitem(last=False)

        return await stream(jobs, events, record)

    @app.post("/api/arena/vote")
    async def vote(request: Request) -> dict[str, Any]:
        body: VoteRequest = await body_of(request, VoteRequest)
        battle = battles.get(body.battle)
        if battle is None:
            raise RequestError(404, f"no finished battle {body.battle!r}: a battle can be voted on once both answers "
                                    "are complete (and until the server restarts)")
        if battle.voted:
            raise RequestError(409, "this battle has its vote already")
        row = vote_row(battle, body.verdict, labeler(body.name), body.better, body.comment)
        battle.voted = True
        rows = await run_in_threadpool(append_rankings, settings.feedback, [row])
        return {"models": dict(zip("AB", battle.models)), "rows": rows}

    @app.get("/api/leaderboard")
    async def standings() -> dict[str, Any]:
        rows = await run_in_threadpool(read_rankings, settings.feedback) if settings.feedback.exists() else []
        table = await run_in_threadpool(leaderboard, rows)
        return {"standings": [s.to_json() for s in table], "votes": sum(s.battles for s in table) // 2}

    if settings.token:
        app.add_middleware(TokenGuard, token=settings.token)
    return app
