//! `--tags`, `--sha`, `--metadata` and `--platforms`: what the registry says about an image,
//! on stdout for scripts (or to a writer the library's caller gives), nothing written to disk. Manifests and configs are verified against
//! their digests as for a pull; progress and messages stay on stderr.

use super::{parse_config, platform, Logins};
use crate::error::Error;
use crate::manifest::{Fetched, Platform};
use crate::pretty;
use crate::progress::Progress;
use crate::reference::Reference;
use crate::registry::http::Settings;
use crate::registry::mirrors::Source;
use crate::source::{Prefer, Reach};
use std::io::Write;
use std::sync::Arc;

/// What to ask the registry about which image.
#[derive(Debug)]
pub struct Options {
    pub image: Reference,
    pub http: Settings,
    /// Which mirrors are asked before the registry.
    pub mirrors: Source,
    /// `--verify-key`: the image must be signed by one of these keys.
    pub verify_keys: Vec<std::path::PathBuf>,
    /// `--platform` / `--arch`; without them the machine's own.
    pub platform: Option<Platform>,
    pub kind: Inspect,
}

/// What an inspection asks the registry for.
#[derive(Debug, PartialEq, Eq, Clone, Copy)]
pub enum Inspect {
    /// `--tags`: every tag of the repository.
    Tags,
    /// `--sha`: the reference's digest (an index's), then the platform manifest's.
    Sha,
    /// `--metadata [--pretty]`: the manifest(s) as served and the config.
    Metadata {
        /// Indented (`--pretty`).
        pretty: bool,
    },
    /// `--platforms`: the platforms an index offers.
    Platforms,
    /// `--referrers`: what refers to the image (OCI 1.1 referrers).
    Referrers,
}

/// Asks the registry what `options.kind` names and writes the answer to `out` (the command's
/// standard output).
pub fn inspect(
    options: &Options,
    logins: &Logins,
    progress: Arc<Progress>,
    out: &mut dyn Write,
) -> Result<(), Error> {
    let kind = options.kind;
    let reach = Reach::new(
        &options.http,
        &options.mirrors,
        &options.verify_keys,
        logins,
        progress,
    )?;
    let registry = reach.registry(&options.image);
    let mut lines: Vec<Vec<u8>> = Vec::new();
    match kind {
        Inspect::Tags => {
            // Printed page by page as they come: a repository of a million tags costs one page.
            let shown = std::path::Path::new("standard output");
            registry.tags(&mut |tag| writeln!(out, "{tag}").map_err(|e| Error::io(shown, e)))?;
        }
        Inspect::Platforms => {
            // What an index offers is vouched for by the index's signature.
            let top = reach.top(&registry, &options.image)?;
            match top.parsed {
                Fetched::Index(entries) => {
                    let mut seen: Vec<String> = Vec::new();
                    for (platform, zstd) in entries
                        .iter()
                        .filter_map(|e| e.platform.as_ref().map(|p| (p, e.zstd)))
                    {
                        // An index may list an image twice, gzip and zstd: both are shown.
                        let mut shown = platform.to_string();
                        if zstd {
                            shown.push_str(" (zstd)");
                        }
                        // Attestations and other non-images say unknown/unknown.
                        if platform.os != "unknown" && !seen.contains(&shown) {
                            seen.push(shown);
                        }
                    }
                    lines.extend(seen.into_iter().map(String::into_bytes));
                }
                Fetched::Image(manifest) => {
                    crate::source::image_only(&options.image, &manifest)?;
                    let config =
                        parse_config(&registry.small_blob(&manifest.config, "the image config")?)?;
                    let (Some(os), Some(arch)) = (&config.os, &config.architecture) else {
                        return Err(Error::Invalid {
                            what: "the image config".into(),
                            detail: "it names no os and architecture".into(),
                        });
                    };
                    let platform = Platform::new(os, arch, config.variant.as_deref());
                    lines.push(platform.to_string().into_bytes());
                }
            }
        }
        Inspect::Referrers => {
            // Of the document the reference names, as `oras attach` and cosign attach them.
            let top = reach.top(&registry, &options.image)?;
            let (referrers, listed) = crate::artifact::referrers(&registry, &top.fetched.digest)?;
            if listed > referrers.len() {
                reach.progress().warn(&format!(
                    "{} of the {listed} referrers listed are shown",
                    referrers.len()
                ));
            }
            lines.extend(
                referrers
                    .iter()
                    .map(|r| crate::artifact::describe(r).into_bytes()),
            );
        }
        Inspect::Sha | Inspect::Metadata { .. } => {
            let platform = platform(options.platform.as_ref());
            let given = options.platform.is_some();
            let chosen =
                reach.image(&registry, &options.image, &platform, given, Prefer::Smaller)?;
            let (is_index, top_fetched, chosen, manifest) =
                (chosen.is_index, chosen.top, chosen.served, chosen.manifest);
            if kind == Inspect::Sha {
                lines.push(top_fetched.digest.to_string().into_bytes());
                if is_index {
                    lines.push(chosen.digest.to_string().into_bytes());
                }
            } else {
                if is_index {
                    lines.push(top_fetched.bytes);
                }
                lines.push(chosen.bytes);
                // An artifact's config is shown when it is JSON (Helm's chart metadata, the
                // empty `{}`); its type, annotations and files are in the manifest above.
                let config = &manifest.config;
                if manifest.artifact().is_none() || config.media_type.ends_with("json") {
                    lines.push(registry.small_blob(config, "the config")?);
                }
                if kind == (Inspect::Metadata { pretty: true }) {
                    for line in &mut lines {
                        let indented = pretty::indent(line).map_err(|detail| Error::Invalid {
                            what: format!("a document of {}", options.image),
                            detail,
                        })?;
                        *line = indented.into_bytes();
                    }
                }
            }
        }
    }
    let shown = std::path::Path::new("standard output");
    for line in lines {
        // Documents go out byte for byte (they hash to their digests); one that does not end in
        // a newline gets one, to separate it from the next.
        let end: &[u8] = if line.ends_with(b"\n") { b"" } else { b"\n" };
        out.write_all(&line)
            .and_then(|()| out.write_all(end))
            .map_err(|e| Error::io(shown, e))?;
    }
    out.flush().map_err(|e| Error::io(shown, e))
}
