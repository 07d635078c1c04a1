//! The log, read-only, as C2SP `tlog-tiles` (<https://c2sp.org/tlog-tiles>) for auditors'
//! own tools, under `/audit/tlog/` on the admin listener: `checkpoint` (the newest signed
//! checkpoint), `tile/<L>/<N>[.p/<W>]` (256 hashes of level `8L` of the tree; partial tiles
//! only for the newest checkpoint's size) and `tile/entries/<N>[.p/<W>]` (the records,
//! each a big-endian u16 length and the JSON line). A tile the tree does not have, or a
//! path that is not one, is a 404; records removed by retention (pruned) are a 404 too.

use std::path::Path;

use http::StatusCode;

use super::checkpoint::Latest;
use super::follow::Follower;
use super::tree::{self, TreeView};

/// Hashes (or entries) in a full tile.
const WIDTH: u64 = 256;

/// A tile path, parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TilePath {
    /// `None` for an entry bundle, else the tile's level.
    pub level: Option<u8>,
    /// Its index within the level.
    pub n: u64,
    /// Its width (256 for a full tile).
    pub width: u64,
}

impl TilePath {
    /// Parses `tile/<L>/<N>[.p/<W>]` or `tile/entries/<N>[.p/<W>]`; `None` if it is not one,
    /// in the exact form the specification writes.
    pub fn parse(path: &str) -> Option<TilePath> {
        if path.len() > 80 {
            return None;
        }
        let rest = path.strip_prefix("tile/")?;
        let (level, rest) = rest.split_once('/')?;
        let level = match level {
            "entries" => None,
            l => Some(l.parse::<u8>().ok().filter(|l| *l < 64)?),
        };
        let (index, width) = match rest.split_once(".p/") {
            Some((index, w)) => (
                index,
                w.parse::<u64>().ok().filter(|w| (1..WIDTH).contains(w))?,
            ),
            None => (rest, WIDTH),
        };
        let mut n: u64 = 0;
        let parts: Vec<&str> = index.split('/').collect();
        for (i, part) in parts.iter().enumerate() {
            let digits = match i + 1 == parts.len() {
                true => *part,
                false => part.strip_prefix('x')?,
            };
            if digits.len() != 3 || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            n = n
                .checked_mul(1000)?
                .checked_add(digits.parse::<u64>().ok()?)?;
        }
        let parsed = TilePath { level, n, width };
        (parsed.to_path() == path).then_some(parsed)
    }

    /// The path of this tile.
    pub fn to_path(&self) -> String {
        let mut n = self.n;
        let mut index = format!("{:03}", n % 1000);
        while n >= 1000 {
            n /= 1000;
            index = format!("x{:03}/{index}", n % 1000);
        }
        let level = self.level.map_or("entries".to_owned(), |l| l.to_string());
        match self.width {
            WIDTH => format!("tile/{level}/{index}"),
            w => format!("tile/{level}/{index}.p/{w}"),
        }
    }
}

/// An answer: status, content type, body.
pub type Answer = (StatusCode, &'static str, Vec<u8>);

fn not_found(why: &str) -> Answer {
    (
        StatusCode::NOT_FOUND,
        "text/plain; charset=utf-8",
        format!("{why}\n").into_bytes(),
    )
}

/// Answers `path` (below `/audit/tlog/`) for the log at `log` whose newest checkpoint is
/// in `latest`. Reads files: call off the async runtime.
pub fn answer(log: &Path, latest: &Latest, path: &str) -> Answer {
    let Some(cp) = latest.get() else {
        return not_found("no checkpoint signed yet");
    };
    if path == "checkpoint" {
        return (
            StatusCode::OK,
            "text/plain; charset=utf-8",
            cp.note.clone().into_bytes(),
        );
    }
    let Some(tile) = TilePath::parse(path) else {
        return not_found("not a tile path");
    };
    let size = cp.size;
    // Level L's entries are subtrees of 256^L leaves: the tree has floor(size / 256^L) of them.
    let span = match tile.level {
        Some(l) => WIDTH.checked_pow(u32::from(l)),
        None => Some(1),
    };
    let Some(available) = span.map(|s| size / s) else {
        return not_found("no such tile");
    };
    let start = tile.n.saturating_mul(WIDTH);
    let exists = match tile.width {
        WIDTH => start.checked_add(WIDTH).is_some_and(|end| end <= available),
        w => start == available - available % WIDTH && available % WIDTH == w,
    };
    if !exists {
        return not_found("no such tile in the tree of the newest checkpoint");
    }
    match tile.level {
        Some(level) => hash_tile(log, size, level, start, tile.width),
        None => bundle(log, start, tile.width),
    }
}

fn hash_tile(log: &Path, size: u64, level: u8, start: u64, width: u64) -> Answer {
    let hashes = TreeView::open(&tree::path_for(log), size)
        .and_then(|v| v.hashes_at_level(level.saturating_mul(8), start, width));
    match hashes {
        Ok(hashes) => {
            let body: Vec<u8> = hashes.iter().flat_map(|h| h.0).collect();
            (StatusCode::OK, "application/octet-stream", body)
        }
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            "text/plain; charset=utf-8",
            format!("{e}\n").into_bytes(),
        ),
    }
}

/// Records `start + 1 ..= start + width` (leaf indexes `start..start + width`).
fn bundle(log: &Path, start: u64, width: u64) -> Answer {
    let mut follower = Follower::new(log, start + 1);
    let lines = match follower.read(start + width, usize::try_from(width).unwrap_or(256)) {
        Ok(lines) => lines,
        Err(e) => {
            return (
                StatusCode::INTERNAL_SERVER_ERROR,
                "text/plain; charset=utf-8",
                format!("{e}\n").into_bytes(),
            );
        }
    };
    let complete = lines.len() as u64 == width
        && lines
            .iter()
            .enumerate()
            .all(|(i, l)| l.seq == start + 1 + i as u64);
    if !complete {
        return not_found(
            "these records are no longer among the log's files (pruned by retention)",
        );
    }
    let mut body = Vec::new();
    for line in lines {
        let Ok(len) = u16::try_from(line.bytes.len()) else {
            return (
                StatusCode::INTERNAL_SERVER_ERROR,
                "text/plain; charset=utf-8",
                format!(
                    "record seq {} is longer than an entry bundle can hold\n",
                    line.seq
                )
                .into_bytes(),
            );
        };
        body.extend_from_slice(&len.to_be_bytes());
        body.extend_from_slice(&line.bytes);
    }
    (StatusCode::OK, "application/octet-stream", body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tile_paths_parse_exactly_as_written_and_nothing_else() {
        for (path, level, n, width) in [
            ("tile/0/000", Some(0), 0, 256),
            ("tile/1/x001/x234/067", Some(1), 1_234_067, 256),
            ("tile/0/005.p/17", Some(0), 5, 17),
            ("tile/entries/x001/000.p/255", None, 1000, 255),
        ] {
            let t = TilePath::parse(path).unwrap();
            assert_eq!((t.level, t.n, t.width), (level, n, width), "{path}");
            assert_eq!(t.to_path(), path);
        }
        for bad in [
            "tile/0/0",
            "tile/0/1000",
            "tile/0/001/002",
            "tile/0/x001",
            "tile/64/000",
            "tile/0/000.p/0",
            "tile/0/000.p/256",
            "tile/0/000.p/017",
            "tile/0/x000/001",
            "tile/8/0/000",
            "tile/0/x999/x999/x999/x999/x999/x999/x999/999",
            "tile/00/000",
            "checkpoints",
        ] {
            assert_eq!(TilePath::parse(bad), None, "{bad}");
        }
    }
}
