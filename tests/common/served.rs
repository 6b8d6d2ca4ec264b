//! `keyfront serve` as a child process, as its users start it.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A child `keyfront serve`, killed (by its own handle) when dropped.
pub struct Served {
    pub child: std::process::Child,
}

impl Served {
    /// Starts `keyfront serve` on `config` and waits until `address` listens.
    /// With `log_level`, its stderr (the application log) is kept for reading.
    pub fn start(config: &std::path::Path, address: std::net::SocketAddr, log_level: Option<&str>) -> Served {
        let served = Served::spawn(config, &[], log_level);
        let deadline = Instant::now() + Duration::from_secs(15);
        while std::net::TcpStream::connect(address).is_err() {
            assert!(Instant::now() < deadline, "keyfront serve did not start listening on {address}");
            std::thread::sleep(Duration::from_millis(50));
        }
        served
    }

    /// Starts `keyfront serve` on `config` with `extra` arguments (one
    /// thread unless they say `--threads`).
    pub fn spawn(config: &std::path::Path, extra: &[&str], log_level: Option<&str>) -> Served {
        let mut command = Command::new(env!("CARGO_BIN_EXE_keyfront"));
        command
            .args(["serve", "--config", config.to_str().unwrap()])
            .args(if extra.contains(&"--threads") {
                &[][..]
            } else {
                &["--threads", "1"][..]
            })
            .args(extra)
            .stdout(Stdio::null());
        match log_level {
            Some(level) => command.env("RUST_LOG", level).stderr(Stdio::piped()),
            None => command.stderr(Stdio::null()),
        };
        Served {
            child: command.spawn().unwrap(),
        }
    }

    pub fn signal(&self, name: &str) {
        let sent = Command::new("kill")
            .args([&format!("-{name}"), &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(sent.success());
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
