"""Dump the answers of bench/query.py's dashboard queries, to check that a change leaves them byte-identical.

    python bench/query_answers.py --data /tmp/q --out before.txt   # with the old code on PYTHONPATH
    python bench/query_answers.py --data /tmp/q --out after.txt    # with the new code
    cmp before.txt after.txt

``--data`` is a directory that ``bench/query.py --data`` filled. Each query's answer is written twice:
``json.dumps(result.to_api())`` and the body the HTTP API sends for it (compact JSON of the
Prometheus envelope), so a change of either encoding shows.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from query import queries

from sightglass.promql.engine import Engine
from sightglass.promql.result import QueryResult
from sightglass.store.duckdb import DuckDBStore, StoreOptions


def api_body(res: QueryResult) -> bytes:
    """The /api/v1/query(_range) body for a result, as the server built it before ``to_json``
    (``success(res.to_api())``), and as it builds it now, when the code has ``to_json``."""
    from sightglass.api.envelope import success

    if hasattr(res, "to_json"):
        from sightglass.api.envelope import success_json

        return bytes(success_json(res.to_json(), res.warnings).body)
    return bytes(success(res.to_api(), res.warnings).body)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--no-rollups", action="store_true")
    args = ap.parse_args(argv)
    work = Path(args.data)
    end_ms = int(json.loads((work / "shape.json").read_text())["end_ms"])
    store = DuckDBStore(work / "sg", options=StoreOptions(compact_every_s=10**9))
    try:
        engine = Engine(store, use_rollups=not args.no_rollups)
        with open(args.out, "wb") as out:
            for title, q, start, end, step in queries(end_ms):
                res = engine.range(q, start, end, step) if step else engine.instant(q, end)
                out.write(f"# {title}\n".encode())
                out.write(json.dumps(res.to_api()).encode() + b"\n")
                out.write(api_body(res) + b"\n")
                print(f"{title}: {len(res.matrix) if step else len(res.vector)} series")
    finally:
        store.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
