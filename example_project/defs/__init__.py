"""The defs folder of the example project, loaded by ``dg`` and ``example_project.component_definitions``."""
