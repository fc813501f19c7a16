//! The built-in leaking child: a real process that holds what leakwatch looks for.
//!
//! `leakwatch demo-child` (hidden) opens files and pipes, holds loopback TCP sockets in
//! ESTABLISHED and CLOSE_WAIT, parks worker threads in `recv()` on sockets whose peer never
//! sends, and grows anonymous memory, on command. Tests use it as ground truth; `demo` uses
//! it as the service that leaks. Only loopback addresses are used.
//!
//! Protocol: it prints one `ready {json}` line, then reads commands from stdin, one per line,
//! answering each with `ok` or `error: ...`: `files N`, `close-files N`, `pipes N`,
//! `established N`, `close-wait N`, `recv-workers N`, `grow N` / `shrink N` (MiB),
//! `churn N` (a thread opening and closing N files in a loop), `idle-threads N` (parked,
//! like an idle pool), `exit`. It exits when stdin closes, on `exit`, or after
//! `--max-seconds`, so a forgotten child never outlives its test.
//!
//! With `--leak-every DURATION` it reads no stdin (a container has none): it leaks one
//! CLOSE_WAIT socket per period by itself until `--max-seconds`, the Helm chart's demo.

use std::io::{BufRead, BufReader, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use clap::Args;
use rustix::net::RecvFlags;
use serde::{Deserialize, Serialize};

/// What the child starts with.
#[derive(Debug, Clone, Args)]
pub struct ChildArgs {
    /// Soft RLIMIT_NOFILE to set on itself.
    #[arg(long)]
    pub nofile: Option<u64>,
    /// Files to open (`/dev/null`).
    #[arg(long, default_value_t = 0)]
    pub files: u32,
    /// Pipes to open (two fds each).
    #[arg(long, default_value_t = 0)]
    pub pipes: u32,
    /// Loopback connections to hold open at both ends (two ESTABLISHED sockets each).
    #[arg(long, default_value_t = 0)]
    pub established: u32,
    /// Connections whose peer closes: one CLOSE_WAIT socket each.
    #[arg(long, default_value_t = 0)]
    pub close_wait: u32,
    /// Listeners (127.0.0.1, 127.0.0.2, ...) the connections are spread over.
    #[arg(long, default_value_t = 1)]
    pub peers: u8,
    /// One more listener on [::1], in the rotation (when the host has IPv6).
    #[arg(long)]
    pub ipv6: bool,
    /// Worker threads blocked in `recv()` on a socket whose peer never sends.
    #[arg(long, default_value_t = 0)]
    pub recv_threads: u32,
    /// A thread blocked in `accept()` (idle, never stuck).
    #[arg(long)]
    pub accept_thread: bool,
    /// Anonymous memory to allocate and touch, MiB.
    #[arg(long, default_value_t = 0)]
    pub grow_mib: u32,
    /// Exit after this many seconds whatever happens.
    #[arg(long, default_value_t = 300)]
    pub max_seconds: u64,
    /// Read no stdin; leak one CLOSE_WAIT socket every DURATION (e.g. `2s`) instead.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub leak_every: Option<Duration>,
    /// Catch SIGUSR1, SIGUSR2 and SIGQUIT and append each one's name to this file (a line
    /// per signal), as a runtime that dumps its heap or threads on them would.
    #[arg(long)]
    pub signal_log: Option<std::path::PathBuf>,
    /// Make itself non-dumpable (`prctl(PR_SET_DUMPABLE, 0)`), as setuid and hardened
    /// programs are: its /proc files then belong to root and ptrace access needs
    /// CAP_SYS_PTRACE even for its own uid.
    #[arg(long)]
    pub non_dumpable: bool,
}

/// The `ready` line: what the child holds that a test or the demo needs to know.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Ready {
    pub pid: i32,
    /// The listeners its connections go to (127.0.0.1, 127.0.0.2, ...).
    pub listeners: Vec<SocketAddr>,
    /// Threads parked in `recv()` at start.
    pub recv_tids: Vec<i32>,
    /// The thread blocked in `accept()`, with `--accept-thread`.
    pub accept_tid: Option<i32>,
}

