"""A real Kubernetes API server for the kubelet e2e: etcd and kube-apiserver on 127.0.0.1 of
the e2e's network namespace, from the binaries tests/e2e/apiserver/build.sh builds.

The Python twin of tests/common/apiserver.rs (same flags, same certificates, same token
users): a CA and a server certificate for IP 127.0.0.1 signed by it (made with `openssl`,
P-256, what rustls accepts), a service-account key pair, `--token-auth-file` users
(`admin` in `system:masters`; a `system:serviceaccount:NS:NAME` user gets the groups a
ServiceAccount's token has, so a RoleBinding to that ServiceAccount applies to it), RBAC.
Everything lives in one directory (under the e2e's state dir): etcd's data, the
certificates, the token file, the kubeconfigs and both logs. `stop` ends both processes by
their pid; they are also started with a parent-death signal (SIGKILL), and live in the
e2e's network namespace, which run.sh sweeps should e2e.py die first.

Every wait is bounded: 30 s for etcd, 60 s for /readyz, 60 s for a kubectl call.
"""

from __future__ import annotations

import base64
import ctypes
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

ETCD_READY_WITHIN = 30
APISERVER_READY_WITHIN = 60
KUBECTL_WITHIN = 60
OPENSSL_WITHIN = 30

OPENSSL_CNF = """\
[req]
distinguished_name = dn
prompt = no
[dn]
CN = leakwatch-test-ca
[ca]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
[server]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature,keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = IP:127.0.0.1,DNS:localhost
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
"""


class ApiServerError(Exception):
    pass


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _die_with_parent() -> None:
    # prctl(PR_SET_PDEATHSIG, SIGKILL): gone when e2e.py is.
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL, 0, 0, 0)


def tail(path: Path, lines: int) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


