//! The resource descriptor: the 1.0 YAML format, parsed and validated.
//!
//! ```yaml
//! coffee-machine:
//!     description: "Kitchen coffee machine"
//!     endpoint: "tcp://192.168.1.50"
//!     tags: "coffee,kitchen,food"
//!     max-lock-duration: 7200      # seconds; rentabot extension, default 86400
//! the-lone-resource:               # every property is optional
//! ```
//!
//! Pure: takes the text, returns resources in file order (their ids follow that order)
//! plus warnings. The caller reads the file and prefixes its path to any error.

use std::collections::HashSet;
use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, Visitor};

use super::resource::{ResourceSpec, Ttl};
use super::tags::{MAX_TAGS_PER_RESOURCE, check_tags};

/// Descriptors larger than this are refused before parsing (16 MiB, room for over
/// 100 000 resources). YAML alias bombs are refused by the parser's own expansion limit.
pub const MAX_DESCRIPTOR_BYTES: usize = 16 * 1024 * 1024;

/// A parsed descriptor.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Descriptor {
    pub resources: Vec<ResourceSpec>,
    /// Things that load but are probably mistakes (unknown keys, legacy tag syntax).
    pub warnings: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DescriptorError {
    #[error("the descriptor is {size} bytes, over the limit of {limit} bytes")]
    TooLarge { size: usize, limit: usize },

    #[error("the descriptor declares no resources")]
    Empty,

    /// Malformed YAML, a value of the wrong type, a duplicate name. `message` names the
    /// resource (as a path, `board-1.tags: ...`) and, where the parser knows it, the
    /// line and column.
    #[error("{message}")]
    Yaml {
        message: String,
        line: Option<usize>,
        column: Option<usize>,
    },

    #[error("resource `{name}`: {problem}")]
    Resource { name: String, problem: String },
}

/// Parses and validates a descriptor.
///
/// # Errors
/// See [`DescriptorError`]: the first problem found, naming the resource.
pub fn parse(text: &str) -> Result<Descriptor, DescriptorError> {
    if text.len() > MAX_DESCRIPTOR_BYTES {
        return Err(DescriptorError::TooLarge {
            size: text.len(),
            limit: MAX_DESCRIPTOR_BYTES,
        });
    }
    let raw: Option<RawDescriptor> = serde_yaml_ng::from_str(text).map_err(|e| {
        let location = e.location();
        DescriptorError::Yaml {
            message: e.to_string(),
            line: location.as_ref().map(|l| l.line()),
            column: location.as_ref().map(|l| l.column()),
        }
    })?;
    let entries = raw.map(|r| r.0).unwrap_or_default();
    if entries.is_empty() {
        return Err(DescriptorError::Empty);
    }
    let mut warnings = Vec::new();
    let resources = entries
        .into_iter()
        .map(|(name, raw)| validate(name, raw, &mut warnings))
        .collect::<Result<_, _>>()?;
    Ok(Descriptor {
        resources,
        warnings,
    })
}

/// Splits a 1.0 tag string. Comma-separated is the format; a string without commas but
/// with spaces is the pre-1.0 format, accepted with a warning. Duplicates are dropped.
///
/// Returns the tags and whether the legacy format was used.
pub fn parse_tags(raw: &str) -> (Vec<String>, bool) {
    let legacy = !raw.contains(',') && raw.trim().contains(char::is_whitespace);
    let parts: Box<dyn Iterator<Item = &str>> = if legacy {
        Box::new(raw.split_whitespace())
    } else {
        Box::new(raw.split(','))
    };
    // A set, not a scan of the list per tag: a string of 50 000 tags costs 50 000
    // steps, not a billion (the caller refuses it for its count afterwards).
    let mut seen = HashSet::new();
    let tags = parts
        .map(str::trim)
        .filter(|t| !t.is_empty() && seen.insert(*t))
        .map(str::to_owned)
        .collect();
    (tags, legacy)
}

/// The rule every resource name follows, whether a descriptor or the API declares it.
///
/// # Errors
/// What is wrong with the name, in words for the caller.
pub fn check_name(name: &str) -> Result<(), &'static str> {
    if name.trim().is_empty() {
        Err("a resource name must not be empty")
    } else {
        Ok(())
    }
}

