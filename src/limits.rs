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
/// JSON values (objects, arrays, strings, numbers) in one document. What is parsed from a
/// document grows with its values, not its bytes (a 4 MiB config of 1.4 million empty
/// `history` entries took 88 MiB); real configs hold a few hundred.
pub const MAX_JSON_VALUES: usize = 32_768;
/// How deep a JSON document may nest.
pub const MAX_JSON_DEPTH: usize = 64;
/// A token service's answer.
pub const MAX_TOKEN_RESPONSE: u64 = 1 << 20;
/// An error body, kept for its message.
pub const MAX_ERROR_BODY: u64 = 64 << 10;
/// Tags one `--tags` run prints, and tags asked for a page (`?n=`), each page printed before
/// the next is asked for.
pub const MAX_TAGS: usize = 1_000_000;
pub const TAGS_PAGE: usize = 1_000;
/// Pages of one tag list (a registry that links them in a circle).
pub const MAX_TAG_PAGES: usize = 10_000;
/// Images in one `--images-from` list, and its bytes.
pub const MAX_LISTED_IMAGES: usize = 10_000;
pub const MAX_LIST_BYTES: u64 = 4 << 20;
/// Images one bundle keeps (an index's members), and the bytes of their manifests held.
pub const MAX_MEMBERS: usize = 64;
pub const MAX_MEMBER_BYTES: usize = 8 << 20;
/// Entries of one platform weighed against each other (gzip and zstd twins).
pub const MAX_TWINS: usize = 4;
/// Bytes of image configs one run holds until its archive is written (several images, a
/// bundle).
pub const MAX_HELD_CONFIGS: usize = 4 << 20;
/// Bytes of attestations (manifests, configs, layers) an archive keeps unopened.
pub const MAX_UNOPENED: u64 = 8 << 20;
/// cosign signatures looked at per image, and the size of each signature document.
pub const MAX_SIGNATURES: usize = 32;
pub const MAX_SIGNATURE_DOCUMENT: usize = 256 << 10;
/// Bytes of JSON documents (`manifest.json`, indexes, configs) `--push` holds from one archive.
pub const MAX_ARCHIVE_DOCUMENTS: u64 = 8 << 20;
/// Layers `manifest.json` may list in all (Docker's limit is 127 per image): each costs its
/// entry's description, whatever the archive holds.
pub const MAX_ARCHIVED_LAYERS: usize = 65_536;
/// How far into an archive file a layer may be placed by the predicted sizes of the layers
/// ahead of it (gzip trailers, unverified until those layers arrive); beyond, it is spooled.
pub const MAX_PLACED_AHEAD: u64 = 1 << 40;
/// Layers one artifact may have (each becomes a file), and the bytes of one file's name.
pub const MAX_ARTIFACT_FILES: usize = 1_000;
pub const MAX_TITLE: usize = 4_096;
/// Referrers of one image looked at, and the bytes of an annotation `--referrers` shows.
pub const MAX_REFERRERS: usize = 1_000;
pub const MAX_SHOWN_ANNOTATION: usize = 1_024;
/// A tar extension header (PAX record, GNU long name) in a layer or a `--push` archive.
pub const MAX_EXTENSION: u64 = 1 << 20;
/// Regions of one sparse file's map (16 bytes each held).
pub const MAX_SPARSE_ENTRIES: usize = 65_536;
/// Bytes of names and targets `--flatten` and `--initramfs` hold for the current layer's
/// symlinks and the hard links waiting for their targets (before this cap, 100,000
/// long-named links in a 2.7 MB layer took 389 MiB).
pub const MAX_HELD_LINKS: usize = 8 << 20;
/// Hard-linked files, and directories, one `--initramfs` image may hold.
pub const MAX_LINKED: usize = 65_536;
pub const MAX_DIRS: usize = 100_000;
/// Bytes of the push record (`pushed-blobs`), beyond which it is cut to its newer half.
pub const MAX_RECORD: usize = 1 << 20;
/// The slowest average pace (bytes a second) any response body may keep, after a grace of
/// twice `--timeout`, besides `--timeout` for each stall: a server that trickles a byte at a
/// time cannot hold a run, and a link slower than a 64 kbit/s modem is not a link.
pub const MIN_BLOB_RATE: u64 = 8 << 10;

