//! The Lua scripts the Redis store runs (`scripts/*.lua`): one per step of a request, each
//! atomic on the server, so a request costs one round trip before it is sent and one after;
//! and the take script's arguments and answer ([`take_args`], [`parse_take`]). [`take`]
//! reads the server's clock through `server_now` (`scripts/clock.lua`, prepended);
//! [`take_at`] prepends a fixed time instead, so a test can feed the script and
//! [`super::algo`] the same inputs and compare their answers.

use std::time::Duration;

use ::redis::Value;

use super::algo::{gcra_params, micros};
use super::redis_claims::{MAX_CLAIM_BYTES, held, running};
use super::{Refused, StoreError, StoreErrorKind, Take, Taken};

/// Settles a request: its claim ends, what it took is given back if it was not sent.
pub const SETTLE: &str = include_str!("scripts/settle.lua");
/// Creates a versioned record with its claims, indexes and set.
pub const RECORD_CREATE: &str = include_str!("scripts/record_create.lua");
/// Changes a versioned record at a known version.
pub const RECORD_SWAP: &str = include_str!("scripts/record_swap.lua");
/// Reads a versioned record.
pub const RECORD_GET: &str = include_str!("scripts/record_get.lua");
/// Lists an index's records.
pub const RECORD_LIST: &str = include_str!("scripts/record_list.lua");
/// Reads which record a claim points at.
pub const RECORD_CLAIMED: &str = include_str!("scripts/record_claimed.lua");

const CLOCK: &str = include_str!("scripts/clock.lua");
const TAKE: &str = include_str!("scripts/take.lua");

/// Rate limits, the idempotency claim, budgets and a tenant write slot, on the server's
/// clock.
pub fn take() -> String {
    format!("{CLOCK}{TAKE}")
}

/// [`take`] with the clock fixed at `now_us` (microseconds).
pub fn take_at(now_us: u64) -> String {
    format!("local function server_now()\n  return {now_us}\nend\n{TAKE}")
}

/// The keys and arguments of the take script for `t` (see `scripts/take.lua`).
pub fn take_args<'a>(t: &Take<'a>) -> (Vec<&'a str>, Vec<Vec<u8>>) {
    let mut keys = Vec::with_capacity(
        t.limiters.len() + 2 + t.admission.as_ref().map_or(0, |a| a.budgets.len()),
    );
    let mut args: Vec<Vec<u8>> = Vec::with_capacity(16);
    let mut arg = |v: &dyn ToString| args.push(v.to_string().into_bytes());
    let budgets = t.admission.as_ref().map_or(-1, |a| a.budgets.len() as i64);
    arg(&t.limiters.len());
    arg(&u8::from(t.claim.is_some()));
    arg(&budgets);
    arg(&t.cost.max(1));
    for l in t.limiters {
        let (interval, tolerance) = gcra_params(l.rate);
        keys.push(l.key.as_str());
        arg(&interval);
        arg(&tolerance);
    }
    if let Some((id, window)) = &t.claim {
        keys.push(id.key);
        arg(&running(*id));
        arg(&(window.as_millis().max(1) as u64));
        arg(&MAX_CLAIM_BYTES);
    }
    if let Some(a) = &t.admission {
        keys.push(a.pacing_key);
        arg(&a.pacing_count);
        arg(&micros(a.pacing_window));
        arg(&a.pacing_member);
        arg(&a.devices);
        for b in a.budgets {
            keys.push(&b.key);
            arg(&b.limit);
            arg(&b.window_end);
        }
    }
    (keys, args)
}

/// The take script's answer, read strictly.
pub fn parse_take(reply: Vec<Value>) -> Result<Taken, StoreError> {
    let int = |v: &Value| match v {
        Value::Int(i) => u64::try_from(*i).ok(),
        _ => None,
    };
    let index = |v: &Value| usize::try_from(int(v)?).ok()?.checked_sub(1);
    let taken = match reply.as_slice() {
        [Value::BulkString(status), rest @ ..] => match (status.as_slice(), rest) {
            (b"ok", used) => used
                .iter()
                .map(int)
                .collect::<Option<_>>()
                .map(|used| Taken::All { used }),
            (b"limit", [i, wait]) => index(i).zip(int(wait)).map(|(index, wait)| Taken::Limited {
                index,
                wait: Duration::from_micros(wait),
            }),
            (b"budget", [j, used]) => index(j)
                .zip(int(used))
                .map(|(index, used)| Taken::Refused(Refused::OverBudget { index, used })),
            (b"pace", [wait]) => {
                int(wait).map(|w| Taken::Refused(Refused::Paced(Duration::from_micros(w))))
            }
            (b"held", [Value::BulkString(value)]) => return held(value).map(Taken::Held),
            _ => None,
        },
        _ => None,
    };
    taken.ok_or_else(|| {
        StoreError::new(
            StoreErrorKind::Response,
            format!("unexpected answer {reply:?}"),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn take_answers_are_read_strictly() {
        let s = |t: &str| Value::BulkString(t.as_bytes().to_vec());
        let parsed = |reply: Vec<Value>| format!("{:?}", parse_take(reply));
        assert_eq!(
            parsed(vec![s("ok"), Value::Int(3), Value::Int(7)]),
            "Ok(All { used: [3, 7] })"
        );
        assert_eq!(
            parsed(vec![s("limit"), Value::Int(2), Value::Int(1_500_000)]),
            "Ok(Limited { index: 1, wait: 1.5s })"
        );
        assert_eq!(
            parsed(vec![s("budget"), Value::Int(2), Value::Int(20)]),
            "Ok(Refused(OverBudget { index: 1, used: 20 }))"
        );
        assert_eq!(
            parsed(vec![s("pace"), Value::Int(1_500_000)]),
            "Ok(Refused(Paced(1.5s)))"
        );
        for bad in [
            vec![s("budget"), Value::Int(0), Value::Int(1)],
            vec![s("limit"), Value::Int(1)],
            vec![s("pace")],
            vec![s("held"), Value::Int(1)],
            vec![s("held"), s("Xnot-a-claim")],
            vec![s("ok"), s("3")],
            vec![],
        ] {
            assert!(parse_take(bad.clone()).is_err(), "{bad:?}");
        }
    }
}
