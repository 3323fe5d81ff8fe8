//! The `--help` text, rendered from the flag items, and (for developers, in tests) the man page
//! and the bash completions made from the same items, so the three cannot drift apart.

use super::flags::{Flag, SECTIONS};

const INTRO: &str = "\
dockersave - fetch a container image from a Docker/OCI registry, without Docker,
and write an archive that `docker load` accepts.
";

const USAGE: &str = "\
dockersave [OPTIONS] IMAGE [IMAGE...] | --images-from FILE
dockersave --rootfs DIR [--force] [--git] [OPTIONS] IMAGE
dockersave --flatten FILE|- [OPTIONS] IMAGE
dockersave --initramfs FILE|- [--xz] [--init PATH] [OPTIONS] IMAGE
dockersave --layer N|sha256:HEX [--registry-format] [OPTIONS] IMAGE
dockersave --tags | --sha | --metadata [--pretty] | --platforms [OPTIONS] IMAGE
dockersave --push ARCHIVE|DIR [--image NAME | --all] [OPTIONS] IMAGE
dockersave --copy-to DEST [OPTIONS] IMAGE | --images-from FILE
";

const IMAGE: &str = "\
IMAGE is a reference as Docker spells it: [HOST[:PORT]/]PATH[:TAG][@sha256:DIGEST]
(`debian`, `debian:12`, `myregistry.example:5000/team/app:1.2`). The archive is
written as PATH-TAG.tar (`library-debian-latest.tar`) in the working directory; several
images go into one archive (shared layers stored once), named after the first image
plus `-and-N-more`.
";

const EXIT_CODES: &str = "\
Exit codes: 0 success, 2 bad usage or image name, 3 network failure, 4 authentication
refused, 5 image/tag/platform not found, 6 verification failed, unsupported image or an
entry refused by --rootfs, 7 local file error (e.g. disk full), 8 unexpected registry
answer, 129/130/143 interrupted (SIGHUP, Ctrl-C, SIGTERM).
";

/// Where a flag's help text starts on its line.
const COLUMN: usize = 24;

/// How a flag is written in `--help`: `-o, --output FILE`.
fn synopsis(flag: &Flag) -> String {
    let mut text = String::new();
    if let Some(short) = flag.short {
        text.push('-');
        text.push(short);
        text.push_str(", ");
    }
    text.push_str("--");
    text.push_str(flag.long);
    if let Some(value) = flag.value {
        text.push(' ');
        text.push_str(value);
    }
    text
}

/// Appends `line` after spaces up to `COLUMN`, and a newline.
fn push_at_column(text: &mut String, line: &str) {
    let start = text.rfind('\n').map_or(0, |i| i + 1);
    let used = text.len() - start;
    text.extend(std::iter::repeat_n(' ', COLUMN.saturating_sub(used)));
    text.push_str(line);
    text.push('\n');
}

/// The `--help` text.
pub fn help() -> String {
    let mut text = String::from(INTRO);
    text.push_str("\nUsage: ");
    for (i, line) in USAGE.lines().enumerate() {
        if i > 0 {
            text.push_str("       ");
        }
        text.push_str(line);
        text.push('\n');
    }
    text.push('\n');
    text.push_str(IMAGE);
    for section in SECTIONS {
        text.push('\n');
        text.push_str(section.title);
        text.push_str(":\n");
        for flag in section.flags {
            text.push_str("  ");
            text.push_str(&synopsis(flag));
            let mut lines = flag.help.lines();
            if text.len() - text.rfind('\n').map_or(0, |i| i + 1) >= COLUMN - 1 {
                text.push('\n');
            } else if let Some(first) = lines.next() {
                push_at_column(&mut text, first);
            }
            for line in lines {
                push_at_column(&mut text, line);
            }
        }
    }
    text.push('\n');
    text.push_str(EXIT_CODES);
    text
}

