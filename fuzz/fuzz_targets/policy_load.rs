//! `Policy::from_yaml` on arbitrary text.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    let _ = graphgate::policy::Policy::from_yaml(text, "fuzz.yaml");
});
