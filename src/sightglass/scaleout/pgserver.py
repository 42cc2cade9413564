"""A throwaway PostgreSQL cluster on 127.0.0.1 (tests, benchmarks, trying replicas on a laptop).

``initdb`` + ``pg_ctl`` in a temporary directory on a free port, trust authentication, fsync off.
PostgreSQL refuses to run as root, so under root the cluster runs as the ``postgres`` system user
(Debian's package creates it) through ``runuser``.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path


def pg_bindir() -> Path | None:
    """Where ``initdb`` and ``pg_ctl`` are: $PATH, else Debian's /usr/lib/postgresql/<ver>/bin."""
    found = shutil.which("initdb")
    if found:
        return Path(found).parent
    dirs = sorted(
        glob.glob("/usr/lib/postgresql/*/bin"),
        key=lambda d: int(d.split("/")[-2]) if d.split("/")[-2].isdigit() else 0,
    )
    for d in reversed(dirs):
        if (Path(d) / "initdb").exists():
            return Path(d)
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class PgServer:
    dsn: str
    tmp: Path
    _argv_prefix: list[str]
    _bindir: Path

    def stop(self) -> None:
        data = self.tmp / "db"
        subprocess.run([*self._argv_prefix, str(self._bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
                       capture_output=True, timeout=60, check=False)  # fmt: skip
        shutil.rmtree(self.tmp, ignore_errors=True)


def start_postgres() -> PgServer:
    """Start a fresh cluster; raises RuntimeError (with the log) when it cannot."""
    bindir = pg_bindir()
    if bindir is None:
        raise RuntimeError("PostgreSQL is not installed (apt-get install postgresql)")
    tmp = Path(tempfile.mkdtemp(prefix="sightglass-pg-"))
    prefix: list[str] = []
    if os.geteuid() == 0:
        runuser = shutil.which("runuser") or shutil.which("su")
        if runuser is None:
            raise RuntimeError("running as root and neither runuser nor su is available to drop to postgres")
        prefix = (
            [runuser, "-u", "postgres", "--"]
            if runuser.endswith("runuser")
            else [runuser, "postgres", "-s", "/bin/sh", "-c"]
        )
        shutil.chown(tmp, "postgres")
        os.chmod(tmp, 0o700)
    port = _free_port()
    data = tmp / "db"

    def run(argv: list[str]) -> None:
        cmd = [*prefix, *argv] if not prefix or prefix[0].endswith("runuser") else [*prefix, " ".join(argv)]
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
        if r.returncode != 0:
            log = (tmp / "log").read_text() if (tmp / "log").exists() else ""
            shutil.rmtree(tmp, ignore_errors=True)
            raise RuntimeError(f"{argv[0]} failed ({r.returncode}): {r.stderr[-1500:]}{log[-1500:]}")

    run(
        [
            str(bindir / "initdb"),
            "-D",
            str(data),
            "-A",
            "trust",
            "-U",
            "sightglass",
            "--no-sync",
            "-E",
            "UTF8",
        ]
    )
    opts = f"-p {port} -k {tmp} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
    run(
        [
            str(bindir / "pg_ctl"),
            "-D",
            str(data),
            "-o",
            opts,
            "-l",
            str(tmp / "log"),
            "-w",
            "-t",
            "60",
            "start",
        ]
    )
    return PgServer(f"postgresql://sightglass@127.0.0.1:{port}/postgres", tmp, prefix, bindir)