/// Parses a JSON document after checking its shape: at most `MAX_JSON_VALUES` values and
/// `MAX_JSON_DEPTH` levels. The one way dockersave parses JSON from outside; `what` names the
/// document in the error ("it is not ...").
pub fn json<T: Deserialize>(text: &str) -> Result<T, JsonError> {
    shape(text.as_bytes())?;
    miniserde::json::from_str(text).map_err(|_| JsonError::Malformed)
}

/// Calls `each` with every string of the array under the key `key` of the JSON object `text`,
/// one at a time, building nothing else: a tag page of a million names (a registry that
/// ignores `?n=` sends every tag at once) costs one name's memory. `null` or a missing key is
/// an empty array; anything else that is not an array of strings is `Malformed`.
pub fn each_string<E>(
    text: &str,
    key: &str,
    each: &mut dyn FnMut(String) -> Result<(), E>,
) -> Result<Result<(), E>, JsonError> {
    let mut scan = Scan {
        bytes: text.as_bytes(),
        at: 0,
    };
    scan.expect(b'{')?;
    if scan.peek() == Some(b'}') {
        return Ok(Ok(()));
    }
    loop {
        let name = scan.string()?;
        scan.expect(b':')?;
        if name == key && scan.peek() == Some(b'[') {
            scan.expect(b'[')?;
            if scan.peek() != Some(b']') {
                loop {
                    if let Err(e) = each(scan.string()?) {
                        return Ok(Err(e));
                    }
                    if scan.next()? == b']' {
                        break;
                    }
                    scan.back(b',')?;
                }
            } else {
                scan.expect(b']')?;
            }
        } else {
            scan.skip_value()?;
        }
        match scan.next()? {
            b'}' => return Ok(Ok(())),
            b',' => {}
            _ => return Err(JsonError::Malformed),
        }
    }
}

