//! A real DNS server (`dnsmasq`, Debian's `dnsmasq-base`, which `scripts/test.sh` installs) on
//! a loopback port for the discovery tests: authoritative for `sagellm.test` only (no upstream,
//! no `/etc/hosts`), records given per start with TTL 0, ready when it answers a query,
//! restarted on the same port to change the records, killed by its pid.

use std::net::UdpSocket;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use sagellm_gateway::server::free_port;

/// One record the server answers with.
#[derive(Clone, Debug)]
pub enum Record {
    /// `name` → `ip` (an A record).
    A { name: String, ip: String },
    /// `name` → `target:port` (an SRV record with this priority and weight).
    Srv {
        name: String,
        target: String,
        port: u16,
        priority: u16,
        weight: u16,
    },
}

pub fn a(name: &str, ip: &str) -> Record {
    Record::A {
        name: name.into(),
        ip: ip.into(),
    }
}

pub fn srv(name: &str, target: &str, port: u16, priority: u16, weight: u16) -> Record {
    Record::Srv {
        name: name.into(),
        target: target.into(),
        port,
        priority,
        weight,
    }
}

pub struct DnsServer {
    pub port: u16,
    child: Option<Child>,
}

fn binary() -> &'static str {
    // Debian installs it in /usr/sbin, which a non-root PATH may lack.
    if Command::new("dnsmasq")
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .is_ok()
    {
        "dnsmasq"
    } else {
        "/usr/sbin/dnsmasq"
    }
}

/// Whether the server on `port` answers a query (any answer: NXDOMAIN for the probe name).
fn answers(port: u16) -> bool {
    let Ok(sock) = UdpSocket::bind("127.0.0.1:0") else {
        return false;
    };
    let _ = sock.set_read_timeout(Some(Duration::from_millis(200)));
    // Header: id 0x5a5a, recursion desired, one question; then `ready.sagellm.test` A IN.
    let mut q = vec![0x5a, 0x5a, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
    for label in ["ready", "sagellm", "test"] {
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.extend_from_slice(&[0, 0, 1, 0, 1]);
    let mut buf = [0u8; 512];
    sock.send_to(&q, ("127.0.0.1", port)).is_ok()
        && sock
            .recv(&mut buf)
            .is_ok_and(|n| n >= 12 && buf[..2] == [0x5a, 0x5a])
}

impl DnsServer {
    /// Start a server on a free loopback port answering with `records`.
    pub fn start(records: &[Record]) -> DnsServer {
        let mut d = DnsServer {
            port: free_port().unwrap(),
            child: None,
        };
        d.restart(records);
        d
    }

    /// (Re)start on the same port with these records and wait until it answers.
    pub fn restart(&mut self, records: &[Record]) {
        self.kill();
        let mut cmd = Command::new(binary());
        cmd.args([
            "--keep-in-foreground",
            &format!("--port={}", self.port),
            "--listen-address=127.0.0.1",
            "--bind-interfaces",
            "--no-resolv",
            "--no-hosts",
            "--conf-file=/dev/null",
            "--pid-file=",
            "--local=/sagellm.test/",
            "--local-ttl=0",
        ]);
        if is_root() {
            // Stay root rather than switch to a user the machine may not have.
            cmd.arg("--user=root");
        }
        for r in records {
            cmd.arg(match r {
                Record::A { name, ip } => format!("--host-record={name},{ip}"),
                Record::Srv {
                    name,
                    target,
                    port,
                    priority,
                    weight,
                } => format!("--srv-host={name},{target},{port},{priority},{weight}"),
            });
        }
        let child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("dnsmasq runs (scripts/test.sh installs Debian's dnsmasq-base)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while !answers(self.port) {
            assert!(Instant::now() < deadline, "dnsmasq did not answer");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// `127.0.0.1:<port>`, for `[discovery.dns] server`.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// SIGKILL, and reap it: DNS is gone (queries time out).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Whether this process runs as root (dnsmasq then drops to another user unless told not to).
fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0\n"))
}

impl Drop for DnsServer {
    fn drop(&mut self) {
        self.kill();
    }
}
