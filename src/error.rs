//! The one error type of dockersave and the exit code each kind of failure maps to.
//!
//! Every variant's `Display` is the single line the user sees, so it names the image, host, layer
//! or file involved and, where there is one, what to try next. It must never carry a credential,
//! a token or an `Authorization` header: callers pass hosts and paths, never secrets.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

/// Why a run failed: the message is for people (`Display`, one line, what the command
/// prints), the variant for code; `kind` groups the variants as the exit codes do.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// The command line is wrong (unknown flag, missing value, two images).
    Usage(String),
    /// The image reference does not parse.
    Reference {
        /// The reference as given.
        input: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The registry could not be reached or the connection broke.
    Network {
        /// The host that could not be reached.
        host: String,
        /// What happened.
        detail: String,
    },
    /// The registry refused our credentials or wants some we do not have.
    Auth {
        /// The registry (or token service) that refused.
        host: String,
        /// What it said, and what to do.
        detail: String,
    },
    /// The repository, tag or digest does not exist.
    NotFound {
        /// What was not found, as a sentence.
        what: String,
    },
    /// The image has no manifest for the requested platform.
    PlatformNotFound {
        /// The image.
        image: String,
        /// The platform asked for.
        wanted: String,
        /// The platforms the index offers.
        available: Vec<String>,
    },
    /// A blob or manifest does not hash to the digest it was fetched by.
    DigestMismatch {
        /// What failed verification.
        what: String,
        /// The digest (and size) expected.
        expected: String,
        /// What the bytes hashed to.
        actual: String,
    },
    /// `--verify-key`: no signature by the keys names the image.
    Unverified {
        /// The image.
        image: String,
        /// The digest a signature had to name.
        digest: String,
        /// Why none did.
        reason: String,
        /// What became of the image: "nothing was written", or that it was pushed.
        after: &'static str,
    },
    /// Something the registry sent cannot be used (bad JSON, schema 1, unknown compression).
    Unsupported(String),
    /// Malformed data from the registry.
    Invalid {
        /// What is malformed.
        what: String,
        /// How.
        detail: String,
    },
    /// A layer entry that would create, change or delete something outside the target tree.
    Unsafe {
        /// The layer.
        layer: String,
        /// The entry's name.
        entry: String,
        /// Why it was refused.
        reason: String,
    },
    /// The registry answered with a status we cannot act on.
    Http {
        /// The registry.
        host: String,
        /// The HTTP status.
        status: u16,
        /// What it said, if anything.
        detail: String,
    },
    /// Something on this machine is missing or failed (a program dockersave runs, a target
    /// directory in the way).
    Local(String),
    /// A local file could not be created, written or renamed.
    Io {
        /// The file.
        path: PathBuf,
        /// The system's error.
        source: io::Error,
    },
    /// A failure of one image of several, with where the image was listed ("FILE line 3").
    Listed {
        /// Where the image was listed.
        at: String,
        /// Its failure.
        source: Box<Error>,
    },
}

/// Exit codes, documented in the README.
pub const EXIT_USAGE: i32 = 2;
pub const EXIT_NETWORK: i32 = 3;
pub const EXIT_AUTH: i32 = 4;
pub const EXIT_NOT_FOUND: i32 = 5;
pub const EXIT_VERIFY: i32 = 6;
pub const EXIT_LOCAL_IO: i32 = 7;
pub const EXIT_REGISTRY: i32 = 8;

/// What kind of failure an `Error` is, one per exit code of the command.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// What was asked for does not make sense (options, an image reference).
    Usage,
    /// The registry could not be reached, or the connection broke.
    Network,
    /// Credentials are needed or were refused.
    Auth,
    /// No such repository, tag, digest or platform.
    NotFound,
    /// What came does not check out (a digest, a signature, an unsafe layer entry) or cannot
    /// be used (an unsupported or malformed image).
    Verification,
    /// Something on this machine failed (a file, the disk, a program).
    Local,
    /// The registry answered something unexpected (5xx, 429, ...).
    Registry,
}