fn validate(
    name: String,
    raw: RawResource,
    warnings: &mut Vec<String>,
) -> Result<ResourceSpec, DescriptorError> {
    let problem = |problem: String| DescriptorError::Resource {
        name: name.clone(),
        problem,
    };
    check_name(&name).map_err(|e| problem(e.into()))?;
    let max_lock_duration = match raw.max_lock_duration {
        None => Ttl::DEFAULT_MAX,
        Some(secs) => Ttl::from_secs(secs)
            .map_err(|e| problem(format!("max-lock-duration {e}, got {secs}")))?,
    };
    let (tags, legacy) = parse_tags(raw.tags.as_deref().unwrap_or(""));
    check_tags(&tags, MAX_TAGS_PER_RESOURCE, "a resource")
        .map_err(|e| problem(format!("tags: {e}")))?;
    if legacy {
        warnings.push(format!(
            "resource `{name}`: tags {:?} are space-separated (pre-1.0 format); read as {:?}, write them comma-separated",
            raw.tags.unwrap_or_default(),
            tags.join(","),
        ));
    }
    for key in raw.unknown_keys {
        warnings.push(format!("resource `{name}`: unknown key `{key}` ignored"));
    }
    Ok(ResourceSpec {
        name,
        description: raw.description.unwrap_or_default(),
        endpoint: raw.endpoint.unwrap_or_default(),
        tags,
        max_lock_duration,
    })
}

/// The top-level map, in file order, refusing duplicate names (a YAML map with a
/// repeated key is otherwise silently last-wins).
struct RawDescriptor(Vec<(String, RawResource)>);

impl<'de> Deserialize<'de> for RawDescriptor {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct TopLevel;
        impl<'de> Visitor<'de> for TopLevel {
            type Value = RawDescriptor;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a map of resource name to properties")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut seen = HashSet::new();
                let mut entries = Vec::new();
                while let Some(name) = map.next_key::<String>()? {
                    if !seen.insert(name.clone()) {
                        return Err(de::Error::custom(format_args!(
                            "resource `{name}` is declared twice"
                        )));
                    }
                    let raw = map.next_value::<Option<RawResource>>()?.unwrap_or_default();
                    entries.push((name, raw));
                }
                Ok(RawDescriptor(entries))
            }
        }
        deserializer.deserialize_map(TopLevel)
    }
}

/// One resource's properties as written; every one is optional and may be null.
#[derive(Default)]
struct RawResource {
    description: Option<String>,
    endpoint: Option<String>,
    tags: Option<String>,
    max_lock_duration: Option<u64>,
    unknown_keys: Vec<String>,
}

