"""No secret in any log: an authenticated session captured at DEBUG, tabpy-user runs included."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

from live_server import ServerProcess, wait_for
from security_support import DEBUG_LOGGING, Authority, JwksServer, SigningKey, basic, claims

ISSUER = "https://idp.example.com/"
AUDIENCE = "api://tabpy"


def tabpy_user(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tabpy.cli.user", *args],
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )


def test_an_authenticated_session_logs_no_secret(tmp_path: Path) -> None:
    pwd_file = tmp_path / "passwords.txt"
    first, second, refused, wrong = (
        "Fir5t-Secret!",
        "S3cond:Secret",
        "Refu5ed-Secret",
        "Wr0ng-Guess",
    )
    runs = [
        tabpy_user("add", "-u", "Alice", "-p", first, "-f", str(pwd_file)),
        tabpy_user("add", "--user", "bob", "-f", str(pwd_file)),
        tabpy_user("update", "--username", "alice", "-p", second, "-f", str(pwd_file)),
        tabpy_user("add", "-u", "alice", "-p", refused, "-f", str(pwd_file)),
        tabpy_user("add", "-u", "carol", "-p", first, "--legacy", "-f", str(pwd_file)),
    ]
    assert [run.returncode for run in runs] == [0, 0, 0, 1, 0]
    generated = runs[1].stdout.strip()
    assert len(generated) >= 16 and ":" not in generated
    assert [run.stdout for run in runs if run.stdout] == [generated + "\n"]
    assert "Added username" in runs[0].stderr

    authority = Authority()
    (tmp_path / "ca.pem").write_bytes(authority.pem())
    key = SigningKey()
    good_token = key.token(claims(ISSUER, AUDIENCE, "tabpy"))
    now = int(time.time())
    expired_token = key.token(claims(ISSUER, AUDIENCE, "tabpy", iat=now - 600, exp=now - 1))
    foreign_token = SigningKey().token(claims(ISSUER, AUDIENCE, "tabpy"), kid=key.kid)

    with JwksServer(authority, tmp_path) as jwks:
        jwks.publish(key)
        server = ServerProcess(
            tmp_path / "server",
            {
                "TABPY_PWD_FILE": str(pwd_file),
                "TABPY_OAUTH_ENABLED": "true",
                "TABPY_OAUTH_ISSUER": ISSUER,
                "TABPY_OAUTH_JWKS_URI": jwks.uri,
                "TABPY_OAUTH_ALLOW_NONPUBLIC_JWKS": "true",
                "TABPY_OAUTH_AUDIENCE": AUDIENCE,
                "TABPY_OAUTH_LOG_USER": "true",
                "TABPY_LOG_DETAILS": "true",
                "TABPY_WORKERS": "1",
            },
            env={"SSL_CERT_FILE": str(tmp_path / "ca.pem")},
            extra_config=DEBUG_LOGGING,
        )
        try:
            server.start()
            headers = [
                basic("alice", second),
                basic("alice", wrong),
                basic("bob", generated),
                basic("carol", first),
                basic("alice", refused),
                f"Bearer {good_token}",
                f"Bearer {expired_token}",
                f"Bearer {foreign_token}",
            ]
            statuses = [
                server.http.get("/info", headers={"Authorization": header}).status_code
                for header in headers
            ]
            assert statuses == [200, 401, 200, 200, 401, 200, 401, 401]
            body = {"script": "return 1", "data": {}}
            wait_for(
                lambda: (
                    server.http.post(
                        "/evaluate", json=body, headers={"Authorization": basic("bob", generated)}
                    ).status_code
                    == 200
                ),
                30,
                "an authenticated /evaluate",
            )
            server.send_signal(signal.SIGHUP)
            wait_for(
                lambda: "Reloaded passwords file" in server.stderr.text, 10, "the SIGHUP reload"
            )
            server.send_signal(signal.SIGTERM)
            assert server.wait() == 0
        finally:
            server.kill()

    server_log = server.stderr.text + server.stdout.text
    assert "Found username alice" in server_log  # DEBUG lines were captured
    assert "TabPy user: alice" in server_log
    assert "JWT validation failed: Signature has expired" in server_log
    logs = server_log + "".join(run.stderr for run in runs)
    secrets = [first, second, refused, wrong, generated, good_token, expired_token, foreign_token]
    secrets += [header.split(" ", 1)[1] for header in headers]  # base64 credentials and tokens
    secrets += [token.split(".")[2] for token in (good_token, expired_token, foreign_token)]
    leaked = [secret for secret in secrets if secret in logs]
    assert leaked == []
    assert "authorization:" not in logs.lower()
