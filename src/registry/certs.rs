//! Docker's `certs.d`: certificates for one host. `DIR/HOST[:PORT]/` holds `*.crt` files (CAs
//! trusted for that host alone) and `NAME.cert` with `NAME.key` (a client certificate for mutual
//! TLS), as Docker, containerd and podman read them.
//!
//! This module finds and reads the files; `http` turns them into TLS settings. A file is only
//! ever used for the host its directory is named after, and errors name files, never what they
//! hold (a key is a secret).

use crate::error::Error;
use std::fs;
use std::path::{Path, PathBuf};

/// What a host's directory holds, as PEM text.
pub struct HostFiles {
    /// The host's directory, for messages.
    pub dir: PathBuf,
    /// Each `*.crt`: its path and its PEM text.
    pub cas: Vec<(PathBuf, Vec<u8>)>,
    pub client: Option<ClientFiles>,
}

/// A client certificate (its chain) and its private key.
pub struct ClientFiles {
    pub cert: PathBuf,
    pub cert_pem: Vec<u8>,
    pub key_pem: Vec<u8>,
}

/// The directory for `host` (`host[:port]` as in the URL) in the first of `dirs` that has one.
pub fn find(dirs: &[PathBuf], host: &str) -> Option<PathBuf> {
    if host.is_empty() || host == "." || host == ".." || host.contains(['/', '\0']) {
        return None;
    }
    dirs.iter().map(|dir| dir.join(host)).find(|d| d.is_dir())
}

/// Reads a host's directory: its CAs and its client certificate. Of several `*.cert` files the
/// first by name is used; each needs its `*.key` beside it, and each key its certificate.
pub fn read(dir: &Path) -> Result<HostFiles, Error> {
    let mut names: Vec<PathBuf> = fs::read_dir(dir)
        .map_err(|e| Error::io(dir, e))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .collect();
    names.sort();
    let with = |ext: &str| -> Vec<&PathBuf> {
        names
            .iter()
            .filter(|p| p.extension().is_some_and(|e| e == ext))
            .collect()
    };
    let read = |path: &Path| fs::read(path).map_err(|e| Error::io(path, e));
    let mut cas = Vec::new();
    for path in with("crt") {
        cas.push((path.clone(), read(path)?));
    }
    for key in with("key") {
        if !key.with_extension("cert").exists() {
            return Err(Error::Local(format!(
                "{} has no client certificate {} beside it (certs.d pairs NAME.cert with NAME.key)",
                key.display(),
                key.with_extension("cert").display()
            )));
        }
    }
    let client = match with("cert").first() {
        None => None,
        Some(cert) => {
            let key = cert.with_extension("key");
            if !key.exists() {
                return Err(Error::Local(format!(
                    "the client certificate {} has no key {} beside it (certs.d pairs NAME.cert with NAME.key)",
                    cert.display(),
                    key.display()
                )));
            }
            Some(ClientFiles {
                cert: cert.to_path_buf(),
                cert_pem: read(cert)?,
                key_pem: read(&key)?,
            })
        }
    };
    Ok(HostFiles {
        dir: dir.to_path_buf(),
        cas,
        client,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_first_directory_for_a_host_and_pairs_certificates_with_keys() {
        let root = std::env::temp_dir().join(format!("dockersave-certs-{}", std::process::id()));
        let (first, second) = (root.join("first"), root.join("second"));
        fs::create_dir_all(second.join("reg.example:5000")).unwrap();
        fs::create_dir_all(first.join("other.example")).unwrap();
        let dirs = [first.clone(), second.clone()];
        assert_eq!(
            find(&dirs, "reg.example:5000"),
            Some(second.join("reg.example:5000"))
        );
        fs::create_dir_all(first.join("reg.example:5000")).unwrap();
        assert_eq!(
            find(&dirs, "reg.example:5000"),
            Some(first.join("reg.example:5000"))
        );
        assert_eq!(
            find(&dirs, "reg.example"),
            None,
            "the port is part of the name"
        );
        assert_eq!(find(&dirs, ".."), None);
        assert_eq!(find(&dirs, "../first"), None);

        let host = first.join("reg.example:5000");
        fs::write(host.join("ca.crt"), "ca").unwrap();
        fs::write(host.join("b.crt"), "b").unwrap();
        let files = read(&host).unwrap();
        assert_eq!(files.cas.len(), 2);
        assert_eq!(files.cas[0].1, b"b");
        assert!(files.client.is_none());
        fs::write(host.join("client.cert"), "cert").unwrap();
        let lonely = read(&host).err().unwrap().to_string();
        assert!(lonely.contains("client.cert has no key"), "{lonely}");
        fs::write(host.join("client.key"), "key").unwrap();
        let client = read(&host).unwrap().client.unwrap();
        assert_eq!(
            (client.cert_pem, client.key_pem),
            (b"cert".to_vec(), b"key".to_vec())
        );
        fs::write(host.join("stray.key"), "key").unwrap();
        let stray = read(&host).err().unwrap().to_string();
        assert!(
            stray.contains("stray.key has no client certificate"),
            "{stray}"
        );
        fs::remove_dir_all(&root).unwrap();
    }
}
