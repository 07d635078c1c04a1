//! The accept step every listener shares: the next connection, or `None` once shutdown
//! begins; a failed accept (out of file descriptors and the like) is logged and retried
//! after a short back-off instead of ending the listener.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};

/// Pause after a failed accept, so a persistent error (EMFILE) does not spin a core.
const BACK_OFF: Duration = Duration::from_millis(50);

/// The next connection on `listener`, or `None` when `shutdown` resolves first (also during
/// a back-off). `listener_name` names the listener in the warning a failed accept logs.
pub async fn next<S>(
    listener: &TcpListener,
    shutdown: &mut S,
    listener_name: &'static str,
) -> Option<(TcpStream, SocketAddr)>
where
    S: Future<Output = ()> + Unpin,
{
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(conn) => return Some(conn),
                Err(e) => {
                    tracing::warn!(error = %e, listener = listener_name, "accept failed");
                }
            },
            () = &mut *shutdown => return None,
        }
        tokio::select! {
            () = tokio::time::sleep(BACK_OFF) => {}
            () = &mut *shutdown => return None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_waiting_connection_is_returned_and_shutdown_ends_the_wait() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let client = TcpStream::connect(addr).await.unwrap();
        let never = std::future::pending::<()>();
        let mut never = std::pin::pin!(never);
        let (_, peer) = next(&listener, &mut never, "test").await.unwrap();
        assert_eq!(peer, client.local_addr().unwrap());

        let mut now = std::future::ready(());
        assert!(next(&listener, &mut now, "test").await.is_none());
    }
}
