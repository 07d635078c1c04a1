//! `route::recognise` (and its one-device check) and `recognise_simple` on an arbitrary
//! method and path.
//! Input: one length byte, that many method bytes, then the path (lossy UTF-8).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&len, rest)) = data.split_first() else {
        return;
    };
    let len = usize::from(len % 16).min(rest.len());
    let (method, path) = rest.split_at(len);
    let method = http::Method::from_bytes(method).unwrap_or(http::Method::POST);
    let path = String::from_utf8_lossy(path);
    let _ = graphgate::operation::route::recognise(&method, &path).and_then(|r| r.one_device());
    let _ = graphgate::operation::route::recognise_simple(&method, &path);
});
