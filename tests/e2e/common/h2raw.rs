//! A raw HTTP/2 client that writes frames by hand (for floods and half-finished states no
//! well-behaved client produces), and a reader that collects the server's frames until EOF.
#![allow(dead_code, clippy::unwrap_used)]

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt};

pub const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
pub const DATA: u8 = 0x0;
pub const HEADERS: u8 = 0x1;
pub const RST_STREAM: u8 = 0x3;
pub const SETTINGS: u8 = 0x4;
pub const PING: u8 = 0x6;
pub const GOAWAY: u8 = 0x7;
pub const WINDOW_UPDATE: u8 = 0x8;
pub const CONTINUATION: u8 = 0x9;
pub const END_STREAM: u8 = 0x1;
pub const END_HEADERS: u8 = 0x4;
pub const ACK: u8 = 0x1;

/// One frame: 9-byte header, then the payload.
pub fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len();
    let mut f = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
    f.extend_from_slice(&(stream & 0x7fff_ffff).to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// The preface and an empty SETTINGS frame: how every HTTP/2 connection opens.
pub fn opening() -> Vec<u8> {
    let mut b = PREFACE.to_vec();
    b.extend(frame(SETTINGS, 0, 0, &[]));
    b
}

/// An HPACK integer with an `n`-bit prefix, the prefix's other bits set to `first`.
pub fn hpack_int(first: u8, n: u32, mut value: usize, out: &mut Vec<u8>) {
    let max = (1usize << n) - 1;
    if value < max {
        out.push(first | value as u8);
        return;
    }
    out.push(first | max as u8);
    value -= max;
    while value >= 128 {
        out.push((value % 128) as u8 | 0x80);
        value /= 128;
    }
    out.push(value as u8);
}

/// A literal header field without indexing, new name (RFC 7541 §6.2.2).
pub fn literal(name: &str, value: &str, out: &mut Vec<u8>) {
    out.push(0x00);
    hpack_int(0, 7, name.len(), out);
    out.extend_from_slice(name.as_bytes());
    hpack_int(0, 7, value.len(), out);
    out.extend_from_slice(value.as_bytes());
}

/// A literal header field added to the dynamic table, new name (RFC 7541 §6.2.1).
pub fn literal_indexed(name: &str, value: &str, out: &mut Vec<u8>) {
    out.push(0x40);
    hpack_int(0, 7, name.len(), out);
    out.extend_from_slice(name.as_bytes());
    hpack_int(0, 7, value.len(), out);
    out.extend_from_slice(value.as_bytes());
}

/// The header block of a POST to `path` with these extra headers.
pub fn post_headers(path: &str, extra: &[(&str, &str)]) -> Vec<u8> {
    let mut block = vec![0x83, 0x86]; // :method POST, :scheme http (static table)
    literal(":path", path, &mut block);
    literal(":authority", "gateway", &mut block);
    for (name, value) in extra {
        literal(name, value, &mut block);
    }
    block
}

/// What the server sent on a connection until it closed it (or `within` passed).
pub struct Received {
    /// The types of the frames the server sent, in order (a server sends no preface).
    pub kinds: Vec<u8>,
    /// Whether the connection was closed by the server within the bound.
    pub closed: bool,
    /// Bytes received.
    pub bytes: usize,
}

impl Received {
    pub fn saw(&self, kind: u8) -> bool {
        self.kinds.contains(&kind)
    }
}

/// Reads frames until EOF (or a reset: also a close) or until `within` passes.
pub async fn read_frames<R: AsyncRead + Unpin>(mut r: R, within: Duration) -> Received {
    let mut buf = Vec::new();
    let closed = tokio::time::timeout(within, async {
        let mut chunk = vec![0u8; 64 * 1024];
        loop {
            match r.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
    })
    .await
    .is_ok();
    let mut kinds = Vec::new();
    let mut at = 0;
    while at + 9 <= buf.len() {
        let len =
            usize::from(buf[at]) << 16 | usize::from(buf[at + 1]) << 8 | usize::from(buf[at + 2]);
        kinds.push(buf[at + 3]);
        at += 9 + len;
    }
    Received {
        kinds,
        closed,
        bytes: buf.len(),
    }
}
