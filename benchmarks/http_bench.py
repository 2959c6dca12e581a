"""engramdb over HTTP against the in-process library, in the same run, on the same data.

Registered as suite ``http``; run ``python -m benchmarks --quick --only http``.

Setup (untimed): a fresh database gets ``min(n, PRELOAD_MAX)`` workload memories through the
library's ``add_many``; then ``engramdb serve`` starts in its own process (one worker, on this
database, as the row-level-security application role, metering usage and writing the audit
log as in production) and an unlimited API key is made for the clients.

Measured, for C concurrent clients (C in ``CLIENTS``), each a thread with its own connection:

- ``http.inprocess.add.c<C>`` / ``http.add.c<C>``: ``db.memories.add(...)`` of workload rows
  not yet stored, vector given (no model runs), each a durable commit. In process, the C
  threads share one ``engramdb.connect()`` (its pool); over HTTP each thread has its own
  ``engramdb.connect("http://…", api_key=…)`` (keep-alive connections), so a request is
  JSON in, validation, authentication (the bench key has no limits, so the server remembers
  it and counts its requests in the background), the write, an audit row, and JSON out.
- ``http.inprocess.search.c<C>`` / ``http.search.c<C>``: top-k vector searches
  (``mode="vector"``, the query vector given) of the unfiltered query set. With one client
  they take turns, in blocks of ``BLOCK`` requests, with the same query through raw SQL on the
  same store (``http.raw.search.c1``: pgvector's graph walk over engramdb's HNSW index, its
  default candidate list, ``id`` and distance only, as the superuser): the three see the same
  machine at the same moments, so their differences are not drift between suites.
- ``http.raw.search.paced.c1`` / ``http.inprocess.search.paced.c1``: the same raw SQL and
  in-process searches, in the same turns, each request after an idle pause of ``PACE_SECONDS``
  (not timed). Over HTTP the server and its database connection sit idle between two searches
  while the client and the network do their part, and on the benchmark's virtual machine the
  first work after an idle spell runs slower (docs/performance.md, "Idle spells"): these
  figures show what raw SQL and the library cost at that pace, for reference (the HTTP target
  is judged against the raw SQL run back to back).

Each figure is a throughput measurement (requests/s over the whole run; p50/p95/p99 latency of
the individual requests in its metrics) plus a ``.latency`` measurement with the same samples
for the latency table. HTTP figures name the in-process figure with the same C as their
baseline, so the ratio column is the cost of the network layer. Client threads, the server and
PostgreSQL share the machine's cores.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import httpx
import numpy as np

import engramdb
from engramdb import Settings, connect
from engramdb.embeddings.hashing import HashEmbedder
from engramdb.service.keys import ApiKeys
from engramdb.store import open_store

from .measure import LatencyStats, Timer
from .registry import Context, bench
from .workload import COLUMNS, Memories

#: Concurrent clients.
CLIENTS = (1, 4, 8)
#: Rows loaded before measuring (searches need a realistic table, not the whole workload).
PRELOAD_MAX = 20_000
PRELOAD_BATCH = 2_000
#: Requests per (operation, transport, concurrency), split evenly between the clients.
ADD_REQUESTS = {True: 240, False: 800}  # by config.quick
SEARCH_REQUESTS = {True: 480, False: 2_000}
#: Untimed requests per client before each timed run (connections, caches, plans).
WARMUP = 5
#: Server processes of ``engramdb serve`` (the machine's cores are shared with the clients).
WORKERS = 1
#: Requests per turn when one client's searches take turns (raw SQL, in process, over HTTP).
BLOCK = 20
#: The idle pause before each request of the paced searches: about what a search over HTTP
#: leaves the server's database connection idle between two statements here (at 10,000
#: memories a request took 2.8-4.0 ms at the client, its statement 1.4 ms of it in the
#: server: 1.4-2.6 ms idle; docs/performance.md, "Idle spells").
PACE_SECONDS = 0.002


def _item(m: Memories, i: int) -> dict[str, Any]:
    r = dict(zip(COLUMNS, m.row(i), strict=True))
    return {
        "content": r["content"],
        "agent_id": r["agent_id"],
        "user_id": r["user_id"],
        "room_id": r["room_id"],
        "kind": r["kind"],
        "tags": r["tags"],
        "metadata": r["metadata"],
        "importance": r["importance"],
        "embedding": r["embedding"],
        "is_unique": False,  # every row is stored, as in the other suites
    }


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def _serve(uri: str, dim: int, log: Callable[[str], None]) -> Iterator[str]:
    """``engramdb serve`` on ``uri`` in a subprocess; yields its base URL."""
    port = _free_port()
    env = {
        **os.environ,
        "ENGRAMDB_DATABASE_URL": uri,
        "ENGRAMDB_EMBEDDER": "hash",
        "ENGRAMDB_EMBEDDING_DIMENSIONS": str(dim),
        "ENGRAMDB_POOL_MAX_SIZE": str(max(CLIENTS) + 2),
    }
    cmd = [sys.executable, "-m", "engramdb.cli.main", "serve", "--host", "127.0.0.1",
           "--port", str(port), "--workers", str(WORKERS), "--log-level", "warning"]  # fmt: skip
    proc = subprocess.Popen(
        cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        start_new_session=True,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            if proc.poll() is not None:
                err = proc.stderr.read() if proc.stderr else ""
                raise RuntimeError(f"engramdb serve exited with {proc.returncode}: {err[-2000:]}")
            try:
                if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("engramdb serve did not become ready in 120 s")
            time.sleep(0.2)
        log(f"engramdb serve ({WORKERS} worker) ready at {url}")
        yield url
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)
        if proc.stderr is not None:
            proc.stderr.close()


def _drive(
    clients: int,
    requests: int,
    open_client: Callable[[int], Any],
    close_client: Callable[[Any], None],
    op: Callable[[Any, int], None],
) -> tuple[float, list[float]]:
    """Run ``op(client, i)`` for ``i`` in ``range(requests)``, split between ``clients``
    threads (each opens its client and warms up before the clock starts); returns the wall
    time from the common start to the last finish, and every request's latency."""
    per = requests // clients
    ready = threading.Barrier(clients + 1)
    samples: list[list[float]] = [[] for _ in range(clients)]
    errors: list[BaseException] = []

    def worker(c: int) -> None:
        client = None
        try:
            client = open_client(c)
            for j in range(WARMUP):
                op(client, c * per + j % per)
        except BaseException as exc:
            errors.append(exc)
        ready.wait()
        try:
            if client is None:
                return
            mine = samples[c]
            for j in range(per):
                t0 = time.perf_counter()
                op(client, c * per + j)
                mine.append(time.perf_counter() - t0)
        except BaseException as exc:
            errors.append(exc)
        finally:
            if client is not None:
                close_client(client)

    threads = [threading.Thread(target=worker, args=(c,), daemon=True) for c in range(clients)]
    for t in threads:
        t.start()
    ready.wait()
    with Timer() as t:
        for th in threads:
            th.join()
    if errors:
        raise errors[0]
    return t.seconds, [s for mine in samples for s in mine]


