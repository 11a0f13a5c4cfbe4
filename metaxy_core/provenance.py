"""Sample-level provenance: canonical strings and their hashes, per engine.

A canonical string joins its parts with ``|``; a NULL part becomes the empty string. Every engine
must produce byte-identical strings and hashes, which the conformance suite checks.

* non-root field f: ``Hs(fq(f) | code_version(f) | fq(p1) | dv[p1] | ...)`` over parents sorted by fq
* root field f:     ``Hs(fq(f) | code_version(f) | user_value[f])``
* aggregation:      ``dv[p] = Hs(id(m1) | dv_m1[p] | id(m2) | dv_m2[p] ...)`` members sorted by id(m)
* sample:           ``metaxy_provenance = Hs(k1 | prov[k1] | k2 | prov[k2] ...)`` over sorted field keys

This module holds the pure-Python reference (used by tests) and the polars renderer; SQL stores
render the same parts through their dialect (:mod:`metaxy_core.stores._sql`).
"""

import hashlib
from collections.abc import Sequence
from typing import Literal

import polars as pl
import polars_hash  # noqa: F401  (registers the `chash` expression namespace)

from metaxy_core.errors import StoreError

HashAlgorithm = Literal["sha256", "md5"]
_FULL_LENGTH = {"sha256": 64, "md5": 32}


def check_hash_settings(algorithm: str, hash_length: int) -> None:
    if algorithm not in _FULL_LENGTH:
        raise StoreError(f"Unknown hash algorithm '{algorithm}': use 'sha256' (default) or 'md5'.")
    if not 8 <= hash_length <= _FULL_LENGTH[algorithm]:
        raise StoreError(
            f"hash_length={hash_length} does not fit {algorithm} (8..{_FULL_LENGTH[algorithm]} hex characters)."
        )


def full_length(algorithm: str) -> int:
    return _FULL_LENGTH[algorithm]


def canonical(parts: Sequence[str | None]) -> str:
    return "|".join("" if p is None else p for p in parts)


def reference_hash(parts: Sequence[str | None], algorithm: str = "sha256", hash_length: int = 16) -> str:
    """Pure-Python hash of a canonical string: the ground truth the engines are tested against."""
    data = canonical(parts).encode("utf-8")
    digest = hashlib.sha256(data) if algorithm == "sha256" else hashlib.md5(data)
    return digest.hexdigest()[:hash_length]


class PolarsHasher:
    """Renders canonical-string hashes as polars expressions."""

    def __init__(self, algorithm: str, hash_length: int) -> None:
        check_hash_settings(algorithm, hash_length)
        self.algorithm = algorithm
        self.hash_length = hash_length

    def concat(self, parts: Sequence[pl.Expr | str]) -> pl.Expr:
        exprs = [
            pl.lit(p, dtype=pl.String) if isinstance(p, str) else p.cast(pl.String).fill_null("")
            for p in parts
        ]
        return pl.concat_str(exprs, separator="|")

    def hash_expr(self, text: pl.Expr) -> pl.Expr:
        if self.algorithm == "sha256":
            hashed = text.chash.sha2_256()
        else:
            # polars-hash has no md5; md5 is an opt-in for compatibility, so a UDF is acceptable here.
            hashed = text.map_batches(
                lambda s: pl.Series([hashlib.md5(v.encode()).hexdigest() for v in s], dtype=pl.String),
                return_dtype=pl.String,
            )
        if self.hash_length < full_length(self.algorithm):
            hashed = hashed.str.slice(0, self.hash_length)
        return hashed

    def hash(self, parts: Sequence[pl.Expr | str]) -> pl.Expr:
        return self.hash_expr(self.concat(parts))
