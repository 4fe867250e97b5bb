"""A real MCP server for tests/mcp.rs: the official SDK's Streamable HTTP
server (MCPServer), served over TLS by uvicorn.

Every tool appends a JSON line {"tool", "args"} to --log before it answers,
so a test can prove a tool ran (or never ran). Prints {"port": N} once it
listens on 127.0.0.1.

    python3 server.py --cert leaf.pem --key leaf-key.pem --log calls.jsonl [--json]
"""

import argparse
import json
import logging
import os
import socket
import sys

import anyio
import uvicorn
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.transport_security import TransportSecuritySettings


def build(log_path: str) -> MCPServer:
    server = MCPServer("sudomode-test")

    def ran(tool: str, **args) -> None:
        with open(log_path, "a", encoding="utf-8") as f:
            f.write(json.dumps({"tool": tool, "args": args}) + "\n")

    @server.tool()
    def read_file(path: str) -> str:
        """Read a file (read-only)."""
        ran("read_file", path=path)
        return f"contents of {path}"

    @server.tool()
    def delete_file(path: str) -> str:
        """Delete a file."""
        ran("delete_file", path=path)
        return f"deleted {path}"

    @server.tool()
    def send_payment(amount: int, to: str, memo: str = "") -> str:
        """Move money."""
        ran("send_payment", amount=amount, to=to, memo=memo)
        return f"sent {amount} to {to}"

    @server.tool()
    async def count(n: int, ctx: Context) -> str:
        """Reports progress n times before answering (several SSE events)."""
        for i in range(n):
            await ctx.report_progress(i + 1, n)
        ran("count", n=n)
        return f"counted to {n}"

    @server.tool()
    async def handshake(marker: str, ctx: Context) -> str:
        """Sends a progress event, then answers only once the client has seen
        it (the client creates `marker` when progress arrives): proof that the
        SSE stream reaches the client while the tool is still running."""
        await ctx.report_progress(1, 2)
        for _ in range(300):
            if os.path.exists(marker):
                ran("handshake", marker=marker)
                return "streamed"
            await anyio.sleep(0.1)
        return "the progress event never reached the client"

    return server


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--cert", required=True)
    p.add_argument("--key", required=True)
    p.add_argument("--log", required=True)
    p.add_argument("--json", action="store_true", help="answer with JSON, not SSE")
    a = p.parse_args()
    logging.getLogger("mcp").setLevel(logging.WARNING)
    app = build(a.log).streamable_http_app(
        json_response=a.json,
        # The proxy forwards the upstream's own Host (mcp.example.com), not 127.0.0.1.
        transport_security=TransportSecuritySettings(enable_dns_rebinding_protection=False),
    )
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(
        app,
        ssl_certfile=a.cert,
        ssl_keyfile=a.key,
        log_level="warning",
    )
    print(json.dumps({"port": sock.getsockname()[1]}), flush=True)
    uvicorn.Server(config).run(sockets=[sock])


if __name__ == "__main__":
    sys.exit(main())
