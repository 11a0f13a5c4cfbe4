"""Names of the system columns every feature table carries."""

PROVENANCE_BY_FIELD = "metaxy_provenance_by_field"
PROVENANCE = "metaxy_provenance"
DATA_VERSION_BY_FIELD = "metaxy_data_version_by_field"
DATA_VERSION = "metaxy_data_version"
FEATURE_VERSION = "metaxy_feature_version"
SNAPSHOT_VERSION = "metaxy_snapshot_version"
CREATED_AT = "metaxy_created_at"
UPDATED_AT = "metaxy_updated_at"
DELETED_AT = "metaxy_deleted_at"
MATERIALIZATION_ID = "metaxy_materialization_id"
CHANGED_FIELDS = "metaxy_changed_fields"
"""On ``stale`` increment rows only: sorted field keys whose provenance differs."""

SYSTEM_COLUMNS = (
    PROVENANCE_BY_FIELD,
    PROVENANCE,
    DATA_VERSION_BY_FIELD,
    DATA_VERSION,
    FEATURE_VERSION,
    SNAPSHOT_VERSION,
    CREATED_AT,
    UPDATED_AT,
    DELETED_AT,
    MATERIALIZATION_ID,
)
STRUCT_COLUMNS = (PROVENANCE_BY_FIELD, DATA_VERSION_BY_FIELD)
TIMESTAMP_COLUMNS = (CREATED_AT, UPDATED_AT, DELETED_AT)
WRITABLE_SYSTEM_COLUMNS = (PROVENANCE_BY_FIELD, PROVENANCE, DATA_VERSION_BY_FIELD, DATA_VERSION)
"""System columns a caller may hand to ``write``; the rest are stamped by the store."""
STAMP_COLUMNS = (FEATURE_VERSION, SNAPSHOT_VERSION, CREATED_AT, UPDATED_AT, DELETED_AT, MATERIALIZATION_ID)
"""Columns a ``write`` stamps with one value for all its rows (the last columns of a prepared write)."""


def is_system(column: str) -> bool:
    # any letter case: SQL engines fold names, so METAXY_PROVENANCE would meet metaxy_provenance
    return column.lower().startswith("metaxy_")
