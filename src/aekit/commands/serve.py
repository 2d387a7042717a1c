"""serve: the latent explorer in the browser (FastAPI + uvicorn, imported only when it starts)."""

from __future__ import annotations

import argparse
import sys
import time

from ..errors import ConfigError

ORDER = 40


def add_commands(sub) -> None:
    p = sub.add_parser("serve", help="explore a run's latent space in the browser",
                       description="Start a local web page with the test-set latent map, morphing, latent "
                                   "arithmetic and image upload, plus what the run's model supports: sliders over "
                                   "a flat code, a code-grid editor for discrete codes, random samples from a "
                                   "prior. Binds 127.0.0.1 unless --host says otherwise.")
    p.add_argument("run", help="run folder")
    p.add_argument("--host", default="127.0.0.1",
                   help="interface to bind (default 127.0.0.1: this machine only; '', '*', 0.0.0.0 and :: bind every "
                        "interface, with a warning)")
    p.add_argument("--port", type=int, default=8765, help="TCP port (default 8765; 0 picks a free one)")
    p.add_argument("--open", action="store_true", help="open the page in the default web browser")
    p.add_argument("--projection", choices=("pca", "tsne"), default="pca",
                   help="map of codes wider than 2-D (computed once, cached in RUN/cache/)")
    p.add_argument("--no-cache", dest="cache", action="store_false", help="recompute the map, do not write RUN/cache/")
    p.set_defaults(func=cmd_serve)


def warn_exposed(host: str) -> None:
    """The one warning for a --host other machines can reach (there is no authentication)."""
    from ..serve.app import is_every_interface

    if is_every_interface(host):
        where = (f"--host {host!r} is not loopback: it binds every interface, like 0.0.0.0; anyone who can reach "
                 "this machine")
    else:
        where = f"--host {host} is not loopback: anyone who can reach this machine on that address"
    print(f"aekit: warning: {where} can use the explorer (there is no authentication)", file=sys.stderr, flush=True)


def listen(host: str, port: int):
    """A bound TCP socket for ``host:port``. The wildcard spellings ('', '*', 0.0.0.0, '::') bind every
    interface alike ('*' is not an address to the C library: it is made 0.0.0.0 here, as '' already is)."""
    import errno
    import socket

    from ..serve.app import host_address

    addr = host_address(host)
    name = str(addr) if addr is not None else host.strip("[]")
    family = socket.AF_INET6 if addr is not None and addr.version == 6 else socket.AF_INET
    try:
        sock = socket.socket(family, socket.SOCK_STREAM)
    except OSError as exc:  # an IPv6 address on a machine without IPv6
        raise ConfigError(f"cannot listen on {host}:{port} ({exc.strerror}); pick another --host") from None
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    # Linux hands TCP_NODELAY on to accepted connections; without it uvicorn's separate header and body writes
    # meet the client's delayed ACK (Nagle) and every response waits ~40 ms (measured: 44 ms -> 1.5 ms)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        sock.bind((name, port))
    except OSError as exc:
        sock.close()
        bad_host = isinstance(exc, socket.gaierror) or exc.errno in (errno.EADDRNOTAVAIL, errno.EAFNOSUPPORT)
        raise ConfigError(f"cannot listen on {host or repr(host)}:{port} ({exc.strerror or exc}); pick another "
                          f"{'--host' if bad_host else '--port'}") from None
    # listening now: a browser that opens the printed URL before uvicorn runs waits in the backlog, not refused
    sock.listen(2048)
    return sock


def cmd_serve(args: argparse.Namespace) -> int:
    import ipaddress

    from ..serve.app import create_app, is_loopback
    from ..train import load_run

    if not 0 <= args.port <= 65535:
        raise ConfigError(f"--port must be 0..65535, got {args.port}")
    loopback = is_loopback(args.host)
    if not loopback:
        warn_exposed(args.host)
    # bind first: a busy port is reported before the (slower) precomputation, and port 0 gets a real number
    sock = listen(args.host, args.port)
    bound, port = sock.getsockname()[:2]
    bound = ipaddress.ip_address(bound)
    if loopback and not bound.is_loopback:  # a name that resolved elsewhere: the address bound is what counts
        loopback = False
        warn_exposed(args.host)
    try:
        run = load_run(args.run)
        t0 = time.perf_counter()
        hosts = ["127.0.0.1", "localhost", "::1", "[::1]"] if loopback else None  # loopback: refuse DNS rebinding
        app = create_app(run, projection=args.projection, use_cache=args.cache, allowed_hosts=hosts)
    except BaseException:
        sock.close()
        raise
    # every interface: print the address this machine reaches it by (browsers refuse http://0.0.0.0/)
    host = ("::1" if bound.version == 6 else "127.0.0.1") if bound.is_unspecified else args.host.strip("[]")
    url = f"http://{f'[{host}]' if ':' in host else host}:{port}/"
    print(f"explorer for {run.path} ({run.model_name}) ready in {time.perf_counter() - t0:.2f} s: {url}", flush=True)
    print("press Ctrl+C to stop", flush=True)
    if args.open:
        import threading
        import webbrowser

        threading.Timer(0.5, webbrowser.open, args=(url,)).start()
    import uvicorn

    config = uvicorn.Config(app, log_level="warning", access_log=False)
    server = uvicorn.Server(config)
    server.run(sockets=[sock])
    return 0
