//! Both ends of a verified chain against its anchor: records missing before the anchored
//! tail (the oldest file removed, its first records cut) or up to the anchored head (the
//! newest records cut off), ends that are not the records anchored (rewritten), and records
//! after a clean shutdown. Records newer than an anchor written while the gateway ran are
//! reported as unanchored, not as a problem: after a crash the anchor lags by up to
//! [`super::anchor::INTERVAL`].

use std::fmt;

use super::anchor::Anchor;
use super::report::Report;

/// What is wrong with an end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EndProblem {
    /// Records before the first one present are missing.
    MissingTail {
        /// Where the anchor says the log starts.
        from: u64,
        /// The last missing sequence number.
        to: u64,
    },
    /// The record where the log starts is not the one anchored.
    TailMismatch {
        /// Its sequence number.
        seq: u64,
    },
    /// Records after the last one present are missing.
    MissingHead {
        /// The first missing sequence number.
        from: u64,
        /// How far the anchor says the chain reaches.
        to: u64,
    },
    /// The anchored head is present but is not the record anchored.
    HeadMismatch {
        /// Its sequence number.
        seq: u64,
    },
    /// Records follow a clean shutdown (nothing may).
    AfterCleanShutdown {
        /// The first such record.
        from: u64,
        /// The last.
        to: u64,
    },
}

/// The outcome of checking the ends.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ends {
    /// The first problem, if any.
    pub problem: Option<EndProblem>,
    /// Records newer than the anchor (it was written while the gateway ran): a cut among
    /// them would not be noticed.
    pub unanchored: Option<(u64, u64)>,
}

/// Checks a chain that verified (`report` without a problem, from
/// [`super::verify::verify_watching`] with the anchor's tail and head watched).
pub fn check(anchor: &Anchor, report: &Report) -> Ends {
    let (tail, head) = (&anchor.tail, &anchor.head);
    let watched = |seq: u64| report.watched.iter().find(|l| l.seq == seq);
    let problem = |p| Ends {
        problem: Some(p),
        unanchored: None,
    };
    let (Some(first), Some((_, last))) = (&report.first, report.seq_range) else {
        return if head.seq >= tail.seq && head.seq > 0 {
            problem(EndProblem::MissingHead {
                from: tail.seq,
                to: head.seq,
            })
        } else {
            Ends::default()
        };
    };
    if first.seq > tail.seq {
        return problem(EndProblem::MissingTail {
            from: tail.seq,
            to: first.seq - 1,
        });
    }
    if watched(tail.seq).is_some_and(|l| l.prev_hash != tail.prev_hash) {
        return problem(EndProblem::TailMismatch { seq: tail.seq });
    }
    if last < head.seq {
        return problem(EndProblem::MissingHead {
            from: last + 1,
            to: head.seq,
        });
    }
    if head.seq > 0 && watched(head.seq).is_some_and(|l| l.hash != head.hash) {
        return problem(EndProblem::HeadMismatch { seq: head.seq });
    }
    let after = (last > head.seq).then_some((head.seq + 1, last));
    match after {
        Some((from, to)) if anchor.clean => problem(EndProblem::AfterCleanShutdown { from, to }),
        unanchored => Ends {
            problem: None,
            unanchored,
        },
    }
}

