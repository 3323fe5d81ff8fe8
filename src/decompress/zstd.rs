//! zstd layers, frame by frame. A layer is one or more frames (zstd:chunked writes one per
//! file chunk), with skippable frames (magic `0x184D2A50`–`0x184D2A5F`) between and after them
//! holding metadata: this module reads each frame's header, passes skippable frames over, and
//! hands each zstd frame to libzstd once its header is known to be one it may decode.
//!
//! What it must never do: let a frame's header decide how much memory is taken. A frame's
//! window — the history its matches may reach back into, which the decoder must keep — is
//! checked against `WINDOW_CAP` before anything is allocated for it, and the windows of layers
//! decoded at the same time share `WINDOW_BUDGET` (a larger one waits until it is alone), so
//! three layers compressed at level 19 do not hold 24 MiB at once.

use std::io;

/// The magic number of a zstd frame.
pub const MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];

/// The largest window a frame may ask for: 128 MiB, libzstd's and the `zstd` command's own
/// default limit (`ZSTD_WINDOWLOG_LIMIT_DEFAULT`, 2^27), which every level of `zstd` up to
/// `--ultra -22` stays within; only `--long=28` and above make larger ones, and those need
/// `--memory` or `--long` to decode with the `zstd` command too. containerd's and Docker's
/// decoder (klauspost/compress) accepts up to 512 MiB by default, more than a router has.
pub const WINDOW_CAP: u64 = 1 << 27;

/// The window memory all layers being decoded at once may hold together: one 8 MiB window
/// (level 19) or several smaller ones; a frame asking for more waits until it is alone.
#[cfg(feature = "zstd")]
const WINDOW_BUDGET: u64 = 8 << 20;

/// What the header at the start of a frame says.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame {
    /// A skippable frame of `length` bytes after its 8-byte header.
    Skippable { length: u32 },
    /// A zstd frame whose decoder needs a `window`-byte history; `dictionary` is its
    /// dictionary ID (0: none).
    Zstd { window: u64, dictionary: u32 },
}

/// Whether `head` starts like a frame of a zstd stream, zstd or skippable.
pub fn starts_frame(head: &[u8]) -> bool {
    head.starts_with(&MAGIC) || is_skippable(head)
}

fn is_skippable(head: &[u8]) -> bool {
    head.len() >= 4 && head[0] & 0xf0 == 0x50 && head[1..4] == [0x2a, 0x4d, 0x18]
}

/// Parses the header of the frame at the start of `bytes` (RFC 8878, 3.1). `Ok(None)` when
/// `bytes` ends before the header does: the caller reads more, or the stream is truncated.
pub fn frame_header(bytes: &[u8]) -> Result<Option<Frame>, String> {
    if bytes.len() < 4 {
        return Ok(None);
    }
    if is_skippable(bytes) {
        return Ok(bytes.get(4..8).map(|l| Frame::Skippable {
            length: u32::from_le_bytes([l[0], l[1], l[2], l[3]]),
        }));
    }
    if !bytes.starts_with(&MAGIC) {
        return Err("not a zstd frame".into());
    }
    let Some(&descriptor) = bytes.get(4) else {
        return Ok(None);
    };
    if descriptor & 0x08 != 0 {
        return Err("a zstd frame header sets its reserved bit".into());
    }
    let single_segment = descriptor & 0x20 != 0;
    let dictionary_size = [0, 1, 2, 4][usize::from(descriptor & 3)];
    let content_size_size = match descriptor >> 6 {
        0 if single_segment => 1,
        0 => 0,
        flag => 1 << flag,
    };
    let window_size = usize::from(!single_segment);
    let len = 5 + window_size + dictionary_size + content_size_size;
    let Some(header) = bytes.get(5..len) else {
        return Ok(None);
    };
    let little_endian = |field: &[u8]| {
        field
            .iter()
            .rev()
            .fold(0u64, |value, &b| value << 8 | u64::from(b))
    };
    let dictionary = little_endian(&header[window_size..window_size + dictionary_size]) as u32;
    let window = if single_segment {
        let content = little_endian(&header[window_size + dictionary_size..]);
        // A 2-byte content size counts from 256 (RFC 8878, 3.1.1.4).
        content + if content_size_size == 2 { 256 } else { 0 }
    } else {
        let exponent = u32::from(header[0] >> 3);
        let base = 1u64 << (10 + exponent);
        base + base / 8 * u64::from(header[0] & 7)
    };
    Ok(Some(Frame::Zstd { window, dictionary }))
}