class ApiServer:
    def __init__(self, bin_dir: Path, work: Path, users: list[str]) -> None:
        for name in ("etcd", "kube-apiserver"):
            if not (bin_dir / name).is_file():
                raise ApiServerError(f"{bin_dir} has no {name} (bash tests/e2e/apiserver/build.sh)")
        for tool in ("openssl", "kubectl"):
            if shutil.which(tool) is None:
                raise ApiServerError(f"{tool} is not installed (the API server needs it)")
        self.bin = bin_dir
        self.dir = work
        self.dir.mkdir(parents=True)
        self.users = {"admin": secrets.token_hex(16)}
        for user in users:
            if not user or any(c in user for c in ',"\n') or user in self.users:
                raise ApiServerError(f"token user {user!r}")
            self.users[user] = secrets.token_hex(16)
        self.etcd: subprocess.Popen | None = None
        self.apiserver: subprocess.Popen | None = None
        self.port = 0

    # ---- start and stop ----------------------------------------------------------------

    def start(self) -> None:
        """Certificates, token file, etcd, kube-apiserver; returns once /readyz says ok."""
        self._certificates()
        self._token_file()
        self._etcd()
        self.port = free_port()
        self.apiserver = self._spawn("kube-apiserver", [
            str(self.bin / "kube-apiserver"),
            f"--etcd-servers=http://127.0.0.1:{self.etcd_port}",
            f"--secure-port={self.port}",
            "--bind-address=127.0.0.1",
            "--advertise-address=127.0.0.1",
            f"--cert-dir={self.dir / 'apiserver-certs'}",
            f"--tls-cert-file={self.dir / 'server.crt'}",
            f"--tls-private-key-file={self.dir / 'server.key'}",
            f"--token-auth-file={self.dir / 'tokens.csv'}",
            "--authorization-mode=RBAC",
            f"--service-account-issuer={self.url}",
            f"--service-account-key-file={self.dir / 'sa.pub'}",
            f"--service-account-signing-key-file={self.dir / 'sa.key'}",
            "--disable-admission-plugins=ServiceAccount",
            "--service-cluster-ip-range=10.0.0.0/24",
            "--allow-privileged=true",
        ])
        admin = self.kubeconfig("admin", "default")
        deadline = time.monotonic() + APISERVER_READY_WITHIN
        last = ""
        while True:
            if self.apiserver.poll() is not None:
                raise ApiServerError(f"kube-apiserver exited: {self.apiserver.returncode}\n{self.logs()}")
            if self.etcd.poll() is not None:
                raise ApiServerError(f"etcd exited: {self.etcd.returncode}\n{self.logs()}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                done = self._kubectl(admin, ["get", "--raw", "/readyz"])
                if done.returncode == 0 and done.stdout.strip() == "ok":
                    return
                last = done.stderr.strip()
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise ApiServerError(f"kube-apiserver not ready within {APISERVER_READY_WITHIN}s; "
                                     f"/readyz: {last}\n{self.logs()}")
            time.sleep(0.2)

    def stop(self) -> None:
        """End both processes by pid (TERM, then KILL after 10 s) and reap them."""
        for proc in (self.apiserver, self.etcd):
            if proc is None or proc.poll() is not None:
                continue
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
        self.apiserver = self.etcd = None

    def pids(self) -> list[int]:
        return [p.pid for p in (self.etcd, self.apiserver) if p is not None]

    # ---- clients -----------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def kubeconfig(self, user: str, namespace: str, path: Path | None = None) -> Path:
        """A kubeconfig for token user `user` (the CA embedded), context namespace
        `namespace`; written to `path` (default: in the server's dir), mode 0644."""
        ca = base64.b64encode((self.dir / "ca.crt").read_bytes()).decode()
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "leakwatch-e2e",
                          "cluster": {"server": self.url, "certificate-authority-data": ca}}],
            "users": [{"name": user, "user": {"token": self.users[user]}}],
            "contexts": [{"name": "leakwatch-e2e",
                          "context": {"cluster": "leakwatch-e2e", "user": user,
                                      "namespace": namespace}}],
            "current-context": "leakwatch-e2e",
        }
        if path is None:
            safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in f"{user}-{namespace}")
            path = self.dir / f"kubeconfig-{safe}"
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(json.dumps(config, indent=2) + "\n")
        tmp.chmod(0o644)
        os.replace(tmp, path)
        return path

    def kubectl(self, *args: str, stdin: str | None = None) -> str:
        """`kubectl ARGS` as admin; its stdout, ApiServerError with its stderr on failure."""
        done = self._kubectl(self.dir / "kubeconfig-admin-default", list(args), stdin)
        if done.returncode != 0:
            raise ApiServerError(f"kubectl {' '.join(args)}: exit {done.returncode}: "
                                 f"{done.stderr.strip()}\n{tail(self.dir / 'kube-apiserver.log', 15)}")
        return done.stdout

    def kubectl_as(self, kubeconfig: Path, *args: str) -> str:
        """`kubectl --kubeconfig KUBECONFIG ARGS` (another user's); its stdout."""
        done = self._kubectl(kubeconfig, list(args))
        if done.returncode != 0:
            raise ApiServerError(f"kubectl --kubeconfig {kubeconfig} {' '.join(args)}: exit "
                                 f"{done.returncode}: {done.stderr.strip()}")
        return done.stdout

    def apply(self, manifest: str) -> str:
        return self.kubectl("apply", "-f", "-", stdin=manifest)

    def logs(self) -> str:
        return (f"---- etcd log (tail) ----\n{tail(self.dir / 'etcd.log', 15)}\n"
                f"---- kube-apiserver log (tail) ----\n{tail(self.dir / 'kube-apiserver.log', 40)}")

    # ---- the parts ---------------------------------------------------------------------

    def _kubectl(self, kubeconfig: Path, args: list[str], stdin: str | None = None):
        env = {k: v for k, v in os.environ.items() if k != "KUBECONFIG"}
        env["HOME"] = str(self.dir)
        try:
            return subprocess.run(
                ["kubectl", "--kubeconfig", str(kubeconfig), "--request-timeout=30s", *args],
                input=stdin, capture_output=True, text=True, timeout=KUBECTL_WITHIN, env=env)
        except subprocess.TimeoutExpired:
            raise ApiServerError(f"kubectl {' '.join(args)}: no exit within {KUBECTL_WITHIN}s") from None

    def _spawn(self, name: str, argv: list[str]) -> subprocess.Popen:
        log = open(self.dir / f"{name}.log", "ab")
        try:
            return subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, preexec_fn=_die_with_parent)
        finally:
            log.close()

    def _certificates(self) -> None:
        conf = self.dir / "openssl.cnf"
        conf.write_text(OPENSSL_CNF)
        p = {n: str(self.dir / n) for n in
             ("ca.key", "ca.crt", "server.key", "server.csr", "server.crt", "sa.key", "sa.pub")}
        p256 = "ec_paramgen_curve:prime256v1"
        steps = [
            ["req", "-x509", "-config", str(conf), "-extensions", "ca", "-newkey", "ec",
             "-pkeyopt", p256, "-nodes", "-days", "2", "-keyout", p["ca.key"], "-out", p["ca.crt"]],
            ["req", "-new", "-config", str(conf), "-newkey", "ec", "-pkeyopt", p256, "-nodes",
             "-subj", "/CN=127.0.0.1", "-keyout", p["server.key"], "-out", p["server.csr"]],
            ["x509", "-req", "-in", p["server.csr"], "-CA", p["ca.crt"], "-CAkey", p["ca.key"],
             "-set_serial", "2", "-days", "2", "-extfile", str(conf), "-extensions", "server",
             "-out", p["server.crt"]],
            ["genpkey", "-algorithm", "EC", "-pkeyopt", p256, "-out", p["sa.key"]],
            ["pkey", "-in", p["sa.key"], "-pubout", "-out", p["sa.pub"]],
        ]
        for args in steps:
            done = subprocess.run(["openssl", *args], capture_output=True, text=True,
                                  timeout=OPENSSL_WITHIN, cwd=self.dir)
            if done.returncode != 0:
                raise ApiServerError(f"openssl {' '.join(args)}: {done.stderr.strip()}")

    def _token_file(self) -> None:
        lines = []
        for i, (user, token) in enumerate(self.users.items()):
            if user == "admin":
                groups = "system:masters"
            elif user.startswith("system:serviceaccount:") and user.count(":") == 3:
                ns = user.split(":")[2]
                groups = f"system:serviceaccounts,system:serviceaccounts:{ns},system:authenticated"
            else:
                groups = "system:authenticated"
            lines.append(f'{token},{user},uid-{i},"{groups}"\n')
        (self.dir / "tokens.csv").write_text("".join(lines))

    def _etcd(self) -> None:
        self.etcd_port, peer_port = free_port(), free_port()
        client = f"http://127.0.0.1:{self.etcd_port}"
        peer = f"http://127.0.0.1:{peer_port}"
        self.etcd = self._spawn("etcd", [
            str(self.bin / "etcd"), "--name=default", f"--data-dir={self.dir / 'etcd-data'}",
            f"--listen-client-urls={client}", f"--advertise-client-urls={client}",
            f"--listen-peer-urls={peer}", f"--initial-advertise-peer-urls={peer}",
            f"--initial-cluster=default={peer}",
            # The test's data need not survive a crash of the machine.
            "--unsafe-no-fsync",
        ])
        deadline = time.monotonic() + ETCD_READY_WITHIN
        while True:
            if self.etcd.poll() is not None:
                raise ApiServerError(f"etcd exited: {self.etcd.returncode}\n{self.logs()}")
            try:
                with socket.create_connection(("127.0.0.1", self.etcd_port), timeout=2) as s:
                    s.sendall(b"GET /health HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
                    s.settimeout(2)
                    answer = b""
                    while chunk := s.recv(4096):
                        answer += chunk
                if b'"health":"true"' in answer:
                    return
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise ApiServerError(f"etcd not healthy within {ETCD_READY_WITHIN}s\n{self.logs()}")
            time.sleep(0.1)
