//! Stoplight Prism serving a provider's official OpenAPI spec on loopback: it validates every
//! request against the spec and answers from the spec's examples. Request-shape checks only: it
//! does not record what it received.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A running Prism mock server; killed on drop.
pub struct PrismPeer {
    /// `http://127.0.0.1:PORT`.
    pub endpoint: String,
    child: Child,
    log: Arc<Mutex<Vec<String>>>,
}

impl Drop for PrismPeer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The directory holding the providers' specs: `MAILGATE_TEST_SPECS`, else `../shared/specs`
/// beside the repository.
pub fn specs_dir() -> PathBuf {
    match std::env::var_os("MAILGATE_TEST_SPECS") {
        Some(dir) => PathBuf::from(dir),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/specs"),
    }
}

fn prism_binary() -> PathBuf {
    if let Some(p) = std::env::var_os("MAILGATE_TEST_PRISM") {
        return PathBuf::from(p);
    }
    let cached = dirs_cache().join("mailgate/node/node_modules/.bin/prism");
    if cached.exists() {
        cached
    } else {
        PathBuf::from("prism")
    }
}

fn dirs_cache() -> PathBuf {
    std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache")
        })
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

impl PrismPeer {
    /// Serves `spec` (a path; relative paths are taken under [`specs_dir`]) with Prism's mock
    /// server, waiting until it listens. Panics with Prism's output when it cannot start.
    pub fn start(spec: impl AsRef<Path>) -> Self {
        let spec = spec.as_ref();
        let spec = if spec.is_absolute() {
            spec.to_path_buf()
        } else {
            specs_dir().join(spec)
        };
        assert!(
            spec.exists(),
            "spec {} not found (set MAILGATE_TEST_SPECS)",
            spec.display()
        );
        let port = free_port();
        let mut child = Command::new(prism_binary())
            .args([
                "mock",
                "--host",
                "127.0.0.1",
                "--port",
                &port.to_string(),
                "--errors",
            ])
            .arg(&spec)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start prism (run scripts/test, or set MAILGATE_TEST_PRISM)");
        let log = Arc::new(Mutex::new(Vec::new()));
        for stream in [
            child
                .stdout
                .take()
                .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
            child
                .stderr
                .take()
                .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
        ]
        .into_iter()
        .flatten()
        {
            let log = Arc::clone(&log);
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    log.lock().expect("prism log").push(line);
                }
            });
        }
        let deadline = Instant::now() + Duration::from_secs(60);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(status)) = child.try_wait() {
                panic!(
                    "prism exited ({status}): {}",
                    log.lock().expect("prism log").join("\n")
                );
            }
            assert!(
                Instant::now() < deadline,
                "prism did not start: {}",
                log.lock().expect("prism log").join("\n")
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        Self {
            endpoint: format!("http://127.0.0.1:{port}"),
            child,
            log,
        }
    }

    /// Prism's output so far (its validation messages included), for assertion messages.
    pub fn output(&self) -> String {
        self.log.lock().expect("prism log").join("\n")
    }
}