/// A running child, driven through its stdin; killed (by its own pid) and reaped on drop.
pub struct ChildProcess {
    pub child: Child,
    pub ready: Ready,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
}

impl ChildProcess {
    /// Start `cmd` (a `leakwatch demo-child ...` command line, possibly wrapped) and wait
    /// for its `ready` line.
    pub fn start(cmd: &mut Command) -> std::io::Result<ChildProcess> {
        let mut child = cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).spawn()?;
        let stdin = child.stdin.take();
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| std::io::Error::other("no stdout"))?;
        let mut stdout = BufReader::new(stdout);
        let mut line = String::new();
        stdout.read_line(&mut line)?;
        let ready = line
            .strip_prefix("ready ")
            .and_then(|json| serde_json::from_str(json.trim()).ok());
        let Some(ready) = ready else {
            let _ = child.kill();
            let _ = child.wait();
            return Err(std::io::Error::other(format!(
                "the child did not start: {:?}",
                line.trim()
            )));
        };
        Ok(ChildProcess {
            child,
            ready,
            stdin,
            stdout,
        })
    }

    pub fn pid(&self) -> i32 {
        self.ready.pid
    }

    /// Send one command and return the child's answer (`ok` or `error: ...`).
    pub fn command(&mut self, cmd: &str) -> std::io::Result<String> {
        let stdin = self
            .stdin
            .as_mut()
            .ok_or_else(|| std::io::Error::other("stdin closed"))?;
        writeln!(stdin, "{cmd}")?;
        stdin.flush()?;
        let mut line = String::new();
        if self.stdout.read_line(&mut line)? == 0 {
            return Err(std::io::Error::other("the child exited"));
        }
        Ok(line.trim().to_string())
    }

    /// Close stdin: the child exits (and stays a zombie until reaped).
    pub fn close_stdin(&mut self) {
        self.stdin.take();
    }
}

impl Drop for ChildProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Everything the child holds, so nothing is closed until it exits.
#[derive(Default)]
struct Held {
    listeners: Vec<TcpListener>,
    files: Vec<std::fs::File>,
    pipes: Vec<(std::os::fd::OwnedFd, std::os::fd::OwnedFd)>,
    sockets: Vec<TcpStream>,
    memory: Vec<Vec<u8>>,
    next_peer: usize,
}

impl Held {
    fn open_files(&mut self, n: u32) -> std::io::Result<()> {
        for _ in 0..n {
            self.files.push(std::fs::File::open("/dev/null")?);
        }
        Ok(())
    }

    fn open_pipes(&mut self, n: u32) -> std::io::Result<()> {
        for _ in 0..n {
            self.pipes
                .push(nix::unistd::pipe().map_err(std::io::Error::from)?);
        }
        Ok(())
    }

    fn next_listener(&mut self) -> &TcpListener {
        let i = self.next_peer % self.listeners.len();
        self.next_peer += 1;
        &self.listeners[i]
    }

    /// Connect and accept; returns (client end, server end).
    fn connect(&mut self) -> std::io::Result<(TcpStream, TcpStream)> {
        let listener = self.next_listener();
        let client = TcpStream::connect(listener.local_addr()?)?;
        let (server, _) = listener.accept()?;
        Ok((client, server))
    }

    fn hold_established(&mut self, n: u32) -> std::io::Result<()> {
        for _ in 0..n {
            let (c, s) = self.connect()?;
            self.sockets.push(c);
            self.sockets.push(s);
        }
        Ok(())
    }

    fn hold_close_wait(&mut self, n: u32) -> std::io::Result<()> {
        for _ in 0..n {
            let (c, s) = self.connect()?;
            drop(s); // the peer closes: our end gets its FIN and sits in CLOSE_WAIT
            self.sockets.push(c);
        }
        Ok(())
    }

    fn grow(&mut self, mib: u32) {
        for _ in 0..mib {
            self.memory.push(vec![0xa5; 1 << 20]);
        }
    }

