//! A real `redis-server` for one test: its own process on a free loopback port, no
//! persistence (`--save "" --appendonly no`), in a temporary directory, killed when dropped.
//! Never a system service, never a fixed port; every wait is bounded. Without redis-server
//! the test skips with a note, and fails under `CI=true` ([`super::require_tool`]).

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// How long a redis-server gets to accept connections.
const START: Duration = Duration::from_secs(10);
/// Longest a test's own command to the server may take.
const TEST_COMMAND: Duration = Duration::from_secs(30);

/// A running (or stopped, to be restarted) redis-server.
pub struct RedisServer {
    child: Option<Child>,
    /// Its port on 127.0.0.1.
    pub port: u16,
    dir: PathBuf,
    extra: Vec<String>,
}

/// Whether redis-server is here (skips off CI, fails on CI without it).
pub fn available() -> bool {
    super::require_tool(
        "redis-server",
        &["redis-server", "--version"],
        "apt-get update -qq && apt-get install -y -qq redis-server",
    )
}

impl RedisServer {
    /// A plain redis-server; `None` (after a SKIPPED note) when there is none.
    pub async fn start() -> Option<RedisServer> {
        Self::start_with(&[]).await
    }

    /// A redis-server with extra arguments (`--requirepass`, TLS...).
    pub async fn start_with(extra: &[&str]) -> Option<RedisServer> {
        if !available() {
            return None;
        }
        let dir = super::temp_dir("redis");
        // A port the kernel just handed out and freed; another process could take it in
        // between, so a server that does not come up is tried on a fresh port.
        for _ in 0..3 {
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            let mut server = RedisServer {
                child: None,
                port,
                dir: dir.clone(),
                extra: extra.iter().map(|a| (*a).to_owned()).collect(),
            };
            if server.spawn().await {
                return Some(server);
            }
        }
        panic!(
            "redis-server did not start in 3 tries; see {}",
            dir.display()
        );
    }

    /// The server's arguments. With `--tls-port {port}` among the extras, `port` is the TLS
    /// port and nothing listens in clear.
    fn args(&self) -> Vec<String> {
        let tls = self.extra.iter().any(|a| a == "--tls-port");
        let mut args: Vec<String> = vec![
            "--bind".into(),
            "127.0.0.1".into(),
            "--save".into(),
            String::new(),
            "--appendonly".into(),
            "no".into(),
            "--daemonize".into(),
            "no".into(),
            "--dir".into(),
            self.dir.display().to_string(),
            "--logfile".into(),
            self.dir.join("redis.log").display().to_string(),
        ];
        if tls {
            args.extend(["--port".into(), "0".into()]);
        } else {
            args.extend(["--port".into(), self.port.to_string()]);
        }
        args.extend(
            self.extra
                .iter()
                .map(|a| a.replace("{port}", &self.port.to_string())),
        );
        args
    }

    async fn spawn(&mut self) -> bool {
        let child = Command::new("redis-server")
            .args(self.args())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server runs");
        self.child = Some(child);
        let deadline = tokio::time::Instant::now() + START;
        while tokio::time::Instant::now() < deadline {
            if tokio::net::TcpStream::connect(("127.0.0.1", self.port))
                .await
                .is_ok()
            {
                return true;
            }
            if let Some(child) = self.child.as_mut()
                && child.try_wait().unwrap().is_some()
            {
                self.child = None;
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.kill();
        false
    }

    /// `redis://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stops the server at once (SIGKILL, as a crash would) and waits for it to be gone.
    pub fn stop(&mut self) {
        self.kill();
    }

    /// Starts it again on the same port (empty: nothing was persisted).
    pub async fn restart(&mut self) {
        self.kill();
        let deadline = tokio::time::Instant::now() + START;
        while !self.spawn().await {
            assert!(
                tokio::time::Instant::now() < deadline,
                "redis-server did not restart on port {}",
                self.port
            );
        }
    }

    /// Holds every client's writes (reads still answer) for up to a minute, until
    /// `CLIENT UNPAUSE` on the connection returned.
    pub async fn pause_writes(&self) -> redis::aio::MultiplexedConnection {
        let mut conn = self.connection().await;
        let _: () = redis::cmd("CLIENT")
            .arg("PAUSE")
            .arg(60_000)
            .arg("WRITE")
            .query_async(&mut conn)
            .await
            .unwrap();
        conn
    }

    /// A connection for the test's own commands (plain TCP only). Each answer may take up
    /// to [`TEST_COMMAND`] (redis-rs's own default, 500 ms, is short for writing megabytes
    /// on a loaded machine).
    pub async fn connection(&self) -> redis::aio::MultiplexedConnection {
        let client = redis::Client::open(self.url()).unwrap();
        let config = redis::AsyncConnectionConfig::new().set_response_timeout(Some(TEST_COMMAND));
        let connect = client.get_multiplexed_async_connection_with_config(&config);
        tokio::time::timeout(START, connect)
            .await
            .expect("connected in time")
            .unwrap()
    }

    /// Every key the server holds (`KEYS *`).
    pub async fn keys(&self) -> Vec<String> {
        let mut conn = self.connection().await;
        redis::cmd("KEYS")
            .arg("*")
            .query_async(&mut conn)
            .await
            .unwrap()
    }

    /// Starts watching every command the server runs (`MONITOR`).
    pub async fn monitor(&self) -> Monitor {
        use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
        let stream = tokio::net::TcpStream::connect(("127.0.0.1", self.port))
            .await
            .unwrap();
        let (read, mut write) = stream.into_split();
        write.write_all(b"MONITOR\r\n").await.unwrap();
        let mut lines = tokio::io::BufReader::new(read).lines();
        let ok = tokio::time::timeout(START, lines.next_line())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(ok.as_deref(), Some("+OK"));
        Monitor {
            lines,
            _write: write,
            port: self.port,
        }
    }
}

/// The commands a redis-server runs, in order, as `MONITOR` reports them.
pub struct Monitor {
    lines: tokio::io::Lines<tokio::io::BufReader<tokio::net::tcp::OwnedReadHalf>>,
    _write: tokio::net::tcp::OwnedWriteHalf,
    port: u16,
}

impl Monitor {
    /// The commands clients sent (each one round trip; commands a script runs inside the
    /// server are left out) until now: a marker sent after them ends the list, since the
    /// server reports commands in the order it runs them.
    pub async fn client_commands(&mut self) -> Vec<String> {
        let marker = format!("marker-{}", uuid::Uuid::new_v4().simple());
        let client = redis::Client::open(format!("redis://127.0.0.1:{}", self.port)).unwrap();
        let mut conn = client.get_multiplexed_async_connection().await.unwrap();
        let _: String = redis::cmd("ECHO")
            .arg(&marker)
            .query_async(&mut conn)
            .await
            .unwrap();
        let mut seen = Vec::new();
        loop {
            let line = tokio::time::timeout(START, self.lines.next_line())
                .await
                .expect("the marker within 10 s")
                .unwrap()
                .expect("the monitor stays open");
            if line.contains(&marker) {
                return seen;
            }
            // +1764400000.123456 [0 127.0.0.1:54321] "EVALSHA" "..."  (or [0 lua] inside a script)
            let Some((source, command)) = line.split_once("] ") else {
                continue;
            };
            if !source.ends_with(" lua") {
                seen.push(
                    command
                        .split('"')
                        .nth(1)
                        .unwrap_or_default()
                        .to_ascii_uppercase(),
                );
            }
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
