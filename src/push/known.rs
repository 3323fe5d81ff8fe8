//! The record of where layers went: one line per blob pushed, mounted or found —
//! `<diff ID> <blob digest> <size> <registry>/<repository>` — in `pushed-blobs` under the cache
//! directory. A later push reads it to find the compressed blob of a plain layer without
//! compressing it (`HEAD` in the target repository) and the repository to mount it from, as
//! Docker's and skopeo's blob-info caches do.
//!
//! It is a hint, never trusted: every digest it names is checked by the registry (`HEAD`, the
//! mount) before a manifest uses it. Failing to read or write it costs uploads, not the push.

use crate::digest::Digest;
use crate::limits::MAX_RECORD;
use crate::outfile::{Dir, NewFile};
use std::ffi::OsStr;
use std::io::{Read, Write};
use std::path::PathBuf;
use std::sync::Mutex;

const FILE: &str = "pushed-blobs";

pub struct Known {
    dir: Option<PathBuf>,
    lines: Mutex<Vec<Line>>,
}

#[derive(Clone, PartialEq, Eq)]
struct Line {
    diff_id: String,
    digest: Digest,
    size: u64,
    /// `registry/repository`.
    place: String,
}

impl Known {
    /// The record in `dir` (nothing when `dir` is `None`, or the record is unreadable or not
    /// a regular file of this user's).
    pub fn load(dir: Option<PathBuf>) -> Known {
        let mut text = Vec::new();
        if let Some(Ok(Some(file))) = dir
            .as_deref()
            .map(|d| Dir::open(d).and_then(|d| d.open_owned(OsStr::new(FILE))))
        {
            // Twice the cap at most: a record grown by hand (or a hostile one) is cut anyway.
            let _ = file.take(2 * MAX_RECORD as u64).read_to_end(&mut text);
        }
        let text = String::from_utf8_lossy(&text);
        let mut lines: Vec<Line> = text.lines().filter_map(parse_line).collect();
        if text.len() > MAX_RECORD {
            lines.drain(..lines.len() / 2);
        }
        Known {
            dir,
            lines: Mutex::new(lines),
        }
    }

    /// The blobs recorded for a layer on `registry`: (digest, size, repository), newest first.
    pub fn for_layer(&self, diff_id: &Digest, registry: &str) -> Vec<(Digest, u64, String)> {
        let prefix = format!("{registry}/");
        let diff_id = diff_id.to_string();
        let lines = crate::locks::lock(&self.lines);
        let mut found: Vec<(Digest, u64, String)> = Vec::new();
        for line in lines.iter().rev() {
            if line.diff_id != diff_id {
                continue;
            }
            if let Some(repository) = line.place.strip_prefix(&prefix) {
                let entry = (line.digest.clone(), line.size, repository.to_string());
                if !found.contains(&entry) {
                    found.push(entry);
                }
            }
        }
        found
    }

    /// Notes that `registry/repository` holds the blob `digest` of the layer `diff_id`.
    pub fn add(
        &self,
        diff_id: &Digest,
        digest: &Digest,
        size: u64,
        registry: &str,
        repository: &str,
    ) {
        let line = Line {
            diff_id: diff_id.to_string(),
            digest: digest.clone(),
            size,
            place: format!("{registry}/{repository}"),
        };
        let mut lines = crate::locks::lock(&self.lines);
        if lines.contains(&line) {
            return;
        }
        lines.push(line);
        if let Some(dir) = &self.dir {
            // Written anew and renamed into place, never appended to: nothing at that name is
            // written through. A read-only home costs later uploads, not this push.
            let _ = save(dir, &lines);
        }
    }
}

fn save(dir: &std::path::Path, lines: &[Line]) -> Result<(), crate::error::Error> {
    let mut record = NewFile::create_in(Dir::ensure_private(dir)?, OsStr::new(FILE))?;
    let text: String = lines.iter().map(format_line).collect();
    record
        .file_mut()
        .write_all(text.as_bytes())
        .map_err(|e| crate::error::Error::io(&record.path(), e))?;
    record.persist()
}

fn format_line(line: &Line) -> String {
    format!(
        "{} {} {} {}\n",
        line.diff_id, line.digest, line.size, line.place
    )
}

fn parse_line(text: &str) -> Option<Line> {
    let mut fields = text.split(' ');
    let diff_id = Digest::parse(fields.next()?).ok()?.to_string();
    let digest = Digest::parse(fields.next()?).ok()?;
    let size = fields.next()?.parse().ok()?;
    let place = fields.next()?.to_string();
    (fields.next().is_none() && place.contains('/')).then_some(Line {
        diff_id,
        digest,
        size,
        place,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    #[test]
    fn records_and_finds_blobs_per_registry() {
        let dir = std::env::temp_dir().join(format!("dockersave-known-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let diff = Digest::of_bytes(b"tar");
        let blob = Digest::of_bytes(b"gz");
        let known = Known::load(Some(dir.clone()));
        known.add(&diff, &blob, 2, "r:5000", "team/a");
        known.add(&diff, &blob, 2, "r:5000", "team/a");
        known.add(&diff, &blob, 2, "other", "b");
        let again = Known::load(Some(dir.clone()));
        assert_eq!(
            again.for_layer(&diff, "r:5000"),
            vec![(blob.clone(), 2, "team/a".to_string())]
        );
        assert!(again.for_layer(&blob, "r:5000").is_empty());
        assert_eq!(
            fs::read_to_string(dir.join(FILE)).unwrap().lines().count(),
            2
        );
        assert!(parse_line("garbage line").is_none());
        fs::remove_dir_all(&dir).unwrap();
    }
}