    /// Give back the last `mib` MiB grown (1 MiB blocks are mmapped, so RSS drops).
    fn shrink(&mut self, mib: u32) {
        for _ in 0..mib {
            self.memory.pop();
        }
    }

    fn close_files(&mut self, n: u32) {
        for _ in 0..n {
            self.files.pop();
        }
    }
}

fn gettid() -> i32 {
    nix::unistd::gettid().as_raw()
}

/// Park a worker in `recv()` on a connection whose peer never sends; returns its tid.
fn spawn_recv_worker(held: &mut Held, i: u32) -> std::io::Result<i32> {
    let (client, server) = held.connect()?;
    held.sockets.push(server);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name(format!("recv-worker-{i}"))
        .spawn(move || {
            let _ = tx.send(gettid());
            let mut buf = [0u8; 512];
            // recv(2) itself (recvfrom on x86_64, as glibc's recv), the call a stuck worker
            // is recognised by.
            loop {
                match rustix::net::recv(&client, &mut buf[..], RecvFlags::empty()) {
                    Ok((n, _)) if n > 0 => {}
                    _ => break,
                }
            }
            drop(client);
        })?;
    rx.recv().map_err(std::io::Error::other)
}

fn spawn_acceptor() -> std::io::Result<i32> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("acceptor".into())
        .spawn(move || {
            let _ = tx.send(gettid());
            while let Ok(conn) = listener.accept() {
                drop(conn);
            }
        })?;
    rx.recv().map_err(std::io::Error::other)
}

/// A thread that opens and closes `n` files over and over, so fds vanish under a scan.
fn spawn_churn(n: u32) {
    std::thread::spawn(move || loop {
        let files: Vec<_> = (0..n)
            .filter_map(|_| std::fs::File::open("/dev/null").ok())
            .collect();
        drop(files);
        std::thread::yield_now();
    });
}

/// A pool thread with nothing to do: parked in a futex wait, which is idle, not stuck.
fn spawn_idle() -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("idle-pool".into())
        .spawn(|| loop {
            std::thread::park();
        })
        .map(drop)
}

