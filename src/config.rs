//! Finding and reading the resource descriptor.

use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

use crate::domain::descriptor::{self, Descriptor, MAX_DESCRIPTOR_BYTES};

/// The 1.0 environment variable naming a descriptor, consulted last.
pub const DESCRIPTOR_ENV: &str = "RENTABOT_RESOURCE_DESCRIPTOR";

/// The descriptor to load, in the 1.0 order: `--config`, `./.rentabot.yaml`,
/// `./rentabot.yaml`, `~/.rentabot/config.yaml`, `$RENTABOT_RESOURCE_DESCRIPTOR`.
/// `None` means start empty. Explicit choices (the flag, the variable) are returned even
/// if the file is missing, so that loading reports it rather than silently starting empty.
pub fn discover_descriptor(
    explicit: Option<&Path>,
    cwd: &Path,
    home: Option<&Path>,
    env_value: Option<OsString>,
) -> Option<PathBuf> {
    if let Some(path) = explicit {
        return Some(path.to_owned());
    }
    let implicit = [
        Some(cwd.join(".rentabot.yaml")),
        Some(cwd.join("rentabot.yaml")),
        home.map(|h| h.join(".rentabot").join("config.yaml")),
    ];
    implicit
        .into_iter()
        .flatten()
        .find(|p| p.is_file())
        .or_else(|| env_value.filter(|v| !v.is_empty()).map(PathBuf::from))
}

/// Reads and parses a descriptor. Errors name the file, and the line and resource where
/// the parser knows them.
pub fn load_descriptor(path: &Path) -> anyhow::Result<Descriptor> {
    let shown = path.display();
    let size = fs::metadata(path)
        .with_context(|| format!("cannot read descriptor {shown}"))?
        .len();
    if size > MAX_DESCRIPTOR_BYTES as u64 {
        bail!("descriptor {shown}: {size} bytes, over the limit of {MAX_DESCRIPTOR_BYTES} bytes");
    }
    let text =
        fs::read_to_string(path).with_context(|| format!("cannot read descriptor {shown}"))?;
    descriptor::parse(&text).with_context(|| format!("invalid descriptor {shown}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn discovery_follows_the_1_0_order() {
        let dir = tempfile::tempdir().unwrap();
        let cwd = dir.path().join("cwd");
        let home = dir.path().join("home");
        fs::create_dir_all(home.join(".rentabot")).unwrap();
        fs::create_dir_all(&cwd).unwrap();
        let env = || Some(OsString::from("/from/env.yaml"));

        assert_eq!(discover_descriptor(None, &cwd, Some(&home), None), None);
        assert_eq!(
            discover_descriptor(None, &cwd, Some(&home), env()),
            Some(PathBuf::from("/from/env.yaml"))
        );
        fs::write(home.join(".rentabot/config.yaml"), "a:\n").unwrap();
        assert_eq!(
            discover_descriptor(None, &cwd, Some(&home), env()),
            Some(home.join(".rentabot/config.yaml"))
        );
        fs::write(cwd.join("rentabot.yaml"), "a:\n").unwrap();
        assert_eq!(
            discover_descriptor(None, &cwd, Some(&home), env()),
            Some(cwd.join("rentabot.yaml"))
        );
        fs::write(cwd.join(".rentabot.yaml"), "a:\n").unwrap();
        assert_eq!(
            discover_descriptor(None, &cwd, Some(&home), env()),
            Some(cwd.join(".rentabot.yaml"))
        );
        let flag = Path::new("/from/flag.yaml");
        assert_eq!(
            discover_descriptor(Some(flag), &cwd, Some(&home), env()),
            Some(flag.to_owned())
        );
    }

    #[test]
    fn load_errors_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.yaml");
        let err = format!("{:#}", load_descriptor(&missing).unwrap_err());
        assert!(err.contains("missing.yaml"), "{err}");

        let bad = dir.path().join("bad.yaml");
        fs::write(&bad, "a:\n  max-lock-duration: soon\n").unwrap();
        let err = format!("{:#}", load_descriptor(&bad).unwrap_err());
        assert!(err.contains("bad.yaml"), "{err}");
        assert!(err.contains("line 2 column"), "{err}");
        assert!(err.contains("a.max-lock-duration"), "{err}");
    }

    #[test]
    fn oversized_files_are_refused_without_reading_them() {
        let dir = tempfile::tempdir().unwrap();
        let big = dir.path().join("big.yaml");
        let file = fs::File::create(&big).unwrap();
        file.set_len(MAX_DESCRIPTOR_BYTES as u64 + 1).unwrap();
        let err = format!("{:#}", load_descriptor(&big).unwrap_err());
        assert!(err.contains("over the limit"), "{err}");
    }
}
