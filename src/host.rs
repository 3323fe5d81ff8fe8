//! The machine dockersave runs on, read at run time: which image of a multi-platform index
//! suits it by default.
//!
//! On 32-bit ARM the build target says nothing — the one ARMv5TE binary runs on v5, v6, v7 and
//! v8 CPUs — so the CPU's architecture version comes from the kernel: the auxiliary vector's
//! `AT_PLATFORM` (`"v6l"`), else `/proc/cpuinfo` (`CPU architecture: 6`), else v5, the oldest
//! that runs this build (never a newer guess: a v6 board handed a v7 image dies with "illegal
//! instruction"). The parsers are pure; only `platform` reads.

use crate::manifest::Platform;

/// The platform of this machine: `linux/arm/v6` on a Raspberry Pi Zero, `linux/arm64`,
/// `linux/amd64`, ...
pub fn platform() -> Platform {
    match std::env::consts::ARCH {
        "arm" => {
            let version = at_platform()
                .as_deref()
                .and_then(parse_at_platform)
                .or_else(|| {
                    std::fs::read_to_string("/proc/cpuinfo")
                        .ok()
                        .and_then(|text| parse_cpuinfo(&text))
                })
                .unwrap_or(5);
            Platform::new("linux", "arm", Some(&format!("v{}", version.clamp(5, 8))))
        }
        "x86_64" => Platform::new("linux", "amd64", None),
        "aarch64" => Platform::new("linux", "arm64", None),
        "x86" => Platform::new("linux", "386", None),
        other => Platform::new("linux", other, None),
    }
}

fn at_platform() -> Option<String> {
    let pointer = unsafe { libc::getauxval(libc::AT_PLATFORM) } as *const libc::c_char;
    if pointer.is_null() {
        return None;
    }
    // The kernel puts a NUL-terminated string on the process's stack for its lifetime.
    let text = unsafe { std::ffi::CStr::from_ptr(pointer) };
    Some(text.to_string_lossy().into_owned())
}

/// `"v7l"` (little-endian v7) → 7.
pub fn parse_at_platform(text: &str) -> Option<u8> {
    let digits = text.strip_prefix('v')?.trim_end_matches(['l', 'b']);
    digits.parse().ok()
}

/// The ARM version `/proc/cpuinfo` gives: the `(v6l)` the kernel appends to the processor's
/// name (its ELF platform, right for the Pi 1's ARM1176), else the `CPU architecture:` line
/// (`5TEJ` → 5; it says 7 for the ARM1176, hence second).
pub fn parse_cpuinfo(text: &str) -> Option<u8> {
    let fields = || {
        text.lines().filter_map(|line| {
            let (key, value) = line.split_once(':')?;
            Some((key.trim(), value.trim()))
        })
    };
    let from_name = fields()
        .filter(|(key, _)| matches!(*key, "model name" | "Processor"))
        .find_map(|(_, name)| {
            let start = name.rfind("(v")?;
            parse_at_platform(name[start + 1..].strip_suffix(')')?)
        });
    from_name.or_else(|| {
        fields()
            .filter(|(key, _)| *key == "CPU architecture")
            .find_map(|(_, value)| {
                let digits: String = value.chars().take_while(char::is_ascii_digit).collect();
                digits.parse().ok()
            })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_arm_version() {
        assert_eq!(parse_at_platform("v5l"), Some(5));
        assert_eq!(parse_at_platform("v6l"), Some(6));
        assert_eq!(parse_at_platform("v7l"), Some(7));
        assert_eq!(parse_at_platform("v8l"), Some(8));
        assert_eq!(parse_at_platform("aarch64"), None);
        assert_eq!(parse_at_platform("x86_64"), None);
        let kirkwood = "Processor\t: Feroceon 88FR131 rev 1 (v5l)\nBogoMIPS\t: 1192.75\nCPU architecture: 5TE\nCPU variant\t: 0x2\n";
        assert_eq!(parse_cpuinfo(kirkwood), Some(5));
        let pi_zero = "processor\t: 0\nmodel name\t: ARMv6-compatible processor rev 7 (v6l)\nCPU architecture: 7\n";
        // The Pi 1's ARM1176 reports architecture 7 (its CPUID scheme); the name says v6l.
        assert_eq!(parse_cpuinfo(pi_zero), Some(6));
        assert_eq!(parse_cpuinfo("CPU architecture: 8\n"), Some(8));
        assert_eq!(parse_cpuinfo("flags: fpu\n"), None);
    }
}