impl Error {
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Usage(_) | Error::Reference { .. } => ErrorKind::Usage,
            Error::Network { .. } => ErrorKind::Network,
            Error::Auth { .. } => ErrorKind::Auth,
            Error::NotFound { .. } | Error::PlatformNotFound { .. } => ErrorKind::NotFound,
            Error::DigestMismatch { .. }
            | Error::Unsupported(_)
            | Error::Invalid { .. }
            | Error::Unverified { .. }
            | Error::Unsafe { .. } => ErrorKind::Verification,
            Error::Io { .. } | Error::Local(_) => ErrorKind::Local,
            Error::Http { .. } => ErrorKind::Registry,
            Error::Listed { source, .. } => source.kind(),
        }
    }

    /// The command's exit code for this error.
    pub fn exit_code(&self) -> i32 {
        match self.kind() {
            ErrorKind::Usage => EXIT_USAGE,
            ErrorKind::Network => EXIT_NETWORK,
            ErrorKind::Auth => EXIT_AUTH,
            ErrorKind::NotFound => EXIT_NOT_FOUND,
            ErrorKind::Verification => EXIT_VERIFY,
            ErrorKind::Local => EXIT_LOCAL_IO,
            ErrorKind::Registry => EXIT_REGISTRY,
        }
    }

    /// Says where the image this error is about was listed (`--images-from`), if it was.
    pub fn listed_at(self, at: Option<&String>) -> Error {
        match at {
            Some(at) => Error::Listed {
                at: at.clone(),
                source: Box::new(self),
            },
            None => self,
        }
    }

    /// Wraps an I/O error with the local path it concerns.
    pub fn io(path: &Path, source: io::Error) -> Error {
        Error::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Usage(msg) => write!(f, "{msg} (see dockersave --help)"),
            Error::Reference { input, reason } => {
                write!(f, "invalid image reference {input:?}: {reason}")
            }
            Error::Network { host, detail } => {
                write!(f, "cannot talk to {host}: {detail}")
            }
            Error::Auth { host, detail } => write!(f, "{host}: {detail}"),
            Error::NotFound { what } => write!(f, "{what}"),
            Error::PlatformNotFound { image, wanted, available } => write!(
                f,
                "{image} has no image for platform {wanted}; available: {}; choose one with --platform",
                if available.is_empty() { "none".to_string() } else { available.join(", ") }
            ),
            Error::DigestMismatch { what, expected, actual } => write!(
                f,
                "{what} failed verification: expected {expected}, got {actual}; the registry or the network corrupted it, nothing was saved"
            ),
            Error::Unverified { image, digest, reason, after } => write!(
                f,
                "{image} ({digest}) failed signature verification: {reason}; {after}"
            ),
            Error::Unsupported(msg) => write!(f, "{msg}"),
            Error::Invalid { what, detail } => write!(f, "{what} is malformed: {detail}"),
            Error::Unsafe { layer, entry, reason } => write!(
                f,
                "{layer}: refusing the entry {:?}: {reason}; this image cannot be unpacked safely",
                shown_name(entry.as_bytes())
            ),
            Error::Http { host, status, detail } => {
                write!(f, "{host} answered HTTP {status}: {detail}")
            }
            Error::Local(msg) => write!(f, "{msg}"),
            Error::Listed { at, source } => write!(f, "{at}: {source}"),
            Error::Io { path, source } => {
                if source.kind() == io::ErrorKind::StorageFull {
                    write!(f, "disk full while writing {}; free some space or choose another --working-dir", path.display())
                } else {
                    write!(f, "{}: {source}", path.display())
                }
            }
        }
    }
}

impl std::error::Error for Error {}

/// A name from a tar for a message: whole if short, else its start and its length (a 64 KiB
/// path would not make a one-line error).
pub fn shown_name(raw: &[u8]) -> String {
    const SHOWN: usize = 160;
    if raw.len() <= SHOWN {
        return String::from_utf8_lossy(raw).into_owned();
    }
    format!(
        "{}… ({} bytes)",
        String::from_utf8_lossy(&raw[..SHOWN]),
        raw.len()
    )
}
