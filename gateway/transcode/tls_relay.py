"""RTMPS for FFmpeg: plain RTMP in on a loopback port, TLS out to the streaming server.

FFmpeg's own TLS, as PyAV opens an output (no options), checks neither the server's certificate nor
its name: a stream key would go to whoever answers. So a live stream's process (stream_process)
lets FFmpeg speak plain RTMP to this relay on 127.0.0.1, and the relay speaks TLS with Python's ssl:
the system's certificate authorities (or SSL_CERT_FILE's, as OpenSSL reads it), the name checked.

A process of its own (`python -m gateway.transcode.tls_relay <host> <port>`, neither a secret):
FFmpeg holds the interpreter's lock while it blocks on the network, so a relay thread beside it
would never run. It writes `port <n>` on stdout once it listens, then `error <reason>` for each
connection to the server that failed, and ends when its stdin closes (its parent is gone).
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import sys

CONNECT_TIMEOUT_S = 10.0


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (OSError, ssl.SSLError):
        pass
    finally:
        with contextlib.suppress(Exception):
            writer.close()


async def _relay(host: str, port: int) -> None:
    context = ssl.create_default_context()

    def say(line: str) -> None:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()

    async def connected(client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        try:
            server_reader, server_writer = await asyncio.wait_for(
                asyncio.open_connection(host, port, ssl=context, server_hostname=host), CONNECT_TIMEOUT_S
            )
        except ssl.SSLCertVerificationError:
            say("error the streaming server's certificate was not accepted")
            client_writer.close()
            return
        except (OSError, ssl.SSLError, TimeoutError) as exc:
            say(f"error {exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__}")
            client_writer.close()
            return
        try:
            await asyncio.gather(_pipe(client_reader, server_writer), _pipe(server_reader, client_writer))
        except asyncio.CancelledError:  # (the relay ends: its parent is gone)
            for writer in (client_writer, server_writer):
                writer.close()

    server = await asyncio.start_server(connected, "127.0.0.1", 0)
    say(f"port {server.sockets[0].getsockname()[1]}")
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, sys.stdin.read)  # (until the parent closes it, or is gone)
    server.close()


def main() -> None:
    host, port = sys.argv[1], int(sys.argv[2])
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_relay(host, port))


if __name__ == "__main__":
    main()
