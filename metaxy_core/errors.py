"""Exceptions raised by metaxy.

Every message says what failed, names the feature/field/column involved and how to fix it.
All errors derive from :class:`MetaxyError`, so ``except mx.MetaxyError`` catches everything.
"""


class MetaxyError(Exception):
    """Root of all metaxy errors."""


class InvalidKeyError(MetaxyError, ValueError):
    """A feature or field key is malformed."""


class FeatureDefinitionError(MetaxyError, TypeError):
    """A feature class or spec is invalid (unknown dependency, cycle, duplicate key, ...)."""


class FeatureNotFoundError(MetaxyError, KeyError):
    """A feature key is not registered in the graph or not present in the store."""

    def __str__(self) -> str:  # KeyError quotes its message; keep it readable
        return str(self.args[0]) if self.args else ""


class MetadataValidationError(MetaxyError, ValueError):
    """A frame handed to the store does not match the feature (missing id, bad type, ...)."""


class FilterError(MetaxyError, ValueError):
    """A filter is not a valid expression over the feature's columns (or uses a rejected construct)."""


class ResolveError(MetaxyError, ValueError):
    """An increment cannot be resolved (e.g. a root feature without ``samples``)."""


class StoreError(MetaxyError, RuntimeError):
    """The store cannot perform the operation (closed, locked, unsupported)."""


class ConfigError(MetaxyError, ValueError):
    """The metaxy configuration is invalid; the message names the file and key."""
