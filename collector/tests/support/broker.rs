//! A tansu broker (Kafka protocol) on a loopback port, for the Kafka tests and the throughput
//! example (shared with `#[path]`): in-memory storage, ready once `tansu topic list` answers.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running broker; killed on drop.
pub struct Broker {
    child: Child,
}

impl Broker {
    /// Starts a broker on `port` and waits until it answers metadata requests.
    pub fn start(port: u16) -> Broker {
        let url = format!("tcp://127.0.0.1:{port}");
        let child = Command::new("tansu")
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &url,
                "--storage-engine",
                "memory://tansu/",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("tansu on PATH (scripts/ensure-tools.sh installs it)");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let ok = Command::new("tansu")
                .args(["topic", "list", "--broker", &url])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            if ok {
                break;
            }
            assert!(Instant::now() < deadline, "tansu did not become ready");
            std::thread::sleep(Duration::from_millis(200));
        }
        Broker { child }
    }

    /// Freezes (`SIGSTOP`) or thaws (`SIGCONT`) the broker: a stalled, not a dead, broker.
    #[allow(dead_code)]
    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([&format!("-{sig}"), &self.child.id().to_string()])
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "kill -{sig}");
    }

    /// Kills the broker (its in-memory data goes with it).
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A free loopback port.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
