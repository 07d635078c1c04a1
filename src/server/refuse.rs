//! Connections past a cap are answered at once rather than left in the kernel's backlog: a
//! plain-HTTP caller gets `503` in Graph's error JSON with `Retry-After`, a TLS caller gets
//! its connection closed (a handshake would cost the CPU the cap protects). Refusals run in
//! a bounded number of small tasks; past that, the socket is simply closed.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;

/// Why a connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ConnectionRefusal {
    /// The server's connection cap (`--max-connections`).
    MaxConnections,
    /// The cap on connections from one source address.
    PerSource,
}

impl ConnectionRefusal {
    fn message(self) -> &'static str {
        match self {
            ConnectionRefusal::MaxConnections => {
                "graphgate is at its connection limit (--max-connections); retry shortly"
            }
            ConnectionRefusal::PerSource => {
                "too many connections from this address (--max-connections-per-source); close idle ones or retry shortly"
            }
        }
    }

    /// Label for logs.
    pub(super) fn as_str(self) -> &'static str {
        match self {
            ConnectionRefusal::MaxConnections => "max_connections",
            ConnectionRefusal::PerSource => "max_connections_per_source",
        }
    }
}

/// Longest a refused connection is kept to deliver its answer.
const ANSWER_WITHIN: Duration = Duration::from_secs(1);

/// Answers refused connections, a bounded number at a time.
#[derive(Debug, Clone)]
pub(super) struct Refuser {
    tls: bool,
    in_progress: Arc<Semaphore>,
}

impl Refuser {
    /// Refusals on a TLS (`tls`) or plain listener, at most `concurrent` being answered at once.
    pub(super) fn new(tls: bool, concurrent: usize) -> Self {
        Refuser {
            tls,
            in_progress: Arc::new(Semaphore::new(concurrent)),
        }
    }

    /// Refuses `stream` without waiting for it.
    pub(super) fn refuse(&self, stream: TcpStream, why: ConnectionRefusal) {
        if self.tls {
            // Closing is the answer: a handshake would cost what the cap protects.
            return;
        }
        let Ok(permit) = Arc::clone(&self.in_progress).try_acquire_owned() else {
            // Already answering many: dropping the socket is the quickest answer left.
            return;
        };
        tokio::spawn(async move {
            let _permit = permit;
            let _ = tokio::time::timeout(ANSWER_WITHIN, answer(stream, why)).await;
        });
    }
}

/// Writes the 503, closes the sending side, and reads (discarding) until the client closes,
/// so that the answer is not lost to a reset caused by unread request bytes.
async fn answer(mut stream: TcpStream, why: ConnectionRefusal) -> std::io::Result<()> {
    let id = uuid::Uuid::new_v4().to_string();
    let body = crate::graph_error::body("serviceNotAvailable", why.message(), &id, &id);
    let head = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nretry-after: 1\r\nrequest-id: {id}\r\nconnection: close\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(&body).await?;
    stream.shutdown().await?;
    let mut sink = [0u8; 4096];
    while stream.read(&mut sink).await? > 0 {}
    Ok(())
}
