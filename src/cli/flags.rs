//! Every flag as one item: its names, the name of its value, its `--help` text and what it sets
//! in `Given`, grouped into the sections `--help` shows them in.
//!
//! A flag only records what was given, checked on its own (a number in range, a file name
//! without separators). What flags mean together is decided in `cli::build`, never here.

use super::Given;
use crate::error::Error;
use crate::manifest::{LayerChoice, Platform, Platforms};
use crate::pull::inspect::Inspect;
use crate::sinks::layout::Layout;
use std::ffi::OsString;
use std::path::PathBuf;

pub struct Flag {
    pub long: &'static str,
    pub short: Option<char>,
    /// The value's name in `--help`; `None` for a switch.
    pub value: Option<&'static str>,
    /// Lines of `--help` text, `\n` between them.
    pub help: &'static str,
    pub set: fn(&mut Given, Value) -> Result<(), Error>,
}

/// A group of flags under one heading of `--help`.
pub struct Section {
    pub title: &'static str,
    pub flags: &'static [Flag],
}

/// The value given to a flag (empty for a switch), and the flag's name for messages.
pub struct Value {
    pub flag: &'static str,
    pub raw: OsString,
}

impl Value {
    #[inline(never)]
    fn string(self) -> Result<String, Error> {
        let flag = self.flag;
        self.raw
            .into_string()
            .map_err(|_| Error::Usage(format!("the value of --{flag} is not valid UTF-8")))
    }

    #[inline(never)]
    fn path(self) -> Result<PathBuf, Error> {
        if self.raw.is_empty() {
            return Err(Error::Usage(format!("--{} needs a path", self.flag)));
        }
        Ok(PathBuf::from(self.raw))
    }

    /// A name for something inside the working directory: no separators, not `.` or `..`.
    fn file_name(self) -> Result<String, Error> {
        let flag = self.flag;
        let name = self.string()?;
        if name.is_empty() || name == "." || name == ".." || name.contains(['/', '\0']) {
            return Err(Error::Usage(format!(
                "--{flag} takes a plain file name, not {name:?}; use --working-dir for the directory"
            )));
        }
        Ok(name)
    }

    fn number(self, min: u32, max: u32) -> Result<u32, Error> {
        let flag = self.flag;
        let text = self.string()?;
        text.parse::<u32>()
            .ok()
            .filter(|n| (min..=max).contains(n))
            .ok_or_else(|| {
                Error::Usage(format!(
                    "--{flag} takes a whole number from {min} to {max}, not {text:?}"
                ))
            })
    }
}

/// A flag that takes no value.
macro_rules! switch {
    ($long:literal, $short:expr, $help:literal, $field:ident) => {
        Flag {
            long: $long,
            short: $short,
            value: None,
            help: $help,
            set: |given, _| {
                given.$field = true;
                Ok(())
            },
        }
    };
}