/// Catch SIGUSR1, SIGUSR2 and SIGQUIT; a thread (asleep between looks, so never a stuck
/// worker) appends the name of each one that arrived to `log`.
fn record_signals(log: std::path::PathBuf) -> std::io::Result<()> {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    let mut flags = Vec::new();
    for sig in [libc::SIGUSR1, libc::SIGUSR2, libc::SIGQUIT] {
        let flag = Arc::new(AtomicBool::new(false));
        signal_hook::flag::register(sig, Arc::clone(&flag))?;
        flags.push((sig, flag));
    }
    std::thread::Builder::new()
        .name("signal-log".into())
        .spawn(move || loop {
            for (sig, flag) in &flags {
                if flag.swap(false, Ordering::SeqCst) {
                    let name = nix::sys::signal::Signal::try_from(*sig)
                        .map_or(format!("signal {sig}"), |s| s.as_str().to_string());
                    let _ = std::fs::OpenOptions::new()
                        .create(true)
                        .append(true)
                        .open(&log)
                        .and_then(|mut f| f.write_all(format!("{name}\n").as_bytes()));
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        })?;
    Ok(())
}

/// Apply one stdin command.
fn command(held: &mut Held, line: &str) -> Result<(), String> {
    let mut words = line.split_whitespace();
    let verb = words.next().unwrap_or("");
    let n: u32 = match words.next() {
        Some(w) => w.parse().map_err(|_| format!("bad count {w:?}"))?,
        None => 1,
    };
    let io = |r: std::io::Result<()>| r.map_err(|e| e.to_string());
    match verb {
        "files" => io(held.open_files(n)),
        "close-files" => {
            held.close_files(n);
            Ok(())
        }
        "pipes" => io(held.open_pipes(n)),
        "established" => io(held.hold_established(n)),
        "close-wait" => io(held.hold_close_wait(n)),
        "grow" => {
            held.grow(n);
            Ok(())
        }
        "recv-workers" => {
            for i in 0..n {
                spawn_recv_worker(held, i).map_err(|e| e.to_string())?;
            }
            Ok(())
        }
        "churn" => {
            spawn_churn(n);
            Ok(())
        }
        "shrink" => {
            held.shrink(n);
            Ok(())
        }
        "idle-threads" => {
            for _ in 0..n {
                spawn_idle().map_err(|e| e.to_string())?;
            }
            Ok(())
        }
        _ => Err(format!("unknown command {verb:?}")),
    }
}

/// Leak one CLOSE_WAIT socket per `every` until the `--max-seconds` thread ends the
/// process. Running out of fds is logged, as a leaking service would, and not fatal.
/// One more CLOSE_WAIT socket per `every` until `deadline`.
fn leak_until(held: &mut Held, every: Duration, deadline: Instant) {
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left < every {
            std::thread::sleep(left);
            return;
        }
        std::thread::sleep(every);
        if let Err(e) = held.hold_close_wait(1) {
            eprintln!("error: {e}");
        }
    }
}

/// Answer the commands on stdin until `exit`, its end, or `deadline`. A thread reads the
/// lines, so the deadline holds while a read blocks; it is left blocked when this returns,
/// and the process ends on the return from `main`.
fn serve_commands(held: &mut Held, deadline: Instant) -> anyhow::Result<()> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            let stop = line.is_err();
            if tx.send(line).is_err() || stop {
                return;
            }
        }
    });
    let mut out = std::io::stdout();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = match rx.recv_timeout(left) {
            Ok(line) => line?,
            Err(_) => return Ok(()), // past the deadline, or stdin closed
        };
        if line.trim() == "exit" {
            return Ok(());
        }
        match command(held, &line) {
            Ok(()) => writeln!(out, "ok")?,
            Err(e) => writeln!(out, "error: {e}")?,
        }
        out.flush()?;
    }
}

/// Run the child. Returns when it should exit (stdin's end, `exit`, `--max-seconds`); the
/// caller ends the process, and with it the threads the child parked.
pub fn run(args: &ChildArgs) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(args.max_seconds);
    if let Some(log) = &args.signal_log {
        record_signals(log.clone())?;
    }
    if args.non_dumpable {
        use rustix::process::{set_dumpable_behavior, DumpableBehavior};
        set_dumpable_behavior(DumpableBehavior::NotDumpable).map_err(std::io::Error::from)?;
    }
    if let Some(n) = args.nofile {
        let (_, hard) = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)?;
        nix::sys::resource::setrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE, n, hard)?;
    }
    let mut held = Held::default();
    for i in 0..args.peers.max(1) {
        let ip = Ipv4Addr::new(127, 0, 0, i + 1);
        held.listeners.push(TcpListener::bind((ip, 0))?);
    }
    if args.ipv6 {
        held.listeners
            .push(TcpListener::bind((std::net::Ipv6Addr::LOCALHOST, 0))?);
    }
    held.open_files(args.files)?;
    held.open_pipes(args.pipes)?;
    held.hold_established(args.established)?;
    held.hold_close_wait(args.close_wait)?;
    let mut recv_tids = Vec::new();
    for i in 0..args.recv_threads {
        recv_tids.push(spawn_recv_worker(&mut held, i)?);
    }
    let accept_tid = if args.accept_thread {
        Some(spawn_acceptor()?)
    } else {
        None
    };
    held.grow(args.grow_mib);

    let ready = Ready {
        pid: std::process::id() as i32,
        listeners: held
            .listeners
            .iter()
            .filter_map(|l| l.local_addr().ok())
            .collect(),
        recv_tids,
        accept_tid,
    };
    let mut out = std::io::stdout();
    writeln!(out, "ready {}", serde_json::to_string(&ready)?)?;
    out.flush()?;

    match args.leak_every {
        Some(every) => {
            leak_until(&mut held, every, deadline);
            Ok(())
        }
        None => serve_commands(&mut held, deadline),
    }
}
