//! What a pull is asked to do, as the command line put it together: which images, from where,
//! into which output. Plain data; the outputs read it, nothing here acts.

use crate::manifest::{LayerChoice, Platform, Platforms};
use crate::reference::Reference;
use crate::registry::auth::Credentials;
use crate::registry::http::Settings;
use crate::registry::mirrors::Source;
use crate::sinks::archive::Compression;
use crate::sinks::layout::Layout;
use std::path::PathBuf;

#[derive(Debug)]
pub struct Options {
    pub image: Reference,
    /// Further images for the same archive.
    pub more_images: Vec<Reference>,
    pub output: Output,
    pub http: Settings,
    /// Which mirrors are asked before the registry.
    pub mirrors: Source,
    /// `--verify-key`: public keys, one of which must have signed each image.
    pub verify_keys: Vec<PathBuf>,
    /// Where verified blobs are kept between pulls (`--cache-dir`, `DOCKERSAVE_CACHE`).
    pub cache_dir: Option<PathBuf>,
    /// `--cache-max`, `DOCKERSAVE_CACHE_MAX`: the cache is pruned to this many bytes after
    /// the run, least recently used blobs first.
    pub cache_max: Option<u64>,
    /// `--platform` / `--arch`; without them the machine's own, read when a pull needs it.
    pub platform: Option<Platform>,
    /// `--platform all` or a list: an archive keeps these platforms of each image, and the
    /// index (`platform` is then the one `manifest.json` names, when given).
    pub platforms: Option<Platforms>,
    /// Where each image was listed (`--images-from`): "FILE line 3", in the order of `image`
    /// and `more_images`; empty for images named on the command line.
    pub listed_at: Vec<String>,
    pub working_dir: PathBuf,
    /// The assembled directory's name (the archive's, or with `--rootfs --no-rm` the layers').
    pub layers_dir: Option<String>,
    /// Keep the assembled directory (also a failed run's partial one).
    pub no_rm: bool,
}

/// Whose credentials go where, as `main` decided: those of the command line to the image's
/// registry only.
pub struct Logins<'a> {
    /// For an image's registry.
    pub registry: &'a dyn Fn(&Reference) -> Option<Credentials>,
    /// For a mirror: only what is stored for its own host (`host[:port]`).
    pub mirror: &'a dyn Fn(&str) -> Option<Credentials>,
}

/// What a pull writes.
#[derive(Debug, PartialEq, Eq)]
pub enum Output {
    /// A `docker save` archive (or with --no-tar its directory).
    Archive(ArchiveForm),
    /// The image's root filesystem, applied to a directory (`--rootfs`).
    Rootfs {
        /// Where; made, or an empty directory.
        dir: PathBuf,
        /// Apply the image over a directory that is not empty (`--force`).
        force: bool,
        /// One git commit per layer (`--git`). Needs the `git` cargo feature (default).
        git: bool,
    },
    /// The merged filesystem as a tar; `-` is stdout.
    Flatten(PathBuf),
    /// The merged filesystem as an initramfs the kernel unpacks (`--initramfs`). Needs the
    /// `initramfs` cargo feature (default).
    Initramfs(Initramfs),
    /// One layer, as dlgrab exported it (`--layer`).
    Layer {
        /// Which one.
        which: LayerChoice,
        /// The blob as the registry serves it, not its tar (`--registry-format`).
        registry_format: bool,
    },
}

impl Output {
    /// A `docker save` archive at `path` (relative to the client's working directory), in the
    /// layout of Docker 25 that every engine loads, layers decompressed.
    pub fn archive(path: impl Into<PathBuf>) -> Output {
        Output::Archive(ArchiveForm {
            layout: Layout::Docker,
            compressed_layers: false,
            compression: Compression::None,
            output: Some(path.into()),
            tarname: None,
            no_tar: false,
            gunzip: false,
            have: Vec::new(),
        })
    }

