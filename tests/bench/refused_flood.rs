//! A flood of refused connections against dockgated (issue 20): new TCP connections (SYNs) from
//! many source addresses to a published port that `default = "deny"` closes, while dockgated
//! records what its rules log. Prints the attempt rate reached, dockgated's memory before,
//! during and after, the size of the refused table against its bound, and Expose latency idle
//! and during the flood. `tests/bench/refused-flood` runs it in the sandbox.
//!
//!     bench_refused_flood measure PID HOST PORT MAX_ENTRIES RSS_BOUND_MIB
//!     bench_refused_flood send HOST PORT RATE SECONDS
//!
//! `measure` runs in the sandbox's namespace and starts `send` in client1's. The sender writes
//! raw SYNs from the 65,536 addresses of 10.200.0.0/16 (the sandbox routes them back through
//! client1, so that reverse-path filtering takes them as client1's), a new source port each:
//! every one is a new connection for conntrack and for dockgate's rules. No handshake follows,
//! so a flood costs the sender nothing per connection and reaches the rate asked for.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use dockgate::api::Dockgate1Proxy;
use dockgate::plan::RECORD_COMMENT;

/// The flood's sources: 10.200.0.0/16.
const FIRST_SOURCE: u32 = u32::from_be_bytes([10, 200, 0, 0]);
const SOURCES: u32 = 1 << 16;
const RATE: u32 = 10_000;
const SECONDS: u32 = 10;
/// Expose/Unexpose pairs measured idle, and the gap between calls (idle and in the flood).
const IDLE_CALLS: usize = 40;
const CALL_GAP: Duration = Duration::from_millis(100);

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("send") => {
            let [host, port, rate, seconds] = &args[1..] else {
                panic!("usage: bench_refused_flood send HOST PORT RATE SECONDS");
            };
            send(
                host.parse().expect("HOST"),
                port.parse().expect("PORT"),
                rate.parse().expect("RATE"),
                seconds.parse().expect("SECONDS"),
            );
        }
        Some("measure") => {
            let [pid, host, port, max_entries, bound] = &args[1..] else {
                panic!(
                    "usage: bench_refused_flood measure PID HOST PORT MAX_ENTRIES RSS_BOUND_MIB"
                );
            };
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
                .block_on(measure(
                    pid.parse().expect("PID"),
                    host,
                    port.parse().expect("PORT"),
                    max_entries.parse().expect("MAX_ENTRIES"),
                    bound.parse().expect("RSS_BOUND_MIB"),
                ));
        }
        _ => panic!("usage: bench_refused_flood measure|send ..."),
    }
}

/// A field of /proc/PID/status in kB (VmRSS, VmHWM).
fn status_kb(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("dockgated runs");
    status
        .lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|value| value.trim().trim_end_matches(" kB").parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
}

fn mib(kb: u64) -> String {
    format!("{:.1} MiB", kb as f64 / 1024.0)
}

struct Latency {
    expose: Vec<Duration>,
    unexpose: Vec<Duration>,
}

impl Latency {
    fn new() -> Self {
        Latency {
            expose: Vec::new(),
            unexpose: Vec::new(),
        }
    }

    /// One Expose of a port nobody publishes, then its Unexpose, each timed.
    async fn pair(&mut self, api: &Dockgate1Proxy<'_>, n: usize) {
        let port = format!("{}/tcp", 40000 + n);
        let started = Instant::now();
        let id = api
            .expose(&port, &["203.0.113.9"], 0, HashMap::new())
            .await
            .expect("Expose");
        self.expose.push(started.elapsed());
        tokio::time::sleep(CALL_GAP).await;
        let started = Instant::now();
        api.unexpose(&id).await.expect("Unexpose");
        self.unexpose.push(started.elapsed());
    }
}

/// (median, p95) in ms.
fn quantiles(samples: &[Duration]) -> (f64, f64) {
    let mut sorted = samples.to_vec();
    sorted.sort();
    let at = |quantile: f64| {
        sorted[((sorted.len() - 1) as f64 * quantile).round() as usize].as_secs_f64() * 1e3
    };
    (at(0.5), at(0.95))
}

