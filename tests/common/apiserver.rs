//! A real Kubernetes API server for the tests: etcd and kube-apiserver on 127.0.0.1 (free
//! ports), started with envtest's flags from the binaries `tests/e2e/apiserver/build.sh`
//! builds, found through `LEAKWATCH_APISERVER_DIR`. Everything lives in a temp dir: etcd's
//! data, the certificates (a CA and a server certificate for IP 127.0.0.1 signed by it, made
//! with the `openssl` command), the service-account key, the token file, the kubeconfigs
//! and both processes' logs. Clients authenticate with bearer tokens (`--token-auth-file`):
//! `admin` (group `system:masters`) and the users the test names; RBAC decides the rest.
//!
//! Drop kills both processes by their pid (only those it started) and removes the temp dir.
//! They are also started with a parent-death signal (SIGKILL), so they do not outlive the
//! test process. That signal follows the *thread* that started them: start an
//! `ApiServer` in the test that uses it, never in a static shared between tests.
//!
//! Every wait is bounded: 30 s for etcd, 60 s for the API server's `/readyz` (CI machines
//! are loaded), 60 s for any kubectl call.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use leakwatch::test_support::http as client;
use nix::sys::signal::Signal;

/// The variable that turns a skip (binaries, openssl or kubectl missing) into a failure.
pub const REQUIRE: &str = "LEAKWATCH_REQUIRE_APISERVER";
/// The directory `tests/e2e/apiserver/build.sh` prints: `etcd` and `kube-apiserver`.
pub const DIR_VAR: &str = "LEAKWATCH_APISERVER_DIR";

const ETCD_READY_WITHIN: Duration = Duration::from_secs(30);
const APISERVER_READY_WITHIN: Duration = Duration::from_secs(60);
const KUBECTL_WITHIN: Duration = Duration::from_secs(60);
const OPENSSL_WITHIN: Duration = Duration::from_secs(30);
/// Lines of each log in a panic message: etcd's are long JSON and rarely the cause.
const ETCD_LOG_TAIL: usize = 15;
const APISERVER_LOG_TAIL: usize = 40;

pub struct ApiServer {
    dir: tempfile::TempDir,
    bin: PathBuf,
    etcd: Option<Child>,
    apiserver: Option<Child>,
    etcd_port: u16,
    peer_port: u16,
    port: u16,
    /// (username, token); the first is `admin`.
    users: Vec<(String, String)>,
}

impl ApiServer {
    /// etcd and kube-apiserver with only the `admin` user. `None` (after
    /// `common::skip::skip("LEAKWATCH_REQUIRE_APISERVER", why)`) when `LEAKWATCH_APISERVER_DIR`
    /// is unset or lacks the binaries, or `openssl` or `kubectl` is missing.
    pub fn start() -> Option<ApiServer> {
        Self::start_with_users(&[])
    }

    /// Like [`start`](Self::start), plus a token user for each full username in `users`. A
    /// ServiceAccount's name, `system:serviceaccount:NS:NAME`, gets the groups
    /// `system:serviceaccounts`, `system:serviceaccounts:NS` and `system:authenticated`, as a
    /// real ServiceAccount token does, so a RoleBinding whose subject is `kind:
    /// ServiceAccount` matches it; any other name gets `system:authenticated`.
    pub fn start_with_users(users: &[&str]) -> Option<ApiServer> {
        let bin = binaries()?;
        for tool in ["openssl", "kubectl"] {
            if find_in_path(tool).is_none() {
                super::skip::skip(REQUIRE, &format!("{tool} is not installed"));
                return None;
            }
        }
        let dir = tempfile::Builder::new()
            .prefix("leakwatch-apiserver.")
            .tempdir()
            .expect("make the API server's temp dir");
        let mut all = vec![("admin".to_string(), random_token())];
        for &user in users {
            assert!(
                !user.is_empty() && !user.contains([',', '"', '\n']) && user != "admin",
                "token user {user:?}: no commas, quotes or newlines, not `admin`"
            );
            assert!(
                all.iter().all(|(u, _)| u != user),
                "token user {user:?} twice"
            );
            all.push((user.to_string(), random_token()));
        }
        let mut server = ApiServer {
            dir,
            bin,
            etcd: None,
            apiserver: None,
            etcd_port: 0,
            peer_port: 0,
            port: 0,
            users: all,
        };
        server.write_certificates();
        server.write_token_file();
        server.start_etcd();
        // A free port can be taken between our probe and the API server's bind: try again.
        for attempt in 1..=3 {
            server.port = free_port();
            match server.spawn_apiserver_and_wait() {
                Ok(()) => return Some(server),
                Err(why) if why.contains("address already in use") && attempt < 3 => {}
                Err(why) => panic!("{why}\n{}", server.logs()),
            }
        }
        unreachable!()
    }

