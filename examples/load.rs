//! A small closed-loop load generator for measuring the cost of durable audit:
//! `cargo run --release --example load -- URL API_KEY CONCURRENCY SECONDS`.
//! Sends the README's request body over keep-alive HTTP/1.1 and prints requests/second.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use graphgate::clock::Instant;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

const BODY: &str = r##"{"updateWindowsDeviceAccountActionParameter":{"deviceAccount":{"@odata.type":"#microsoft.graph.windowsDeviceAzureADAccount","password":"Bench-Passw0rd!","userPrincipalName":"room1@contoso.com"},"deviceAccountEmail":"room1@contoso.com","exchangeServer":"outlook.office365.com","passwordRotationEnabled":true,"calendarSyncEnabled":true,"sessionInitiationProtocalAddress":"sip:room1@contoso.com"}}"##;

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, url, key, concurrency, seconds] = args.as_slice() else {
        panic!("usage: load URL API_KEY CONCURRENCY SECONDS");
    };
    let concurrency: usize = concurrency.parse().unwrap();
    let duration = Duration::from_secs(seconds.parse().unwrap());
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let (ok, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let started = Instant::now();
    let tasks: Vec<_> = (0..concurrency)
        .map(|_| {
            let (client, url, key) = (client.clone(), url.clone(), key.clone());
            let (ok, failed) = (Arc::clone(&ok), Arc::clone(&failed));
            tokio::spawn(async move {
                while started.elapsed() < duration {
                    let req = http::Request::post(&url)
                        .header("authorization", format!("Bearer {key}"))
                        .header("content-type", "application/json")
                        .body(Full::new(Bytes::from_static(BODY.as_bytes())))
                        .unwrap();
                    match client.request(req).await {
                        Ok(resp) if resp.status().is_success() => {
                            let _ = resp.into_body().collect().await;
                            ok.fetch_add(1, Ordering::Relaxed);
                        }
                        _ => {
                            failed.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let secs = started.elapsed().as_secs_f64();
    let ok = ok.load(Ordering::Relaxed);
    println!(
        "concurrency {concurrency}: {ok} ok, {} failed in {secs:.1} s = {:.0} requests/s",
        failed.load(Ordering::Relaxed),
        ok as f64 / secs
    );
}
