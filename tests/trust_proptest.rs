//! Property tests (proptest) of every parser of kernel text and kernel bytes.
//!
//! Two kinds. Round trips: structured values are generated, rendered in the kernel's exact
//! format (the `seq_printf` formats of net/ipv4/tcp_ipv4.c, fs/proc/array.c, fs/proc/base.c,
//! the cgroup files, `struct inet_diag_msg` in netlink messages, `struct linux_dirent64`
//! from a real `getdents64`), and the parser must return exactly what was generated. And no
//! panic: arbitrary bytes and mutations of the real fixtures (every truncation, byte flips,
//! inserted tokens, deleted ranges) go through every parser, whose output must stay bounded
//! by the input.
//!
//! Bounded: `LEAKWATCH_FUZZ_CASES` cases per property (default 512; the real-directory
//! property a quarter of that). A long run:
//! `LEAKWATCH_FUZZ_CASES=20000 cargo test --release --test trust_proptest`. A failure is
//! shrunk, printed, and its seed saved in `proptest-regressions/trust_proptest.txt` (replayed
//! first on every later run: commit it with the fix).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ffi::OsStr;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use leakwatch::collect::cgroup::parse::{
    flat_keyed, parse_limit, parse_pressure, parse_proc_cgroup, parse_u64, ProcCgroup, V1Hierarchy,
};
use leakwatch::collect::cmdline_text;
use leakwatch::collect::fd::{classify_link, Dirents};
use leakwatch::collect::limits::parse_nofile;
use leakwatch::collect::net_tcp::{parse_net_tcp, summarize};
use leakwatch::collect::smaps::{parse_smaps_heap, parse_smaps_rollup};
use leakwatch::collect::sock_diag::{
    dump_request, parse_dump, parse_skmeminfo, parse_tcp_info, DiagError, DumpOf, Progress,
    EXT_INFO, FD_STATES,
};
use leakwatch::collect::stat::{parse_btime, parse_stat, Stat};
use leakwatch::collect::status::parse_status;
use leakwatch::collect::task::syscall::{parse_pollfds, parse_syscall};
use leakwatch::config::values::{parse_quantity, parse_rate};
use leakwatch::sample::{
    FdLimit, Limit, Peer, PeerCount, TcpSocket, TcpState, TcpStates, TcpTable,
};
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::FileFailurePersistence;

macro_rules! fixture {
    ($path:literal) => {
        include_str!(concat!("fixtures/", $path))
    };
}

const TEXT_FIXTURES: &[&str] = &[
    fixture!("proc/stat_kernel_6_18"),
    fixture!("proc/stat_odd_comm"),
    fixture!("proc/status_kernel_6_18"),
    fixture!("proc/status_zombie_kernel_6_18"),
    fixture!("proc/limits_kernel_6_18"),
    fixture!("proc/smaps_rollup_kernel_6_18"),
    fixture!("net/tcp_kernel_6_18"),
    fixture!("net/tcp6_kernel_6_18"),
    fixture!("net/tcp_odd_lines"),
    fixture!("sock_diag/tcp_kernel_6_18"),
    fixture!("sock_diag/tcp6_kernel_6_18"),
    fixture!("cgroup/proc_cgroup_hybrid_kernel_6_18"),
    fixture!("cgroup/proc_cgroup_v2_kernel_6_1"),
    fixture!("cgroup/proc_cgroup_v1_systemd_kernel_6_x"),
    fixture!("cgroup/memory_stat_v1_kernel_6_18"),
    fixture!("cgroup/memory_stat_v2_kernel_6_1"),
    fixture!("cgroup/memory_events_v2_kernel_6_1"),
    fixture!("cgroup/memory_oom_control_v1_kernel_6_18"),
    fixture!("cgroup/memory_max_v2_kernel_6_1"),
    fixture!("cgroup/memory_max_v2_unlimited_kernel_6_1"),
    fixture!("cgroup/memory_limit_in_bytes_v1_unlimited_kernel_6_18"),
    fixture!("cgroup/memory_pressure_v2_busy_kernel_6_1"),
    fixture!("cgroup/memory_pressure_unified_kernel_6_18"),
    fixture!("cgroup/pids_max_v2_kernel_6_1"),
    fixture!("task/syscall_recvfrom_kernel_6_18"),
    fixture!("task/syscall_not_in_syscall_kernel_6_18"),
    fixture!("task/syscall_running_kernel_6_18"),
];

/// 40 KB: mutated whole in [`smaps_fixture_mutations`], cut at a stride.
const SMAPS: &str = fixture!("proc/smaps_rust_threads_kernel_6_18");

const DUMP_V4: &[u8] = include_bytes!("fixtures/sock_diag/dump_inet_kernel_6_18.bin");
const DUMP_V6: &[u8] = include_bytes!("fixtures/sock_diag/dump_inet6_kernel_6_18.bin");
const BAD_FILTER: &[u8] = include_bytes!("fixtures/sock_diag/error_bad_filter_kernel_6_18.bin");
const DUMP_INFO: &[u8] = include_bytes!("fixtures/sock_diag/dump_info_inet_kernel_6_18.bin");

/// Tokens inserted into mutated fixtures: what kernel text (or a hostile writer) may put
/// where a parser expects something else.
const TOKENS: &[&str] = &[
    "max",
    "unlimited",
    "-1",
    "18446744073709551615",
    "18446744073709551616",
    "0x",
    "(",
    ")",
    ") (",
    ":",
    "=",
    " kB",
    "nan",
    "inf",
    "0C",
    "FF",
    "00000000:0000",
    "socket:[",
    "\0",
    "\n",
    "\t",
    "\u{fffd}",
    "some",
    "avg10=",
    "Max open files",
    "[heap]",
    "0::/",
];

const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const SOCK_DIAG_BY_FAMILY: u16 = 20;
const INET_DIAG_CGROUP_ID: u16 = 21;
const NLM_F_MULTI: u16 = 2;

fn cases() -> u32 {
    std::env::var("LEAKWATCH_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(512)
}

fn config_n(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(
            "proptest-regressions/trust_proptest.txt",
        ))),
        ..ProptestConfig::default()
    }
}

fn config() -> ProptestConfig {
    config_n(cases())
}

// ---------------------------------------------------------------- /proc/PID/net/tcp{,6}

/// One generated table row.
#[derive(Debug, Clone)]
struct TcpRow {
    st: u8,
    local: SocketAddr,
    remote: SocketAddr,
    tx: u32,
    rx: u32,
    uid: u32,
    inode: u64,
    /// Printed in the short TIME_WAIT form (`get_timewait4_sock`): no queues, inode 0.
    tw_form: bool,
    extra: Vec<String>,
}

fn v4_addr() -> impl Strategy<Value = Ipv4Addr> {
    prop_oneof![
        any::<[u8; 4]>().prop_map(Ipv4Addr::from),
        Just(Ipv4Addr::LOCALHOST),
        Just(Ipv4Addr::UNSPECIFIED),
    ]
}

fn v6_addr() -> impl Strategy<Value = Ipv6Addr> {
    prop_oneof![
        any::<[u8; 16]>().prop_map(Ipv6Addr::from),
        v4_addr().prop_map(|a| a.to_ipv6_mapped()),
        Just(Ipv6Addr::LOCALHOST),
        Just(Ipv6Addr::UNSPECIFIED),
    ]
}

/// Every known state, 0 and states this build does not know (0x0C NEW_SYN_RECV on up).
fn tcp_state() -> impl Strategy<Value = u8> {
    prop_oneof![8 => 1u8..=11, 1 => Just(0u8), 2 => 12u8..=255]
}

