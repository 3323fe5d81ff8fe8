//! Every cap on what dockersave reads from outside — a registry, an archive, a local file — in
//! one table, and the one way a JSON document is parsed (`json`), which checks the document's
//! shape against the table before anything is built from it.
//!
//! Each cap is checked before the bytes or the structures it bounds are held, so a length,
//! count or depth field that lies costs an error line, never memory. docs/security.md prints
//! the same table (a test in tests/docs.rs compares them). This module does no I/O.

use miniserde::Deserialize;

/// One manifest, index or image config, and a page of a tag list. Real ones are a few KiB;
/// containerd refuses more than 4 MiB too.
pub const MAX_DOCUMENT: u64 = 4 << 20;
/// The JSON values (objects, arrays, strings, numbers, ...) one document may hold: what
/// the structures parsed from it keep grows with them, not with its bytes (a 4 MiB config of
/// 1.4 million empty `history` entries took 88 MiB). Real configs hold a few hundred.
pub const MAX_JSON_VALUES: usize = 32_768;
/// How deep a JSON document may nest.
pub const MAX_JSON_DEPTH: usize = 64;
/// A token service's answer.
pub const MAX_TOKEN_RESPONSE: u64 = 1 << 20;
/// An error body kept for its message.
pub const MAX_ERROR_BODY: u64 = 64 << 10;
/// The tags one `--tags` run prints, and the tags asked for a page (`?n=`).
pub const MAX_TAGS: usize = 1_000_000;
pub const TAGS_PAGE: usize = 1_000;
/// Pages of a tag list (a registry that links them in a circle).
pub const MAX_TAG_PAGES: usize = 10_000;
/// Images in one `--images-from` list, and its bytes.
pub const MAX_LISTED_IMAGES: usize = 10_000;
pub const MAX_LIST_BYTES: u64 = 4 << 20;
/// Images one bundle keeps (an index's members), and the bytes of their manifests held.
pub const MAX_MEMBERS: usize = 64;
pub const MAX_MEMBER_BYTES: usize = 8 << 20;
/// Entries of one platform weighed against each other (gzip and zstd twins).
pub const MAX_TWINS: usize = 4;
/// Bytes of image configs one run holds (several images, a bundle).
pub const MAX_HELD_CONFIGS: usize = 8 << 20;
/// Bytes of attestations (manifests, configs, layers) an archive keeps unopened.
pub const MAX_UNOPENED: u64 = 8 << 20;
/// cosign signatures looked at per image, and the size of each signature document.
pub const MAX_SIGNATURES: usize = 32;
pub const MAX_SIGNATURE_DOCUMENT: usize = 256 << 10;
/// A tar extension header (PAX, GNU long name) of a layer.
pub const MAX_EXTENSION: u64 = 1 << 20;
/// `--flatten`/`--initramfs`: bytes of names and link targets held for the current layer's
/// symlinks and the hard links waiting for their targets (a clone each, before this cap:
/// 100,000 long-named links in a 2.7 MB layer took 389 MiB).
pub const MAX_HELD_LINKS: usize = 8 << 20;
/// `--initramfs`: hard-linked files, and directories, one image may hold.
pub const MAX_LINKED: usize = 65_536;
pub const MAX_DIRS: usize = 100_000;
/// The push record (`pushed-blobs`) is cut back to its newer half beyond this.
pub const MAX_RECORD: usize = 1 << 20;
/// The longest any one request may take to answer with a small document (a manifest, a
/// config, a token, a tag page), whatever pace the bytes come at; `--timeout` bounds each
/// stall besides. Blobs get this plus the time their size takes at `MIN_BLOB_RATE`.
pub const DOCUMENT_DEADLINE_SECS: u64 = 300;
/// The slowest average rate a blob download may keep (bytes per second) before it is given up
/// as stalled: a link slower than a 64 kbit/s modem is not a link.
pub const MIN_BLOB_RATE: u64 = 8 << 10;