    /// `https://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("https://127.0.0.1:{}", self.port)
    }

    /// The API server's port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The temp dir holding the certificates, kubeconfigs and logs.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The CA (PEM) that signed the server's certificate (IP SAN 127.0.0.1).
    pub fn ca_file(&self) -> PathBuf {
        self.dir.path().join("ca.crt")
    }

    /// The bearer token of `user` (`admin` or one given to
    /// [`start_with_users`](Self::start_with_users)).
    pub fn token(&self, user: &str) -> String {
        match self.users.iter().find(|(u, _)| u == user) {
            Some((_, token)) => token.clone(),
            None => panic!(
                "no token user {user:?}; known: {:?}",
                self.users.iter().map(|(u, _)| u).collect::<Vec<_>>()
            ),
        }
    }

    /// A file (in the temp dir) holding only `user`'s token, as a pod's
    /// `/var/run/secrets/kubernetes.io/serviceaccount/token` does.
    pub fn token_file(&self, user: &str) -> PathBuf {
        let path = self.dir.path().join(format!("token-{}", file_safe(user)));
        std::fs::write(&path, self.token(user)).expect("write the token file");
        path
    }

    /// A kubeconfig file (in the temp dir) for token user `user`: the server's URL, its CA
    /// (embedded, `certificate-authority-data`), the current context's namespace `namespace`.
    pub fn kubeconfig(&self, user: &str, namespace: &str) -> PathBuf {
        let token = self.token(user);
        let ca = std::fs::read(self.ca_file()).expect("read ca.crt");
        let text = format!(
            "apiVersion: v1\n\
             kind: Config\n\
             clusters:\n\
             - name: leakwatch-test\n  \
               cluster:\n    \
                 server: {url}\n    \
                 certificate-authority-data: {ca}\n\
             users:\n\
             - name: {user:?}\n  \
               user:\n    \
                 token: {token}\n\
             contexts:\n\
             - name: leakwatch-test\n  \
               context:\n    \
                 cluster: leakwatch-test\n    \
                 user: {user:?}\n    \
                 namespace: {namespace:?}\n\
             current-context: leakwatch-test\n",
            url = self.url(),
            ca = base64(&ca),
        );
        let path = self.kubeconfig_path(user, namespace);
        // Whole or not at all: another thread's kubectl may be reading it.
        let part = PathBuf::from(format!("{}.{}.part", path.display(), random_token()));
        std::fs::write(&part, text).expect("write the kubeconfig");
        std::fs::rename(&part, &path).expect("rename the kubeconfig");
        path
    }

    fn kubeconfig_path(&self, user: &str, namespace: &str) -> PathBuf {
        self.dir.path().join(format!(
            "kubeconfig-{}-{}",
            file_safe(user),
            file_safe(namespace)
        ))
    }

    /// `kubectl ARGS` as `admin` (group `system:masters`), namespace `default`.
    pub fn kubectl(&self, args: &[&str]) -> Output {
        // Written (for the current port) before the API server was first ready.
        self.kubectl_as(&self.kubeconfig_path("admin", "default"), args)
    }

    /// `kubectl ARGS` as admin; its stdout, or a panic with its stderr when it fails.
    pub fn kubectl_ok(&self, args: &[&str]) -> String {
        let out = self.kubectl(args);
        self.stdout_of(args, out)
    }

    /// `kubectl --kubeconfig KUBECONFIG ARGS` (e.g. a [`kubeconfig`](Self::kubeconfig) of
    /// another user), with `HOME` in the temp dir so that its caches stay there.
    pub fn kubectl_as(&self, kubeconfig: &Path, args: &[&str]) -> Output {
        self.run_kubectl(kubeconfig, args, None)
    }

    /// `kubectl apply -f -` of `manifest` (YAML or JSON) as admin; panics when it fails.
    pub fn apply(&self, manifest: &str) {
        let args = ["apply", "-f", "-"];
        let out = self.run_kubectl(
            &self.kubeconfig_path("admin", "default"),
            &args,
            Some(manifest.as_bytes()),
        );
        self.stdout_of(&args, out);
    }

    /// Kill the API server (SIGKILL by its pid, reaped); etcd and its data stay.
    pub fn stop_apiserver(&mut self) {
        assert!(self.apiserver.is_some(), "the API server is not running");
        self.kill_apiserver();
    }

    /// Start the API server again on the same port, certificates and token file, and wait
    /// for its `/readyz`.
    pub fn start_apiserver(&mut self) {
        assert!(self.apiserver.is_none(), "the API server is running");
        if let Err(why) = self.spawn_apiserver_and_wait() {
            panic!("restarting the API server: {why}\n{}", self.logs());
        }
    }

    /// The pids of etcd and the API server (`None` when stopped).
    pub fn pids(&self) -> (Option<u32>, Option<u32>) {
        (
            self.etcd.as_ref().map(Child::id),
            self.apiserver.as_ref().map(Child::id),
        )
    }

    /// The last lines of both logs, for a failure message.
    pub fn logs(&self) -> String {
        format!(
            "--- etcd log (tail) ---\n{}\n--- kube-apiserver log (tail) ---\n{}",
            tail(&self.dir.path().join("etcd.log"), ETCD_LOG_TAIL),
            tail(
                &self.dir.path().join("kube-apiserver.log"),
                APISERVER_LOG_TAIL
            )
        )
    }

    fn stdout_of(&self, args: &[&str], out: Output) -> String {
        if !out.status.success() {
            panic!(
                "kubectl {}: {}\nstdout: {}\nstderr: {}\n--- kube-apiserver log (tail) ---\n{}",
                args.join(" "),
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr),
                tail(&self.dir.path().join("kube-apiserver.log"), 15),
            );
        }
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn run_kubectl(&self, kubeconfig: &Path, args: &[&str], stdin: Option<&[u8]>) -> Output {
        let mut cmd = Command::new("kubectl");
        cmd.arg("--kubeconfig")
            .arg(kubeconfig)
            .arg("--request-timeout=30s")
            .args(args)
            .env("HOME", self.dir.path())
            .env_remove("KUBECONFIG");
        let what = format!("kubectl {}", args.join(" "));
        run_bounded(cmd, stdin, KUBECTL_WITHIN, &what)
    }

    fn path(&self, name: &str) -> String {
        self.dir.path().join(name).display().to_string()
    }

    /// A CA, a server certificate for 127.0.0.1 signed by it (CA:FALSE, serverAuth, IP and
    /// DNS SANs: what rustls' webpki accepts) and the service-account signing key with its
    /// public half, all P-256.
    fn write_certificates(&self) {
        let conf = self.dir.path().join("openssl.cnf");
        std::fs::write(
            &conf,
            "[req]\n\
             distinguished_name = dn\n\
             prompt = no\n\
             [dn]\n\
             CN = leakwatch-test-ca\n\
             [ca]\n\
             basicConstraints = critical,CA:TRUE\n\
             keyUsage = critical,keyCertSign,cRLSign\n\
             subjectKeyIdentifier = hash\n\
             [server]\n\
             basicConstraints = critical,CA:FALSE\n\
             keyUsage = critical,digitalSignature,keyEncipherment\n\
             extendedKeyUsage = serverAuth\n\
             subjectAltName = IP:127.0.0.1,DNS:localhost\n\
             subjectKeyIdentifier = hash\n\
             authorityKeyIdentifier = keyid\n",
        )
        .expect("write openssl.cnf");
        let conf = conf.display().to_string();
        let [ca_key, ca_crt, key, csr, crt, sa_key, sa_pub] = [
            "ca.key",
            "ca.crt",
            "server.key",
            "server.csr",
            "server.crt",
            "sa.key",
            "sa.pub",
        ]
        .map(|f| self.path(f));
        let p256 = "ec_paramgen_curve:prime256v1";
        #[rustfmt::skip]
        let steps: [&[&str]; 5] = [
            &["req", "-x509", "-config", &conf, "-extensions", "ca", "-newkey", "ec",
              "-pkeyopt", p256, "-nodes", "-days", "2", "-keyout", &ca_key, "-out", &ca_crt],
            &["req", "-new", "-config", &conf, "-newkey", "ec", "-pkeyopt", p256, "-nodes",
              "-subj", "/CN=127.0.0.1", "-keyout", &key, "-out", &csr],
            &["x509", "-req", "-in", &csr, "-CA", &ca_crt, "-CAkey", &ca_key, "-set_serial", "2",
              "-days", "2", "-extfile", &conf, "-extensions", "server", "-out", &crt],
            &["genpkey", "-algorithm", "EC", "-pkeyopt", p256, "-out", &sa_key],
            &["pkey", "-in", &sa_key, "-pubout", "-out", &sa_pub],
        ];
        for args in steps {
            let mut cmd = Command::new("openssl");
            cmd.args(args).current_dir(self.dir.path());
            let what = format!("openssl {}", args.join(" "));
            let out = run_bounded(cmd, None, OPENSSL_WITHIN, &what);
            assert!(
                out.status.success(),
                "{what}: {}\n{}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }

    /// `--token-auth-file`: `token,user,uid,"group,group"` per user.
    fn write_token_file(&self) {
        let mut csv = String::new();
        for (i, (user, token)) in self.users.iter().enumerate() {
            let groups = if user == "admin" {
                "system:masters".to_string()
            } else if let Some(ns) = user
                .strip_prefix("system:serviceaccount:")
                .and_then(|rest| rest.split_once(':'))
                .map(|(ns, _)| ns)
            {
                format!("system:serviceaccounts,system:serviceaccounts:{ns},system:authenticated")
            } else {
                "system:authenticated".to_string()
            };
            csv.push_str(&format!("{token},{user},uid-{i},\"{groups}\"\n"));
        }
        std::fs::write(self.dir.path().join("tokens.csv"), csv).expect("write tokens.csv");
    }

    fn start_etcd(&mut self) {
        for attempt in 1..=3 {
            self.etcd_port = free_port();
            self.peer_port = free_port();
            let client = format!("http://127.0.0.1:{}", self.etcd_port);
            let peer = format!("http://127.0.0.1:{}", self.peer_port);
            let mut cmd = Command::new(self.bin.join("etcd"));
            cmd.arg("--name=default")
                .arg(format!("--data-dir={}", self.path("etcd-data")))
                .arg(format!("--listen-client-urls={client}"))
                .arg(format!("--advertise-client-urls={client}"))
                .arg(format!("--listen-peer-urls={peer}"))
                .arg(format!("--initial-advertise-peer-urls={peer}"))
                .arg(format!("--initial-cluster=default={peer}"))
                // A test's data need not survive a crash of the machine.
                .arg("--unsafe-no-fsync");
            let child = spawn_logged(cmd, &self.dir.path().join("etcd.log"));
            self.etcd = Some(child);
            let deadline = Instant::now() + ETCD_READY_WITHIN;
            let addr = SocketAddr::from(([127, 0, 0, 1], self.etcd_port));
            let why = loop {
                if let Some(status) = exited(&mut self.etcd) {
                    break format!("etcd exited: {status}");
                }
                let raw = b"GET /health HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n";
                if let Ok((200, body)) = client::exchange(addr, raw, Duration::from_secs(2)) {
                    if body.contains("\"health\":\"true\"") {
                        return;
                    }
                }
                if Instant::now() > deadline {
                    break format!("etcd not healthy within {ETCD_READY_WITHIN:?}");
                }
                std::thread::sleep(Duration::from_millis(100));
            };
            kill(&mut self.etcd);
            let log = tail(&self.dir.path().join("etcd.log"), ETCD_LOG_TAIL);
            if !(log.contains("address already in use") && attempt < 3) {
                panic!("{why}\n{}", self.logs());
            }
            let _ = std::fs::remove_dir_all(self.dir.path().join("etcd-data"));
        }
    }

    /// Start kube-apiserver on `self.port` and wait for `/readyz`; on failure it is killed
    /// and the reason returned (with "address already in use" when the port was taken).
    fn spawn_apiserver_and_wait(&mut self) -> Result<(), String> {
        let mut cmd = Command::new(self.bin.join("kube-apiserver"));
        cmd.arg(format!(
            "--etcd-servers=http://127.0.0.1:{}",
            self.etcd_port
        ))
        .arg(format!("--secure-port={}", self.port))
        .arg("--bind-address=127.0.0.1")
        .arg("--advertise-address=127.0.0.1")
        .arg(format!("--cert-dir={}", self.path("apiserver-certs")))
        .arg(format!("--tls-cert-file={}", self.path("server.crt")))
        .arg(format!(
            "--tls-private-key-file={}",
            self.path("server.key")
        ))
        .arg(format!("--token-auth-file={}", self.path("tokens.csv")))
        .arg("--authorization-mode=RBAC")
        .arg(format!("--service-account-issuer={}", self.url()))
        .arg(format!(
            "--service-account-key-file={}",
            self.path("sa.pub")
        ))
        .arg(format!(
            "--service-account-signing-key-file={}",
            self.path("sa.key")
        ))
        .arg("--disable-admission-plugins=ServiceAccount")
        .arg("--service-cluster-ip-range=10.0.0.0/24")
        .arg("--allow-privileged=true");
        let log = self.dir.path().join("kube-apiserver.log");
        self.apiserver = Some(spawn_logged(cmd, &log));
        let admin = self.kubeconfig("admin", "default");
        let deadline = Instant::now() + APISERVER_READY_WITHIN;
        let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
        let mut last = String::new();
        let why = loop {
            if let Some(status) = exited(&mut self.apiserver) {
                let log = tail(&log, APISERVER_LOG_TAIL);
                let taken = if log.contains("address already in use") {
                    " (address already in use)"
                } else {
                    ""
                };
                break format!("kube-apiserver exited: {status}{taken}");
            }
            if let Some(status) = exited(&mut self.etcd) {
                break format!("etcd exited: {status}");
            }
            if TcpStream::connect_timeout(&addr, Duration::from_millis(500)).is_ok() {
                let out = self.run_kubectl(&admin, &["get", "--raw", "/readyz"], None);
                if out.status.success() && String::from_utf8_lossy(&out.stdout).trim() == "ok" {
                    return Ok(());
                }
                last = String::from_utf8_lossy(&out.stderr).into_owned();
            }
            if Instant::now() > deadline {
                break format!(
                    "kube-apiserver not ready within {APISERVER_READY_WITHIN:?}; /readyz: {last}"
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        };
        self.kill_apiserver();
        Err(why)
    }

    fn kill_apiserver(&mut self) {
        kill(&mut self.apiserver);
    }
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        kill(&mut self.apiserver);
        kill(&mut self.etcd);
        if std::thread::panicking() {
            eprintln!("{}", self.logs());
        }
    }
}

/// The directory of `etcd` and `kube-apiserver`, or why the test skips.
fn binaries() -> Option<PathBuf> {
    let Some(dir) = std::env::var_os(DIR_VAR).filter(|d| !d.is_empty()) else {
        super::skip::skip(
            REQUIRE,
            &format!("{DIR_VAR} is not set (bash tests/e2e/apiserver/build.sh prints it)"),
        );
        return None;
    };
    let dir = PathBuf::from(dir);
    for name in ["etcd", "kube-apiserver"] {
        if !dir.join(name).is_file() {
            super::skip::skip(
                REQUIRE,
                &format!("{DIR_VAR}={} has no {name}", dir.display()),
            );
            return None;
        }
    }
    Some(dir)
}

fn find_in_path(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(name))
            .find(|p| p.is_file())
    })
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind 127.0.0.1:0")
        .port()
}

