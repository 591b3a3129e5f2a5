"""The nginx main configuration the tests run a site under, written in a scratch folder.

Every test that starts nginx writes its own ``site.conf`` (the shipped site with local
addresses) and includes it from this main file, which keeps nginx's pid, logs and temporary
files inside the folder so nothing outside it is touched.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["write_main_config"]


def write_main_config(directory: Path, *, connections: int, access_log: bool = True) -> Path:
    """Write ``nginx.conf`` including ``site.conf`` from ``directory``; returns its path."""
    temp = directory / "temp"
    temp.mkdir(mode=0o777)
    temp.chmod(0o777)  # nginx's workers run as an unprivileged user when we are root
    temp_paths = "\n".join(
        f"    {kind}_temp_path {temp}/{kind};" for kind in ("proxy", "fastcgi", "uwsgi", "scgi")
    )
    logging = "" if access_log else "    access_log off;\n"
    config = directory / "nginx.conf"
    config.write_text(
        f"""
pid {directory}/nginx.pid;
error_log {directory}/error.log notice;
worker_processes 1;
events {{ worker_connections {connections}; }}
http {{
    client_body_temp_path {temp}/body;
{temp_paths}
{logging}    include {directory}/site.conf;
}}
""",
        encoding="utf-8",
    )
    return config
