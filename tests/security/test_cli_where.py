"""``metaxy metadata delete --where`` goes through the same filter checks as the Python API."""

from tests.cli.conftest import Project, run_pipeline
from tests.cli.conftest import project as project


def test_hostile_where_is_rejected_and_deletes_nothing(project: Project) -> None:
    run_pipeline(project)
    with project.store() as store:
        store.connection.execute("CREATE TABLE victim AS SELECT 1 AS x")
    for hostile in ["true); DROP TABLE victim; --", "COMMIT", "read_text('/etc/hostname') IS NOT NULL"]:
        proc = project.cli("metadata", "delete", "example/stt", "--where", hostile, "--hard", expect=1)
        assert "rejected" in proc.stderr or "not a valid expression" in proc.stderr
        assert "expressions over the feature's columns" in proc.stderr
    with project.store() as store:
        assert store.connection.execute("SELECT count(*) FROM victim").fetchone() == (1,)
        stt = project.features()["example/stt"]
        assert store.read(stt, include_deleted=True).to_polars().height == 3
    out = project.cli("metadata", "delete", "example/stt", "--where", "sample_uid = 's0'").stdout
    assert "example/stt: soft-deleted 1 sample(s)." in out
