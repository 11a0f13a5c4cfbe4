"""Errors raised by the Dagster integration.

They derive from :class:`metaxy_core.MetaxyError`, so ``except mx.MetaxyError`` catches them too.
Messages name the feature and the asset, say what was wrong and how to fix it.
"""

from metaxy_core.errors import MetaxyError


class MetaxyDagsterError(MetaxyError):
    """Root of the errors raised by ``metaxy_dagster``."""


class MetaxyDefinitionError(MetaxyDagsterError, TypeError):
    """An asset, sensor or resource is defined in a way that cannot work (bad signature, missing provider)."""


class MetaxyOutputError(MetaxyDagsterError, ValueError):
    """The rows an asset body returned cannot be written (missing ids, samples outside the increment)."""