/// The longest a frame header can be: magic, descriptor, window, dictionary ID, content size.
pub const MAX_HEADER: usize = 4 + 1 + 1 + 4 + 8;

/// Checks a zstd frame's header before it is decoded; the error says what is wrong with it.
pub fn check(window: u64, dictionary: u32) -> io::Result<()> {
    if window > WINDOW_CAP {
        return Err(io::Error::new(
            io::ErrorKind::Unsupported,
            format!(
                "a zstd frame asks for a {} window; dockersave decodes windows up to {} (zstd's own default limit), so this layer cannot be read here",
                mebibytes(window),
                mebibytes(WINDOW_CAP)
            ),
        ));
    }
    if dictionary != 0 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "a zstd frame needs a dictionary, which image layers never use",
        ));
    }
    Ok(())
}

/// `128 MiB`, `1.5 MiB`, `3 KiB`: window sizes are powers of two plus eighths.
fn mebibytes(bytes: u64) -> String {
    if bytes >= 1 << 20 {
        format!("{} MiB", (bytes as f64 / f64::from(1 << 20)))
    } else {
        format!("{} KiB", (bytes as f64 / 1024.0))
    }
}

#[cfg(feature = "zstd")]
pub use libzstd::Decoder;

#[cfg(feature = "zstd")]
mod libzstd {
    use super::WINDOW_BUDGET;
    use crate::locks::lock;
    use std::io;
    use std::sync::{Condvar, Mutex};

    /// libzstd's decoder for the frames of one layer, one at a time, with its share of the window
    /// budget. It is kept from frame to frame (a layer of a million tiny frames must not cost a
    /// million decoders: that took 13 s for 9 MB) and replaced only by a frame with a larger
    /// window.
    pub struct Decoder {
        context: zstd_safe::DCtx<'static>,
        grant: Grant,
    }

    impl Decoder {
        /// A decoder for the frame whose header passed `check`: this one, reset, if its window is
        /// large enough, else a new one (the old one's window given back first, so that two layers
        /// growing at once cannot each hold what the other waits for). Waits for window memory if
        /// layers being decoded at the same time hold it.
        pub fn for_frame(previous: Option<Decoder>, window: u64) -> io::Result<Decoder> {
            if let Some(mut decoder) = previous {
                if decoder.grant.0 >= window {
                    decoder
                        .context
                        .reset(zstd_safe::ResetDirective::SessionOnly)
                        .map_err(zstd_error)?;
                    return Ok(decoder);
                }
            }
            let grant = Grant::take(window);
            let mut context = zstd_safe::DCtx::try_create()
                .ok_or_else(|| io::Error::new(io::ErrorKind::OutOfMemory, "no memory for zstd"))?;
            // The same cap, enforced by libzstd too.
            context
                .set_parameter(zstd_safe::DParameter::WindowLogMax(27))
                .map_err(zstd_error)?;
            Ok(Decoder { context, grant })
        }

        /// Decodes from `input` into `output`; returns the bytes consumed and written, and whether
        /// the frame is complete and fully written out.
        pub fn decode(
            &mut self,
            input: &[u8],
            output: &mut [u8],
        ) -> io::Result<(usize, usize, bool)> {
            let mut input = zstd_safe::InBuffer::around(input);
            let mut output = zstd_safe::OutBuffer::around(output);
            let hint = self
                .context
                .decompress_stream(&mut output, &mut input)
                .map_err(zstd_error)?;
            Ok((input.pos(), output.pos(), hint == 0))
        }
    }

    fn zstd_error(code: usize) -> io::Error {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("corrupt zstd data ({})", zstd_safe::get_error_name(code)),
        )
    }

    /// Window bytes taken from the budget; given back when dropped.
    pub(super) struct Grant(u64);

    static WINDOWS: Mutex<u64> = Mutex::new(0);
    static RETURNED: Condvar = Condvar::new();

    impl Grant {
        pub(super) fn take(window: u64) -> Grant {
            let mut used = lock(&WINDOWS);
            while *used > 0 && *used + window > WINDOW_BUDGET {
                used = RETURNED.wait(used).unwrap_or_else(|p| p.into_inner());
            }
            *used += window;
            Grant(window)
        }
    }

    impl Drop for Grant {
        fn drop(&mut self) {
            *lock(&WINDOWS) -= self.0;
            RETURNED.notify_all();
        }
    }
}

