//! How far the collector acknowledged the log: `<log>.ship-cursor`, the seq of the last
//! record shipping exported successfully. Shipping ([`crate::audit::ship`]) moves it;
//! retention ([`super::sink`]) never removes a file holding a record past it.

use std::path::{Path, PathBuf};

use serde_json::Value;

/// Where the shipping cursor of the log at `log` is kept.
pub fn path_for(log: &Path) -> PathBuf {
    let mut name = log.file_name().unwrap_or_default().to_os_string();
    name.push(".ship-cursor");
    log.with_file_name(name)
}

/// The last record the collector acknowledged (0: none).
pub fn read(log: &Path) -> u64 {
    std::fs::read_to_string(path_for(log))
        .ok()
        .and_then(|t| serde_json::from_str::<Value>(&t).ok())
        .and_then(|v| v["seq"].as_u64())
        .unwrap_or(0)
}

/// Records that `seq` was acknowledged (atomically: a temporary file renamed over the cursor).
pub fn write(log: &Path, seq: u64) -> std::io::Result<()> {
    let path = path_for(log);
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(path.file_name().unwrap_or_default());
    tmp_name.push(".tmp");
    let tmp = path.with_file_name(tmp_name);
    std::fs::write(&tmp, format!("{{\"seq\":{seq}}}\n"))?;
    std::fs::rename(&tmp, &path)
}
