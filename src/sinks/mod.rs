//! Where verified layers go. Each sink takes layer tar streams and writes one kind of output;
//! none of them knows HTTP or registries.
//!
//! - `archive`: the `docker save` archive (the default);
//! - `rootfs`: the image's filesystem applied to a directory (`--rootfs`);
//! - `flatten`: the merged filesystem as one tar stream (`--flatten`), or through `cpio` as a
//!   newc cpio for the kernel (`--initramfs`);
//! - `git`: a `--rootfs` directory as a git repository, one commit per layer (`--git`).

pub mod archive;
#[cfg_attr(not(feature = "initramfs"), path = "cpio_off.rs")]
pub mod cpio;
pub mod flatten;
#[cfg_attr(not(feature = "git"), path = "git_off.rs")]
pub mod git;
pub mod layout;
pub mod rootfs;
