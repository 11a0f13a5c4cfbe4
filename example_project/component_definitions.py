"""The example project built from its ``defs/`` folder: a ``MetaxyComponent`` in ``defs/metaxy/defs.yaml``.

The same pipeline as ``definitions.py``, configured in YAML instead of Python; load it with
``dagster dev -m example_project.component_definitions`` or the ``dg`` CLI (``dg list defs`` in this
folder).
"""

from pathlib import Path

import dagster as dg

from example_project import media

# A fresh clone has no demo media: create them on first load, as definitions.py does.
if not media.list_video_ids():
    media.generate_videos()

defs = dg.load_from_defs_folder(path_within_project=Path(__file__).resolve().parent)