/// ListRefused(0): the rows (one per port, source and mode; a table entry is one such row in
/// one minute, so rows <= entries) and the connections they count.
async fn refused_table(api: &Dockgate1Proxy<'_>) -> (usize, u64) {
    let rows = api.list_refused(0).await.expect("ListRefused");
    let counted = rows
        .iter()
        .filter_map(|row| u64::try_from(row.get("count")?).ok())
        .sum();
    (rows.len(), counted)
}

/// Packets that the rules carrying `comment` matched, as `iptables-save -c` counts them.
fn rule_packets(comment: &str) -> u64 {
    let output = Command::new("iptables-save")
        .args(["-c", "-t", "mangle"])
        .output()
        .expect("iptables-save");
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter(|line| line.contains(comment))
        .filter_map(|line| {
            line.strip_prefix('[')?
                .split(':')
                .next()?
                .parse::<u64>()
                .ok()
        })
        .sum()
}

async fn measure(pid: u32, host: &str, port: u16, max_entries: usize, bound_mib: u64) {
    let bus = zbus::Connection::system().await.expect("system bus");
    let api = Dockgate1Proxy::new(&bus).await.expect("dockgated's API");

    let mut idle = Latency::new();
    for n in 0..IDLE_CALLS {
        idle.pair(&api, n).await;
        tokio::time::sleep(CALL_GAP).await;
    }
    let (rows_before, _) = refused_table(&api).await;
    let rss_before = status_kb(pid, "VmRSS");
    let logged_before = rule_packets(RECORD_COMMENT);

    // RSS sampled every 20 ms from the flood's start until 3 s after its end.
    let stop = Arc::new(AtomicBool::new(false));
    let peak = Arc::new(AtomicU64::new(rss_before));
    let sampler = {
        let (stop, peak) = (stop.clone(), peak.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                peak.fetch_max(status_kb(pid, "VmRSS"), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(20));
            }
        })
    };
    let me = std::env::current_exe().unwrap();
    let mut sender = Command::new("ip")
        .args(["netns", "exec", "client1"])
        .arg(me)
        .args(["send", host, &port.to_string(), &RATE.to_string()])
        .arg(SECONDS.to_string())
        .stdout(Stdio::piped())
        .spawn()
        .expect("the sender starts in client1");
    let mut flood = Latency::new();
    let mut rows_peak = rows_before;
    let mut n = IDLE_CALLS;
    while sender.try_wait().unwrap().is_none() {
        flood.pair(&api, n).await;
        n += 1;
        rows_peak = rows_peak.max(refused_table(&api).await.0);
        tokio::time::sleep(CALL_GAP).await;
    }
    let output = sender.wait_with_output().unwrap();
    assert!(output.status.success(), "the sender failed");
    let sent = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    tokio::time::sleep(Duration::from_secs(3)).await;
    stop.store(true, Ordering::Relaxed);
    sampler.join().unwrap();
    let (rows_after, counted) = refused_table(&api).await;
    let rss_after = status_kb(pid, "VmRSS");
    let logged = rule_packets(RECORD_COMMENT) - logged_before;
    let hwm = status_kb(pid, "VmHWM");
    let peak = peak.load(Ordering::Relaxed);

    println!("flood: {sent}; {logged} logged to NFLOG by the recording rule");
    println!(
        "dockgated RSS: before {}, peak {} (VmHWM {}), 3 s after {}; bound {bound_mib} MiB: {}",
        mib(rss_before),
        mib(peak),
        mib(hwm),
        mib(rss_after),
        if hwm <= bound_mib * 1024 {
            "held"
        } else {
            "EXCEEDED"
        }
    );
    let rows_max = rows_peak.max(rows_after);
    println!(
        "refused table: {rows_before} rows before, at most {rows_max} during, {rows_after} after \
         ({counted} connections counted); max_entries {max_entries}: {}",
        if rows_max <= max_entries {
            "held"
        } else {
            "EXCEEDED"
        }
    );
    let (idle_median, idle_p95) = quantiles(&idle.expose);
    let (flood_median, flood_p95) = quantiles(&flood.expose);
    let ratio = flood_median / idle_median;
    println!(
        "Expose: idle median {idle_median:.1} ms, p95 {idle_p95:.1} ms ({} calls); flood median \
         {flood_median:.1} ms, p95 {flood_p95:.1} ms ({} calls); median ratio {ratio:.2} \
         (bound 2): {}",
        idle.expose.len(),
        flood.expose.len(),
        if ratio <= 2.0 { "held" } else { "EXCEEDED" }
    );
    let (idle_median, idle_p95) = quantiles(&idle.unexpose);
    let (flood_median, flood_p95) = quantiles(&flood.unexpose);
    println!(
        "Unexpose: idle median {idle_median:.1} ms, p95 {idle_p95:.1} ms; flood median \
         {flood_median:.1} ms, p95 {flood_p95:.1} ms; median ratio {:.2}",
        flood_median / idle_median
    );
}