/// Parses a JSON document after checking its shape: at most `MAX_JSON_VALUES` values and
/// `MAX_JSON_DEPTH` levels. The one way dockersave parses JSON from outside; `what` names the
/// document in the error ("it is not ...").
pub fn json<T: Deserialize>(text: &str) -> Result<T, JsonError> {
    shape(text.as_bytes())?;
    miniserde::json::from_str(text).map_err(|_| JsonError::Malformed)
}

/// Why a JSON document was refused.
#[derive(Debug, PartialEq, Eq)]
pub enum JsonError {
    /// Not JSON of the expected shape.
    Malformed,
    /// More values or levels than the table allows.
    TooLarge(String),
}

impl JsonError {
    /// The reason for a message: `malformed` when the document is not what was expected.
    pub fn or(self, malformed: &str) -> String {
        match self {
            JsonError::Malformed => malformed.to_string(),
            JsonError::TooLarge(why) => why,
        }
    }
}

/// Checks a JSON text's values and depth against the table.
fn shape(bytes: &[u8]) -> Result<(), JsonError> {
    let (values, depth) = measure(bytes);
    if depth > MAX_JSON_DEPTH {
        return Err(JsonError::TooLarge(format!(
            "it nests deeper than the {MAX_JSON_DEPTH} levels dockersave reads"
        )));
    }
    if values > MAX_JSON_VALUES {
        return Err(JsonError::TooLarge(format!(
            "it holds more than the {MAX_JSON_VALUES} JSON values dockersave reads in one document"
        )));
    }
    Ok(())
}

/// Counts the values of a JSON text and how deep it nests, without building anything: one
/// pass, no allocation. What is not JSON is left for the parser to refuse.
fn measure(bytes: &[u8]) -> (usize, usize) {
    let (mut values, mut depth, mut deepest) = (0usize, 0usize, 0usize);
    let (mut in_string, mut escaped) = (false, false);
    // Inside a number, true, false or null: its next bytes start nothing.
    let mut in_scalar = false;
    for &byte in bytes {
        if in_string {
            match (escaped, byte) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        let starts = match byte {
            b'"' => {
                in_string = true;
                true
            }
            b'{' | b'[' => {
                depth += 1;
                deepest = deepest.max(depth);
                true
            }
            b'}' | b']' => {
                depth = depth.saturating_sub(1);
                false
            }
            b',' | b':' | b' ' | b'\t' | b'\n' | b'\r' => false,
            _ => {
                let starts = !in_scalar;
                in_scalar = true;
                values += usize::from(starts);
                continue;
            }
        };
        in_scalar = false;
        values += usize::from(starts);
    }
    (values, deepest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize, Debug)]
    struct Doc {
        a: Vec<u32>,
    }

    #[test]
    fn documents_within_the_table_parse() {
        let doc: Doc = json(r#"{"a": [1, 2, 3], "b": {"c": "x,y:[{"}}"#).unwrap();
        assert_eq!(doc.a, [1, 2, 3]);
        assert_eq!(json::<Doc>("not json").unwrap_err(), JsonError::Malformed);
    }

    #[test]
    fn values_and_depth_are_measured_before_anything_is_built() {
        // Each string, number, literal, object and array is one value; separators and what
        // is inside a string are not.
        assert_eq!(measure(br#""a,b""#), (1, 0));
        assert_eq!(measure(b"123"), (1, 0));
        assert_eq!(measure(b"{}"), (1, 1));
        assert_eq!(measure(br#"{"k":"v"}"#), (3, 1));
        assert_eq!(measure(b"[true, null,12]"), (4, 1));
        assert_eq!(measure(br#"["a\"]]]]", [[1]]]"#), (5, 3));
        let many = format!("{{\"a\":[{}1]}}", "1,".repeat(MAX_JSON_VALUES));
        assert!(matches!(json::<Doc>(&many), Err(JsonError::TooLarge(_))));
        let deep = "[".repeat(MAX_JSON_DEPTH + 1) + &"]".repeat(MAX_JSON_DEPTH + 1);
        assert!(matches!(
            shape(deep.as_bytes()),
            Err(JsonError::TooLarge(_))
        ));
    }
}