fn tcp_row(v6: bool) -> impl Strategy<Value = TcpRow> {
    let addr = if v6 {
        v6_addr().prop_map(IpAddr::V6).boxed()
    } else {
        v4_addr().prop_map(IpAddr::V4).boxed()
    };
    (
        tcp_state(),
        (addr.clone(), any::<u16>()),
        (addr, any::<u16>()),
        (any::<u32>(), any::<u32>(), any::<u32>()),
        prop_oneof![any::<u32>().prop_map(u64::from), any::<u64>()],
        prop::bool::weighted(0.1),
        prop::collection::vec("[0-9A-Za-z:>-]{1,12}", 0..3),
    )
        .prop_map(
            |(st, (lip, lport), (rip, rport), (tx, rx, uid), inode, tw, extra)| {
                let tw_form = tw || st == 6;
                TcpRow {
                    st,
                    local: SocketAddr::new(lip, lport),
                    remote: SocketAddr::new(rip, rport),
                    tx: if tw_form { 0 } else { tx },
                    rx: if tw_form { 0 } else { rx },
                    uid: if tw_form { 0 } else { uid },
                    inode: if tw_form { 0 } else { inode },
                    tw_form,
                    extra,
                }
            },
        )
}

/// The kernel's `%08X` of each network-order 32-bit word, as the host reads it.
fn hex_ip(ip: IpAddr) -> String {
    let octets: Vec<u8> = match ip {
        IpAddr::V4(a) => a.octets().to_vec(),
        IpAddr::V6(a) => a.octets().to_vec(),
    };
    octets
        .chunks_exact(4)
        .map(|w| format!("{:08X}", u32::from_ne_bytes([w[0], w[1], w[2], w[3]])))
        .collect()
}

const TCP4_HEADER: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode";
const TCP6_HEADER: &str = "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode";

/// A table as `tcp4_seq_show`/`tcp6_seq_show` print it (v4 lines padded to 149 columns).
fn render_tcp(rows: &[TcpRow], v6: bool) -> String {
    let pad = |s: String| {
        if v6 {
            s + "\n"
        } else {
            format!("{s:<149}\n")
        }
    };
    let mut out = pad(if v6 { TCP6_HEADER } else { TCP4_HEADER }.to_string());
    for (i, r) in rows.iter().enumerate() {
        let head = format!(
            "{i:4}: {}:{:04X} {}:{:04X} {:02X}",
            hex_ip(r.local.ip()),
            r.local.port(),
            hex_ip(r.remote.ip()),
            r.remote.port(),
            r.st
        );
        let mut line = if r.tw_form {
            format!(
                "{head} {:08X}:{:08X} {:02X}:{:08X} {:08X} {:5} {:8} {} {} {:016x}",
                0, 0, 3, 1234, 0, 0, 0, 0, 1, 0
            )
        } else {
            format!(
                "{head} {:08X}:{:08X} {:02X}:{:08X} {:08X} {:5} {:8} {} {} {:016x} {} {} {} {} {}",
                r.tx, r.rx, 0, 0, 0, r.uid, 0, r.inode, 1, 0, 20, 4, 30, 10, -1
            )
        };
        for e in &r.extra {
            line.push(' ');
            line.push_str(e);
        }
        out.push_str(&pad(line));
    }
    out
}

fn canonical(a: SocketAddr) -> SocketAddr {
    match a.ip() {
        IpAddr::V6(v6) => SocketAddr::new(v6.to_canonical(), a.port()),
        IpAddr::V4(_) => a,
    }
}

fn expected_socket(r: &TcpRow) -> TcpSocket {
    TcpSocket {
        state: TcpState::from_kernel(r.st),
        local: canonical(r.local),
        remote: canonical(r.remote),
        recv_queue_bytes: u64::from(r.rx),
        send_queue_bytes: u64::from(r.tx),
        inode: r.inode,
    }
}

/// The top-peer lists, computed the plain way: inbound when the local port is one of the
/// LISTEN ports, most sockets first, ties by peer.
fn model_peers(rows: &[TcpSocket], state: TcpState) -> Vec<PeerCount> {
    let listen: BTreeSet<u16> = rows
        .iter()
        .filter(|s| s.state == TcpState::Listen)
        .map(|s| s.local.port())
        .collect();
    let mut peers: HashMap<Peer, PeerCount> = HashMap::new();
    for s in rows.iter().filter(|s| s.state == state) {
        let inbound = listen.contains(&s.local.port());
        let peer = Peer {
            ip: s.remote.ip(),
            port: if inbound {
                s.local.port()
            } else {
                s.remote.port()
            },
            inbound,
        };
        let c = peers.entry(peer).or_insert(PeerCount {
            peer,
            sockets: 0,
            recv_queue_bytes: 0,
            send_queue_bytes: 0,
        });
        c.sockets += 1;
        c.recv_queue_bytes += s.recv_queue_bytes;
        c.send_queue_bytes += s.send_queue_bytes;
    }
    let mut v: Vec<PeerCount> = peers.into_values().collect();
    v.sort_by(|a, b| b.sockets.cmp(&a.sockets).then(a.peer.cmp(&b.peer)));
    v
}

proptest! {
    #![proptest_config(config())]

    /// Rows of `net/tcp` and `net/tcp6` in the kernel's format (every state, unknown
    /// states, TIME_WAIT's short form, extra trailing columns) come back exactly, in order;
    /// the summary counts each state, sums the queues and ranks peers as a plain model does.
    #[test]
    fn net_tcp_round_trip(
        v4 in prop::collection::vec(tcp_row(false), 0..24),
        v6 in prop::collection::vec(tcp_row(true), 0..24),
        other_fds in 0u64..50,
        top_k in 1usize..6,
    ) {
        let t4 = parse_net_tcp(&render_tcp(&v4, false));
        let t6 = parse_net_tcp(&render_tcp(&v6, true));
        prop_assert_eq!(t4.unparsed_lines + t6.unparsed_lines, 0);
        let want4: Vec<TcpSocket> = v4.iter().map(expected_socket).collect();
        let want6: Vec<TcpSocket> = v6.iter().map(expected_socket).collect();
        prop_assert_eq!(&t4.sockets, &want4);
        prop_assert_eq!(&t6.sockets, &want6);

        let mut both = t4;
        both.sockets.extend(t6.sockets);
        let all: Vec<TcpSocket> = want4.into_iter().chain(want6).collect();
        let fds = all.len() as u64 + other_fds;
        let tcp = summarize(&both, TcpTable::ProcNet, fds, usize::MAX);
        let mut states = TcpStates::default();
        for r in v4.iter().chain(&v6) {
            states.add(TcpState::from_kernel(r.st));
        }
        prop_assert_eq!(&tcp.states, &states);
        prop_assert_eq!(tcp.states.total(), all.len() as u64);
        for st in 1..=11u8 {
            let n = v4.iter().chain(&v6).filter(|r| r.st == st).count() as u64;
            prop_assert_eq!(tcp.states.get(TcpState::from_kernel(st)), n);
        }
        let unknown = v4.iter().chain(&v6).filter(|r| r.st == 0 || r.st > 11).count();
        prop_assert_eq!(tcp.states.unknown, unknown as u64);
        prop_assert_eq!(tcp.recv_queue_bytes, all.iter().map(|s| s.recv_queue_bytes).sum::<u64>());
        prop_assert_eq!(tcp.send_queue_bytes, all.iter().map(|s| s.send_queue_bytes).sum::<u64>());
        prop_assert_eq!(tcp.other_sockets, other_fds);
        prop_assert_eq!(&tcp.top_close_wait_peers, &model_peers(&all, TcpState::CloseWait));
        prop_assert_eq!(&tcp.top_established_peers, &model_peers(&all, TcpState::Established));
        // Top-K is the head of the full ranking.
        let short = summarize(&both, TcpTable::ProcNet, fds, top_k);
        let head: Vec<PeerCount> = tcp.top_established_peers.iter().take(top_k).cloned().collect();
        prop_assert_eq!(short.top_established_peers, head);
    }
}

