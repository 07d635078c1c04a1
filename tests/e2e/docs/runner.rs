//! Runs one page's shell blocks in order, as a reader would in a terminal at the
//! repository's root: in a sandbox that links the repository's files (so what a block writes
//! stays out of the clone), with the `graphgate` this test run built first on `PATH`, the
//! variables one block sets seen by the next, `background` blocks (a server the reader leaves
//! running in a second terminal) started and waited for until they print their `ready`
//! text, and every `127.0.0.1:PORT` (or `localhost:PORT`) a page names moved to a free port.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc;
use std::time::Duration;

use super::blocks::{Block, Item};

/// How long a background command may take to print its ready text, and a foreground block
/// to finish (a debug build, on a loaded 2-core machine).
const DEADLINE: Duration = Duration::from_secs(120);

/// A port nothing listens on, below Linux's ephemeral range (32768 and up): the other tests
/// bind port 0, which the kernel picks from that range, so a port found free here is not
/// taken by one of them between this check and the page's server binding it (as a port 0
/// found free and let go could be). Each call of this process gets another port.
fn free_port() -> u16 {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let base = std::process::id() % 997 * 11;
    loop {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = 20_000 + ((base + n) % 12_000) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// A page being run.
pub struct Page {
    name: String,
    sandbox: PathBuf,
    state: PathBuf,
    ports: BTreeMap<u16, u16>,
    background: Vec<(usize, Child)>,
}

impl Page {
    pub fn new(repo: &Path, name: &str) -> Page {
        let sandbox = std::env::temp_dir().join(format!(
            "graphgate-docs-{}-{}",
            name.replace('/', "-"),
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&sandbox);
        std::fs::create_dir_all(sandbox.join(".docs-test/tmp")).unwrap();
        for entry in std::fs::read_dir(repo).unwrap() {
            let entry = entry.unwrap();
            let file = entry.file_name();
            if [".git", "target", ".ci"].contains(&file.to_str().unwrap_or("")) {
                continue;
            }
            std::os::unix::fs::symlink(entry.path(), sandbox.join(&file)).unwrap();
        }
        let state = sandbox.join(".docs-test");
        std::fs::write(state.join("env"), "").unwrap();
        std::fs::write(state.join("cwd"), sandbox.to_str().unwrap()).unwrap();
        let mut page = Page {
            name: name.to_owned(),
            sandbox,
            state,
            ports: BTreeMap::new(),
            background: Vec::new(),
        };
        // The gateway's default addresses, for a `graphgate serve` that names none.
        page.port(8080);
        page.port(9090);
        page
    }

    /// Runs every item of the page; panics naming the page and line of the first failure.
    pub fn run(mut self, items: &[Item]) {
        for item in items {
            match item {
                Item::Directive { words, line } if words == "stop" => self.stop_background(*line),
                Item::Directive { words, line } => {
                    panic!(
                        "{}:{line}: unknown docs-test directive {words:?}",
                        self.name
                    )
                }
                Item::Block(b) if !b.is_shell() => {}
                Item::Block(b) if b.attrs.contains_key("norun") => {}
                Item::Block(b) if b.attrs.contains_key("background") => self.start(b),
                Item::Block(b) => self.foreground(b),
            }
        }
        self.stop_background(0);
        let _ = std::fs::remove_dir_all(&self.sandbox);
    }

    fn port(&mut self, port: u16) -> u16 {
        *self.ports.entry(port).or_insert_with(free_port)
    }

    /// `code` with the page's ports moved to free ones.
    fn with_ports(&mut self, code: &str) -> String {
        let mut out = String::new();
        let mut rest = code;
        while let Some(at) = ["127.0.0.1:", "localhost:"]
            .iter()
            .filter_map(|h| rest.find(h).map(|i| (i, h.len())))
            .min()
        {
            let (i, len) = at;
            out.push_str(&rest[..i + len]);
            rest = &rest[i + len..];
            let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
            match rest[..digits].parse::<u16>() {
                Ok(port) if port != 0 => {
                    let free = self.port(port);
                    out.push_str(&free.to_string());
                }
                _ => out.push_str(&rest[..digits]),
            }
            rest = &rest[digits..];
        }
        out.push_str(rest);
        out
    }

    /// The script running `code` in the page's shell state; `keep` saves the state after.
    fn script(&mut self, code: &str, keep: bool) -> String {
        let state = self.state.to_str().unwrap().to_owned();
        let mut s = format!(
            "exec 2>&1\nset -euo pipefail\nsource '{state}/env'\ncd \"$(cat '{state}/cwd')\"\nset -a\n"
        );
        s.push_str(&self.with_ports(code));
        if keep {
            s.push_str(&format!(
                "\nset +a\nexport -p > '{state}/env.next'\nmv '{state}/env.next' '{state}/env'\npwd > '{state}/cwd'\n"
            ));
        }
        s
    }

    fn command(&self, script: String) -> Command {
        let bin = PathBuf::from(env!("CARGO_BIN_EXE_graphgate"));
        let path = format!(
            "{}:{}",
            bin.parent().unwrap().display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let mut cmd = Command::new("bash");
        cmd.arg("-c").arg(script).current_dir(&self.sandbox);
        for (key, _) in std::env::vars() {
            if key.starts_with("GRAPHGATE_")
                || key.starts_with("AZURE_")
                || key.starts_with("OTEL_")
            {
                cmd.env_remove(key);
            }
        }
        cmd.env("PATH", path)
            .env("TMPDIR", self.state.join("tmp"))
            .env("NO_COLOR", "1")
            .env(
                "GRAPHGATE_LISTEN",
                format!("127.0.0.1:{}", self.ports[&8080]),
            )
            .env(
                "GRAPHGATE_ADMIN_LISTEN",
                format!("127.0.0.1:{}", self.ports[&9090]),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        cmd
    }

    fn foreground(&mut self, block: &Block) {
        let expected: i32 = block.attr("exit").map_or(0, |e| e.parse().unwrap());
        let script = self.script(&block.code, expected == 0);
        let child = self.command(script).spawn().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || tx.send(child.wait_with_output()));
        let out = rx
            .recv_timeout(DEADLINE)
            .unwrap_or_else(|_| {
                panic!(
                    "{}:{}: still running after {DEADLINE:?}",
                    self.name, block.line
                )
            })
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        let code = out.status.code().unwrap_or(-1);
        assert_eq!(
            code, expected,
            "{}:{}: exit {code}, the page says {expected}\n--- block\n{}--- output\n{text}",
            self.name, block.line, block.code
        );
        if let Some(want) = block.attr("expect") {
            assert!(
                text.contains(want),
                "{}:{}: the output lacks {want:?}\n--- block\n{}--- output\n{text}",
                self.name,
                block.line,
                block.code
            );
        }
    }

    fn start(&mut self, block: &Block) {
        let ready = block.attr("ready").unwrap_or_else(|| {
            panic!(
                "{}:{}: a background block names its ready=\"text\"",
                self.name, block.line
            )
        });
        let script = self.script(&block.code, false);
        let mut cmd = self.command(script);
        cmd.process_group(0);
        let mut child = cmd.spawn().unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    // Nobody reads any more: keep draining so the process never blocks.
                    continue;
                }
            }
        });
        let mut seen = String::new();
        loop {
            match rx.recv_timeout(DEADLINE) {
                Ok(line) => {
                    seen.push_str(&line);
                    seen.push('\n');
                    if line.contains(ready) {
                        break;
                    }
                }
                Err(_) => {
                    let _ = child.kill();
                    panic!(
                        "{}:{}: exited or timed out before printing {ready:?}\n--- block\n{}--- output\n{seen}",
                        self.name, block.line, block.code
                    );
                }
            }
        }
        self.background.push((block.line, child));
    }

    /// Stops the background commands as Ctrl-C would (SIGINT to the process group), and
    /// waits for them to exit.
    fn stop_background(&mut self, line: usize) {
        for (started, mut child) in self.background.drain(..) {
            let group = format!("-{}", child.id());
            let _ = Command::new("kill").args(["-INT", "--", &group]).status();
            let (tx, rx) = mpsc::channel();
            std::thread::spawn(move || {
                let status = child.wait();
                let _ = tx.send(status);
            });
            let status = rx.recv_timeout(DEADLINE).unwrap_or_else(|_| {
                panic!(
                    "{}:{line}: the background command of line {started} did not stop",
                    self.name
                )
            });
            assert!(status.is_ok(), "{}:{started}", self.name);
        }
    }
}

impl Drop for Page {
    /// A page that failed half-way leaves no server running.
    fn drop(&mut self) {
        for (_, child) in &mut self.background {
            let group = format!("-{}", child.id());
            let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
            let _ = child.wait();
        }
    }
}
