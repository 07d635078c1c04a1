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