// ---------------------------------------------------------------- /proc/PID/status

#[derive(Debug, Clone)]
struct StatusGen {
    name: String,
    state: char,
    uids: [u32; 4],
    threads: u64,
    /// VmPeak, VmSize, VmHWM, VmRSS, RssAnon, RssFile, RssShmem, VmSwap, in kB; `None`
    /// drops the line (kernel threads and zombies have none of them).
    mem: [Option<u64>; 8],
    ctxt: (u64, u64),
}

fn kb() -> impl Strategy<Value = Option<u64>> {
    prop_oneof![
        1 => Just(None),
        6 => (0u64..1 << 34).prop_map(Some),
        1 => (0u64..=u64::MAX / 1024).prop_map(Some),
    ]
}

fn status_gen() -> impl Strategy<Value = StatusGen> {
    (
        "[a-z0-9_.-]{1,15}",
        prop::sample::select(vec!['R', 'S', 'D', 'T', 't', 'Z', 'X', 'I']),
        any::<[u32; 4]>(),
        1u64..=u64::from(u32::MAX),
        [kb(), kb(), kb(), kb(), kb(), kb(), kb(), kb()],
        (any::<u64>(), any::<u64>()),
    )
        .prop_map(|(name, state, uids, threads, mem, ctxt)| StatusGen {
            name,
            state,
            uids,
            threads,
            mem,
            ctxt,
        })
}

/// `proc_pid_status` (fs/proc/array.c, task_mem in fs/proc/task_mmu.c): `Key:\tvalue`, kB
/// values right-aligned in 8 columns.
fn render_status(s: &StatusGen) -> String {
    let kb_line = |key: &str, v: Option<u64>| match v {
        Some(v) => format!("{key}:\t{v:8} kB\n"),
        None => String::new(),
    };
    let [peak, size, hwm, rss, anon, file, shmem, swap] = s.mem;
    let [ru, eu, su, fu] = s.uids;
    let mut t = format!(
        "Name:\t{}\nUmask:\t0022\nState:\t{} (sleeping)\nTgid:\t77\nNgid:\t0\nPid:\t77\n\
         PPid:\t1\nTracerPid:\t0\nUid:\t{ru}\t{eu}\t{su}\t{fu}\nGid:\t0\t0\t0\t0\n\
         FDSize:\t256\nGroups:\t \nNStgid:\t77\nNSpid:\t77\nNSpgid:\t77\nNSsid:\t77\n\
         Kthread:\t0\n",
        s.name, s.state
    );
    t += &kb_line("VmPeak", peak);
    t += &kb_line("VmSize", size);
    t += &kb_line("VmLck", peak.map(|_| 0));
    t += &kb_line("VmPin", peak.map(|_| 0));
    t += &kb_line("VmHWM", hwm);
    t += &kb_line("VmRSS", rss);
    t += &kb_line("RssAnon", anon);
    t += &kb_line("RssFile", file);
    t += &kb_line("RssShmem", shmem);
    t += &kb_line("VmData", peak.map(|_| 224));
    t += &kb_line("VmStk", peak.map(|_| 132));
    t += &kb_line("VmExe", peak.map(|_| 20));
    t += &kb_line("VmLib", peak.map(|_| 1528));
    t += &kb_line("VmPTE", peak.map(|_| 48));
    t += &kb_line("VmSwap", swap);
    t += &kb_line("HugetlbPages", peak.map(|_| 0));
    t += &format!(
        "CoreDumping:\t0\nTHP_enabled:\t1\nuntag_mask:\t0xffffffffffffffff\nThreads:\t{}\n\
         SigQ:\t0/96365\nSigPnd:\t0000000000000000\nShdPnd:\t0000000000000000\n\
         Cpus_allowed_list:\t0-1\nMems_allowed_list:\t0\n\
         voluntary_ctxt_switches:\t{}\nnonvoluntary_ctxt_switches:\t{}\n",
        s.threads, s.ctxt.0, s.ctxt.1
    );
    t
}

// ---------------------------------------------------------------- /proc/PID/stat

/// A `comm` of at most 15 bytes (TASK_COMM_LEN - 1), spaces and parentheses welcome.
fn comm() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop_oneof![
            4 => prop::char::range('a', 'z'),
            2 => Just(' '),
            2 => Just('('),
            2 => Just(')'),
            1 => prop::sample::select(vec!['\t', '\n', ':', '0', '9', '-', 'é', '\u{fffd}']),
        ],
        0..16,
    )
    .prop_map(|chars| {
        let mut s = String::new();
        for c in chars {
            if s.len() + c.len_utf8() > 15 {
                break;
            }
            s.push(c);
        }
        s
    })
}

/// `do_task_stat` (fs/proc/array.c): 52 fields, `comm` unescaped between parentheses.
fn render_stat(s: &Stat, nice: i32) -> String {
    format!(
        "{} ({}) {} {} {} {} 0 -1 4194304 130 0 0 0 3 1 0 0 {} {nice} {} 0 {} 2990080 380 \
         18446744073709551615 94196271476736 94196271494665 140720921584176 0 0 0 0 6 0 1 0 0 \
         17 1 0 0 0 0 0 94196271508752 94196271510016 94197221208064 140720921586386 \
         140720921586406 140720921586406 140720921587688 0\n",
        s.pid,
        s.comm,
        s.state,
        s.ppid,
        s.pid,
        s.pid,
        20 + nice,
        s.num_threads,
        s.starttime_ticks
    )
}

// ---------------------------------------------------------------- /proc/PID/limits

/// `proc_pid_limits` (fs/proc/base.c): `%-25s %-20s %-20s %-10s`, `unlimited` for
/// RLIM_INFINITY.
fn render_limits(values: &[(Option<u64>, Option<u64>)]) -> String {
    const ROWS: [(&str, &str); 16] = [
        ("Max cpu time", "seconds"),
        ("Max file size", "bytes"),
        ("Max data size", "bytes"),
        ("Max stack size", "bytes"),
        ("Max core file size", "bytes"),
        ("Max resident set", "bytes"),
        ("Max processes", "processes"),
        ("Max open files", "files"),
        ("Max locked memory", "bytes"),
        ("Max address space", "bytes"),
        ("Max file locks", "locks"),
        ("Max pending signals", "signals"),
        ("Max msgqueue size", "bytes"),
        ("Max nice priority", ""),
        ("Max realtime priority", ""),
        ("Max realtime timeout", "us"),
    ];
    let word = |v: Option<u64>| v.map_or("unlimited".to_string(), |n| n.to_string());
    let mut t = format!(
        "{:<25} {:<20} {:<20} {:<10}\n",
        "Limit", "Soft Limit", "Hard Limit", "Units"
    );
    for ((name, unit), (soft, hard)) in ROWS.iter().zip(values) {
        t += &format!("{name:<25} {:<20} {:<20} ", word(*soft), word(*hard));
        if unit.is_empty() {
            t += "\n";
        } else {
            t += &format!("{unit:<10}\n");
        }
    }
    t
}