impl fmt::Display for EndProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EndProblem::MissingTail { from, to } => write!(
                f,
                "missing tail: the anchor records that the log starts at seq {from}, but the files start at seq {}: seq {from}..={to} missing (the oldest file removed, or its first records cut)",
                to + 1
            ),
            EndProblem::TailMismatch { seq } => write!(
                f,
                "tail mismatch: the record at seq {seq} is not the one the anchor records as the log's start (rewritten)"
            ),
            EndProblem::MissingHead { from, to } => write!(
                f,
                "missing head: the anchor records the chain up to seq {to}, but the files end at seq {}: seq {from}..={to} missing (the newest records cut off)",
                from - 1
            ),
            EndProblem::HeadMismatch { seq } => write!(
                f,
                "head mismatch: the record at seq {seq} is not the one the anchor records (the log was rewritten from there)"
            ),
            EndProblem::AfterCleanShutdown { from, to } => write!(
                f,
                "seq {from}..={to} follow the clean shutdown the anchor records: appended after the gateway stopped"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::records::chain::GENESIS;
    use crate::audit::store::anchor::{Head, Tail};
    use crate::audit::store::files::Link;

    fn anchor(tail: u64, head: u64, clean: bool) -> Anchor {
        Anchor {
            version: 1,
            log: "audit.jsonl".into(),
            tail: Tail {
                seq: tail,
                prev_hash: if tail == 1 {
                    GENESIS.into()
                } else {
                    format!("h{}", tail - 1)
                },
            },
            head: Head {
                seq: head,
                hash: format!("h{head}"),
            },
            last_rotation: 0,
            clean,
            checkpoints: false,
            reason: "test".into(),
            written: String::new(),
        }
    }

    /// A verified report of records `first..=last` with hashes `h<seq>`.
    fn report(first: u64, last: u64, watch: &[u64]) -> Report {
        let link = |seq: u64| Link {
            seq,
            prev_hash: if seq == 1 {
                GENESIS.into()
            } else {
                format!("h{}", seq - 1)
            },
            hash: format!("h{seq}"),
        };
        Report {
            records: last - first + 1,
            seq_range: Some((first, last)),
            first: Some(link(first)),
            watched: watch
                .iter()
                .filter(|s| (first..=last).contains(*s))
                .map(|s| link(*s))
                .collect(),
            ..Report::default()
        }
    }

    #[test]
    fn each_end_is_checked_and_named() {
        let ok = check(&anchor(1, 10, true), &report(1, 10, &[1, 10]));
        assert_eq!(ok, Ends::default());
        let cut_head = check(&anchor(1, 10, true), &report(1, 8, &[1, 10]));
        assert_eq!(
            cut_head.problem,
            Some(EndProblem::MissingHead { from: 9, to: 10 })
        );
        let cut_tail = check(&anchor(1, 10, true), &report(4, 10, &[1, 10]));
        assert_eq!(
            cut_tail.problem,
            Some(EndProblem::MissingTail { from: 1, to: 3 })
        );
        // An archive older than the anchored tail (after retention) is fine.
        assert_eq!(
            check(&anchor(4, 10, false), &report(1, 10, &[4, 10])),
            Ends::default()
        );
        // A crash: records after the anchor are reported, not refused...
        let crashed = check(&anchor(1, 10, false), &report(1, 12, &[1, 10]));
        assert_eq!(crashed.unanchored, Some((11, 12)));
        assert_eq!(crashed.problem, None);
        // ... but nothing may follow a clean shutdown.
        let appended = check(&anchor(1, 10, true), &report(1, 12, &[1, 10]));
        assert_eq!(
            appended.problem,
            Some(EndProblem::AfterCleanShutdown { from: 11, to: 12 })
        );
        // A rewritten head.
        let mut rewritten = report(1, 10, &[1, 10]);
        rewritten.watched[1].hash = "forged".into();
        assert_eq!(
            check(&anchor(1, 10, true), &rewritten).problem,
            Some(EndProblem::HeadMismatch { seq: 10 })
        );
        // No records at all where some are anchored.
        let empty = Report::default();
        assert_eq!(
            check(&anchor(1, 3, true), &empty).problem,
            Some(EndProblem::MissingHead { from: 1, to: 3 })
        );
        assert_eq!(check(&anchor(1, 0, false), &empty), Ends::default());
        let text = EndProblem::MissingHead { from: 9, to: 10 }.to_string();
        assert!(
            text.contains("seq 9..=10") && text.contains("end at seq 8"),
            "{text}"
        );
    }
}
