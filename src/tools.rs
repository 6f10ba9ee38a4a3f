//! The state file's tools (roadmap phase 7 migration utilities): `rentabot backup`,
//! `export` and `import`. They work on the file itself, not through the service, so they
//! need no running service, and `backup` and `export` are safe beside one (SQLite's WAL
//! lets them read the last commit while it writes).

use std::io::{self, Read, Write};
use std::path::Path;

use anyhow::Context;
use serde_yaml_ng::{Mapping, Value};

use crate::cli::ExportFormat;
use crate::domain::Resource;
use crate::store::{PersistUrl, sqlite};

/// The state file a tool works on: these tools read and write SQLite files only.
///
/// # Errors
/// A PostgreSQL URL, with what to use instead.
fn sqlite_file<'a>(persist: &'a PersistUrl, tool: &str) -> anyhow::Result<&'a Path> {
    match persist {
        PersistUrl::Sqlite(path) => Ok(path),
        PersistUrl::Postgres(url) => anyhow::bail!(
            "rentabot {tool} works on sqlite:// state files only, not on {url}: use \
             PostgreSQL's own tools (pg_dump, pg_restore, psql) on that database"
        ),
    }
}

/// `rentabot backup --persist URL FILE`.
///
/// # Errors
/// The state cannot be read, or `file` exists or cannot be written.
pub fn backup(persist: &PersistUrl, file: &Path) -> anyhow::Result<()> {
    let from = sqlite_file(persist, "backup")?;
    sqlite::backup(from, file)?;
    writeln!(
        io::stderr(),
        "backed up {} to {}",
        from.display(),
        file.display()
    )?;
    Ok(())
}

/// `rentabot export --persist URL [--format json|descriptor]`, to standard output.
///
/// # Errors
/// The state cannot be read, or standard output cannot be written.
pub fn export(persist: &PersistUrl, format: ExportFormat) -> anyhow::Result<()> {
    let path = sqlite_file(persist, "export")?;
    let text = match format {
        ExportFormat::Json => serde_json::to_string_pretty(&sqlite::export_json(path)?)?,
        ExportFormat::Descriptor => {
            let loaded = sqlite::read_only(path)?;
            descriptor(loaded.image.resources.values().map(|r| &**r))?
        }
    };
    let mut out = io::stdout().lock();
    writeln!(out, "{text}")?;
    out.flush()?;
    Ok(())
}

/// `rentabot import --persist URL FILE`: a new state file from a JSON export.
///
/// # Errors
/// `file` cannot be read or is not an export of this version, or the state file exists.
pub fn import(persist: &PersistUrl, file: &Path) -> anyhow::Result<()> {
    let to = sqlite_file(persist, "import")?;
    let text = if file == Path::new("-") {
        let mut text = String::new();
        io::stdin().read_to_string(&mut text)?;
        text
    } else {
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?
    };
    let export: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("{} is not JSON", file.display()))?;
    let loaded = sqlite::import_json(to, &export)?;
    writeln!(
        io::stderr(),
        "imported {} resources and {} reservations into {}",
        loaded.image.resources.len(),
        loaded.image.reservations.len(),
        to.display()
    )?;
    Ok(())
}

/// The resources as a descriptor, in id order (the order that gives them the same ids
/// on a fresh start), every property written out.
///
/// # Errors
/// Only if YAML cannot be written, which does not happen for strings and numbers.
pub fn descriptor<'a>(resources: impl Iterator<Item = &'a Resource>) -> anyhow::Result<String> {
    let mut file = Mapping::new();
    for r in resources {
        let mut properties = Mapping::new();
        properties.insert("description".into(), r.spec.description.clone().into());
        properties.insert("endpoint".into(), r.spec.endpoint.clone().into());
        properties.insert("tags".into(), r.spec.tags.join(",").into());
        properties.insert(
            "max-lock-duration".into(),
            Value::from(r.spec.max_lock_duration.as_secs()),
        );
        file.insert(r.spec.name.clone().into(), Value::Mapping(properties));
    }
    Ok(serde_yaml_ng::to_string(&file)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Broker, ResourceSpec, Ttl, descriptor};

    #[test]
    fn an_exported_descriptor_loads_back_as_the_same_resources() {
        let specs = vec![
            ResourceSpec::named("board: 1").with_tags(&["arm", "linux"]),
            ResourceSpec::named("psu").with_max_lock_duration(Ttl::from_secs(60).unwrap()),
        ];
        let broker = Broker::new(specs.clone());
        let yaml = descriptor(broker.resources()).unwrap();
        let parsed = descriptor::parse(&yaml).unwrap();
        assert_eq!(parsed.resources, specs, "{yaml}");
        assert!(parsed.warnings.is_empty(), "{yaml}");
    }
}
