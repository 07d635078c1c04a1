//! At start, before serving: has any witness cosigned more of this log than it now holds?
//! Each witness's newest cosigned checkpoint of the log is fetched from its monitoring path
//! (`GET <url>/<origin hash>/checkpoint`) and checked (the log's signature and the witness's
//! cosignature); the cosigned checkpoints kept beside the log count too. A witness that
//! cannot be reached does not stop the start: the background submission will meet it.

use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};

use super::Audit;
use super::checkpoint;
use super::note::NoteVerifier;
use super::witness::WitnessConfig;
use super::witness_protocol::origin_hash;
use crate::upstream::ConnectRule;

/// Longest a witness gets to answer at start.
const TIMEOUT: Duration = Duration::from_secs(3);

/// Refuses (with what is missing and how to look into it) a log below what a witness, or
/// the cosigned checkpoints beside it, vouch for.
pub async fn check(
    audit: &Audit,
    log: &Path,
    log_key: &NoteVerifier,
    witnesses: &[WitnessConfig],
    connect_to: &[ConnectRule],
    extra_ca_pem: Option<&str>,
) -> Result<(), String> {
    let head = audit.durable_seq().map_or(0, |s| *s.borrow());
    let origin = checkpoint::origin_for(log_key.name(), log);
    let refuse = |who: String, size: u64| {
        format!(
            "{who} has cosigned {size} records of the audit log {origin}, but {} holds {head}: records seq {}..={size} are missing (cut off?). To investigate: `graphgate audit verify --public-key ... --witness-key ...` over the log's files, and the witness's own copy at <url>/{}/checkpoint. Restore the records from a backup; a new tree on purpose (--audit-new-tree) needs the witnesses' operators to reset this log",
            log.display(),
            head + 1,
            origin_hash(&origin),
        )
    };
    for note in super::cosigned::read(&super::cosigned::path_for(log)).unwrap_or_default() {
        if let Ok(w) = super::cosigned::check(&note, log_key, &[])
            && w.checkpoint.size > head
        {
            return Err(refuse(
                format!(
                    "a checkpoint kept in {}",
                    super::cosigned::path_for(log).display()
                ),
                w.checkpoint.size,
            ));
        }
    }
    let client = super::push::client(connect_to, extra_ca_pem).map_err(|e| e.to_string())?;
    for w in witnesses {
        let url = format!(
            "{}/{}/checkpoint",
            w.url.to_string().trim_end_matches('/'),
            origin_hash(&origin)
        );
        let fetched = async {
            let req = http::Request::get(url.as_str())
                .body(Full::new(Bytes::new()))
                .map_err(|e| e.to_string())?;
            let resp = client.request(req).await.map_err(|e| e.to_string())?;
            let status = resp.status();
            let body = Limited::new(resp.into_body(), 64 * 1024)
                .collect()
                .await
                .map_err(|e| e.to_string())?
                .to_bytes();
            Ok::<_, String>((status, String::from_utf8_lossy(&body).into_owned()))
        };
        match tokio::time::timeout(TIMEOUT, fetched).await {
            Ok(Ok((status, note))) if status.is_success() => {
                let checked = super::cosigned::check(&note, log_key, std::slice::from_ref(&w.key));
                match checked {
                    Ok(c) if !c.by.is_empty() && c.checkpoint.size > head => {
                        return Err(refuse(
                            format!("the witness {}", w.shown()),
                            c.checkpoint.size,
                        ));
                    }
                    Ok(_) => {}
                    Err(e) => {
                        tracing::warn!(witness = %w.shown(), error = %e, "a witness's checkpoint of this log does not verify; ignored at start")
                    }
                }
            }
            Ok(Ok((status, _))) if status == http::StatusCode::NOT_FOUND => {}
            Ok(Ok((status, _))) => {
                tracing::warn!(witness = %w.shown(), %status, "a witness did not tell its view of the log at start")
            }
            Ok(Err(e)) => {
                tracing::warn!(witness = %w.shown(), error = %e, "a witness could not be asked for its view of the log at start")
            }
            Err(_) => {
                tracing::warn!(witness = %w.shown(), "a witness did not answer within 3 s at start")
            }
        }
    }
    Ok(())
}
