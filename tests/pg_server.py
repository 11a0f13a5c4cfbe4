"""A throwaway PostgreSQL cluster for the test session.

``METAXY_TEST_POSTGRES_DSN`` points the tests at an existing server instead. Otherwise the first
test that needs PostgreSQL runs ``initdb`` in a temporary folder (as the ``postgres`` user when the
tests run as root: ``initdb`` refuses root), starts the server on 127.0.0.1 with a free port and
trust authentication, and the session stops it at exit. Tests get a fresh schema per store, so they
never share state and pay no database creation cost.
"""

import atexit
import contextlib
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from pathlib import Path
from typing import Any

ENV_DSN = "METAXY_TEST_POSTGRES_DSN"
PASSWORD_ROLE = "metaxy_password_user"
"""On the local server this role authenticates with a password (everyone else is trusted)."""
# Read at import: the suite's autouse fixture removes METAXY_* variables before each test.
_EXTERNAL_DSN = os.environ.get(ENV_DSN)


def server_bin_dir() -> Path | None:
    """Folder with ``initdb``/``pg_ctl``: Debian's versioned folder, else the PATH."""
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=_version_key, reverse=True)
    if candidates:
        return Path(candidates[0]).parent
    found = shutil.which("initdb")
    return Path(found).parent if found else None


def _version_key(path: str) -> float:
    try:
        return float(Path(path).parts[-3])
    except ValueError:
        return 0.0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class LocalServer:
    """initdb + pg_ctl in a temporary folder; ``stop()`` removes everything."""

    def __init__(self, bin_dir: Path) -> None:
        self.bin_dir = bin_dir
        self.root = Path(tempfile.mkdtemp(prefix="metaxy-pg-"))
        self.data = self.root / "data"
        self.port = _free_port()
        self._as: dict[str, Any] = {}
        if os.geteuid() == 0:
            # initdb refuses to run as root: hand the folder to the postgres user and run as it.
            user = pwd.getpwnam("postgres")
            os.chown(self.root, user.pw_uid, user.pw_gid)
            self._as = {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []}
        self.dsn = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _call(self, *args: str) -> None:
        env = {**os.environ, "LC_ALL": "C.UTF-8", "HOME": str(self.root)}
        result = subprocess.run(
            [str(self.bin_dir / args[0]), *args[1:]],
            capture_output=True,
            text=True,
            env=env,
            cwd=self.root,
            check=False,
            **self._as,
        )
        if result.returncode != 0:
            raise RuntimeError(f"{' '.join(args[:2])} failed: {result.stdout}\n{result.stderr}")

    def start(self) -> None:
        self._call(
            "initdb", "-D", str(self.data), "-U", "postgres", "-A", "trust", "-E", "UTF8",
            "--locale=C.UTF-8", "--no-sync",
        )  # fmt: skip
        # one role must log in with a password, so tests can check authentication failures
        hba = self.data / "pg_hba.conf"
        hba.write_text(f"host all {PASSWORD_ROLE} 127.0.0.1/32 scram-sha-256\n" + hba.read_text())
        options = (
            f"-c listen_addresses=127.0.0.1 -p {self.port} -c unix_socket_directories='' "
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200"
        )
        self._call(
            "pg_ctl", "-D", str(self.data), "-l", str(self.root / "server.log"), "-o", options, "-w", "start"
        )

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            self._call("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(self.root, ignore_errors=True)


_server: LocalServer | None = None


def is_local() -> bool:
    return not _EXTERNAL_DSN


def session_dsn() -> str | None:
    """The DSN of the session's server, starting it on first use; None when none can run here."""
    global _server
    if _EXTERNAL_DSN:
        return _EXTERNAL_DSN
    if _server is None:
        bin_dir = server_bin_dir()
        if bin_dir is None:
            return None
        server = LocalServer(bin_dir)
        try:
            server.start()
        except BaseException:
            server.stop()
            raise
        _server = server
        atexit.register(server.stop)
    return _server.dsn


def stop_server() -> None:
    """Stop the local server, or drop the schemas the tests created on an external one."""
    global _server
    if _EXTERNAL_DSN and _created:
        _drop_schemas(_EXTERNAL_DSN, _created)
        _created.clear()
    if _server is not None:
        _server.stop()
        _server = None


_created: list[str] = []


def fresh_schema() -> str:
    """A schema name no other test uses (the store creates it and its companion schemas on first write)."""
    name = f"t_{uuid.uuid4().hex[:16]}"
    _created.append(name)
    return name


def _drop_schemas(dsn: str, schemas: list[str]) -> None:
    import adbc_driver_postgresql.dbapi as dbapi

    with dbapi.connect(dsn) as con, con.cursor() as cur:
        for schema in schemas:
            for suffix in ("", "__metaxy_history", "__metaxy_system", "__metaxy_parents"):
                cur.execute(f'DROP SCHEMA IF EXISTS "{schema}{suffix}" CASCADE')
        con.commit()