fn rlimit() -> impl Strategy<Value = Option<u64>> {
    prop_oneof![
        Just(None),
        (0u64..1 << 20).prop_map(Some),
        (0u64..u64::MAX).prop_map(Some),
    ]
}

fn limit_of(v: Option<u64>) -> Limit {
    v.map_or(Limit::Unlimited, Limit::Limited)
}

proptest! {
    #![proptest_config(config())]

    /// Every field leakwatch reads from `status`, in kB or not, present or absent (absent
    /// is unknown, never 0).
    #[test]
    fn status_round_trip(g in status_gen()) {
        let s = parse_status(&render_status(&g));
        let bytes = |v: Option<u64>| v.map(|v| v * 1024);
        let [_peak, size, hwm, rss, anon, file, shmem, swap] = g.mem;
        prop_assert_eq!(s.name.as_deref(), Some(g.name.as_str()));
        prop_assert_eq!(s.state, Some(g.state));
        prop_assert_eq!(s.uid, Some(g.uids[0]));
        prop_assert_eq!(s.threads, Some(g.threads));
        prop_assert_eq!(s.memory.rss_bytes, bytes(rss));
        prop_assert_eq!(s.memory.anon_bytes, bytes(anon));
        prop_assert_eq!(s.memory.file_bytes, bytes(file));
        prop_assert_eq!(s.memory.shmem_bytes, bytes(shmem));
        prop_assert_eq!(s.memory.swap_bytes, bytes(swap));
        prop_assert_eq!(s.memory.peak_rss_bytes, bytes(hwm));
        prop_assert_eq!(s.memory.virtual_bytes, bytes(size));
        prop_assert_eq!(s.voluntary_ctxt_switches, Some(g.ctxt.0));
        prop_assert_eq!(s.nonvoluntary_ctxt_switches, Some(g.ctxt.1));
    }

    /// `stat` with any `comm` (spaces, parentheses, tabs, newlines): pid, comm, state,
    /// ppid, threads and starttime all recovered.
    #[test]
    fn stat_round_trip(
        pid in 1i32..=4_194_304,
        comm in comm(),
        state in prop::sample::select(vec!['R', 'S', 'D', 'T', 't', 'Z', 'X', 'I', 'P']),
        ppid in 0i32..=4_194_304,
        num_threads in 1u64..=u64::from(u32::MAX),
        starttime_ticks in any::<u64>(),
        nice in -20i32..=19,
    ) {
        let want = Stat { pid, comm, state, ppid, num_threads, starttime_ticks };
        let text = render_stat(&want, nice);
        prop_assert_eq!(parse_stat(&text), Ok(want));
    }

    /// `Max open files` among all sixteen rows, numbers and `unlimited`.
    #[test]
    fn limits_round_trip(values in prop::collection::vec((rlimit(), rlimit()), 16)) {
        let (soft, hard) = values[7];
        let got = parse_nofile(&render_limits(&values));
        prop_assert_eq!(got, Ok(FdLimit { soft: limit_of(soft), hard: limit_of(hard) }));
    }
}

// ---------------------------------------------------------------- cgroup files

fn cgroup_path() -> impl Strategy<Value = String> {
    prop::collection::vec("[a-zA-Z0-9_.:@ -]{1,12}", 0..4).prop_map(|segs| {
        let mut p = String::from("/");
        p += &segs.join("/");
        p
    })
}

fn pressure_avg() -> impl Strategy<Value = (u64, u64)> {
    (0u64..=100, 0u64..100)
}

type PsiLine = ((u64, u64), (u64, u64), (u64, u64), u64);

fn psi_line() -> impl Strategy<Value = PsiLine> {
    (pressure_avg(), pressure_avg(), pressure_avg(), any::<u64>())
}

/// `psi_show` (kernel/sched/psi.c): `avg10=%lu.%02lu`.
fn render_psi(kind: &str, l: &PsiLine) -> String {
    let ((a, b), (c, d), (e, f), total) = *l;
    format!("{kind} avg10={a}.{b:02} avg60={c}.{d:02} avg300={e}.{f:02} total={total}\n")
}

fn hundredths(x: f64) -> u64 {
    (x * 100.0).round() as u64
}

proptest! {
    #![proptest_config(config())]

    /// Flat keyed files (`memory.stat`, `memory.events`, v1 `oom_control`): `%s %llu`.
    #[test]
    fn flat_keyed_round_trip(
        map in prop::collection::btree_map("[a-z][a-z0-9_]{0,24}", any::<u64>(), 0..40),
    ) {
        let text: String = map.iter().map(|(k, v)| format!("{k} {v}\n")).collect();
        let got: BTreeMap<String, u64> =
            flat_keyed(&text).into_iter().map(|(k, v)| (k.to_string(), v)).collect();
        prop_assert_eq!(got, map);
    }

    /// Single values and limits: a number, or `max`.
    #[test]
    fn single_values_and_max(n in any::<u64>()) {
        let text = format!("{n}\n");
        prop_assert_eq!(parse_u64(&text), Ok(n));
        prop_assert_eq!(parse_limit(&text), Ok(Limit::Limited(n)));
        prop_assert_eq!(parse_limit("max\n"), Ok(Limit::Unlimited));
        prop_assert!(parse_u64("max\n").is_err());
    }

    /// PSI: `some` and an optional `full` line, to the hundredth.
    #[test]
    fn pressure_round_trip(some in psi_line(), full in prop::option::of(psi_line())) {
        let mut text = render_psi("some", &some);
        if let Some(f) = &full {
            text += &render_psi("full", f);
        }
        let p = parse_pressure(&text).map_err(TestCaseError::fail)?;
        let check = |got: &leakwatch::sample::PressureLine, want: &PsiLine| {
            let ((a, b), (c, d), (e, f), total) = *want;
            hundredths(got.avg10) == a * 100 + b
                && hundredths(got.avg60) == c * 100 + d
                && hundredths(got.avg300) == e * 100 + f
                && got.total_us == total
        };
        prop_assert!(check(&p.some, &some), "{:?} vs {:?}", p.some, some);
        prop_assert_eq!(p.full.is_some(), full.is_some());
        if let (Some(got), Some(want)) = (&p.full, &full) {
            prop_assert!(check(got, want), "{:?} vs {:?}", got, want);
        }
    }

    /// `/proc/PID/cgroup`: v1 hierarchies in order and the `0::` line; paths may hold
    /// colons and spaces.
    #[test]
    fn proc_cgroup_round_trip(
        v1 in prop::collection::vec(
            (
                1u32..=16,
                prop::collection::vec(
                    prop::sample::select(vec![
                        "memory", "cpu", "cpuacct", "pids", "blkio", "net_cls", "name=systemd",
                    ]),
                    1..3,
                ),
                cgroup_path(),
            ),
            0..6,
        ),
        v2 in prop::option::of(cgroup_path()),
    ) {
        let mut text = String::new();
        for (id, controllers, path) in &v1 {
            text += &format!("{id}:{}:{path}\n", controllers.join(","));
        }
        if let Some(p) = &v2 {
            text += &format!("0::{p}\n");
        }
        let want = ProcCgroup {
            v2: v2.clone(),
            v1: v1
                .iter()
                .map(|(id, c, path)| V1Hierarchy {
                    id: *id,
                    controllers: c.iter().map(|s| s.to_string()).collect(),
                    path: path.clone(),
                })
                .collect(),
        };
        prop_assert_eq!(parse_proc_cgroup(&text), want);
    }
}

// ---------------------------------------------------------------- config quantities

