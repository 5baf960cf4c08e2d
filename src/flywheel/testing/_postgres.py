"""A throwaway PostgreSQL cluster in a folder: initdb, pg_ctl, one database and one role.

The cluster listens on a free loopback port and a socket in its own folder, so several can run
at once and none touches a system PostgreSQL. PostgreSQL refuses to run as root; under root the
cluster is created and run as the ``postgres`` user Debian's package makes (or ``nobody``).
"""
from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import time
from pathlib import Path
from types import TracebackType

from flywheel.demo import free_port

__all__ = ["PostgresCluster", "find_postgres_bindir"]

INSTALL_HINT = "PostgreSQL's server binaries (Debian: apt-get install postgresql)"


def find_postgres_bindir() -> Path | None:
    """The folder holding ``initdb`` and ``pg_ctl``: PATH first, then Debian's versioned dirs."""
    initdb = shutil.which("initdb")
    if initdb and shutil.which("pg_ctl"):
        return Path(os.path.realpath(initdb)).parent
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                        key=lambda p: int(Path(p).parts[-3]) if Path(p).parts[-3].isdigit() else 0)
    return Path(candidates[-1]).parent if candidates else None


def _run_as() -> str | None:
    """The user to run the server as when this process is root, else None (run as ourselves)."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            pwd.getpwnam(name)
            return name
        except KeyError:
            continue
    raise RuntimeError("running as root and neither a 'postgres' nor a 'nobody' user exists; "
                       "PostgreSQL refuses to run as root")


class PostgresCluster:
    """A PostgreSQL cluster under ``root`` with a database and a password-protected role.

    Args:
        root: A folder the cluster owns (data, socket, log).
        database: The database created for the caller.
        user: The role created for the caller, owner of ``database``.
        password: Its password (md5/scram over TCP: a wrong password is refused).
        max_connections: The server's connection limit.

    Use as a context manager; ``url()`` is the SQLAlchemy URL, ``dsn`` a libpq one.
    """

    def __init__(self, root: Path, *, database: str = "flywheel", user: str = "flywheel",
                 password: str = "s3cret-pw", max_connections: int = 200) -> None:
        bindir = find_postgres_bindir()
        if bindir is None:
            raise FileNotFoundError(f"initdb not found; install {INSTALL_HINT}")
        self.bindir = bindir
        self.root = root
        self.data = root / "data"
        self.socket_dir = root / "sock"
        self.log_file = root / "postgres.log"
        self.port = free_port()
        self.host = "127.0.0.1"
        self.database = database
        self.user = user
        self.password = password
        self.max_connections = max_connections
        self._as = _run_as()

    def url(self, *, password: str | None = None, database: str | None = None,
            driver: str = "postgresql") -> str:
        """A SQLAlchemy URL for the caller's role (``password`` overrides the real one)."""
        pw = self.password if password is None else password
        return f"{driver}://{self.user}:{pw}@{self.host}:{self.port}/{database or self.database}"

    @property
    def dsn(self) -> str:
        """A libpq connection string for the caller's role."""
        return (f"host={self.host} port={self.port} dbname={self.database} user={self.user} "
                f"password={self.password}")

    def _cmd(self, *args: str) -> list[str]:
        return ["runuser", "-u", self._as, "--", *args] if self._as else list(args)

    def _open_ancestors(self) -> None:
        # The server user must be able to reach its folder; another pytest session started
        # meanwhile sets /tmp/pytest-of-<user> back to 0700, so this is checked before each call.
        path = self.root
        while path != path.parent:
            path = path.parent
            mode = path.stat().st_mode
            if not mode & 0o001:
                os.chmod(path, mode | 0o001)

    def _exec(self, *args: str, timeout: float = 120.0) -> str:
        if self._as:
            self._open_ancestors()
        done = subprocess.run(self._cmd(*args), capture_output=True, text=True, timeout=timeout,
                              cwd="/")
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(args[:2])} failed ({done.returncode}):\n"
                               f"{done.stdout}\n{done.stderr}")
        return done.stdout

    def start(self, *, timeout: float = 60.0) -> PostgresCluster:
        """initdb, start the server on a free port, create the role and database."""
        self.root.mkdir(parents=True, exist_ok=True)
        self.socket_dir.mkdir(exist_ok=True)
        if self._as:
            entry = pwd.getpwnam(self._as)
            for path in (self.root, self.socket_dir):
                os.chown(path, entry.pw_uid, entry.pw_gid)
            self._open_ancestors()
        pwfile = self.root / "superuser.pw"
        pwfile.write_text("postgres-super\n")
        if self._as:
            os.chown(pwfile, pwd.getpwnam(self._as).pw_uid, -1)
        self._exec(str(self.bindir / "initdb"), "-D", str(self.data), "-U", "postgres",
                   "--auth-local=trust", "--auth-host=scram-sha-256", f"--pwfile={pwfile}",
                   "-E", "UTF8", "--no-instructions")
        self._pg_ctl_start(timeout)
        self.psql(f"CREATE ROLE {self.user} LOGIN PASSWORD '{self.password}'")
        self.psql(f"CREATE DATABASE {self.database} OWNER {self.user}")
        return self

    def psql(self, sql: str, *, database: str = "postgres") -> str:
        """Run ``sql`` as the superuser over the cluster's socket; returns the unaligned output."""
        return self._exec(str(self.bindir / "psql"), "-h", str(self.socket_dir), "-p",
                          str(self.port), "-U", "postgres", "-d", database, "-v",
                          "ON_ERROR_STOP=1", "-A", "-t", "-c", sql)

    def connection_count(self, *, database: str | None = None) -> int:
        """Open client connections to ``database`` (the caller's by default)."""
        out = self.psql("SELECT count(*) FROM pg_stat_activity WHERE datname = "
                        f"'{database or self.database}'")
        return int(out.strip() or 0)

    def create_database(self, name: str) -> str:
        """Create another database owned by the caller's role; returns its URL."""
        self.psql(f"CREATE DATABASE {name} OWNER {self.user}")
        return self.url(database=name)

    def stop(self, *, mode: str = "fast") -> None:
        """Stop the server (``mode``: smart, fast or immediate)."""
        if not (self.data / "postmaster.pid").exists():
            return
        try:
            self._exec(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w",
                       "stop", timeout=60)
        except (RuntimeError, subprocess.TimeoutExpired):
            pass

    def _pg_ctl_start(self, timeout: float = 60.0) -> None:
        options = (f"-p {self.port} -k {self.socket_dir} -c listen_addresses={self.host} "
                   f"-c max_connections={self.max_connections} -c fsync=off "
                   "-c synchronous_commit=off -c full_page_writes=off")
        self._exec(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-l", str(self.log_file),
                   "-o", options, "-w", "-t", str(int(timeout)), "start", timeout=timeout + 10)

    def restart(self) -> None:
        """Start the server again on the same port and data (after ``stop``, for outage tests)."""
        self.stop()
        self._pg_ctl_start()

    def wait_ready(self, timeout: float = 30.0) -> None:
        """Wait until the server accepts connections."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                self.psql("SELECT 1")
                return
            except RuntimeError:
                time.sleep(0.2)
        raise RuntimeError(f"PostgreSQL on port {self.port} not ready within {timeout:.0f} s")

    def __enter__(self) -> PostgresCluster:
        return self.start()

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop(mode="immediate")