impl<'de> Deserialize<'de> for RawResource {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Properties;
        impl<'de> Visitor<'de> for Properties {
            type Value = RawResource;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str(
                    "a map of resource properties (description, endpoint, tags, max-lock-duration)",
                )
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut raw = RawResource::default();
                while let Some(key) = map.next_key::<String>()? {
                    match key.as_str() {
                        "description" => raw.description = map.next_value()?,
                        "endpoint" => raw.endpoint = map.next_value()?,
                        "tags" => raw.tags = map.next_value()?,
                        "max-lock-duration" => raw.max_lock_duration = map.next_value()?,
                        _ => {
                            map.next_value::<IgnoredAny>()?;
                            raw.unknown_keys.push(key);
                        }
                    }
                }
                Ok(raw)
            }
        }
        deserializer.deserialize_map(Properties)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(d: &Descriptor) -> Vec<&str> {
        d.resources.iter().map(|r| r.name.as_str()).collect()
    }

    #[test]
    fn parses_the_1_0_format_in_file_order() {
        let d = parse(
            r#"
coffee-machine:
    description: "Kitchen coffee machine"
    endpoint: "tcp://192.168.1.50"
    tags: "coffee,kitchen,food"
a-board:
    max-lock-duration: 600
the-lone-resource:
"#,
        )
        .unwrap();
        assert_eq!(
            names(&d),
            ["coffee-machine", "a-board", "the-lone-resource"]
        );
        let coffee = &d.resources[0];
        assert_eq!(coffee.description, "Kitchen coffee machine");
        assert_eq!(coffee.endpoint, "tcp://192.168.1.50");
        assert_eq!(coffee.tags, ["coffee", "kitchen", "food"]);
        assert_eq!(coffee.max_lock_duration, Ttl::DEFAULT_MAX);
        assert_eq!(d.resources[1].max_lock_duration.as_secs(), 600);
        assert_eq!(d.resources[2], ResourceSpec::named("the-lone-resource"));
        assert!(d.warnings.is_empty(), "{:?}", d.warnings);
    }

    #[test]
    fn unknown_keys_load_with_a_warning_naming_resource_and_key() {
        let d = parse("lone:\n    some-unknown-property: \"\"\n").unwrap();
        assert_eq!(names(&d), ["lone"]);
        assert_eq!(
            d.warnings,
            ["resource `lone`: unknown key `some-unknown-property` ignored"]
        );
    }

    #[test]
    fn legacy_space_separated_tags_load_with_a_warning() {
        let d = parse("b:\n    tags: \"ci linux  x86\"\n").unwrap();
        assert_eq!(d.resources[0].tags, ["ci", "linux", "x86"]);
        assert_eq!(d.warnings.len(), 1);
        assert!(d.warnings[0].contains("resource `b`"), "{}", d.warnings[0]);
        assert!(
            d.warnings[0].contains("space-separated"),
            "{}",
            d.warnings[0]
        );
    }

    #[test]
    fn tags_are_trimmed_and_deduplicated() {
        assert_eq!(
            parse_tags(" a, b ,,a,c "),
            (vec!["a".into(), "b".into(), "c".into()], false)
        );
        assert_eq!(parse_tags("single"), (vec!["single".into()], false));
        assert_eq!(parse_tags(""), (vec![], false));
        assert_eq!(parse_tags("a b"), (vec!["a".into(), "b".into()], true));
    }

    #[test]
    fn refuses_what_cannot_be_loaded() {
        let tags: Vec<String> = (0..65).map(|i| format!("t{i}")).collect();
        let many_tags = format!("a:\n  tags: t1\nb:\n  tags: \"{}\"\n", tags.join(","));
        let long_tag = format!("a:\n  tags: \"ok,{}\"\n", "x".repeat(129));
        let cases: &[(&str, &str)] = &[
            ("", "no resources"),
            ("# only a comment\n", "no resources"),
            ("{}", "no resources"),
            ("- a\n- b\n", "expected a map of resource name"),
            ("a:\n  tags: [x\n", "line 2"),
            (
                "a:\n  tags: 1\nb:\n  tags: [x, y]\n",
                "b.tags: invalid type",
            ),
            (
                "a:\n  max-lock-duration: soon\n",
                "a.max-lock-duration: invalid type",
            ),
            ("a:\n  max-lock-duration: -5\n", "a.max-lock-duration"),
            (
                "a:\n  max-lock-duration: 0\n",
                "resource `a`: max-lock-duration must be",
            ),
            (
                "a:\n  description: x\na:\n  description: y\n",
                "resource `a` is declared twice",
            ),
            ("a: 5\n", "a: invalid type: integer"),
            ("\"\":\n  tags: x\n", "must not be empty"),
            (
                &many_tags,
                "resource `b`: tags: a resource may have at most 64 tags, got 65",
            ),
            (
                &long_tag,
                "resource `a`: tags: a tag may be at most 128 bytes long, got 129 bytes",
            ),
        ];
        for (text, why) in cases {
            let err = parse(text).expect_err(text).to_string();
            assert!(err.contains(why), "{text:?}: expected {why:?} in {err:?}");
        }
    }

    #[test]
    fn type_errors_carry_line_and_column() {
        let err = parse("a:\n  tags: ok\nb:\n  max-lock-duration: soon\n").unwrap_err();
        let DescriptorError::Yaml { line, column, .. } = err else {
            panic!("{err:?}")
        };
        assert_eq!((line, column), (Some(4), Some(22)));
    }

    #[test]
    fn refuses_oversized_input_before_parsing() {
        let text = "#".repeat(MAX_DESCRIPTOR_BYTES + 1);
        assert!(matches!(
            parse(&text),
            Err(DescriptorError::TooLarge { .. })
        ));
    }

    #[test]
    fn alias_bombs_are_never_expanded() {
        // A billion laughs (9^12 strings once expanded) in unknown keys. Skipped keys are
        // not expanded, and every known key is a scalar, so aliases to the bomb are type
        // errors: loading stays linear in the file size. Were it expanded, this test
        // would run out of memory instead of passing.
        let mut text =
            String::from("a:\n  x0: &x0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n");
        for i in 1..13 {
            let p = i - 1;
            text.push_str(&format!(
                "  x{i}: &x{i} [*x{p}, *x{p}, *x{p}, *x{p}, *x{p}, *x{p}, *x{p}, *x{p}, *x{p}]\n"
            ));
        }
        let skipped = format!("{text}b:\n  boom: *x12\n");
        assert_eq!(parse(&skipped).unwrap().warnings.len(), 14);
        let used = format!("{text}b:\n  tags: *x12\n");
        assert!(
            parse(&used)
                .unwrap_err()
                .to_string()
                .contains("b.tags: invalid type: sequence")
        );
    }
}