/// A build without the "zstd" feature has no decoder: a zstd layer is refused, naming it.
#[cfg(not(feature = "zstd"))]
pub enum Decoder {}

#[cfg(not(feature = "zstd"))]
impl Decoder {
    pub fn for_frame(_previous: Option<Decoder>, _window: u64) -> io::Result<Decoder> {
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "the layer is zstd-compressed, and this dockersave was built without the \"zstd\" feature; use a full build (dockersave rather than dockersave-minimal)",
        ))
    }

    pub fn decode(
        &mut self,
        _input: &[u8],
        _output: &mut [u8],
    ) -> io::Result<(usize, usize, bool)> {
        match *self {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_frame_headers() {
        // No content size, window descriptor 0x58: 2^(10+11) = 2 MiB.
        let level3 = [0x28, 0xb5, 0x2f, 0xfd, 0x04, 0x58];
        assert_eq!(
            frame_header(&level3),
            Ok(Some(Frame::Zstd {
                window: 2 << 20,
                dictionary: 0
            }))
        );
        // Mantissa 3: 1 MiB + 3/8 MiB.
        let mantissa = [0x28, 0xb5, 0x2f, 0xfd, 0x00, 0x53];
        assert_eq!(
            frame_header(&mantissa),
            Ok(Some(Frame::Zstd {
                window: (1 << 20) + 3 * (1 << 17),
                dictionary: 0
            }))
        );
        // Single segment with a 2-byte content size of 1000 - 256.
        let single = [0x28, 0xb5, 0x2f, 0xfd, 0x60, 0xe8, 0x02];
        assert_eq!(
            frame_header(&single),
            Ok(Some(Frame::Zstd {
                window: 1000,
                dictionary: 0
            }))
        );
        // A dictionary ID of 1 byte.
        let dictionary = [0x28, 0xb5, 0x2f, 0xfd, 0x01, 0x58, 7];
        assert_eq!(
            frame_header(&dictionary),
            Ok(Some(Frame::Zstd {
                window: 2 << 20,
                dictionary: 7
            }))
        );
        let skippable = [0x5e, 0x2a, 0x4d, 0x18, 5, 0, 0, 0];
        assert_eq!(
            frame_header(&skippable),
            Ok(Some(Frame::Skippable { length: 5 }))
        );
        assert_eq!(frame_header(&level3[..5]), Ok(None));
        assert_eq!(frame_header(&skippable[..6]), Ok(None));
        assert!(frame_header(b"PK\x03\x04").is_err());
        assert!(frame_header(&[0x28, 0xb5, 0x2f, 0xfd, 0x08, 0x58]).is_err());
    }

    #[test]
    fn refuses_windows_over_the_cap_and_dictionaries() {
        assert!(check(WINDOW_CAP, 0).is_ok());
        let err = check(WINDOW_CAP + 1, 0).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::Unsupported);
        assert!(err.to_string().contains("window"), "{err}");
        // The largest the format allows: exponent 31, mantissa 7.
        let Ok(Some(Frame::Zstd { window, .. })) =
            frame_header(&[0x28, 0xb5, 0x2f, 0xfd, 0x00, 0xff])
        else {
            panic!()
        };
        assert!(check(window, 0).is_err());
        assert!(check(1024, 3).is_err());
    }

    #[cfg(feature = "zstd")]
    #[test]
    fn windows_share_the_budget() {
        use super::libzstd::Grant;
        let first = Grant::take(6 << 20);
        let (sender, receiver) = std::sync::mpsc::channel();
        let waiter = std::thread::spawn(move || {
            let _second = Grant::take(6 << 20);
            sender.send(()).unwrap();
        });
        std::thread::sleep(std::time::Duration::from_millis(50));
        assert!(
            receiver.try_recv().is_err(),
            "took the window while over budget"
        );
        drop(first);
        receiver
            .recv_timeout(std::time::Duration::from_secs(5))
            .unwrap();
        waiter.join().unwrap();
        // A window over the budget is taken when alone.
        drop(Grant::take(WINDOW_CAP));
    }
}
