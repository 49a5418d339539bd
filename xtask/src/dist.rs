//! `cargo xtask dist [--target TRIPLE] [--no-build]`: a release build of `llm-auto-optimizer`
//! packed into `target/dist/llm-auto-optimizer-<version>-<target>.tar.gz`, with a
//! `.sha256` file next to it that `sha256sum -c` checks.
//!
//! The tarball holds one top-level directory of the same name as the tarball with the binary,
//! `config/default.toml`, `config/pricing.toml`, `LICENSE` and `README.md` (when present).
//! The archive is reproducible for one binary: entries sorted by name, owner and group 0, and
//! the modification time taken from `SOURCE_DATE_EPOCH` when set (else the last commit's time),
//! with gzip told not to store a time either. `tar` and `sha256sum` run through xshell, as the
//! brief asks: both are on every Linux and macOS builder (coreutils / GNU tar; on macOS use
//! `gtar` as `tar`).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde_json::Value;
use xshell::{Shell, cmd};

use crate::ci::project_root;

const PACKAGE: &str = "llm-auto-optimizer";

/// Files copied next to the binary, relative to the project root; `true` = required.
const PAYLOAD: &[(&str, bool)] = &[
    ("config/default.toml", true),
    ("config/pricing.toml", true),
    ("LICENSE", true),
    ("README.md", false),
];

#[derive(Debug, Default, PartialEq, Eq)]
pub struct DistArgs {
    pub target: Option<String>,
    pub no_build: bool,
}

impl DistArgs {
    pub fn parse(args: &[String]) -> Result<DistArgs> {
        let mut parsed = DistArgs::default();
        let mut iter = args.iter();
        while let Some(arg) = iter.next() {
            match arg.as_str() {
                "--target" => {
                    parsed.target = Some(iter.next().context("--target needs a TRIPLE")?.clone())
                }
                "--no-build" => parsed.no_build = true,
                other => bail!(
                    "unknown argument `{other}`: usage: cargo xtask dist [--target TRIPLE] [--no-build]"
                ),
            }
        }
        Ok(parsed)
    }
}

/// `llm-auto-optimizer-0.1.0-x86_64-unknown-linux-gnu`.
pub fn archive_stem(version: &str, target: &str) -> String {
    format!("{PACKAGE}-{version}-{target}")
}

/// The host triple from `rustc -vV` output.
pub fn host_triple(rustc_verbose_version: &str) -> Option<String> {
    rustc_verbose_version
        .lines()
        .find_map(|line| line.strip_prefix("host: "))
        .map(|host| host.trim().to_owned())
}

/// The package's version and the target directory from `cargo metadata` output.
pub fn version_and_target_dir(metadata: &Value) -> Result<(String, PathBuf)> {
    let version = metadata["packages"]
        .as_array()
        .and_then(|packages| packages.iter().find(|p| p["name"] == PACKAGE))
        .and_then(|package| package["version"].as_str())
        .with_context(|| format!("cargo metadata lists no package {PACKAGE}"))?;
    let target_dir =
        metadata["target_directory"].as_str().context("cargo metadata has no target_directory")?;
    Ok((version.to_owned(), PathBuf::from(target_dir)))
}

