"""Current-state table designs for the ClickHouse store, measured in chDB.

For N samples: load N rows, replace 1% of them, rewrite all of them R times, and time a full read of
the current state (count and a hash over every value) after each step. Designs:

* ``replacing_final``: ``ReplacingMergeTree(write) ORDER BY id``, read with ``FINAL`` (the store's choice);
  writes staged and published with ``ATTACH PARTITION ... FROM`` as the store does.
* ``argmax``: plain MergeTree holding every version, read with ``argMax(..., write) GROUP BY id``.
* ``exchange``: each write builds the whole new state in a fresh table and swaps it in with
  ``EXCHANGE TABLES`` (reads never merge; writes copy all N rows).

    python bench/clickhouse_current_state.py --samples 1000000 --rewrites 5
"""

import argparse
import shutil
import tempfile
import time
from collections.abc import Callable

COLS = "id String, a Nullable(String), b Nullable(String), prov Nullable(String), w UInt64"
READ_VALUES = "count(), sum(cityHash64(a, b, prov))"


def rows(n: int, offset: int, version: int) -> str:
    return (
        f"SELECT toString(number + {offset}), concat('a', toString(number), '-{version}'), "
        f"concat('b', toString(number)), lower(hex(SHA256(toString(number + {version})))), {version} "
        f"FROM numbers({n})"
    )


class Design:
    def __init__(self, q: Callable[[str], str]) -> None:
        self.q = q

    def setup(self) -> None: ...

    def load(self, select: str, version: int) -> None: ...

    def read(self) -> str: ...


class ReplacingFinal(Design):
    def setup(self) -> None:
        self.q(f"CREATE TABLE cur ({COLS}) ENGINE = ReplacingMergeTree(w) ORDER BY id")

    def load(self, select: str, version: int) -> None:
        self.q("CREATE TABLE stage AS cur")
        self.q(f"INSERT INTO stage {select}")
        self.q("ALTER TABLE cur ATTACH PARTITION tuple() FROM stage")
        self.q("DROP TABLE stage")

    def read(self) -> str:
        return self.q(f"SELECT {READ_VALUES} FROM cur FINAL")


class ArgMax(Design):
    def setup(self) -> None:
        self.q(f"CREATE TABLE cur ({COLS}) ENGINE = MergeTree ORDER BY (id, w)")

    def load(self, select: str, version: int) -> None:
        self.q(f"INSERT INTO cur {select}")

    def read(self) -> str:
        latest = (
            "SELECT id, argMax(a, w) AS a, argMax(b, w) AS b, argMax(prov, w) AS prov FROM cur GROUP BY id"
        )
        return self.q(f"SELECT {READ_VALUES} FROM ({latest})")


class Exchange(Design):
    def setup(self) -> None:
        self.q(f"CREATE TABLE cur ({COLS}) ENGINE = MergeTree ORDER BY id")

    def load(self, select: str, version: int) -> None:
        self.q("CREATE TABLE nxt AS cur")
        self.q(f"INSERT INTO nxt {select}")
        self.q("INSERT INTO nxt SELECT * FROM cur WHERE id NOT IN (SELECT id FROM nxt)")
        self.q("EXCHANGE TABLES cur AND nxt")
        self.q("DROP TABLE nxt")

    def read(self) -> str:
        return self.q(f"SELECT {READ_VALUES} FROM cur")


def main() -> None:
    import chdb

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=1_000_000)
    parser.add_argument("--rewrites", type=int, default=5)
    parser.add_argument("--designs", nargs="*", default=["replacing_final", "argmax", "exchange"])
    args = parser.parse_args()
    n = args.samples
    folder = tempfile.mkdtemp(prefix="metaxy-ch-bench-")
    conn = chdb.connect(folder)

    def timed(label: str, fn: Callable[[], object]) -> float:
        start = time.perf_counter()
        fn()
        seconds = time.perf_counter() - start
        print(f"  {label:<28} {seconds:7.3f} s")
        return seconds

    designs = {"replacing_final": ReplacingFinal, "argmax": ArgMax, "exchange": Exchange}
    for name in args.designs:
        cls = designs[name]
        db = f"bench_{name}"
        conn.query(f"CREATE DATABASE {db}")
        conn.query(f"USE {db}")
        design = cls(lambda sql: str(conn.query(sql)))
        design.setup()
        print(f"{name} (N = {n:,})")
        timed("load", lambda d=design: d.load(rows(n, 0, 1), 1))
        timed("read", design.read)
        timed("replace 1%", lambda d=design: d.load(rows(n // 100, 0, 2), 2))
        timed("read after 1%", design.read)
        for r in range(1, args.rewrites + 1):
            timed(f"full rewrite {r}", lambda r=r, d=design: d.load(rows(n, 0, 2 + r), 2 + r))
            timed(f"read after rewrite {r}", design.read)
        if name == "replacing_final":
            # what background merges converge to; OPTIMIZE FINAL forces it
            timed("OPTIMIZE TABLE cur FINAL", lambda: conn.query("OPTIMIZE TABLE cur FINAL"))
            timed("read after optimize", design.read)
        conn.query("USE default")
        conn.query(f"DROP DATABASE {db}")
    conn.close()
    shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