    /// The image's root filesystem in `dir` (relative to the client's working directory;
    /// created, or an empty directory).
    pub fn rootfs(dir: impl Into<PathBuf>) -> Output {
        Output::Rootfs {
            dir: dir.into(),
            force: false,
            git: false,
        }
    }

    /// The merged filesystem as one tar at `path` (relative to the client's working directory).
    pub fn flatten(path: impl Into<PathBuf>) -> Output {
        Output::Flatten(path.into())
    }

    /// The merged filesystem as an initramfs at `path` (relative to the client's working
    /// directory): gzip-compressed, or a plain newc cpio when the name ends in `.cpio`.
    ///
    /// Needs the `initramfs` cargo feature (in the default set); a build without it returns a usage
    /// error ([`ErrorKind::Usage`](crate::ErrorKind::Usage)) naming the feature.
    pub fn initramfs(path: impl Into<PathBuf>) -> Output {
        let file = path.into();
        Output::Initramfs(Initramfs {
            compression: match file.extension().is_some_and(|e| e == "cpio") {
                true => Compression::None,
                false => Compression::Gzip,
            },
            file,
            init: None,
        })
    }

    /// The output with a relative path made relative to `dir` (the library's working
    /// directory; the command line's are relative to the process's, as `docker save -o`).
    pub(crate) fn within(self, dir: &std::path::Path) -> Output {
        let join = |path: PathBuf| match path.is_relative() && path.as_os_str() != "-" {
            true => dir.join(path),
            false => path,
        };
        match self {
            Output::Archive(mut form) => {
                form.output = form.output.map(join);
                Output::Archive(form)
            }
            Output::Rootfs {
                dir: root,
                force,
                git,
            } => Output::Rootfs {
                dir: join(root),
                force,
                git,
            },
            Output::Flatten(path) => Output::Flatten(join(path)),
            Output::Initramfs(initramfs) => Output::Initramfs(Initramfs {
                file: join(initramfs.file),
                ..initramfs
            }),
            layer => layer,
        }
    }
}

/// How `--initramfs` is written.
#[derive(Debug, PartialEq, Eq)]
pub struct Initramfs {
    /// Where; `-` is standard output.
    pub file: PathBuf,
    /// gzip (the default), xz (with the CRC32 check the kernel reads) or none.
    pub compression: Compression,
    /// `--init`: `/init` added as a symlink, over any the image has.
    pub init: Option<Init>,
}

/// What `/init` is made to point to (`--init`).
#[derive(Debug, PartialEq, Eq)]
pub enum Init {
    /// The first word of the image's entrypoint (or command): `--init entrypoint`.
    Entrypoint,
    /// An absolute path in the image.
    Path(String),
}

/// How the archive is written.
#[derive(Debug, PartialEq, Eq)]
pub struct ArchiveForm {
    /// `--format`: Docker 25's layout (the default) or the legacy one.
    pub layout: Layout,
    /// Layers as served, gzip-compressed (`--compressed`).
    pub compressed_layers: bool,
    /// `--gzip`, `--xz`: the whole archive compressed.
    pub compression: Compression,
    /// `-o FILE`; `-` is standard output.
    pub output: Option<PathBuf>,
    /// `--tarname`: the archive's file name in the working directory.
    pub tarname: Option<String>,
    /// Leave the assembled directory instead of making the archive.
    pub no_tar: bool,
    /// `--gunzip` was given (a no-op, noted).
    pub gunzip: bool,
    /// `--have`: images the receiver already holds (references, or earlier archives), whose
    /// layers the archive leaves out.
    pub have: Vec<String>,
}

impl ArchiveForm {
    /// Whether the layers are kept as served in the legacy layout, for engines that may not
    /// read zstd (`--compressed --format legacy`): gzip twins are preferred, zstd layers stored
    /// decompressed.
    pub fn for_old_engines(&self) -> bool {
        self.compressed_layers && self.layout == Layout::Legacy
    }
}