/// 32 hex digits from the kernel's random source.
fn random_token() -> String {
    let mut bytes = [0u8; 16];
    File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .expect("read /dev/urandom");
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// `text` with anything but ASCII letters, digits, `-`, `_` and `.` as `_`.
fn file_safe(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect()
}

fn base64(data: &[u8]) -> String {
    const ABC: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, &b)| n | u32::from(b) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ABC[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Spawn `cmd` with stdout and stderr appended to `log`, killed by the kernel if the
/// spawning thread dies first.
fn spawn_logged(mut cmd: Command, log: &Path) -> Child {
    let mut file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .expect("open the log");
    let _ = writeln!(
        file,
        "---- leakwatch-test: starting {:?}",
        cmd.get_program()
    );
    let err = file.try_clone().expect("dup the log");
    cmd.stdin(Stdio::null()).stdout(file).stderr(err);
    // SAFETY: prctl is async-signal-safe; nothing else runs between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).map_err(std::io::Error::from)
        });
    }
    cmd.spawn()
        .unwrap_or_else(|e| panic!("start {:?}: {e}", cmd.get_program()))
}

/// The exit status, once the process has exited (then reaped and forgotten).
fn exited(child: &mut Option<Child>) -> Option<ExitStatus> {
    let status = child.as_mut()?.try_wait().ok().flatten()?;
    *child = None;
    Some(status)
}

