"""The gateway's upstream HTTP client against a real HTTP server on loopback."""

from __future__ import annotations

from aiohttp import web
from aiohttp.test_utils import TestServer

from claudegate.upstream.target import new_session


async def test_a_cookie_an_upstream_sets_for_one_caller_is_not_sent_with_the_next_call() -> None:
    seen: list[str | None] = []

    async def handler(request: web.Request) -> web.Response:
        seen.append(request.headers.get("Cookie"))
        response = web.json_response({"ok": True})
        response.set_cookie("__cf_bm", "session-of-the-first-caller")
        return response

    app = web.Application()
    app.router.add_post("/v1/messages", handler)
    async with TestServer(app, host="127.0.0.1") as server:
        # By name, as an upstream is reached: cookie jars keep no cookies for bare IP addresses.
        url = f"http://localhost:{server.port}/v1/messages"
        session = new_session()
        try:
            for _ in range(2):
                async with session.post(url, data=b"{}") as response:
                    assert response.status == 200
                    assert "Set-Cookie" in response.headers  # the upstream did set one
        finally:
            await session.close()
    assert seen == [None, None]
