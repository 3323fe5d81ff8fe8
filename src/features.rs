//! Which capabilities this build holds (its cargo features, in Cargo.toml), and the one message
//! for what needs a feature the build lacks. Owns nothing else.

use crate::error::Error;

/// The features built in, in the order `--version` lists them.
pub const BUILT: &[&str] = &[
    #[cfg(feature = "push")]
    "push",
    #[cfg(feature = "zstd")]
    "zstd",
    #[cfg(feature = "xz")]
    "xz",
    #[cfg(feature = "verify")]
    "verify",
    #[cfg(feature = "initramfs")]
    "initramfs",
    #[cfg(feature = "git")]
    "git",
    #[cfg(feature = "artifact")]
    "artifact",
    #[cfg(feature = "overlap")]
    "overlap",
];

/// The usage error (exit 2) for `what` (a flag, or what an image holds), which needs `feature`.
pub fn missing(feature: &str, what: &str) -> Error {
    Error::Usage(format!(
        "this dockersave was built without the \"{feature}\" feature, which {what} needs; use a full build (dockersave rather than dockersave-minimal)"
    ))
}
