//! `--tags`, `--sha`, `--metadata` and `--platforms`: what the registry says about an image,
//! on stdout for scripts, nothing written to disk. Manifests and configs are verified against
//! their digests as for a pull; progress and messages stay on stderr.

use super::{connect, fetch_document, parse_config, platform, select};
use crate::cli::{Inspect, Options};
use crate::error::Error;
use crate::manifest::{Fetched, Platform};
use crate::pretty;
use crate::registry::auth::Credentials;
use crate::registry::http::Http;
use std::io::Write;

pub(super) fn show(
    options: &Options,
    credentials: Option<Credentials>,
    http: &Http,
    kind: Inspect,
) -> Result<(), Error> {
    let registry = connect(options, &options.image, credentials, http);
    let mut lines: Vec<Vec<u8>> = Vec::new();
    match kind {
        Inspect::Tags => {
            lines.extend(registry.tags()?.into_iter().map(String::into_bytes));
        }
        Inspect::Platforms => {
            let top = fetch_document(&registry, &options.image.manifest_ref(), &options.image)?;
            match top.parsed {
                Fetched::Index(entries) => {
                    let mut seen: Vec<String> = Vec::new();
                    for platform in entries.iter().filter_map(|e| e.platform.as_ref()) {
                        let shown = platform.to_string();
                        // Attestations and other non-images say unknown/unknown.
                        if platform.os != "unknown" && !seen.contains(&shown) {
                            seen.push(shown);
                        }
                    }
                    lines.extend(seen.into_iter().map(String::into_bytes));
                }
                Fetched::Image(manifest) => {
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
        Inspect::Sha | Inspect::Metadata { .. } => {
            let top = fetch_document(&registry, &options.image.manifest_ref(), &options.image)?;
            let is_index = matches!(top.parsed, Fetched::Index(_));
            let top_fetched = top.fetched.clone();
            let (chosen, manifest) =
                select(&registry, top, &platform(options), &options.image, options)?;
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
                lines.push(registry.small_blob(&manifest.config, "the image config")?);
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
    let mut stdout = std::io::stdout().lock();
    for line in lines {
        // Documents go out byte for byte (they hash to their digests); one that does not end in
        // a newline gets one, to separate it from the next.
        let end: &[u8] = if line.ends_with(b"\n") { b"" } else { b"\n" };
        stdout
            .write_all(&line)
            .and_then(|()| stdout.write_all(end))
            .map_err(|e| Error::io(std::path::Path::new("standard output"), e))?;
    }
    stdout
        .flush()
        .map_err(|e| Error::io(std::path::Path::new("standard output"), e))
}
