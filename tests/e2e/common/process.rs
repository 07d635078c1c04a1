//! Child processes (the graphgate binary, external tools) with every wait bounded: each
//! output pipe is read line by line on a thread of its own (so a child never blocks on a full
//! pipe), waits for a line or for the exit have a deadline, and a child still running when
//! the test ends (or fails) is killed.

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The graphgate binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_graphgate");

/// The lines of one output pipe, as they arrive.
pub struct Lines {
    rx: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Lines {
    /// Reads `pipe` on a thread of its own until it closes.
    pub fn new(pipe: impl Read + Send + 'static) -> Lines {
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut pipe = BufReader::new(pipe);
            loop {
                // Lines keep their newline (the last may have none), so the text is exact.
                let mut line = String::new();
                match pipe.read_line(&mut line) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {
                        if tx.send(line).is_err() {
                            break;
                        }
                    }
                }
            }
        });
        Lines {
            rx,
            seen: Vec::new(),
        }
    }

    fn closed() -> Lines {
        Lines {
            rx: mpsc::channel().1,
            seen: Vec::new(),
        }
    }

    /// The first line from now on for which `matches` holds; `None` if the pipe closed or
    /// `timeout` passed first. Every line read is kept (see [`Lines::text`]).
    pub fn wait_for(
        &mut self,
        timeout: Duration,
        mut matches: impl FnMut(&str) -> bool,
    ) -> Option<String> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let raw = self.rx.recv_timeout(left).ok()?;
            let line = raw.trim_end_matches(['\r', '\n']).to_owned();
            self.seen.push(raw);
            if matches(&line) {
                return Some(line);
            }
        }
    }

    /// [`Lines::wait_for`] off the async runtime's thread, so the runtime keeps serving (an
    /// in-test emulator or OTLP receiver the child talks to) while the test waits.
    pub async fn wait_for_async(
        &mut self,
        timeout: Duration,
        matches: impl FnMut(&str) -> bool + Send + 'static,
    ) -> Option<String> {
        let mut me = std::mem::replace(self, Lines::closed());
        let (me, found) = blocking(move || {
            let found = me.wait_for(timeout, matches);
            (me, found)
        })
        .await;
        *self = me;
        found
    }

    /// Reads on until the pipe closes (the child and its children are gone), at most
    /// `timeout`; returns everything read.
    pub fn read_to_end(&mut self, timeout: Duration) -> String {
        self.wait_for(timeout, |_| false);
        self.text()
    }

    /// Everything read so far, exactly as written.
    pub fn text(&self) -> String {
        self.text_from(0)
    }

    /// How many lines have been read so far.
    pub fn count(&self) -> usize {
        self.seen.len()
    }

    /// What was read so far from line `first` on (0-based), exactly as written.
    pub fn text_from(&self, first: usize) -> String {
        self.seen.iter().skip(first).map(String::as_str).collect()
    }
}

/// A running child with both output pipes read; killed (SIGKILL) when dropped.
pub struct Proc {
    child: Option<Child>,
    /// Its standard output.
    pub stdout: Lines,
    /// Its standard error.
    pub stderr: Lines,
}

impl Proc {
    /// Spawns `cmd` with its output piped (and stdin closed).
    pub fn spawn(cmd: &mut Command) -> Proc {
        Proc::spawn_with_input(cmd, None)
    }

    /// Spawns `cmd` with its output piped and `input` (if any) written to its stdin, which
    /// is then closed.
    pub fn spawn_with_input(cmd: &mut Command, input: Option<Vec<u8>>) -> Proc {
        let stdin = if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        };
        let mut child = cmd
            .stdin(stdin)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
        if let (Some(input), Some(mut pipe)) = (input, child.stdin.take()) {
            // On a thread: a child that does not read must not block the test.
            std::thread::spawn(move || {
                let _ = std::io::Write::write_all(&mut pipe, &input);
            });
        }
        let stdout = Lines::new(child.stdout.take().unwrap());
        let stderr = Lines::new(child.stderr.take().unwrap());
        Proc {
            child: Some(child),
            stdout,
            stderr,
        }
    }

    /// The child's process id.
    pub fn id(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    /// Sends `signal` (e.g. `TERM`, `KILL`) to the child.
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.id().to_string())
            .status()
            .unwrap();
        assert!(status.success(), "kill -{signal} {}", self.id());
    }

    /// Waits for the child to exit, at most `timeout`; past it the child is killed and the
    /// test fails, showing what the child wrote.
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let mut child = self.child.take().expect("the child was already reaped");
        let pid = child.id();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let status = child.wait();
            let _ = tx.send((status, child));
        });
        let (status, child) = match rx.recv_timeout(timeout) {
            Ok(done) => done,
            Err(_) => {
                let _ = Command::new("kill")
                    .args(["-KILL", &pid.to_string()])
                    .status();
                let _ = rx.recv();
                panic!(
                    "process {pid} did not exit within {timeout:?}; it wrote:\n{}{}",
                    self.stdout.read_to_end(Duration::from_secs(1)),
                    self.stderr.read_to_end(Duration::from_secs(1))
                );
            }
        };
        self.child = Some(child);
        status.unwrap()
    }

    /// [`Proc::wait_exit`] off the async runtime's thread.
    pub async fn wait_exit_async(mut self, timeout: Duration) -> (ExitStatus, Proc) {
        blocking(move || {
            let status = self.wait_exit(timeout);
            (status, self)
        })
        .await
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Runs `cmd` to completion, at most `timeout` (then it is killed and the test fails);
/// returns its exit status, standard output and standard error.
pub fn run(cmd: &mut Command, timeout: Duration) -> (ExitStatus, String, String) {
    run_with_input(cmd, None, timeout)
}

/// [`run`], with `input` on the command's stdin.
pub fn run_with_input(
    cmd: &mut Command,
    input: Option<Vec<u8>>,
    timeout: Duration,
) -> (ExitStatus, String, String) {
    let mut proc = Proc::spawn_with_input(cmd, input);
    let status = proc.wait_exit(timeout);
    let out = proc.stdout.read_to_end(Duration::from_secs(5));
    let err = proc.stderr.read_to_end(Duration::from_secs(5));
    (status, out, err)
}

/// [`run`] off the async runtime's thread.
pub async fn run_async(mut cmd: Command, timeout: Duration) -> (ExitStatus, String, String) {
    blocking(move || run(&mut cmd, timeout)).await
}

/// Runs `work` on the blocking pool; its panic (a failed wait) is the test's.
async fn blocking<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(work)
        .await
        .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))
}
