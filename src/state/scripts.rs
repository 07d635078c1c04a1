//! The Lua scripts the Redis store runs, one per atomic step (`scripts/*.lua`). The scripts
//! that need the time read the server's clock through `server_now` (`scripts/clock.lua`,
//! prepended); [`gcra_at`] and [`admit_at`] prepend a fixed time instead, so a test can feed
//! a script and [`super::algo`] the same inputs and compare their answers.

/// Takes an idempotency claim, or reads the one there.
pub const CLAIM: &str = include_str!("scripts/claim.lua");
/// Stores a claim's answer.
pub const FINISH: &str = include_str!("scripts/finish.lua");
/// Lets go of a claim.
pub const RELEASE: &str = include_str!("scripts/release.lua");
/// Gives back an admission.
pub const REFUND: &str = include_str!("scripts/refund.lua");
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
const GCRA: &str = include_str!("scripts/gcra.lua");
const ADMIT: &str = include_str!("scripts/admit.lua");

/// Rate limits (GCRA) on several limiters, on the server's clock.
pub fn gcra() -> String {
    format!("{CLOCK}{GCRA}")
}

/// Budgets and a tenant write slot, on the server's clock.
pub fn admit() -> String {
    format!("{CLOCK}{ADMIT}")
}

/// [`gcra`] with the clock fixed at `now_us` (microseconds).
pub fn gcra_at(now_us: u64) -> String {
    format!("{}{GCRA}", fixed_clock(now_us))
}

/// [`admit`] with the clock fixed at `now_us` (microseconds).
pub fn admit_at(now_us: u64) -> String {
    format!("{}{ADMIT}", fixed_clock(now_us))
}

fn fixed_clock(now_us: u64) -> String {
    format!("local function server_now()\n  return {now_us}\nend\n")
}