/// SIGKILL by pid (only the process we started) and reap it.
fn kill(child: &mut Option<Child>) {
    if let Some(mut c) = child.take() {
        let _ = c.kill();
        let _ = c.wait();
    }
}

/// Run `cmd` with `stdin` (or none) and collect its output; panics if it does not exit
/// within `within` (it is killed first).
fn run_bounded(mut cmd: Command, stdin: Option<&[u8]>, within: Duration, what: &str) -> Output {
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("{what}: cannot start: {e}"));
    let writer = child.stdin.take().map(|mut pipe| {
        let data = stdin.unwrap_or_default().to_vec();
        std::thread::spawn(move || {
            let _ = pipe.write_all(&data);
        })
    });
    let stdout = child.stdout.take().map(read_all);
    let stderr = child.stderr.take().map(read_all);
    let deadline = Instant::now() + within;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(10)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("{what}: no exit within {within:?}");
            }
        }
    };
    if let Some(w) = writer {
        let _ = w.join();
    }
    let join = |h: Option<std::thread::JoinHandle<Vec<u8>>>| {
        h.map(|h| h.join().unwrap_or_default()).unwrap_or_default()
    };
    Output {
        status,
        stdout: join(stdout),
        stderr: join(stderr),
    }
}

/// A thread reading `pipe` to its end.
fn read_all<R: Read + Send + 'static>(mut pipe: R) -> std::thread::JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = pipe.read_to_end(&mut buf);
        buf
    })
}

/// The last `lines` lines of a file ("" when unreadable).
fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