/// `docs/dockersave.1`: the same text as `--help`, in roff.
#[cfg(test)]
pub fn man_page(version: &str) -> String {
    let roff = |text: &str| {
        let escaped = text.replace('\\', "\\e").replace('-', "\\-");
        // A line starting with `.` or `'` would be read as a request.
        escaped
            .lines()
            .map(|l| {
                if l.starts_with(['.', '\'']) {
                    format!("\\&{l}")
                } else {
                    l.to_string()
                }
            })
            .collect::<Vec<_>>()
            .join("\n")
    };
    let paragraph = |text: &str| {
        roff(
            &text
                .split('\n')
                .collect::<Vec<_>>()
                .join(" ")
                .trim()
                .replace("  ", " "),
        )
    };
    let mut page = String::new();
    page.push_str(&format!(
        ".TH DOCKERSAVE 1 \"\" \"dockersave {version}\" \"User Commands\"\n"
    ));
    page.push_str(
        ".\\\" Made from the --help text by `cargo test docs_are_current`; do not edit.\n",
    );
    page.push_str(".SH NAME\ndockersave \\- fetch a container image from a Docker/OCI registry, without Docker\n");
    page.push_str(".SH SYNOPSIS\n.nf\n");
    page.push_str(&roff(USAGE));
    page.push_str("\n.fi\n.SH DESCRIPTION\n");
    page.push_str(&paragraph(INTRO));
    page.push_str("\n.PP\n");
    page.push_str(&paragraph(IMAGE));
    page.push('\n');
    for section in SECTIONS {
        page.push_str(&format!(".SH {}\n", roff(&section.title.to_uppercase())));
        for flag in section.flags {
            page.push_str(&format!(
                ".TP\n.B {}\n{}\n",
                roff(&synopsis(flag)),
                paragraph(flag.help)
            ));
        }
    }
    let (_, codes) = EXIT_CODES.split_once(": ").unwrap_or(("", EXIT_CODES));
    page.push_str(".SH EXIT STATUS\n");
    page.push_str(&paragraph(codes));
    page.push_str("\n.SH ENVIRONMENT\n");
    for (name, what) in [
        ("DOCKERSAVE_CACHE", "the default of --cache-dir"),
        ("DOCKERSAVE_CACHE_MAX", "the default of --cache-max"),
        ("HTTPS_PROXY, HTTP_PROXY, ALL_PROXY, NO_PROXY", "the proxy to use, and the hosts to reach directly (see --proxy)"),
        ("SSL_CERT_FILE", "another PEM file of CA certificates to trust (see --cacert)"),
        ("DOCKERSAVE_MIRRORS", "mirrors as --mirror takes them, separated by commas or spaces; used when no --mirror is given, and an empty value turns daemon.json's off"),
        ("DOCKERSAVE_DAEMON_JSON", "the Docker daemon configuration whose registry-mirrors are used when neither --mirror nor DOCKERSAVE_MIRRORS is given (default: /etc/docker/daemon.json)"),
        ("DOCKERSAVE_CERTS_D", "a certs.d directory searched after those of --certs-d"),
        ("DOCKER_CONFIG", "the directory of Docker's config.json, whose credentials and credential helpers are used (default: ~/.docker)"),
    ] {
        page.push_str(&format!(".TP\n.B {}\n{}\n", roff(name), roff(what)));
    }
    page.push_str(".SH SEE ALSO\n.BR docker (1),\n.BR skopeo (1),\n.BR umoci (1)\n");
    page
}

/// `docs/dockersave.bash`: bash completion of the flags, and of files after those that take a
/// path.
#[cfg(test)]
pub fn bash_completion() -> String {
    let flags: Vec<&Flag> = SECTIONS.iter().flat_map(|s| s.flags).collect();
    let names = |flag: &Flag| {
        let short = flag.short.map(|s| format!("-{s}|"));
        format!("{}--{}", short.unwrap_or_default(), flag.long)
    };
    let taking = |wanted: fn(&str) -> bool| {
        let matching = flags.iter().filter(|f| f.value.is_some_and(wanted));
        matching.map(|f| names(f)).collect::<Vec<_>>().join("|")
    };
    let files = taking(|v| v == "FILE" || v == "ARCHIVE|DIR");
    let dirs = taking(|v| v == "DIR");
    let values = taking(|v| !matches!(v, "FILE" | "ARCHIVE|DIR" | "DIR" | "docker|legacy"));
    let all: Vec<String> = flags.iter().map(|f| names(f).replace('|', " ")).collect();
    format!(
        "# bash completion for dockersave. Made from the --help text by `cargo test docs_are_current`.
_dockersave() {{
    local cur=${{COMP_WORDS[COMP_CWORD]}} prev=${{COMP_WORDS[COMP_CWORD-1]}}
    case $prev in
        {files}) COMPREPLY=($(compgen -f -- \"$cur\")); return ;;
        {dirs}) COMPREPLY=($(compgen -d -- \"$cur\")); return ;;
        --format) COMPREPLY=($(compgen -W 'docker legacy' -- \"$cur\")); return ;;
        {values}) return ;;
    esac
    if [[ $cur == -* ]]; then
        COMPREPLY=($(compgen -W '{}' -- \"$cur\"))
    fi
}}
complete -F _dockersave dockersave
",
        all.join(" ")
    )
}