pub fn run(args: &[String]) -> Result<()> {
    let args = DistArgs::parse(args)?;
    let root = project_root();
    let sh = Shell::new()?;
    sh.change_dir(&root);

    let metadata_text = cmd!(sh, "cargo metadata --format-version 1 --no-deps").quiet().read()?;
    let metadata: Value = serde_json::from_str(&metadata_text).context("parsing cargo metadata")?;
    let (version, target_dir) = version_and_target_dir(&metadata)?;
    let target = match &args.target {
        Some(target) => target.clone(),
        None => {
            let rustc = cmd!(sh, "rustc -vV").quiet().read()?;
            host_triple(&rustc).context("`rustc -vV` printed no host triple")?
        }
    };

    let target_flag: Vec<String> = match &args.target {
        Some(triple) => vec!["--target".to_owned(), triple.clone()],
        None => Vec::new(),
    };
    if !args.no_build {
        cmd!(sh, "cargo build --release --locked -p {PACKAGE} --bin {PACKAGE} {target_flag...}")
            .run()?;
    }
    let release_dir = match &args.target {
        Some(triple) => target_dir.join(triple).join("release"),
        None => target_dir.join("release"),
    };
    let binary = release_dir.join(PACKAGE);
    if !binary.is_file() {
        bail!("{} does not exist: run without --no-build", binary.display());
    }

    let dist_dir = target_dir.join("dist");
    let stem = archive_stem(&version, &target);
    let staging = dist_dir.join(&stem);
    if staging.exists() {
        sh.remove_path(&staging)?;
    }
    sh.create_dir(staging.join("config"))?;
    sh.copy_file(&binary, staging.join(PACKAGE))?;
    for (relative, required) in PAYLOAD {
        let source = root.join(relative);
        if source.is_file() {
            sh.copy_file(&source, staging.join(relative))?;
        } else if *required {
            bail!("{} is missing: the tarball needs it", source.display());
        } else {
            eprintln!("note: {relative} does not exist yet; the tarball is made without it");
        }
    }

    let tarball_name = format!("{stem}.tar.gz");
    let mtime = source_date_epoch(&sh);
    let mtime_flag = format!("--mtime=@{mtime}");
    // One argument with a space: gzip without the name and time of its input.
    let compress_flag = "--use-compress-program=gzip -n";
    sh.change_dir(&dist_dir);
    cmd!(
        sh,
        "tar --sort=name --owner=0 --group=0 --numeric-owner {mtime_flag} {compress_flag} -cf {tarball_name} {stem}"
    )
    .run()?;
    let checksum = cmd!(sh, "sha256sum {tarball_name}").read()?;
    let checksum_path = dist_dir.join(format!("{tarball_name}.sha256"));
    sh.write_file(&checksum_path, format!("{}\n", checksum.trim()))?;
    sh.remove_path(&staging)?;
    println!("{}", tarball_path(&target_dir, &version, &target).display());
    println!("{}", checksum_path.display());
    Ok(())
}

/// `SOURCE_DATE_EPOCH`, else the last commit's time, else 0: never the wall clock, so two
/// packings of one binary give one checksum.
fn source_date_epoch(sh: &Shell) -> String {
    if let Ok(epoch) = sh.var("SOURCE_DATE_EPOCH")
        && !epoch.is_empty()
        && epoch.chars().all(|c| c.is_ascii_digit())
    {
        return epoch;
    }
    cmd!(sh, "git log -1 --format=%ct")
        .quiet()
        .ignore_stderr()
        .read()
        .ok()
        .filter(|time| !time.is_empty() && time.chars().all(|c| c.is_ascii_digit()))
        .unwrap_or_else(|| "0".to_owned())
}

/// Where the command puts the tarball.
pub fn tarball_path(target_dir: &Path, version: &str, target: &str) -> PathBuf {
    target_dir.join("dist").join(format!("{}.tar.gz", archive_stem(version, target)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn names_the_tarball_by_version_and_target() {
        assert_eq!(
            tarball_path(Path::new("/w/target"), "0.1.0", "x86_64-unknown-linux-gnu"),
            PathBuf::from(
                "/w/target/dist/llm-auto-optimizer-0.1.0-x86_64-unknown-linux-gnu.tar.gz"
            )
        );
    }

    #[test]
    fn reads_the_host_triple() {
        let output = "rustc 1.95.0 (59807616e 2026-04-14)\nbinary: rustc\nhost: x86_64-unknown-linux-gnu\nrelease: 1.95.0\n";
        assert_eq!(host_triple(output).as_deref(), Some("x86_64-unknown-linux-gnu"));
        assert_eq!(host_triple("rustc 1.95.0"), None);
    }

    #[test]
    fn reads_version_and_target_dir_from_metadata() {
        let metadata = json!({
            "packages": [{"name": "xtask", "version": "9.9.9"}, {"name": "llm-auto-optimizer", "version": "0.1.0"}],
            "target_directory": "/w/target"
        });
        let (version, dir) = version_and_target_dir(&metadata).unwrap();
        assert_eq!((version.as_str(), dir), ("0.1.0", PathBuf::from("/w/target")));
        assert!(
            version_and_target_dir(&json!({"packages": [], "target_directory": "/w"})).is_err()
        );
    }

    #[test]
    fn parses_its_arguments() {
        let args: Vec<String> =
            ["--target", "aarch64-unknown-linux-gnu", "--no-build"].map(str::to_owned).to_vec();
        assert_eq!(
            DistArgs::parse(&args).unwrap(),
            DistArgs { target: Some("aarch64-unknown-linux-gnu".into()), no_build: true }
        );
        assert!(DistArgs::parse(&["--target".to_owned()]).is_err());
        assert!(DistArgs::parse(&["--release".to_owned()]).is_err());
    }
}