const UNITS: &[(&str, f64)] = &[
    ("", 1.0),
    ("B", 1.0),
    ("k", 1e3),
    ("K", 1e3),
    ("kB", 1e3),
    ("KB", 1e3),
    ("M", 1e6),
    ("MB", 1e6),
    ("G", 1e9),
    ("GB", 1e9),
    ("T", 1e12),
    ("TB", 1e12),
    ("Ki", 1024.0),
    ("KiB", 1024.0),
    ("Mi", 1048576.0),
    ("MiB", 1048576.0),
    ("Gi", 1073741824.0),
    ("GiB", 1073741824.0),
    ("Ti", 1099511627776.0),
    ("TiB", 1099511627776.0),
];

const PER: &[(&str, f64)] = &[
    ("s", 1.0),
    ("sec", 1.0),
    ("second", 1.0),
    ("m", 60.0),
    ("min", 60.0),
    ("minute", 60.0),
    ("h", 3600.0),
    ("hour", 3600.0),
    ("d", 86400.0),
    ("day", 86400.0),
];

/// A non-negative number as a config writes it: an integer or a decimal.
fn amount() -> impl Strategy<Value = f64> {
    prop_oneof![
        (0u64..1 << 40).prop_map(|n| n as f64),
        (0u64..1_000_000, 0u32..4).prop_map(|(n, k)| n as f64 / 10f64.powi(k as i32)),
        0.0f64..1e12,
    ]
}

proptest! {
    #![proptest_config(config())]

    /// `"1.5GiB"`, `"512 Mi"`, `"200"`: the number times the unit's power of 1000 or 1024.
    #[test]
    fn quantity_round_trip(
        n in amount(),
        unit in prop::sample::select(UNITS),
        space in prop::sample::select(vec!["", " "]),
    ) {
        let text = format!("{n}{space}{}", unit.0);
        prop_assert_eq!(parse_quantity(&text), Ok(n * unit.1), "{:?}", text);
    }

    /// `"5MiB/min"`, `"10/h"`: per second; a rate of 0 is refused.
    #[test]
    fn rate_round_trip(
        n in amount(),
        unit in prop::sample::select(UNITS),
        per in prop::sample::select(PER),
    ) {
        let text = format!("{n}{}/{}", unit.0, per.0);
        let got = parse_rate(&text).map(|r| r.per_second);
        if n * unit.1 > 0.0 {
            prop_assert_eq!(got, Ok(n * unit.1 / per.1), "{:?}", text);
        } else {
            prop_assert!(got.is_err(), "{:?}", text);
        }
    }

    /// Whatever the text, a quantity or rate that parses is a finite number of at least 0:
    /// never infinity from a number too long for an f64.
    #[test]
    fn quantity_and_rate_are_finite(
        digits in "[0-9]{1,400}(\\.[0-9]{0,6})?",
        unit in prop::sample::select(UNITS),
        per in prop::sample::select(PER),
    ) {
        let q = format!("{digits}{}", unit.0);
        if let Ok(v) = parse_quantity(&q) {
            prop_assert!(v.is_finite() && v >= 0.0, "{:?} -> {}", q, v);
        }
        let r = format!("{q}/{}", per.0);
        if let Ok(rate) = parse_rate(&r) {
            prop_assert!(rate.per_second.is_finite() && rate.per_second > 0.0, "{:?} -> {:?}", r, rate);
        }
    }
}

// ---------------------------------------------------------------- sock_diag

#[derive(Debug, Clone)]
struct DiagGen {
    v6: bool,
    state: u8,
    src: IpAddr,
    dst: IpAddr,
    sport: u16,
    dport: u16,
    rqueue: u32,
    wqueue: u32,
    uid: u32,
    inode: u32,
    cgroup: Option<u64>,
    /// Other attributes (kind, payload), before and after the cgroup id.
    attrs: Vec<(u16, Vec<u8>)>,
    /// Where the cgroup id goes among `attrs`.
    cgroup_at: usize,
}

fn diag_socket() -> impl Strategy<Value = DiagGen> {
    let attr = (
        prop_oneof![1u16..21, 22u16..40],
        prop::collection::vec(any::<u8>(), 0..13),
    );
    (
        any::<bool>(),
        any::<u8>(),
        (v4_addr(), v4_addr(), v6_addr(), v6_addr()),
        (any::<u16>(), any::<u16>()),
        (any::<u32>(), any::<u32>(), any::<u32>(), any::<u32>()),
        prop::option::of(any::<u64>()),
        prop::collection::vec(attr, 0..4),
        any::<usize>(),
    )
        .prop_map(
            |(
                v6,
                state,
                (s4, d4, s6, d6),
                (sport, dport),
                (rq, wq, uid, inode),
                cgroup,
                attrs,
                at,
            )| {
                DiagGen {
                    v6,
                    state,
                    src: if v6 { IpAddr::V6(s6) } else { IpAddr::V4(s4) },
                    dst: if v6 { IpAddr::V6(d6) } else { IpAddr::V4(d4) },
                    sport,
                    dport,
                    rqueue: rq,
                    wqueue: wq,
                    uid,
                    inode,
                    cgroup,
                    attrs,
                    cgroup_at: at,
                }
            },
        )
}

fn nlmsg(kind: u16, flags: u16, seq: u32, body: &[u8]) -> Vec<u8> {
    let len = 16 + body.len();
    let mut m = Vec::with_capacity(len + 3);
    m.extend_from_slice(&(len as u32).to_ne_bytes());
    m.extend_from_slice(&kind.to_ne_bytes());
    m.extend_from_slice(&flags.to_ne_bytes());
    m.extend_from_slice(&seq.to_ne_bytes());
    m.extend_from_slice(&4242u32.to_ne_bytes());
    m.extend_from_slice(body);
    while m.len() % 4 != 0 {
        m.push(0);
    }
    m
}

fn rtattr(kind: u16, payload: &[u8]) -> Vec<u8> {
    let mut a = Vec::new();
    a.extend_from_slice(&(4 + payload.len() as u16).to_ne_bytes());
    a.extend_from_slice(&kind.to_ne_bytes());
    a.extend_from_slice(payload);
    while a.len() % 4 != 0 {
        a.push(0);
    }
    a
}

fn addr16(ip: IpAddr) -> [u8; 16] {
    match ip {
        IpAddr::V4(a) => {
            let mut b = [0u8; 16];
            b[..4].copy_from_slice(&a.octets());
            b
        }
        IpAddr::V6(a) => a.octets(),
    }
}

/// `inet_sk_diag_fill` (net/ipv4/inet_diag.c): `struct inet_diag_msg` then attributes.
fn render_diag(g: &DiagGen) -> Vec<u8> {
    let mut b = Vec::with_capacity(128);
    let family = if g.v6 { libc::AF_INET6 } else { libc::AF_INET } as u8;
    b.extend_from_slice(&[family, g.state, 0, 0]);
    b.extend_from_slice(&g.sport.to_be_bytes());
    b.extend_from_slice(&g.dport.to_be_bytes());
    b.extend_from_slice(&addr16(g.src));
    b.extend_from_slice(&addr16(g.dst));
    b.extend_from_slice(&1u32.to_ne_bytes()); // if
    b.extend_from_slice(&[0xab; 8]); // cookie
    b.extend_from_slice(&0u32.to_ne_bytes()); // expires
    b.extend_from_slice(&g.rqueue.to_ne_bytes());
    b.extend_from_slice(&g.wqueue.to_ne_bytes());
    b.extend_from_slice(&g.uid.to_ne_bytes());
    b.extend_from_slice(&g.inode.to_ne_bytes());
    assert_eq!(b.len(), 72);
    let at = g.cgroup_at % (g.attrs.len() + 1);
    for (i, (kind, payload)) in g.attrs.iter().enumerate() {
        if i == at {
            if let Some(id) = g.cgroup {
                b.extend(rtattr(INET_DIAG_CGROUP_ID, &id.to_ne_bytes()));
            }
        }
        b.extend(rtattr(*kind, payload));
    }
    if at == g.attrs.len() {
        if let Some(id) = g.cgroup {
            b.extend(rtattr(INET_DIAG_CGROUP_ID, &id.to_ne_bytes()));
        }
    }
    b
}