/// A cursor over a JSON text for `each_string`.
struct Scan<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Scan<'_> {
    /// The next byte that is not white space, left in place.
    fn peek(&mut self) -> Option<u8> {
        while self.bytes.get(self.at).is_some_and(u8::is_ascii_whitespace) {
            self.at += 1;
        }
        self.bytes.get(self.at).copied()
    }

    fn next(&mut self) -> Result<u8, JsonError> {
        let byte = self.peek().ok_or(JsonError::Malformed)?;
        self.at += 1;
        Ok(byte)
    }

    fn expect(&mut self, byte: u8) -> Result<(), JsonError> {
        match self.next()? == byte {
            true => Ok(()),
            false => Err(JsonError::Malformed),
        }
    }

    /// Checks that the byte just taken was `byte`.
    fn back(&self, byte: u8) -> Result<(), JsonError> {
        match self.bytes.get(self.at - 1) == Some(&byte) {
            true => Ok(()),
            false => Err(JsonError::Malformed),
        }
    }

    /// A string token, decoded by miniserde (escapes and all).
    fn string(&mut self) -> Result<String, JsonError> {
        if self.peek() != Some(b'"') {
            return Err(JsonError::Malformed);
        }
        let start = self.at;
        self.at += 1;
        let mut escaped = false;
        loop {
            let byte = *self.bytes.get(self.at).ok_or(JsonError::Malformed)?;
            self.at += 1;
            match (escaped, byte) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => break,
                _ => {}
            }
        }
        let token =
            std::str::from_utf8(&self.bytes[start..self.at]).map_err(|_| JsonError::Malformed)?;
        miniserde::json::from_str(token).map_err(|_| JsonError::Malformed)
    }

    /// Passes over one value of any kind, nested or not, without building it.
    fn skip_value(&mut self) -> Result<(), JsonError> {
        match self.peek().ok_or(JsonError::Malformed)? {
            b'"' => self.string().map(drop),
            b'{' | b'[' => {
                let mut depth = 0usize;
                loop {
                    match self.peek().ok_or(JsonError::Malformed)? {
                        b'"' => {
                            self.string()?;
                        }
                        b'{' | b'[' => {
                            depth += 1;
                            self.at += 1;
                        }
                        b'}' | b']' => {
                            depth -= 1;
                            self.at += 1;
                            if depth == 0 {
                                return Ok(());
                            }
                        }
                        _ => self.at += 1,
                    }
                }
            }
            _ => {
                while self
                    .bytes
                    .get(self.at)
                    .is_some_and(|b| !matches!(b, b',' | b'}' | b']') && !b.is_ascii_whitespace())
                {
                    self.at += 1;
                }
                Ok(())
            }
        }
    }
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

    /// docs/security.md prints this file's table, rendered from the constants and their
    /// first doc line; `DOCKERSAVE_WRITE_DOCS=1` rewrites it there.
    #[test]
    fn the_security_document_prints_this_table() {
        let source = include_str!("limits.rs");
        let mut rows = vec![
            "| cap | value | what it bounds |".to_string(),
            "| --- | --- | --- |".to_string(),
        ];
        let mut doc: Vec<&str> = Vec::new();
        let mut after_const = false;
        for line in source.split("#[cfg(test)]").next().unwrap().lines() {
            let line = line.trim();
            if let Some(text) = line.strip_prefix("///") {
                if std::mem::take(&mut after_const) {
                    doc.clear();
                }
                doc.push(text.trim());
                continue;
            }
            after_const = line.starts_with("pub const");
            if let Some(rest) = line.strip_prefix("pub const ") {
                let (name, value) = rest.split_once(':').unwrap();
                let value = value
                    .split_once('=')
                    .unwrap()
                    .1
                    .trim()
                    .trim_end_matches(';');
                // The first sentence of its comment, or the comment above a pair of consts.
                let sentence = doc.join(" ");
                let sentence = sentence
                    .split(". ")
                    .next()
                    .unwrap_or("")
                    .trim_end_matches('.');
                rows.push(format!("| `{name}` | {} | {sentence} |", shown(value)));
            }
            if !line.starts_with("pub const") {
                doc.clear();
            }
        }
        let table = rows.join("\n") + "\n";
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/security.md");
        let text = std::fs::read_to_string(path).unwrap();
        let (start, end) = (
            "<!-- limits table -->\n",
            "<!-- end of the limits table -->",
        );
        let (before, rest) = text.split_once(start).expect("the table's start marker");
        let (current, after) = rest.split_once(end).expect("the table's end marker");
        if std::env::var_os("DOCKERSAVE_WRITE_DOCS").is_some() {
            std::fs::write(path, format!("{before}{start}{table}{end}{after}")).unwrap();
            return;
        }
        assert_eq!(
            current, table,
            "docs/security.md's limits table is stale: DOCKERSAVE_WRITE_DOCS=1 cargo test --lib the_security_document_prints_this_table"
        );
    }

    /// `4 << 20` as `4 MiB`, `1_000` as `1,000`.
    fn shown(value: &str) -> String {
        let number = |n: &str| -> String {
            let digits: String = n.chars().filter(char::is_ascii_digit).collect();
            let mut out = String::new();
            for (i, c) in digits.chars().enumerate() {
                if i > 0 && (digits.len() - i) % 3 == 0 {
                    out.push(',');
                }
                out.push(c);
            }
            out
        };
        match value.split_once("<<") {
            Some((n, shift)) => {
                let unit = match shift.trim() {
                    "10" => "KiB",
                    "20" => "MiB",
                    "30" => "GiB",
                    "40" => "TiB",
                    other => panic!("a shift of {other}"),
                };
                format!("{} {unit}", number(n.trim()))
            }
            None => number(value),
        }
    }

    #[test]
    fn strings_of_an_array_come_one_at_a_time() {
        let collect = |text: &str| {
            let mut got = Vec::new();
            let result = each_string::<()>(text, "tags", &mut |t| {
                got.push(t);
                Ok(())
            });
            result.map(|inner| inner.map(|()| got))
        };
        let page = r#"{"name":"a/b","x":{"y":[1,"]}"]},"tags":["1.0","la\"test"],"z":null}"#;
        assert_eq!(collect(page), Ok(Ok(vec!["1.0".into(), "la\"test".into()])));
        assert_eq!(collect(r#"{"name":"a","tags":null}"#), Ok(Ok(vec![])));
        assert_eq!(collect(r#" { } "#), Ok(Ok(vec![])));
        assert_eq!(collect(r#"{"tags":[]}"#), Ok(Ok(vec![])));
        for bad in [
            r#"{"tags":[1]}"#,
            r#"{"tags":["a""b"]}"#,
            "[]",
            r#"{"tags":["a"#,
            "",
        ] {
            assert_eq!(collect(bad), Err(JsonError::Malformed), "{bad}");
        }
        // The caller can stop it.
        let mut n = 0;
        let stopped = each_string(r#"{"tags":["a","b","c"]}"#, "tags", &mut |_| {
            n += 1;
            if n == 2 {
                Err("enough")
            } else {
                Ok(())
            }
        });
        assert_eq!(stopped, Ok(Err("enough")));
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
