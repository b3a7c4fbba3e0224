//! A real `redis-server` on a loopback port for the replica tests (Debian's package, which
//! `scripts/test.sh` installs): started per test, ready when it answers `PING`, killed,
//! paused, resumed and restarted by its pid.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use sagellm_gateway::server::free_port;

pub struct RedisServer {
    pub port: u16,
    child: Option<Child>,
}

fn ping(port: u16) -> bool {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_millis(200)));
    let mut buf = [0u8; 7];
    s.write_all(b"PING\r\n").is_ok() && s.read_exact(&mut buf).is_ok() && &buf == b"+PONG\r\n"
}

fn signal(pid: u32, sig: &str) -> bool {
    Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()
        .is_ok_and(|s| s.success())
}

impl RedisServer {
    /// Start a server on a free loopback port, without persistence.
    pub fn start() -> RedisServer {
        let mut r = RedisServer {
            port: free_port().unwrap(),
            child: None,
        };
        r.restart();
        r
    }

    /// (Re)start the server on the same port and wait until it answers.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "stop it first");
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--protected-mode", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server runs (scripts/test.sh installs Debian's redis-server)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while !ping(self.port) {
            assert!(
                Instant::now() < deadline,
                "redis-server did not answer PING"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// SIGKILL, and reap it.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGSTOP: the port stays open, nothing answers.
    pub fn pause(&self) {
        assert!(signal(self.pid(), "-STOP"), "SIGSTOP redis-server");
    }

    pub fn resume(&self) {
        assert!(signal(self.pid(), "-CONT"), "SIGCONT redis-server");
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        if let Some(c) = &self.child {
            // A paused server ignores SIGTERM but not SIGKILL.
            let _ = signal(c.id(), "-CONT");
        }
        self.kill();
    }
}
