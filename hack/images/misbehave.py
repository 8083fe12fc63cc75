"""Entry point of the tests' misbehaving importer (docker.io/cdi-py/importer-misbehaving):
the real importer, unless the DataVolume's source URL asks for a bad metrics endpoint.

`...?cdi-py-misbehave=hang`: the metrics port accepts connections, completes TLS and
then never answers. `...?cdi-py-misbehave=flood`: it answers 200 with a valid progress
line for this transfer (13%), then a megabyte of comments, and closes: a scraper that
read past its cap would report 13%. Either way the pod keeps running
until it is deleted and writes nothing to its volume: only the controller's scraper
meets it. Never shipped; the product image below it is the one that is tested.
"""

from __future__ import annotations

import os
import socket
import ssl
import sys
import tempfile
import threading
import time

from importer.selfsigned import write_self_signed

REAL = "/opt/cdi-py/bin/cdi-importer"
PORT = 8443
FLOOD_CHUNKS = 128
"""8 KiB each: 1 MiB, sixteen times the scraper's cap."""


def _serve(mode: str, owner_uid: str) -> None:
    cert, key = write_self_signed(tempfile.mkdtemp(dir="/tmp"))
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert, key)
    listener = socket.create_server(("0.0.0.0", PORT), backlog=64)
    line = f'kubevirt_cdi_import_progress_total{{ownerUID="{owner_uid}"}} 13\n'.encode()

    def handle(conn: socket.socket) -> None:
        try:
            with ctx.wrap_socket(conn, server_side=True) as tls:
                tls.recv(4096)
                if mode == "hang":
                    time.sleep(3600)
                    return
                tls.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
                            b"Connection: close\r\n\r\n" + line)
                chunk = b"# flood " + b"x" * 8183 + b"\n"
                for _ in range(FLOOD_CHUNKS):
                    tls.sendall(chunk)
        except OSError:
            pass

    while True:
        conn, _ = listener.accept()
        threading.Thread(target=handle, args=(conn,), daemon=True).start()


def main() -> None:
    endpoint = os.environ.get("IMPORTER_ENDPOINT", "")
    for mode in ("hang", "flood"):
        if f"cdi-py-misbehave={mode}" in endpoint:
            print(f"misbehaving importer: {mode}", flush=True)
            _serve(mode, os.environ.get("OWNER_UID", ""))
    os.execv(REAL, [REAL, *sys.argv[1:]])


if __name__ == "__main__":
    main()