/// RATE SYNs a second for SECONDS from 10.200.0.0/16, paced every millisecond; prints
/// "N SYNs from M sources in S s: R/s".
fn send(host: Ipv4Addr, port: u16, rate: u32, seconds: u32) {
    // SAFETY: a plain socket(2) call; the descriptor is checked and closed below.
    let socket = unsafe { libc::socket(libc::AF_INET, libc::SOCK_RAW, libc::IPPROTO_RAW) };
    assert!(
        socket >= 0,
        "raw socket: {}",
        std::io::Error::last_os_error()
    );
    let destination = libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: 0,
        sin_addr: libc::in_addr {
            s_addr: u32::from(host).to_be(),
        },
        sin_zero: [0; 8],
    };
    let total = u64::from(rate) * u64::from(seconds);
    let started = Instant::now();
    let mut sent = 0u64;
    let mut failed = 0u64;
    while sent < total {
        let due = (started.elapsed().as_secs_f64() * f64::from(rate)) as u64;
        while sent < due.min(total) {
            let source = Ipv4Addr::from(FIRST_SOURCE + (sent % u64::from(SOURCES)) as u32);
            let source_port = 1024 + (sent % 60_000) as u16;
            let packet = syn(source, source_port, host, port, sent as u32);
            // SAFETY: the buffer and the address outlive the call, their lengths are theirs.
            let written = unsafe {
                libc::sendto(
                    socket,
                    packet.as_ptr().cast(),
                    packet.len(),
                    0,
                    (&raw const destination).cast(),
                    std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
                )
            };
            if written < 0 {
                failed += 1;
            }
            sent += 1;
        }
        std::thread::sleep(Duration::from_micros(500));
    }
    let elapsed = started.elapsed().as_secs_f64();
    // SAFETY: the descriptor is ours and used no more.
    unsafe { libc::close(socket) };
    println!(
        "{sent} SYNs ({failed} not sent) from {} sources in {elapsed:.2} s: {:.0}/s",
        u64::from(SOURCES).min(sent),
        (sent - failed) as f64 / elapsed
    );
}

/// An IPv4 TCP SYN without options. The kernel fills in the IP checksum (IP_HDRINCL); the TCP
/// checksum covers the pseudo-header.
fn syn(source: Ipv4Addr, source_port: u16, host: Ipv4Addr, port: u16, sequence: u32) -> [u8; 40] {
    let mut packet = [0u8; 40];
    packet[0] = 0x45;
    packet[2..4].copy_from_slice(&40u16.to_be_bytes());
    packet[6] = 0x40; // don't fragment
    packet[8] = 64;
    packet[9] = 6;
    packet[12..16].copy_from_slice(&source.octets());
    packet[16..20].copy_from_slice(&host.octets());
    let tcp = &mut packet[20..];
    tcp[0..2].copy_from_slice(&source_port.to_be_bytes());
    tcp[2..4].copy_from_slice(&port.to_be_bytes());
    tcp[4..8].copy_from_slice(&sequence.to_be_bytes());
    tcp[12] = 5 << 4;
    tcp[13] = 0x02; // SYN
    tcp[14..16].copy_from_slice(&64240u16.to_be_bytes());
    let mut sum: u32 = 0;
    let mut add = |bytes: &[u8]| {
        for pair in bytes.chunks(2) {
            sum += u32::from(u16::from_be_bytes([pair[0], *pair.get(1).unwrap_or(&0)]));
        }
    };
    add(&source.octets());
    add(&host.octets());
    add(&[0, 6]);
    add(&20u16.to_be_bytes());
    add(&packet[20..40]);
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    packet[36..38].copy_from_slice(&(!(sum as u16)).to_be_bytes());
    packet
}