fn expected_diag(g: &DiagGen) -> (TcpSocket, Option<u64>) {
    let state = TcpState::from_kernel(g.state);
    let s = TcpSocket {
        state,
        local: canonical(SocketAddr::new(g.src, g.sport)),
        remote: canonical(SocketAddr::new(g.dst, g.dport)),
        recv_queue_bytes: u64::from(g.rqueue),
        send_queue_bytes: if state == TcpState::Listen {
            0
        } else {
            u64::from(g.wqueue)
        },
        inode: u64::from(g.inode),
    };
    (s, g.cgroup)
}

/// How a generated reply ends.
#[derive(Debug, Clone)]
enum End {
    /// `NLMSG_DONE`: the dump is complete.
    Done,
    /// No end yet: more to read.
    More,
    /// `NLMSG_ERROR` with this errno, echoing the request.
    Error(i32),
}

/// A message of a type the parser skips (NOOP, OVERRUN, other types), or an ACK
/// (`NLMSG_ERROR` with error 0).
fn noise() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        (
            prop_oneof![Just(1u16), Just(4u16), 16u16..20, 21u16..64],
            prop::collection::vec(any::<u8>(), 0..40)
        )
            .prop_map(|(kind, body)| nlmsg(kind, 0, 1, &body)),
        Just(nlmsg(NLMSG_ERROR, 0x100, 1, &[0u8; 20])),
    ]
}

proptest! {
    #![proptest_config(config())]

    /// A dump reply of generated sockets (v4 and v6, any state, the cgroup id among other
    /// attributes or absent, skipped messages between them), split into `recv` buffers at
    /// message boundaries: every socket comes back exactly and in order, each buffer but
    /// the last says "more", and the end is the generated one (done, more, or the kernel's
    /// errno).
    #[test]
    fn sock_diag_round_trip(
        items in prop::collection::vec(
            prop_oneof![6 => diag_socket().prop_map(Ok), 1 => noise().prop_map(Err)],
            0..20,
        ),
        end in prop_oneof![Just(End::Done), Just(End::More), (1i32..4096).prop_map(End::Error)],
        cuts in prop::collection::vec(any::<Index>(), 0..4),
    ) {
        let mut msgs: Vec<Vec<u8>> = Vec::new();
        let mut want = Vec::new();
        for item in &items {
            match item {
                Ok(g) => {
                    msgs.push(nlmsg(SOCK_DIAG_BY_FAMILY, NLM_F_MULTI, 1, &render_diag(g)));
                    want.push(expected_diag(g));
                }
                Err(m) => msgs.push(m.clone()),
            }
        }
        match &end {
            End::Done => msgs.push(nlmsg(NLMSG_DONE, NLM_F_MULTI, 1, &0i32.to_ne_bytes())),
            End::More => {}
            End::Error(errno) => {
                let mut body = (-errno).to_ne_bytes().to_vec();
                let what = DumpOf { family: libc::AF_INET as u8, states: FD_STATES, ext: EXT_INFO };
                body.extend(dump_request(what, &[7, 8], 1));
                msgs.push(nlmsg(NLMSG_ERROR, 0, 1, &body));
            }
        }
        // Split into recv buffers at message boundaries.
        let mut bounds: BTreeSet<usize> =
            cuts.iter().map(|c| c.index(msgs.len() + 1)).collect();
        bounds.insert(0);
        bounds.insert(msgs.len());
        let bounds: Vec<usize> = bounds.into_iter().collect();
        let mut got = Vec::new();
        let mut last = None;
        for (i, w) in bounds.windows(2).enumerate() {
            let buf: Vec<u8> = msgs[w[0]..w[1]].concat();
            let r = parse_dump(&buf, &mut |d| got.push((d.socket, d.cgroup_id)));
            if i + 2 < bounds.len() {
                prop_assert!(matches!(r, Ok(Progress::More)), "buffer {} of {}: {:?}", i, bounds.len() - 1, r);
            } else {
                last = Some(r);
            }
        }
        if bounds.len() == 1 {
            last = Some(parse_dump(&[], &mut |_| {}));
        }
        prop_assert_eq!(&got, &want);
        match (end, last) {
            (End::Done, Some(Ok(Progress::Done))) | (End::More, Some(Ok(Progress::More))) => {}
            (End::Error(errno), Some(Err(DiagError::Kernel(e)))) => {
                prop_assert_eq!(e.raw_os_error(), Some(errno));
            }
            (end, last) => prop_assert!(false, "end {:?}, parsed {:?}", end, last),
        }
    }
}

// ---------------------------------------------------------------- getdents64 records

/// `getdents64` of `dir` into buffers of `bufsize` bytes: the kernel's records, one
/// buffer per call.
fn getdents(dir: &Path, bufsize: usize) -> Vec<Vec<u8>> {
    let f = std::fs::File::open(dir).expect("open the directory");
    let fd = std::os::fd::AsRawFd::as_raw_fd(&f);
    let mut out = Vec::new();
    let mut buf = vec![0u8; bufsize];
    loop {
        // SAFETY: `buf` is writable for its length.
        let n = unsafe { libc::syscall(libc::SYS_getdents64, fd, buf.as_mut_ptr(), buf.len()) };
        assert!(n >= 0, "getdents64: {}", std::io::Error::last_os_error());
        if n == 0 {
            return out;
        }
        out.push(buf[..n as usize].to_vec());
    }
}

/// `struct linux_dirent64`, 8-byte aligned as the kernel lays it out, `pad` more 8-byte
/// words after the name; without its NUL, the name fills the record.
fn dirent(name: &[u8], ino: u64, kind: u8, pad: usize, nul: bool) -> Vec<u8> {
    let len = (19 + name.len() + 1).div_ceil(8) * 8 + 8 * pad;
    let mut r = vec![0u8; len];
    r[..8].copy_from_slice(&ino.to_ne_bytes());
    r[8..16].copy_from_slice(&(len as i64).to_ne_bytes());
    r[16..18].copy_from_slice(&(len as u16).to_ne_bytes());
    r[18] = kind;
    r[19..19 + name.len()].copy_from_slice(name);
    if !nul {
        r[19 + name.len()..].fill(b'x');
    }
    r
}

/// Any bytes but NUL and `/`, 1 to 255 of them, never `.` or `..` (mapped, not filtered:
/// a filter's rejects add up over a long run).
fn file_name() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(
        prop_oneof![
            4 => (1u8..=254).prop_map(|b| if b == b'/' { 255 } else { b }),
            2 => prop::sample::select(b"0123456789".to_vec()),
        ],
        1..=255,
    )
    .prop_map(|mut n| {
        if n == b"." || n == b".." {
            n.push(b'x');
        }
        n
    })
}

