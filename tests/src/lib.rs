//! Harness for the rdkafka black-box tests: starts a broker under test on a free loopback
//! port with a temporary data directory, and kills it on drop.
//!
//! Which broker:
//! * `RILL_TEST_BOOTSTRAP=host:port` — use an already running broker (nothing is started);
//! * `RILL_TEST_TARGET=kafka` — Apache Kafka via `tests/support/apache-kafka.sh`;
//! * otherwise (default) the `rill` binary from `RILL_BIN` or `<workspace>/target/release/rill`.

use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Broker {
    pub bootstrap: String,
    child: Option<Child>,
    kafka_dir: Option<PathBuf>,
    port: u16,
    pub data: Option<tempfile::TempDir>,
}

fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn wait_port(port: u16, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_millis(200)).is_ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

impl Broker {
    pub fn start() -> Broker {
        if let Ok(b) = std::env::var("RILL_TEST_BOOTSTRAP") {
            return Broker { bootstrap: b, child: None, kafka_dir: None, port: 0, data: None };
        }
        let port = free_port();
        let data = tempfile::Builder::new().prefix("rill-tests-").tempdir().unwrap();
        let target = std::env::var("RILL_TEST_TARGET").unwrap_or_else(|_| "rill".into());
        if target == "kafka" {
            let script = workspace_root().join("tests/support/apache-kafka.sh");
            let st = Command::new("bash")
                .arg(&script)
                .args(["start", &port.to_string()])
                .arg(data.path())
                .status()
                .expect("run apache-kafka.sh");
            assert!(st.success(), "apache-kafka.sh start failed");
            return Broker {
                bootstrap: format!("127.0.0.1:{port}"),
                child: None,
                kafka_dir: Some(data.path().to_path_buf()),
                port,
                data: Some(data),
            };
        }
        let bin = std::env::var("RILL_BIN")
            .map(PathBuf::from)
            .unwrap_or_else(|_| workspace_root().join("target/release/rill"));
        assert!(bin.exists(), "rill binary not found at {} (set RILL_BIN)", bin.display());
        let log = std::fs::File::create(data.path().join("rill.log")).unwrap();
        let logdir = data.path().join("data");
        std::fs::create_dir_all(&logdir).unwrap();
        let child = Command::new(&bin)
            .arg("broker")
            .args(["--set", &format!("listeners=PLAINTEXT://127.0.0.1:{port}")])
            .args(["--set", &format!("log.dirs={}", logdir.display())])
            .args(["--set", "node.id=1"])
            // An ephemeral port: tests run several brokers at once.
            .args(["--set", "admin.listener=127.0.0.1:0"])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("spawn rill");
        let mut b = Broker {
            bootstrap: format!("127.0.0.1:{port}"),
            child: Some(child),
            kafka_dir: None,
            port,
            data: Some(data),
        };
        if !wait_port(port, Duration::from_secs(30)) {
            let log = std::fs::read_to_string(b.data.as_ref().unwrap().path().join("rill.log")).unwrap_or_default();
            b.stop();
            panic!("rill did not accept connections on {port} within 30s; log:\n{log}");
        }
        b
    }

    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        if let Some(dir) = self.kafka_dir.take() {
            let script = workspace_root().join("tests/support/apache-kafka.sh");
            let _ = Command::new("bash").arg(&script).args(["stop", &self.port.to_string()]).arg(&dir).status();
        }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A topic name unique to this run (tests may share an external broker).
pub fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
    format!("{prefix}-{}-{nanos}", std::process::id())
}
