"""An MCP agent for tests/mcp.rs: the official SDK's Streamable HTTP client.

It reaches the server the way an agent under SudoMode does: HTTPS_PROXY and
SSL_CERT_FILE from the environment (`sudomode exec`, or set by the test).

    python3 client.py URL '[["read_file", {"path": "/a"}], ...]'

Initialises a session, lists the tools, calls each tool in order and prints
one JSON line: {"tools": [...], "results": [{"ok", "text"} | {"ok": false,
"code", "message", "data"}]}.
"""

import asyncio
import json
import sys

from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError


async def run(url: str, calls: list) -> dict:
    out: dict = {"results": []}
    async with streamable_http_client(url) as (read, write):
        async with ClientSession(read, write) as session:
            await session.initialize()
            tools = await session.list_tools()
            out["tools"] = sorted(t.name for t in tools.tools)
            for name, args in calls:
                progress: list = []

                async def on_progress(p, total, message, progress=progress, args=args):
                    progress.append(p)
                    # The `handshake` tool answers once it sees this file.
                    if "marker" in args:
                        open(args["marker"], "w").close()

                try:
                    r = await session.call_tool(name, args, progress_callback=on_progress)
                    text = " ".join(c.text for c in r.content if getattr(c, "text", None))
                    out["results"].append(
                        {"ok": not r.is_error, "text": text, "progress": progress}
                    )
                except MCPError as e:
                    out["results"].append(
                        {"ok": False, "code": e.error.code, "message": e.error.message, "data": e.error.data}
                    )
    return out


def main() -> None:
    url, calls = sys.argv[1], json.loads(sys.argv[2])
    print(json.dumps(asyncio.run(run(url, calls))), flush=True)


if __name__ == "__main__":
    main()
