//! Integration tests for inspection: `--tags` (through pages), `--sha`, `--metadata [--pretty]`
//! and `--platforms`, against the real registry, checked with skopeo and the registry's own
//! headers. Nothing may be written. Run through tests/run.sh.

mod common;

use common::*;
use std::path::Path;

fn plain(image: &str) -> String {
    format!("{}/{image}", env("DS_REGISTRY"))
}

fn inspect(args: &[&str]) -> String {
    let dir = Scratch::new("inspect");
    let mut all = vec!["--insecure"];
    all.extend_from_slice(args);
    let out = dockersave_ok(dir.path(), &all);
    assert!(dir.names().is_empty(), "inspection wrote {:?}", dir.names());
    out.stdout
}

fn skopeo(args: &[&str]) -> String {
    let out = run("skopeo", args, Path::new("/"), None);
    assert_eq!(out.code, 0, "skopeo {args:?}: {out}");
    out.stdout
}

fn sha256(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    format!("sha256:{:x}", sha2::Sha256::digest(bytes))
}

#[test]
fn tags_follow_every_page() {
    let repository = format!("tagged-{}", std::process::id());
    let mut expected = Vec::new();
    for n in 1..=5 {
        let tag = format!("t{n}");
        skopeo(&[
            "copy",
            "--quiet",
            "--src-tls-verify=false",
            "--dest-tls-verify=false",
            &format!("docker://{}:latest", plain("busybox")),
            &format!("docker://{}:{tag}", plain(&repository)),
        ]);
        expected.push(tag);
    }
    let faults = Faults {
        page_tags: Some(2),
        ..Faults::default()
    };
    let front = forwarder(&env("DS_REGISTRY"), faults.clone());
    let out = inspect(&["--tags", &format!("{front}/{repository}")]);
    let mut tags: Vec<&str> = out.lines().collect();
    tags.sort();
    assert_eq!(tags, expected);
    let pages = faults
        .requests()
        .iter()
        .filter(|r| r.contains("/tags/list"))
        .count();
    assert_eq!(pages, 3, "5 tags in pages of 2: {:?}", faults.requests());
    // Through token auth, as on Docker Hub.
    let dir = Scratch::new("inspect-token");
    let out = dockersave_env(
        dir.path(),
        &[
            "--insecure",
            "--user",
            "tokenuser",
            "--password-stdin",
            "--tags",
            &format!("{}/{repository}", env("DS_TOKEN_REGISTRY")),
        ],
        &[],
        Some("token-secret-42"),
    );
    assert_eq!(out.code, 0, "{out}");
    assert_eq!(out.stdout.lines().count(), 5, "{out}");
}

/// The `Docker-Content-Digest` the registry sends for a manifest or index.
fn registry_digest(image: &str) -> String {
    let (repository, tag) = image.rsplit_once(':').unwrap();
    let (host, path) = repository.split_once('/').unwrap();
    let agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .new_agent();
    let response = agent
        .head(&format!("http://{host}/v2/{path}/manifests/{tag}"))
        .header(
            "Accept",
            "application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json",
        )
        .call()
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    response.headers()["docker-content-digest"]
        .to_str()
        .unwrap()
        .to_string()
}

#[test]
fn sha_names_the_index_and_the_platform_manifest() {
    let busybox = plain("busybox:latest");
    assert_eq!(
        inspect(&["--sha", &busybox]),
        format!("{}\n", registry_digest(&busybox))
    );
    let multi = plain("multi:latest");
    let out = inspect(&["--sha", "--platform", "linux/arm64", &multi]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "{out}");
    assert_eq!(lines[0], registry_digest(&multi));
    // The second is the index's arm64 entry, read from the index skopeo fetches.
    let index = skopeo(&[
        "inspect",
        "--raw",
        "--tls-verify=false",
        &format!("docker://{multi}"),
    ]);
    let entry = run(
        "python3",
        &[
            "-c",
            "import json,sys; i=json.loads(sys.argv[1]); print([m['digest'] for m in i['manifests'] if m['platform']['architecture']=='arm64'][0])",
            &index,
        ],
        Path::new("/"),
        None,
    );
    assert_eq!(entry.code, 0, "{entry}");
    assert_eq!(lines[1], entry.stdout.trim());
}

#[test]
fn metadata_is_the_documents_as_served() {
    let multi = plain("multi:latest");
    let out = inspect(&["--metadata", "--platform", "linux/amd64", &multi]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3, "index, manifest, config: {out}");
    let raw_index = skopeo(&[
        "inspect",
        "--raw",
        "--tls-verify=false",
        &format!("docker://{multi}"),
    ]);
    assert_eq!(lines[0], raw_index.trim_end());
    let config = skopeo(&[
        "inspect",
        "--config",
        "--raw",
        "--tls-verify=false",
        "--override-arch",
        "amd64",
        &format!("docker://{multi}"),
    ]);
    assert_eq!(lines[2], config.trim_end());
    // Byte for byte as served: it hashes to the index's entry (its own final newline kept).
    let manifest = lines[1].as_bytes();
    let with_newline = [manifest, b"\n"].concat();
    assert!(
        raw_index.contains(&sha256(manifest)) || raw_index.contains(&sha256(&with_newline)),
        "the manifest is the index's amd64 entry"
    );
    // --pretty: the same documents, indented (python's json module reads both alike).
    let pretty = inspect(&[
        "--metadata",
        "--pretty",
        "--platform",
        "linux/amd64",
        &multi,
    ]);
    assert!(pretty.lines().count() > 20, "{pretty}");
    let same = run(
        "python3",
        &[
            "-c",
            "import json,sys; a,b=sys.argv[1:]; d=json.JSONDecoder()\n\
             def docs(t):\n    i=0; out=[]\n    t=t.strip()\n    while i<len(t):\n        o,i=d.raw_decode(t,i)\n        out.append(o)\n        while i<len(t) and t[i].isspace(): i+=1\n    return out\n\
             sys.exit(0 if docs(a)==docs(b) and len(docs(a))==3 else 1)",
            &out,
            &pretty,
        ],
        Path::new("/"),
        None,
    );
    assert_eq!(
        same.code, 0,
        "the pretty documents differ: {same}\n{pretty}"
    );
}

#[test]
fn platforms_of_an_index_and_of_a_single_image() {
    assert_eq!(
        inspect(&["--platforms", &plain("multi")]),
        "linux/amd64\nlinux/arm64\nlinux/arm/v7\n"
    );
    assert_eq!(
        inspect(&["--platforms", &plain("multi-arm")]),
        "linux/arm/v5\nlinux/arm/v6\nlinux/arm/v7\n"
    );
    assert_eq!(
        inspect(&["--platforms", &plain("busybox")]),
        "linux/amd64\n"
    );
}