proptest! {
    #![proptest_config(config())]

    /// Records laid out as the kernel does (any name bytes but NUL, up to 255; padding
    /// after the NUL): every name comes back, in order; a record without its NUL is
    /// skipped, never read past.
    #[test]
    fn dirent_records_round_trip(
        recs in prop::collection::vec(
            (prop::collection::vec(1u8..=255, 0..=255), any::<u64>(), any::<u8>(), 0usize..3, prop::bool::weighted(0.9)),
            0..30,
        ),
    ) {
        let mut buf = Vec::new();
        let mut want: Vec<Vec<u8>> = Vec::new();
        for (name, ino, kind, pad, nul) in &recs {
            buf.extend(dirent(name, *ino, *kind, *pad, *nul));
            if *nul {
                want.push(name.clone());
            }
        }
        let got: Vec<Vec<u8>> = Dirents(&buf).map(|n| n.to_bytes().to_vec()).collect();
        prop_assert_eq!(got, want);
    }
}

proptest! {
    #![proptest_config(config_n((cases() / 4).max(16)))]

    /// A real directory of generated names (any bytes but NUL and `/`), read by the real
    /// `getdents64` into buffers of a generated size: the parser returns exactly `.`,
    /// `..` and the names.
    #[test]
    fn getdents64_of_a_real_directory(
        names in prop::collection::btree_set(file_name(), 0..40),
        bufsize in 300usize..4096,
    ) {
        let tmp = tempfile::tempdir().map_err(|e| TestCaseError::fail(e.to_string()))?;
        for n in &names {
            std::fs::write(tmp.path().join(OsStr::from_bytes(n)), b"")
                .map_err(|e| TestCaseError::fail(format!("{n:?}: {e}")))?;
        }
        let mut got = BTreeSet::new();
        let mut count = 0;
        for buf in getdents(tmp.path(), bufsize) {
            for name in Dirents(&buf) {
                got.insert(name.to_bytes().to_vec());
                count += 1;
            }
        }
        let mut want = names.clone();
        want.insert(b".".to_vec());
        want.insert(b"..".to_vec());
        prop_assert_eq!(count, want.len());
        prop_assert_eq!(got, want);
    }
}

// ---------------------------------------------------------------- no panic, bounded

fn line_count(t: &str) -> usize {
    t.lines().count()
}

/// Every text parser on `t`: no panic, and what comes out is bounded by what went in.
fn check_text(t: &str) {
    let lines = line_count(t);
    let table = parse_net_tcp(t);
    assert!(table.sockets.len() + table.unparsed_lines as usize <= lines);
    let tcp = summarize(&table, TcpTable::ProcNet, table.sockets.len() as u64 + 3, 5);
    assert!(tcp.top_close_wait_peers.len() <= 5 && tcp.top_established_peers.len() <= 5);
    assert_eq!(tcp.states.total(), table.sockets.len() as u64);
    if let Ok(st) = parse_stat(t) {
        assert!(st.comm.len() <= t.len());
    }
    let _ = parse_btime(t);
    let s = parse_status(t);
    assert!(s.name.map_or(0, |n| n.len()) <= t.len());
    let _ = parse_nofile(t);
    let _ = parse_smaps_rollup(t);
    let h = parse_smaps_heap(t);
    assert!((h.anon_mappings + h.stack_mappings) as usize <= lines);
    let c = parse_proc_cgroup(t);
    assert!(c.v1.len() <= lines);
    let path_bytes: usize =
        c.v1.iter().map(|h| h.path.len()).sum::<usize>() + c.v2.as_ref().map_or(0, |p| p.len());
    assert!(path_bytes <= t.len());
    assert!(flat_keyed(t).len() <= lines);
    let _ = parse_u64(t);
    let _ = parse_limit(t);
    if let Ok(p) = parse_pressure(t) {
        for l in std::iter::once(&p.some).chain(&p.full) {
            for avg in [l.avg10, l.avg60, l.avg300] {
                assert!(avg.is_finite() && avg >= 0.0);
            }
        }
    }
    let _ = parse_syscall(t);
    if let Ok(q) = parse_quantity(t) {
        assert!(q >= 0.0);
    }
    let _ = parse_rate(t);
}

/// Every byte parser on `b` (and the text parsers on its lossy text): no panic, bounded.
fn check_bytes(b: &[u8]) {
    let mut rows = 0usize;
    let _ = parse_dump(b, &mut |_| rows += 1);
    assert!(rows <= b.len() / (16 + 72));
    let mut names = 0usize;
    let mut name_bytes = 0usize;
    for n in Dirents(b) {
        names += 1;
        name_bytes += n.to_bytes().len();
    }
    assert!(names <= b.len() / 20 && name_bytes <= b.len());
    assert!(parse_pollfds(b).len() <= b.len() / 8);
    let _ = classify_link(b);
    assert!(cmdline_text(b).len() <= 3 * b.len());
    check_text(&String::from_utf8_lossy(b));
}

/// One edit of a fixture.
#[derive(Debug, Clone)]
enum Edit {
    Truncate(Index),
    Flip(Index, u8),
    Insert(Index, &'static str),
    Delete(Index, usize),
    Junk(Index, Vec<u8>),
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        1 => any::<Index>().prop_map(Edit::Truncate),
        4 => (any::<Index>(), any::<u8>()).prop_map(|(i, b)| Edit::Flip(i, b)),
        2 => (any::<Index>(), prop::sample::select(TOKENS)).prop_map(|(i, t)| Edit::Insert(i, t)),
        1 => (any::<Index>(), 1usize..64).prop_map(|(i, n)| Edit::Delete(i, n)),
        1 => (any::<Index>(), prop::collection::vec(any::<u8>(), 1..16)).prop_map(|(i, j)| Edit::Junk(i, j)),
    ]
}

fn apply(mut b: Vec<u8>, edits: &[Edit]) -> Vec<u8> {
    for e in edits {
        let at = |i: &Index, b: &Vec<u8>| i.index(b.len() + 1);
        match e {
            Edit::Truncate(i) => {
                let n = at(i, &b);
                b.truncate(n);
            }
            Edit::Flip(i, x) => {
                if !b.is_empty() {
                    let n = i.index(b.len());
                    b[n] ^= x | 1;
                }
            }
            Edit::Insert(i, t) => {
                let n = at(i, &b);
                b.splice(n..n, t.bytes());
            }
            Edit::Delete(i, len) => {
                let n = at(i, &b);
                let end = (n + len).min(b.len());
                b.drain(n..end);
            }
            Edit::Junk(i, j) => {
                let n = at(i, &b);
                b.splice(n..n, j.iter().copied());
            }
        }
    }
    b
}

/// The real `getdents64` records of a fixture directory (the kernel's bytes for this run).
fn real_dirents() -> Vec<u8> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/task");
    getdents(&dir, 32 * 1024).concat()
}

proptest! {
    #![proptest_config(config())]

    /// Arbitrary bytes through every parser.
    #[test]
    fn arbitrary_bytes_never_panic(b in prop::collection::vec(any::<u8>(), 0..2048)) {
        check_bytes(&b);
    }

    /// Arbitrary text made of the pieces kernel text is made of.
    #[test]
    fn arbitrary_token_text_never_panics(
        parts in prop::collection::vec(
            prop_oneof![
                prop::sample::select(TOKENS).prop_map(str::to_string),
                "[0-9A-Fa-f]{1,20}",
                "[ \t\n:()=./]{1,3}",
            ],
            0..80,
        ),
    ) {
        check_text(&parts.concat());
    }

    /// Mutated real kernel text (byte flips, cuts, inserted tokens, deleted ranges, junk)
    /// through every parser.
    #[test]
    fn text_fixture_mutations(
        seed in prop::sample::select(TEXT_FIXTURES),
        edits in prop::collection::vec(edit(), 1..8),
    ) {
        check_bytes(&apply(seed.as_bytes().to_vec(), &edits));
    }

    /// Mutated real netlink replies and real getdents64 records through every parser.
    #[test]
    fn binary_fixture_mutations(
        which in 0usize..5,
        edits in prop::collection::vec(edit(), 1..8),
    ) {
        let seed = match which {
            0 => DUMP_V4.to_vec(),
            1 => DUMP_V6.to_vec(),
            2 => BAD_FILTER.to_vec(),
            3 => DUMP_INFO.to_vec(),
            _ => real_dirents(),
        };
        check_bytes(&apply(seed, &edits));
    }
}

