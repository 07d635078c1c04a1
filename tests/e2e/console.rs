//! The audit console in a real browser: headless Chromium (Debian's `chromium`) loads the
//! page of a gateway whose log was written by real requests, applies a filter from the
//! page's own form, opens a device's history from the page's own link, and the rendered
//! DOM is checked (the page's script ran under the strict CSP, rows are the log's); a
//! screenshot goes to `target/`. The page carries no secret of the source requests, and an
//! admin listener off loopback refuses the console (and `/metrics`) without the token.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::common::*;
use graphgate::admin::AdminOptions;
use graphgate::console::Console;
use graphgate::console::auth::AdminToken;

const OTHER_DEVICE: &str = "1c7a3e2f-2b3c-4d5e-9f00-112233445566";
const ADMIN_TOKEN: &str = "admin-token-Sentinel-7f3e9a21";

pub(crate) fn chromium_present() -> bool {
    require_tool(
        "chromium",
        &["chromium", "--version"],
        "apt-get update -qq && apt-get install -y -qq chromium",
    )
}

/// Kills a process group when dropped: Chromium's browser process, and the zygote,
/// renderer and utility processes it starts, which would outlive a browser killed on a
/// timeout (or a failed test) if only the browser were killed.
struct ProcessGroup(rustix::process::Pid);

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        // ESRCH (the group already gone) is the normal case after a clean exit.
        let _ = rustix::process::kill_process_group(self.0, rustix::process::Signal::KILL);
    }
}

/// Runs headless Chromium on `url` with `extra` arguments (a fresh profile, no background
/// networking, no DevTools port: the page's DOM or screenshot comes back on exit), in a
/// process group of its own that is killed when it is done, bounded; returns its standard
/// output.
async fn chromium(url: &str, extra: &[String]) -> String {
    let profile = temp_dir("chromium-profile");
    let mut cmd = tokio::process::Command::new("chromium");
    cmd.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
    ])
    .arg(format!("--user-data-dir={}", profile.display()))
    .args(extra)
    .arg(url)
    .stdin(std::process::Stdio::null())
    .stdout(std::process::Stdio::piped())
    .stderr(std::process::Stdio::piped())
    .process_group(0)
    .kill_on_drop(true);
    let child = cmd.spawn().expect("chromium starts");
    let pid = child
        .id()
        .and_then(|id| rustix::process::Pid::from_raw(id as i32));
    let _group = ProcessGroup(pid.expect("chromium's pid"));
    let out = tokio::time::timeout(Duration::from_secs(90), child.wait_with_output())
        .await
        .expect("chromium finished within 90 s")
        .unwrap();
    let _ = std::fs::remove_dir_all(&profile);
    assert!(
        out.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

pub(crate) async fn dump_dom(url: &str) -> String {
    chromium(url, &["--dump-dom".to_owned()]).await
}

/// A gateway whose log holds allowed calls on two devices and refusals, and an admin
/// listener on `127.0.0.1:0` serving the console over it.
async fn console_gateway() -> (Harness, SocketAddr) {
    let h = start_with(Options {
        emulator: graphgate_emulator::EmulatorConfig {
            devices: vec![DEVICE.parse().unwrap(), OTHER_DEVICE.parse().unwrap()],
            ..Default::default()
        },
        ..Options::default()
    })
    .await;
    for _ in 0..3 {
        assert_eq!(h.call().await.status, 204);
    }
    let other = ACTION_PATH.replace(DEVICE, OTHER_DEVICE);
    assert_eq!(h.post(&other, Some(ROTATOR_KEY), &body()).await.status, 204);
    for _ in 0..2 {
        h.post(ACTION_PATH, Some(OTHER_KEY), &body())
            .await
            .assert_graph_error(403, "accessDenied");
    }
    h.audit.flush().await.unwrap();
    let path = h.audit_path.clone().unwrap();
    let console = Console::start(&path, h.audit.durable_seq(), None);
    wait_indexed(&console, &path).await;
    let addr = serve_console(Arc::clone(&h.gw), console).await;
    (h, addr)
}

/// An admin listener on `127.0.0.1:0` (no admin token) serving `gw` with `console`; its
/// address.
pub(crate) async fn serve_console(
    gw: Arc<graphgate::gateway::Gateway>,
    console: Arc<Console>,
) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let options = AdminOptions {
        token: None,
        console: Some(console),
    };
    tokio::spawn(graphgate::admin::serve_with(
        listener,
        gw,
        options,
        std::future::pending(),
    ));
    addr
}