pub const SECTIONS: &[Section] = &[
    Section {
        title: "Options",
        flags: &[
            switch!(
                "insecure",
                None,
                "talk plain HTTP to the registry (default: HTTPS, certificates verified)",
                insecure
            ),
            Flag {
                long: "cacert",
                short: None,
                value: Some("FILE"),
                help: "also trust the CA certificates in this PEM file (repeatable;\nSSL_CERT_FILE is honoured too)",
                set: |given, value| {
    given.ca_files.push(value.path()?);
    Ok(())
},
            },
            Flag {
                long: "user",
                short: None,
                value: Some("USER"),
                help: "user name for the registry (the password is asked for if not given)",
                set: |given, value| {
    given.user = Some(value.string()?);
    Ok(())
},
            },
            Flag {
                long: "password",
                short: None,
                value: Some("PASSWORD"),
                help: "password for the registry (lands in shell history: prefer --ilogin)",
                set: |given, value| {
    given.password = Some(value.string()?);
    Ok(())
},
            },
            switch!(
                "password-stdin",
                None,
                "read the password for --user from standard input (for scripts)",
                password_stdin
            ),
            switch!(
                "ilogin",
                None,
                "ask for user name and password on the terminal\n(without any of these: Docker's config.json and credential helpers)",
                ilogin
            ),
            Flag {
                long: "proxy",
                short: None,
                value: Some("URL"),
                help: "send requests through this proxy, loopback included (default: HTTPS_PROXY,\nHTTP_PROXY, ALL_PROXY; NO_PROXY names hosts to reach directly)",
                set: |given, value| {
    given.proxy = Some(value.string()?);
    Ok(())
},
            },
            Flag {
                long: "platform",
                short: None,
                value: Some("OS/ARCH[/VARIANT]"),
                help: "which image of a multi-platform index to save (default: this\nmachine's, read at run time, e.g. linux/amd64, linux/arm/v6; an\nARM index without that variant gives an older one, never newer);\n`all` or a comma-separated list keeps those platforms and the index",
                set: |given, value| {
                    let text = value.string()?;
                    match Platforms::parse(&text).map_err(Error::Usage)? {
                        Some(Platforms::List(list)) => {
                            given.platform = list.first().cloned();
                            given.platforms = Some(Platforms::List(list));
                        }
                        Some(Platforms::All) => given.platforms = Some(Platforms::All),
                        None => {
                            given.platform = Some(Platform::parse(&text).map_err(Error::Usage)?);
                            given.platforms = None;
                        }
                    }
                    Ok(())
                },
            },
            Flag {
                long: "arch",
                short: None,
                value: Some("ARCH"),
                help: "shorthand for --platform linux/ARCH (e.g. arm64, arm/v7)",
                set: |given, value| {
                    let text = value.string()?;
                    let platform = Platform::parse(&format!("linux/{text}")).map_err(|_| {
                        Error::Usage(format!(
                            "--arch {text:?} is not an architecture such as amd64, arm64 or arm/v7"
                        ))
                    })?;
                    given.platform = Some(platform);
                    given.platforms = None;
                    Ok(())
                },
            },
            Flag {
                long: "images-from",
                short: None,
                value: Some("FILE"),
                help: "the images, one reference a line (`-`: standard input; blank lines\nand # comments allowed), all into one archive or copied by --copy-to",
                set: |given, value| {
                    given.images_from = Some(value.path()?);
                    Ok(())
                },
            },
            Flag {
                long: "cache-dir",
                short: None,
                value: Some("DIR"),
                help: "keep verified blobs here and reuse them on later pulls\n(default: $DOCKERSAVE_CACHE if set, else no cache)",
                set: |given, value| {
    given.cache_dir = Some(PathBuf::from(value.raw));
    Ok(())
},
            },
            Flag {
                long: "cache-max",
                short: None,
                value: Some("SIZE"),
                help: "after the run, keep the cache within SIZE (bytes, or with K, M, G,\nT: KiB…), least recently used blobs dropped first, none in use by\nanother run; 0 empties it (default: $DOCKERSAVE_CACHE_MAX, else no limit)",
                set: |given, value| {
                    let flag = value.flag;
                    let text = value.string()?;
                    given.cache_max = Some(parse_size(&text).ok_or_else(|| {
                        Error::Usage(format!(
                            "--{flag} takes a size such as 500M, 2G or 1048576, not {text:?}"
                        ))
                    })?);
                    Ok(())
                },
            },
            Flag {
                long: "retries",
                short: None,
                value: Some("N"),
                help: "retries of a failed request or broken download (default: 5)",
                set: |given, value| {
    given.retries = Some(value.number(0, 100)?);
    Ok(())
},
            },
            Flag {
                long: "timeout",
                short: None,
                value: Some("SECS"),
                help: "connect timeout and longest stall of a transfer (default: 60)",
                set: |given, value| {
    given.timeout = Some(value.number(1, 3600)?);
    Ok(())
},
            },
            Flag {
                long: "working-dir",
                short: None,
                value: Some("DIR"),
                help: "where the directory and the archive go (default: .)",
                set: |given, value| {
    given.working_dir = Some(PathBuf::from(value.raw));
    Ok(())
},
            },
            Flag {
                long: "layers-dir",
                short: None,
                value: Some("NAME"),
                help: "name of the assembled directory (default: the archive's base name)",
                set: |given, value| {
    given.layers_dir = Some(value.file_name()?);
    Ok(())
},
            },
            Flag {
                long: "output",
                short: Some('o'),
                value: Some("FILE"),
                help: "write the archive to FILE (`-`: standard output, nothing else is\nwritten but the --cache-dir), e.g. `dockersave -o - alpine | docker load`",
                set: |given, value| {
    given.output = Some(value.path()?);
    Ok(())
},
            },
            Flag {
                long: "tarname",
                short: None,
                value: Some("NAME"),
                help: "file name of the archive in the working directory (default:\nPATH-TAG.tar)",
                set: |given, value| {
    given.tarname = Some(value.file_name()?);
    Ok(())
},
            },
            Flag {
                long: "format",
                short: None,
                value: Some("docker|legacy"),
                help: "docker (default): the layout of `docker save` since Docker 25, an\nOCI image layout with manifest.json beside it, for Docker (any\nversion), Podman, skopeo and containerd; legacy: the classic\nlayout of older Docker (per-layer VERSION, json, layer.tar)",
                set: |given, value| {
                    given.layout = Some(match value.string()?.as_str() {
                        "docker" => Layout::Docker,
                        "legacy" => Layout::Legacy,
                        other => {
                            return Err(Error::Usage(format!(
                                "--format takes docker or legacy, not {other:?}"
                            )))
                        }
                    });
                    Ok(())
                },
            },
            switch!(
                "compressed",
                None,
                "keep the layers compressed (gzip or zstd) as the registry serves them\n(about half the size; still verified, and the manifest digest survives)",
                compressed
            ),
            Flag {
                long: "have",
                short: None,
                value: Some("IMAGE|ARCHIVE"),
                help: "a thin archive for a receiver that already holds IMAGE (a reference)\nor the images of ARCHIVE (an earlier one): the layers they have, on\nthe same layers below, are listed but left out, as docker load\nallows (repeatable; with --push: blobs to find on the destination)",
                set: |given, value| {
                    let text = value.string()?;
                    if text.is_empty() {
                        return Err(Error::Usage("--have needs an image or an archive".into()));
                    }
                    given.have.push(text);
                    Ok(())
                },
            },
            switch!(
                "gzip",
                None,
                "compress the whole archive with gzip (PATH-TAG.tar.gz); docker load\nand podman load read it",
                gzip
            ),
            switch!(
                "xz",
                None,
                "compress the whole archive with xz (PATH-TAG.tar.xz), smaller and\nslower; docker load and podman load read it",
                xz
            ),
            switch!(
                "gunzip",
                None,
                "accepted for the original dockersave; layers are decompressed\nunless --compressed, so it changes nothing",
                gunzip
            ),
            switch!(
                "no-tar",
                None,
                "leave the assembled directory; do not make the archive",
                no_tar
            ),
            switch!(
                "no-rm",
                None,
                "keep the assembled directory after making the archive (with\n--rootfs: keep the layer tars in it too)",
                no_rm
            ),
        ],
    },
    Section {
        title: "Mirrors, certificates and signatures",
        flags: &[
            Flag {
                long: "mirror",
                short: None,
                value: Some("URL"),
                help: "ask this mirror or pull-through cache for Docker Hub images before Hub\n(repeatable, tried in order; one that fails gives way to the next, then\nto the registry); REGISTRY=URL mirrors another registry. Pulls and\ninspection only. Default: $DOCKERSAVE_MIRRORS, else the registry-mirrors\nof /etc/docker/daemon.json (or of $DOCKERSAVE_DAEMON_JSON)",
                set: |given, value| {
                    let flag = value.flag;
                    let mirror = crate::registry::mirrors::parse(&value.string()?)
                        .map_err(|problem| Error::Usage(format!("--{flag}: {problem}")))?;
                    given.mirrors.push(mirror);
                    Ok(())
                },
            },
            switch!(
                "no-mirror",
                None,
                "ask the registries themselves, whatever the variable or daemon.json say",
                no_mirror
            ),
            Flag {
                long: "certs-d",
                short: None,
                value: Some("DIR"),
                help: "a directory laid out as Docker's certs.d: HOST[:PORT]/*.crt are CAs\ntrusted for that host, *.cert with its *.key a client certificate for it.\nSearched first (repeatable), then $DOCKERSAVE_CERTS_D,\n~/.config/containers/certs.d, /etc/docker/certs.d, /etc/containers/certs.d",
                set: |given, value| {
                    given.certs_dirs.push(value.path()?);
                    Ok(())
                },
            },
            Flag {
                long: "verify-key",
                short: None,
                value: Some("FILE"),
                help: "accept the image only if a cosign signature by this PEM public key\n(cosign.pub: ECDSA P-256; Ed25519 and RSA too) names its digest, checked\nbefore any layer is fetched or anything written (repeatable: any one key\nwill do). With --push, a signature in the destination must cover the
image before its tag is stored",
                set: |given, value| {
                    given.verify_keys.push(value.path()?);
                    Ok(())
                },
            },
        ],
    },
    Section {
        title: "Instead of an archive",
        flags: &[
            Flag {
                long: "rootfs",
                short: None,
                value: Some("DIR"),
                help: "apply the layers to DIR: the image's root filesystem, for chroot,\nLXC, systemd-nspawn (DIR is created; an existing non-empty DIR\nneeds --force). As root with owners and device nodes.",
                set: |given, value| {
    given.rootfs = Some(value.path()?);
    Ok(())
},
            },
            switch!(
                "force",
                None,
                "with --rootfs: apply the image over a non-empty DIR",
                force
            ),
            switch!(
                "git",
                None,
                "with --rootfs: make DIR a git repository, one commit per layer,\non branches layer<N>_<diff ID>",
                git
            ),
            Flag {
                long: "flatten",
                short: None,
                value: Some("FILE"),
                help: "write the merged filesystem as one tar (FILE `-`: stdout),\ne.g. `dockersave --flatten - alpine | tar -x -C /mnt`",
                set: |given, value| {
    given.flatten = Some(value.path()?);
    Ok(())
},
            },
            Flag {
                long: "initramfs",
                short: None,
                value: Some("FILE"),
                help: "write the merged filesystem as an initramfs a Linux kernel boots
(newc cpio with the image's owners and devices, no root needed):
gzip, --xz, or plain when FILE ends in .cpio (FILE `-`: plain to
stdout unless --gzip or --xz)",
                set: |given, value| {
    given.initramfs = Some(value.path()?);
    Ok(())
},
            },
            Flag {
                long: "init",
                short: None,
                value: Some("PATH"),
                help: "with --initramfs: add /init, the program the kernel runs, as a
symlink to PATH, or with `entrypoint` to the image's entrypoint",
                set: |given, value| {
    let flag = value.flag;
    let text = value.string()?;
    if text != "entrypoint" && !(text.starts_with('/') && text.len() > 1) {
        return Err(Error::Usage(format!(
            "--{flag} takes an absolute path in the image (e.g. /sbin/init) or `entrypoint`, not {text:?}"
        )));
    }
    given.init = Some(text);
    Ok(())
},
            },
            Flag {
                long: "layer",
                short: None,
                value: Some("N"),
                help: "fetch only layer N (1 is the bottom, -1 the top) or the layer whose\ndigest or diff ID starts with sha256:HEX (12+ digits), written as\n<id>/layer.tar, <id>/json and <id>/VERSION",
                set: |given, value| {
                    let text = value.string()?;
                    given.layer = Some(LayerChoice::parse(&text).map_err(Error::Usage)?);
                    Ok(())
                },
            },
            switch!(
                "registry-format",
                None,
                "with --layer: the compressed blob as the registry serves it,\nwritten as <digest>.tar.gz (.tar.zst for a zstd layer)",
                registry_format
            ),
        ],
    },
    Section {
        title: "Instead of pulling",
        flags: &[
            Flag {
                long: "artifact",
                short: None,
                value: Some("DIR|-"),
                help: "write an OCI artifact's files into DIR, named by their titles as\noras pull names them (a Helm chart: NAME-VERSION.tgz; no title:\nsha256-HEX); directory layers unpacked. `-`: its one file (or\n--layer N) to stdout",
                set: |given, value| {
    given.artifact = Some(value.path()?);
    Ok(())
},
            },
            Flag {
                long: "artifact-type",
                short: None,
                value: Some("TYPE"),
                help: "with --artifact: fetch the newest referrer of IMAGE of this type\n(e.g. an SBOM attached to the image) rather than IMAGE itself",
                set: |given, value| {
    let text = value.string()?;
    if text.is_empty() {
        return Err(Error::Usage("--artifact-type needs a media type, e.g. application/spdx+json".into()));
    }
    given.artifact_type = Some(text);
    Ok(())
},
            },
            Flag {
                long: "push",
                short: None,
                value: Some("ARCHIVE|DIR"),
                help: "upload the image of a docker save archive (any layout, plain,\n.tar.gz or .tar.xz) or --no-tar directory to IMAGE; prints\nREGISTRY/REPOSITORY@sha256:... Plain layers are gzipped on the way",
                set: |given, value| {
    given.push = Some(value.path()?);
    Ok(())
},
            },
            Flag {
                long: "image",
                short: None,
                value: Some("NAME"),
                help: "with --push: the image of a several-image archive to upload",
                set: |given, value| {
    given.image = Some(value.string()?);
    Ok(())
},
            },
            switch!(
                "all",
                None,
                "with --push: every image, under its own name, below IMAGE =\nHOST[:PORT][/PREFIX]",
                all
            ),
            Flag {
                long: "copy-to",
                short: None,
                value: Some("DEST"),
                help: "copy IMAGE from its registry to DEST (a reference; with\n--images-from, HOST[:PORT][/PREFIX]) with nothing on disk, manifests\nand index kept byte for byte, so digests stay; prints\nREGISTRY/REPOSITORY@sha256:...",
                set: |given, value| {
    given.copy_to = Some(value.string()?);
    Ok(())
},
            },
            switch!(
                "with-referrers",
                None,
                "with --copy-to: copy what refers to the image too (signatures,\nSBOMs, attestations), under the referrers API or its fallback tag",
                with_referrers
            ),
        ],
    },
    Section {
        title: "Instead of saving (nothing is written; the answer goes to stdout)",
        flags: &[
            Flag {
                long: "tags",
                short: None,
                value: None,
                help: "every tag of the repository, one a line",
                set: |given, _| {
    given.inspect.push(Inspect::Tags);
    Ok(())
},
            },
            Flag {
                long: "sha",
                short: None,
                value: None,
                help: "the digest `docker pull` prints for IMAGE (an index's), then, for an\nindex, the digest of the platform's manifest",
                set: |given, _| {
    given.inspect.push(Inspect::Sha);
    Ok(())
},
            },
            Flag {
                long: "metadata",
                short: None,
                value: None,
                help: "the manifest as served (for an index: the index, then the platform's\nmanifest), then the image config: JSON documents, each followed by\na newline (a stream `jq .` reads)",
                set: |given, _| {
    given.inspect.push(Inspect::Metadata { pretty: false });
    Ok(())
},
            },
            switch!("pretty", None, "with --metadata: indented", pretty),
            Flag {
                long: "referrers",
                short: None,
                value: None,
                help: "what refers to the image (signatures, SBOMs, attestations): type,\ndigest, size and annotations (JSON), tab-separated, one a line",
                set: |given, _| {
    given.inspect.push(Inspect::Referrers);
    Ok(())
},
            },
            Flag {
                long: "platforms",
                short: None,
                value: None,
                help: "the platforms the index offers, os/arch[/variant] one a line (an image\nthe index also lists zstd-compressed shows again, with \"(zstd)\")",
                set: |given, _| {
    given.inspect.push(Inspect::Platforms);
    Ok(())
},
            },
        ],
    },
    Section {
        title: "Output",
        flags: &[
            switch!("quiet", Some('q'), "print errors only (on stderr)", quiet),
            switch!(
                "verbose",
                Some('v'),
                "also print every HTTP request: method, URL (without its query),\nstatus, size, time; never a header or credential",
                verbose
            ),
            switch!("help", Some('h'), "show this help", help),
            switch!("version", Some('V'), "show the version", version),
        ],
    },
];

/// The flag with this long name, or this short one.
pub fn find(long: Option<&str>, short: Option<char>) -> Option<&'static Flag> {
    SECTIONS
        .iter()
        .flat_map(|section| section.flags)
        .find(|flag| match (long, short) {
            (Some(long), _) => flag.long == long,
            (None, Some(short)) => flag.short == Some(short),
            (None, None) => false,
        })
}

/// A size in bytes: a whole number, with an optional binary suffix (`K`, `M`, `G`, `T`, also
/// written `KiB`, `MB`, …: all powers of 1024, as `du -h` counts).
pub fn parse_size(text: &str) -> Option<u64> {
    let digits = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(digits);
    let shift = match unit.trim_end_matches("iB").trim_end_matches('B') {
        "" => 0,
        "K" | "k" => 10,
        "M" | "m" => 20,
        "G" | "g" => 30,
        "T" | "t" => 40,
        _ => return None,
    };
    number.parse::<u64>().ok()?.checked_mul(1 << shift)
}