def _raw_searcher(uri: str, dim: int, k: int) -> tuple[Any, Callable[[Any], list[Any]]]:
    """A raw connection to the http suite's store and the raw SQL of an unfiltered top-k on it:
    the graph walk over the embedding space's HNSW index (checked in the plan)."""
    import psycopg
    from pgvector.psycopg import register_vector

    conn = psycopg.connect(uri, autocommit=True)
    register_vector(conn)
    dist = f"(embedding::vector({dim})) <=> %s"
    query = (
        f"SELECT id, {dist} AS d FROM memories WHERE embedding_dim = {dim} "
        f"ORDER BY {dist} LIMIT {k}"
    )
    probe = np.zeros(dim, dtype=np.float32)
    probe[0] = 1.0
    plan = "\n".join(r[0] for r in conn.execute("EXPLAIN " + query, (probe, probe)))
    if "Index Scan" not in plan:
        conn.close()
        raise RuntimeError(f"the raw search does not walk the HNSW index:\n{plan}")

    def search(vector: Any) -> list[Any]:
        v = np.asarray(vector, dtype=np.float32)
        return conn.execute(query, (v, v), prepare=True).fetchall()

    return conn, search


def _take_turns(
    ops: dict[str, Callable[[int], None]],
    requests: int,
    pauses: Mapping[str, float] | None = None,
) -> dict[str, tuple[float, list[float]]]:
    """Each op ``requests`` times, one at a time, in turns of ``BLOCK`` (the order rotating);
    returns each op's total time and latencies. ``pauses``: seconds to sleep, untimed, before
    each request of the ops named."""
    out: dict[str, tuple[float, list[float]]] = {name: (0.0, []) for name in ops}
    names = list(ops)
    pauses = pauses or {}
    for turn in range(max(1, requests // BLOCK)):
        shift = turn % len(names)
        for name in names[shift:] + names[:shift]:
            total, samples = out[name]
            op = ops[name]
            pause = pauses.get(name, 0.0)
            for j in range(BLOCK):
                if pause:
                    time.sleep(pause)
                t0 = time.perf_counter()
                op(turn * BLOCK + j)
                samples.append(time.perf_counter() - t0)
            out[name] = (total + sum(samples[-BLOCK:]), samples)
    return out


def _record(
    ctx: Context, name: str, seconds: float, samples: Sequence[float], baseline: str | None,
    **params: Any,
) -> None:  # fmt: skip
    stats = LatencyStats.from_seconds(samples)
    extra = {"p50_ms": stats.p50_ms, "p95_ms": stats.p95_ms, "p99_ms": stats.p99_ms}
    ctx.throughput(name, len(samples), seconds, baseline=baseline, extra=extra, **params)
    ctx.latency(
        f"{name}.latency", stats, baseline=None if baseline is None else f"{baseline}.latency",
        plan=params.get("transport"), **{k: v for k, v in params.items() if k != "transport"},
    )  # fmt: skip


@bench(
    "http",
    description="engramdb over HTTP (engramdb serve) vs in process: add and search, 1-8 clients",
)
def http_suite(ctx: Context) -> None:
    cfg, w = ctx.config, ctx.workload
    uri = ctx.database("http")
    dim, k = cfg.dim, cfg.k
    settings = Settings(database_url=uri, auto_migrate=True, embedder="hash",
                        pool_max_size=max(CLIENTS) + 2, **cfg.library_settings)  # fmt: skip
    db = connect(uri, embedder=HashEmbedder(dim), settings=settings)
    try:
        preload = min(len(w.base), PRELOAD_MAX)
        ctx.log(f"loading {preload} memories in process (untimed)")
        with Timer() as t:
            for start in range(0, preload, PRELOAD_BATCH):
                stop = min(start + PRELOAD_BATCH, preload)
                db.memories.add_many([_item(w.base, i) for i in range(start, stop)])
        ctx.log(f"loaded in {t.seconds:.1f}s")
        store = open_store(settings.with_(pool_min_size=1, pool_max_size=1))
        try:
            _key, secret = ApiKeys(store).create(
                "default", name="http bench", scopes="read,write", tier="enterprise"
            )
        finally:
            store.close()

        quick = cfg.quick
        add_n, search_n = ADD_REQUESTS[quick], SEARCH_REQUESTS[quick]
        needed = 2 * len(CLIENTS) * add_n
        if len(w.extra) < needed:
            raise RuntimeError(f"the workload has {len(w.extra)} extra rows, {needed} needed")
        queries = w.query_sets[0]  # unfiltered
        next_row = 0

        def adder(rows: range) -> Callable[[Any, int], None]:
            def op(client: Any, i: int) -> None:
                client.memories.add(**_item(w.extra, rows[i % len(rows)]))

            return op

        def searcher(client: Any, i: int) -> None:
            hits = client.memories.search(
                embedding=queries.vectors[i % len(queries)], mode="vector", top_k=k
            )
            if len(hits) != k:
                raise RuntimeError(f"a search returned {len(hits)} hits, not {k}")

        with _serve(uri, dim, ctx.log) as url:
            transports: list[tuple[str, Callable[[int], Any], Callable[[Any], None]]] = [
                ("inprocess", lambda _c: db, lambda _db: None),
                ("http", lambda _c: engramdb.connect(url, api_key=secret), lambda r: r.close()),
            ]
            for clients in CLIENTS:
                for transport, open_client, close_client in transports:
                    prefix = "http.inprocess" if transport == "inprocess" else "http"
                    base = None if transport == "inprocess" else "http.inprocess"
                    rows = range(next_row, next_row + add_n)  # rows no run has added
                    next_row += add_n
                    seconds, samples = _drive(
                        clients, add_n, open_client, close_client, adder(rows)
                    )
                    _record(ctx, f"{prefix}.add.c{clients}", seconds, samples,
                            base and f"{base}.add.c{clients}", transport=transport,
                            clients=clients, table_rows_before=preload)  # fmt: skip
                    if clients == 1:
                        continue  # one client's searches take turns, below
                    seconds, samples = _drive(
                        clients, search_n, open_client, close_client, searcher
                    )
                    _record(ctx, f"{prefix}.search.c{clients}", seconds, samples,
                            base and f"{base}.search.c{clients}", transport=transport,
                            clients=clients, top_k=k)  # fmt: skip
                if clients == 1:
                    _one_client_searches(ctx, db, uri, url, secret, searcher, search_n)
    finally:
        db.close()


def _one_client_searches(
    ctx: Context, db: Any, uri: str, url: str, secret: str,
    searcher: Callable[[Any, int], None], requests: int,
) -> None:  # fmt: skip
    """One client's searches in process, over HTTP and as raw SQL on the same store, taking
    turns (``_take_turns``)."""
    cfg, w = ctx.config, ctx.workload
    queries = w.query_sets[0]
    remote = engramdb.connect(url, api_key=secret)
    raw, raw_search = _raw_searcher(uri, cfg.dim, cfg.k)

    def raw_op(i: int) -> None:
        raw_search(queries.vectors[i % len(queries)])

    def inprocess_op(i: int) -> None:
        searcher(db, i)

    ops: dict[str, Callable[[int], None]] = {
        "raw": raw_op,
        "inprocess": inprocess_op,
        "http": lambda i: searcher(remote, i),
        "raw.paced": raw_op,
        "inprocess.paced": inprocess_op,
    }
    pauses = {"raw.paced": PACE_SECONDS, "inprocess.paced": PACE_SECONDS}
    try:
        for op in ops.values():
            for i in range(WARMUP):
                op(i)
        took = _take_turns(ops, requests, pauses)
    finally:
        remote.close()
        raw.close()
    for name, (seconds, samples) in took.items():
        transport = name.partition(".")[0]
        pause = pauses.get(name)
        figure = ("http" if transport == "http" else f"http.{transport}") + ".search"
        if pause is None:
            figure, extra = f"{figure}.c1", {}
        else:
            figure, extra = f"{figure}.paced.c1", {"pause_ms": pause * 1000}
        base = "http.inprocess.search.c1" if transport == "http" else None
        _record(ctx, figure, seconds, samples, base,
                transport=transport, clients=1, top_k=cfg.k, block=BLOCK, **extra)  # fmt: skip