/// Waits (bounded) until the console has indexed every record of the log.
async fn wait_indexed(console: &Console, log: &Path) {
    let last = std::fs::read_to_string(log).unwrap().lines().count() as u64;
    tokio::time::timeout(Duration::from_secs(20), async {
        while console.index().last_seq() < last {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the console indexed the log");
}

/// The `<tr>` elements of the actions table body.
fn rows(dom: &str) -> Vec<&str> {
    let Some(body) = dom.split("<tbody>").nth(1) else {
        return Vec::new();
    };
    let body = body.split("</tbody>").next().unwrap();
    body.split("<tr").skip(1).collect()
}

/// The values a GET form submits: each named control's current value, in order, as a
/// browser builds the URL (selects submit their selected option, or the first).
fn form_url(dom: &str, base: &str, set: (&str, &str)) -> String {
    let form = dom.split(r#"<form id="filters""#).nth(1).unwrap();
    let form = form.split("</form>").next().unwrap();
    let mut pairs = Vec::new();
    for control in form
        .split('<')
        .filter(|c| c.starts_with("select") || c.starts_with("input"))
    {
        let name = attr(control, "name").unwrap();
        let value = if name == set.0 {
            set.1.to_owned()
        } else if control.starts_with("input") {
            attr(control, "value").unwrap_or_default()
        } else {
            String::new() // "any", the first option
        };
        pairs.push((name, value));
    }
    let query: String = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish();
    format!("{base}/audit?{query}")
}

fn attr(tag: &str, name: &str) -> Option<String> {
    let start = tag.find(&format!(r#"{name}=""#))? + name.len() + 2;
    let len = tag[start..].find('"')?;
    Some(tag[start..start + len].replace("&amp;", "&"))
}

#[tokio::test]
async fn the_console_in_a_browser_lists_filters_and_opens_a_device_history() {
    if !chromium_present() {
        return;
    }
    let (h, addr) = console_gateway().await;
    let base = format!("http://{addr}");
    let dom = dump_dom(&format!("{base}/audit")).await;
    // The page's own script ran (allowed by its CSP): progressive enhancement is on.
    assert!(dom.contains(r#"data-js="on""#), "{dom}");
    assert!(
        dom.contains("Hash chain: <span class=\"good\">intact</span>"),
        "{dom}"
    );
    let all = rows(&dom);
    assert_eq!(all.len(), 6, "4 allowed calls and 2 refusals: {dom}");
    // Newest first: the two refusals came last.
    assert!(all[0].contains(r#"class="denied""#) && all[1].contains(r#"class="denied""#));
    assert!(all[2].contains(OTHER_DEVICE), "{}", all[2]);
    assert!(all[5].contains("204 (Graph 204)") && all[5].contains("rooms-rotator"));
    assert!(all[5].contains("not reconciled"), "{}", all[5]);

    // Apply a filter with the page's own form.
    assert!(dom.contains("<option>denied</option>"), "{dom}");
    let filtered = dump_dom(&form_url(&dom, &base, ("decision", "denied"))).await;
    let denied = rows(&filtered);
    assert_eq!(denied.len(), 2, "{filtered}");
    assert!(
        denied
            .iter()
            .all(|r| r.contains("other-service") && r.contains("403"))
    );
    assert!(
        filtered.contains("<option selected=\"\">denied</option>"),
        "{filtered}"
    );

    // Open a device's history from the page's own link.
    let link = all[2]
        .split(r#"<a class="device" href=""#)
        .nth(1)
        .map(|s| s.split('"').next().unwrap().to_owned())
        .unwrap();
    assert_eq!(link, format!("/audit/device/{OTHER_DEVICE}"));
    let history = dump_dom(&format!("{base}{link}")).await;
    assert!(history.contains(&format!(r#"<code id="device-id">{OTHER_DEVICE}</code>"#)));
    let device_rows = rows(&history);
    assert_eq!(device_rows.len(), 1, "{history}");
    assert!(device_rows[0].contains("managedDevices.updateWindowsDeviceAccount"));

    // A screenshot of the page, under target/.
    let shot = screenshot_path();
    let _ = std::fs::remove_file(&shot);
    chromium(
        &format!("{base}/audit"),
        &[
            format!("--screenshot={}", shot.display()),
            "--window-size=1400,720".to_owned(),
            "--hide-scrollbars".to_owned(),
        ],
    )
    .await;
    let png = std::fs::read(&shot).unwrap();
    assert!(
        png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > 10_000,
        "{}",
        png.len()
    );

    // No secret of the source requests anywhere on the pages.
    for page in [&dom, &filtered, &history] {
        for secret in [PASSWORD, ROTATOR_KEY, OTHER_KEY] {
            assert!(!page.contains(secret), "{secret} on a console page");
        }
    }
    drop(h);
}

fn screenshot_path() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"));
    std::fs::create_dir_all(&target).unwrap();
    target.join("console-screenshot.png")
}

/// One GET on `addr` with an optional Authorization header: status, a header, body.
pub(crate) async fn get(addr: SocketAddr, path: &str, auth: Option<&str>) -> (u16, String, String) {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tcp))
            .await
            .unwrap();
    tokio::spawn(conn);
    let mut req = http::Request::get(path).header("host", "localhost");
    if let Some(auth) = auth {
        req = req.header("authorization", auth);
    }
    let req = req
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .unwrap();
    let resp = sender.send_request(req).await.unwrap();
    let status = resp.status().as_u16();
    let challenge = resp
        .headers()
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let body = http_body_util::BodyExt::collect(resp.into_body())
        .await
        .unwrap()
        .to_bytes();
    (
        status,
        challenge,
        String::from_utf8_lossy(&body).into_owned(),
    )
}

#[tokio::test]
async fn off_loopback_the_console_and_metrics_need_the_admin_token() {
    let (h, loopback) = console_gateway().await;
    let path = h.audit_path.clone().unwrap();
    let serve_on = |token: Option<AdminToken>| {
        let console = Console::start(&path, h.audit.durable_seq(), None);
        let (gw, log) = (Arc::clone(&h.gw), path.clone());
        async move {
            wait_indexed(&console, &log).await;
            let admin = tokio::net::TcpListener::bind("0.0.0.0:0").await.unwrap();
            let port = admin.local_addr().unwrap().port();
            let options = AdminOptions {
                token,
                console: Some(console),
            };
            tokio::spawn(graphgate::admin::serve_with(
                admin,
                gw,
                options,
                std::future::pending(),
            ));
            SocketAddr::from(([127, 0, 0, 1], port))
        }
    };
    let guarded = serve_on(Some(AdminToken::new(ADMIN_TOKEN).unwrap())).await;
    for p in [
        "/audit",
        "/audit/device/0b6f2f1e-1a2b-4c3d-8e9f-00112233aabb",
        "/audit/static/console.css",
    ] {
        let (status, challenge, body) = get(guarded, p, None).await;
        assert_eq!(status, 401, "{p}: {body}");
        assert!(challenge.starts_with("Basic realm="), "{p}: {challenge}");
        assert!(!body.contains("rooms-rotator"), "{body}");
        let (status, _, _) = get(guarded, p, Some("Bearer wrong-token-0000000000")).await;
        assert_eq!(status, 401, "{p}");
    }
    let (status, challenge, _) = get(guarded, "/metrics", None).await;
    assert_eq!((status, challenge.as_str()), (401, "Bearer"));
    // With the token: as a bearer (Prometheus, curl) or a browser's Basic password.
    let bearer = format!("Bearer {ADMIN_TOKEN}");
    let (status, _, body) = get(guarded, "/audit", Some(&bearer)).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("rooms-rotator"));
    use base64::Engine;
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("ops:{ADMIN_TOKEN}"));
    let (status, _, _) = get(guarded, "/metrics", Some(&format!("Basic {basic}"))).await;
    assert_eq!(status, 200);
    // Probes stay open.
    assert_eq!(get(guarded, "/healthz", None).await.0, 200);
    assert_ne!(get(guarded, "/readyz", None).await.0, 401);
    // No token configured off loopback: refused, saying how to set one.
    let open = serve_on(None).await;
    let (status, _, body) = get(open, "/audit", None).await;
    assert_eq!(status, 401);
    assert!(body.contains("--admin-token-file"), "{body}");
    // On loopback, no token needed; and every console answer carries the strict CSP.
    let (status, _, body) = get(loopback, "/audit", None).await;
    assert_eq!(status, 200, "{body}");
    let resp = reqwest_like_headers(loopback, "/audit").await;
    assert!(
        resp.contains("content-security-policy: default-src 'none'; script-src 'self'"),
        "{resp}"
    );
    assert!(!body.contains(ADMIN_TOKEN));
}

/// The response headers of a GET, lower-cased `name: value` lines.
async fn reqwest_like_headers(addr: SocketAddr, path: &str) -> String {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tcp))
            .await
            .unwrap();
    tokio::spawn(conn);
    let req = http::Request::get(path)
        .header("host", "localhost")
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .unwrap();
    let resp = sender.send_request(req).await.unwrap();
    resp.headers()
        .iter()
        .map(|(k, v)| format!("{}: {}\n", k.as_str(), v.to_str().unwrap_or("")))
        .collect()
}

/// Text a hostile caller controls, as markup: it must reach the page as text only.
pub(crate) const HOSTILE: &str = r#"<b id="pwn">x</b><img src=x onerror="document.title='pwned'">"#;

/// No element made from [`HOSTILE`] in a rendered DOM.
pub(crate) fn assert_no_hostile_markup(dom: &str, page: &str) {
    for markup in [
        r#"<b id="pwn">"#,
        "<img src=\"x\"",
        "<img src=x",
        "pwned</title>",
    ] {
        assert!(!dom.contains(markup), "{page}: {markup} in the DOM:\n{dom}");
    }
}

/// A hostile filter value, device id and reason, rendered by Chromium: the DOM holds them
/// as text, never as elements (and the page's script did not run them).
#[tokio::test]
async fn hostile_filters_device_ids_and_reasons_stay_text_in_the_browser() {
    if !chromium_present() {
        return;
    }
    let (h, addr) = console_gateway().await;
    // A reason is free text: a caller may state markup (it is visible text, so allowed).
    let req = h
        .request(ACTION_PATH)
        .header("content-type", "application/json")
        .header("authorization", format!("Bearer {ROTATOR_KEY}"))
        .header("x-graphgate-reason", HOSTILE)
        .body(http_body_util::Full::new(bytes::Bytes::from(body())))
        .unwrap();
    assert_eq!(h.send(req).await.status, 204);
    h.audit.flush().await.unwrap();
    let base = format!("http://{addr}");
    let q = url_part(HOSTILE);
    let list = dump_dom(&format!("{base}/audit")).await;
    assert_no_hostile_markup(&list, "/audit");
    assert!(
        list.contains("&lt;b id=\"pwn\"&gt;x&lt;/b&gt;"),
        "the reason is shown, as text: {list}"
    );
    for page in [
        format!("/audit?caller={q}&device={q}&operation={q}&decision={q}&since={q}&until={q}"),
        format!("/audit?device={q}&before=9"),
        format!("/audit/device/{}", q.replace('+', "%20")),
    ] {
        let dom = dump_dom(&format!("{base}{page}")).await;
        assert_no_hostile_markup(&dom, &page);
        // As text, or as an attribute's value (where the serialiser writes &quot;).
        assert!(dom.contains("&lt;b id="), "{page}: shown as text:\n{dom}");
    }
    drop(h);
}

fn url_part(text: &str) -> String {
    form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

/// Records at known times, one a second from 10:00:00, written through a real audit log
/// with checkpoints every `every` records (signed by the returned key).
async fn timed_log(
    n: usize,
    every: u64,
) -> (PathBuf, graphgate::audit::checkpoints::note::NoteVerifier) {
    use graphgate::audit::checkpoints::checkpoint::CheckpointConfig;
    use graphgate::audit::checkpoints::note::NoteSigner;
    use graphgate::audit::{Audit, AuditConfig, Entry, Kind};
    let log = temp_dir("console-timed").join("audit.jsonl");
    let (signer, _) = NoteSigner::generate("graphgate.test/console").unwrap();
    let verifier = signer.verifier();
    let config = AuditConfig {
        checkpoints: Some(CheckpointConfig {
            signer: Arc::new(signer),
            every_records: every,
            interval: Duration::from_secs(3600),
            push: None,
            latest: Default::default(),
        }),
        ..AuditConfig::default()
    };
    let audit = Audit::open_with(&log, &config, fingerprinter()).unwrap();
    for i in 0..n {
        let entry = Entry {
            kind: Some(Kind::Request),
            time: format!("2026-11-28T10:{:02}:{:02}.000000Z", i / 60, i % 60),
            audit_id: format!("req-{i}"),
            caller: Some("rooms-rotator".into()),
            operation: Some("managedDevices.wipe".into()),
            device_id: Some(DEVICE.into()),
            decision: Some(graphgate::audit::AuditDecision::Denied),
            ..Entry::default()
        };
        audit.write_durable(entry).await.unwrap();
    }
    audit.shutdown().await.unwrap();
    (log, verifier)
}

/// A console page's body, rendered by the console itself.
fn page(console: &Console, path: &str, query: Option<&str>) -> String {
    let resp = console.handle(path, query);
    assert_eq!(resp.status(), 200);
    let body = futures_body(resp);
    String::from_utf8(body).unwrap()
}

fn futures_body(resp: http::Response<http_body_util::Full<bytes::Bytes>>) -> Vec<u8> {
    use http_body_util::BodyExt;
    let collected = futures_block(resp.into_body().collect());
    collected.unwrap().to_bytes().to_vec()
}

fn futures_block<F: std::future::Future>(f: F) -> F::Output {
    // A Full body is ready at once: one poll completes it.
    let waker = std::task::Waker::noop();
    let mut cx = std::task::Context::from_waker(waker);
    let mut f = std::pin::pin!(f);
    match f.as_mut().poll(&mut cx) {
        std::task::Poll::Ready(out) => out,
        std::task::Poll::Pending => panic!("a full body is ready at once"),
    }
}

/// The console's time filters: from (inclusive) and until (exclusive), as RFC 3339, a date,
/// or a browser's `datetime-local` value; an unreadable time is said, not ignored.
#[tokio::test]
async fn the_time_filters_select_the_records_of_their_window() {
    let (log, verifier) = timed_log(90, 1000).await;
    let console = Console::start(&log, None, Some(verifier));
    wait_indexed(&console, &log).await;
    let count = |query: &str| rows(&page(&console, "/audit", Some(query))).len();
    assert_eq!(
        count("since=2026-11-28T10:00:10Z&until=2026-11-28T10:00:20Z"),
        10
    );
    assert_eq!(
        count("since=2026-11-28T10%3A01"),
        30,
        "datetime-local: from 10:01"
    );
    assert_eq!(count("until=2026-11-28T10%3A00%3A05Z"), 5);
    assert_eq!(count("since=2026-11-29"), 0, "a date: from its midnight");
    assert_eq!(count("until=2026-11-29"), 50, "one page of all 90");
    let bad = page(&console, "/audit", Some("since=yesterday"));
    assert!(bad.contains("is not a date"), "{bad}");
    assert!(rows(&bad).is_empty(), "an unreadable time selects nothing");
}

/// Given the checkpoint verifier, the console says whether the log still matches its newest
/// checkpoint: it does when written, and after a record is rewritten in place it does not.
#[tokio::test]
async fn the_console_says_when_the_log_no_longer_matches_its_checkpoint() {
    let (log, verifier) = timed_log(6, 3).await;
    let console = Console::start(&log, None, Some(verifier));
    wait_indexed(&console, &log).await;
    let before = page(&console, "/audit", None);
    assert!(before.contains("the log matches it"), "{before}");
    // Rewrite every record's hash in place (same length: the index's offsets still hold).
    let text = std::fs::read_to_string(&log).unwrap();
    let mut rewritten = String::new();
    for line in text.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let hash = v["hash"].as_str().unwrap();
        let flipped = format!(
            "{}{}",
            if hash.starts_with('0') { '1' } else { '0' },
            &hash[1..]
        );
        rewritten.push_str(&line.replace(hash, &flipped));
        rewritten.push('\n');
    }
    assert_eq!(rewritten.len(), text.len());
    std::fs::write(&log, rewritten).unwrap();
    let after = page(&console, "/audit", None);
    assert!(after.contains("THE LOG DOES NOT MATCH IT"), "{after}");
    assert!(!after.contains("the log matches it"), "{after}");
}

/// The gateway's console builds its index only once it is opened: until then a gateway
/// spends nothing on it. The first page says the log is being indexed (or already shows it),
/// and the index then reads every record, the status saying the chain is intact.
#[tokio::test]
async fn the_console_indexes_the_log_only_once_it_is_opened() {
    let (log, verifier) = timed_log(40, 1000).await;
    let console = Console::lazy(&log, None, Some(verifier));
    assert!(!console.is_indexing(), "nobody opened it: no index built");
    assert_eq!(console.index().last_seq(), 0);
    let first = page(&console, "/audit", None);
    assert!(console.is_indexing(), "opening it starts the index");
    assert!(
        first.contains("indexing the log") || first.contains("verified seq 1..=40"),
        "{first}"
    );
    wait_indexed(&console, &log).await;
    let mut shown = String::new();
    // The status says "intact" once the follower has read past the end (bounded).
    tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            shown = page(&console, "/audit", None);
            if shown.contains("intact</span>, verified seq 1..=40") {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("the console caught up: {shown}"));
    assert_eq!(rows(&shown).len(), 40);
}