proptest! {
    #![proptest_config(config_n((cases() / 8).max(8)))]

    /// The 40 KB smaps fixture, mutated.
    #[test]
    fn smaps_fixture_mutations(edits in prop::collection::vec(edit(), 1..8)) {
        check_text(&String::from_utf8_lossy(&apply(SMAPS.as_bytes().to_vec(), &edits)));
    }
}

/// Every prefix and every suffix of every fixture (a read cut short anywhere; the smaps
/// fixture at a stride), through every parser.
#[test]
fn every_truncation_of_every_fixture() {
    let mut seeds: Vec<Vec<u8>> = TEXT_FIXTURES
        .iter()
        .map(|t| t.as_bytes().to_vec())
        .collect();
    seeds.extend([
        DUMP_V4.to_vec(),
        DUMP_V6.to_vec(),
        BAD_FILTER.to_vec(),
        DUMP_INFO.to_vec(),
        real_dirents(),
    ]);
    let mut cuts = 0;
    for s in &seeds {
        for end in 0..=s.len() {
            check_bytes(&s[..end]);
            check_bytes(&s[end..]);
            cuts += 2;
        }
    }
    let smaps = SMAPS.as_bytes();
    for end in (0..=smaps.len()).step_by(211) {
        check_text(&String::from_utf8_lossy(&smaps[..end]));
        cuts += 1;
    }
    println!("{cuts} cuts, no panic");
}

/// The real replies, whole: the fixtures' sockets come back (the round trip above is
/// checked against the kernel's own bytes, not only against the generator's).
#[test]
fn real_replies_parse_whole() {
    let mut total = 0;
    for buf in [DUMP_V4, DUMP_V6] {
        let mut rows = Vec::new();
        let p = parse_dump(buf, &mut |d| rows.push(d)).expect("a real reply parses");
        assert_eq!(p, Progress::Done);
        assert!(!rows.is_empty());
        total += rows.len();
        // Re-rendered through this file's generator layout, each row parses to itself.
        for d in &rows {
            let g = DiagGen {
                v6: d.socket.local.is_ipv6(),
                state: TcpState::ALL
                    .iter()
                    .position(|s| *s == d.socket.state)
                    .map_or(0, |i| i as u8 + 1),
                src: d.socket.local.ip(),
                dst: d.socket.remote.ip(),
                sport: d.socket.local.port(),
                dport: d.socket.remote.port(),
                rqueue: d.socket.recv_queue_bytes as u32,
                wqueue: d.socket.send_queue_bytes as u32,
                uid: 0,
                inode: d.socket.inode as u32,
                cgroup: d.cgroup_id,
                attrs: vec![(8, vec![0]), (22, vec![0, 0])],
                cgroup_at: 1,
            };
            let mut again = Vec::new();
            parse_dump(
                &nlmsg(SOCK_DIAG_BY_FAMILY, NLM_F_MULTI, 1, &render_diag(&g)),
                &mut |x| again.push(x),
            )
            .expect("parses");
            // The generator's interface and cookie; the kernel's cookie is never 0.
            assert_ne!(d.id.id[40..48], [0; 8], "the kernel's cookie, for a lookup");
            let mut want = d.clone();
            want.id.id[36..40].copy_from_slice(&1u32.to_ne_bytes());
            want.id.id[40..48].copy_from_slice(&[0xab; 8]);
            assert_eq!(again, vec![want]);
        }
    }
    // The capture's nine sockets (tests/fixtures/sock_diag/inodes).
    assert_eq!(total, 9);
}

// ---------------------------------------------------------------- tcp_info, skmeminfo

/// `(offset, width)` of each `struct tcp_info` field the parser reads that an older kernel
/// may not send, in the order of [`info_fields`].
const TCP_INFO_FIELDS: [(usize, usize); 7] = [
    (24, 4),  // tcpi_unacked
    (56, 4),  // tcpi_last_ack_recv
    (120, 8), // tcpi_bytes_acked (4.1)
    (144, 4), // tcpi_notsent_bytes (4.6)
    (168, 8), // tcpi_busy_time (4.19)
    (176, 8), // tcpi_rwnd_limited (4.19)
    (228, 4), // tcpi_snd_wnd (5.4)
];

fn info_fields(t: &leakwatch::collect::sock_diag::TcpInfo) -> [Option<u64>; 7] {
    [
        t.unacked_segments.map(u64::from),
        t.last_ack_recv_ms.map(u64::from),
        t.bytes_acked,
        t.notsent_bytes.map(u64::from),
        t.busy_us,
        t.rwnd_limited_us,
        t.snd_wnd.map(u64::from),
    ]
}

fn ne_at(b: &[u8], at: usize, width: usize) -> u64 {
    match width {
        4 => u64::from(u32::from_ne_bytes(b[at..at + 4].try_into().unwrap())),
        _ => u64::from_ne_bytes(b[at..at + 8].try_into().unwrap()),
    }
}

proptest! {
    #![proptest_config(config())]

    /// A `struct tcp_info` of any length (every kernel's, and nonsense): a field is known
    /// exactly when the bytes hold all of it, and then it is those bytes; missing is `None`,
    /// never 0. Embedded in a dump message (among other attributes), the same.
    #[test]
    fn tcp_info_of_any_length(
        bytes in prop::collection::vec(any::<u8>(), 0..300),
        mem in prop::collection::vec(any::<u8>(), 0..48),
        g in diag_socket(),
    ) {
        let parsed = parse_tcp_info(&bytes);
        prop_assert_eq!(parsed.is_some(), bytes.len() >= 8);
        if let Some(t) = parsed {
            prop_assert_eq!((t.probes, t.backoff), (bytes[3], bytes[4]));
            for ((at, width), got) in TCP_INFO_FIELDS.iter().zip(info_fields(&t)) {
                let want = (bytes.len() >= at + width).then(|| ne_at(&bytes, *at, *width));
                prop_assert_eq!(got, want, "offset {}, {} bytes", at, bytes.len());
            }
        }
        let m = parse_skmeminfo(&mem);
        prop_assert_eq!(m.is_some(), mem.len() >= 16);
        if let Some(m) = m {
            prop_assert_eq!(u64::from(m.sndbuf), ne_at(&mem, 12, 4));
            let queued = (mem.len() >= 24).then(|| ne_at(&mem, 20, 4));
            prop_assert_eq!(m.wmem_queued.map(u64::from), queued);
        }
        // In a reply: INET_DIAG_INFO (2) and INET_DIAG_SKMEMINFO (7) after the others.
        let mut g = g;
        g.attrs.retain(|(k, _)| *k != 2 && *k != 7);
        g.attrs.push((2, bytes.clone()));
        g.attrs.push((7, mem.clone()));
        let mut rows = Vec::new();
        let msg = nlmsg(SOCK_DIAG_BY_FAMILY, NLM_F_MULTI, 1, &render_diag(&g));
        parse_dump(&msg, &mut |d| rows.push(d)).expect("parses");
        prop_assert_eq!(rows.len(), 1);
        prop_assert_eq!(rows[0].info.tcp, parsed);
        prop_assert_eq!(rows[0].info.mem, m);
    }
}
