"""STAND-IN for how the nodes of a vLLM or SGLang server larger than a node meet (tests only).

The real ones meet in torch.distributed at the head's address (vLLM --master-addr/--master-port, SGLang
--dist-init-addr): the head's rank 0 listens there, the other nodes connect, and the head serves HTTP only once
every node has joined (its model loads over the whole world). Here: the head listens on the rendezvous port and
waits for one TCP connection from each other node, then serves; another node connects (retrying until the head
listens, as torch's TCPStore client does), says which node it is, then waits until the head's connection ends
(the real workers die with their process group) or it is killed. tests/standins/README.md ("Across nodes").
"""
from __future__ import annotations

import socket
import sys
import threading
import time
from typing import List

RETRY_S = 0.2


def say(tool: str, message: str) -> None:
    print(f"[STAND-IN] {tool}: {message}", file=sys.stderr, flush=True)


def head_waits_for_nodes(tool: str, port: int, nnodes: int) -> List[socket.socket]:
    """Listen on `port` (every interface, as TCPStore does) until nnodes - 1 nodes have joined; their
    connections, to keep open while serving."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("0.0.0.0", port))
    listener.listen()
    say(tool, f"node 0 of {nnodes}: waiting on port {port} for {nnodes - 1} more node(s)")
    joined = []
    while len(joined) < nnodes - 1:
        conn, peer = listener.accept()
        node = conn.makefile().readline().strip()
        say(tool, f"node {node} joined from {peer[0]}")
        joined.append(conn)
    listener.close()
    say(tool, f"all {nnodes} nodes joined: the world is complete")
    return joined


def is_local(host: str) -> bool:
    """Whether `host` is an address of this machine (one can bind to it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((socket.gethostbyname(host), 0))
        except OSError:
            return False
    return True


def node_joins_head(tool: str, host: str, port: int, node_rank: int) -> socket.socket:
    """Connect to the head (retrying while it does not listen yet) and say which node this is."""
    while True:
        try:
            conn = socket.create_connection((host, port), timeout=5)
            break
        except OSError:
            time.sleep(RETRY_S)
    conn.settimeout(None)
    conn.sendall(f"{node_rank}\n".encode())
    say(tool, f"node {node_rank} joined the head at {host}:{port}")
    return conn


def serve_until_head_ends(tool: str, conn: socket.socket) -> None:
    """Block until the head's end of the connection closes: the real node's workers die with the world."""
    while conn.recv(1024):
        pass
    sys.exit(f"[STAND-IN] {tool}: the head closed the rendezvous: this node's workers end with it")


def wait_until_killed() -> "NoReturn":  # noqa: F821
    while True:
        time.sleep(3600)


def dummy_health_server(tool: str, host: str, port: int, head: str) -> None:
    """SGLang's launch_dummy_health_check_server on a node of rank >= 1: /health and /ping answer 200, in a
    thread. Not where the head runs on this same machine (the test cluster's two nodes share one host): the head
    serves that port there."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    if is_local(head):
        say(tool, f"no dummy health check server: the head ({head}) is this machine, whose {host}:{port} it serves "
                  "(the test cluster's nodes share one host)")
        return

    class Health(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (http.server's name)
            self.send_response(200 if self.path in ("/health", "/ping") else 404)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer((host, port), Health)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    say(tool, f"dummy health check server on {host}:{port}")
