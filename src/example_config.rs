//! The example configuration at the repository root, checked against the code: the
//! framework's defaults, and every plug-in's own documented section.

use switchboard_runtime::config::{Config, PluginSection, Value};

/// `example-config.yaml`.
const EXAMPLE_CONFIG: &str = include_str!("../example-config.yaml");

/// Whether `file` documents `example` (a plug-in's section): its lines appear in order, each
/// as written or commented out (`# `, as often as nested), whatever the indentation.
fn documents(file: &str, example: &str) -> bool {
    let strip = |line: &str| {
        line.trim_start_matches(|c: char| c == '#' || c.is_whitespace())
            .trim_end()
            .to_owned()
    };
    let mut lines = file.lines().map(strip);
    example
        .lines()
        .map(strip)
        .filter(|line| !line.is_empty())
        .all(|wanted| lines.any(|line| line == wanted))
}

/// The framework's defaults with what the example turns on: the echo bot.
fn example_defaults() -> Config {
    let mut config = Config::default();
    config.bots.insert(
        "echo".to_owned(),
        PluginSection {
            enabled: true,
            settings: [(
                "user_prefix".to_owned(),
                serde_norway::Value::String("_echo_".to_owned()),
            )]
            .into(),
            ..PluginSection::default()
        },
    );
    config
}

#[test]
fn every_plugin_documents_a_valid_section_in_example_config_yaml() {
    let registry = crate::plugins::registry();
    assert_eq!(registry.check_examples(), Vec::new());
    for (section, example) in registry.examples() {
        assert!(
            documents(EXAMPLE_CONFIG, example),
            "example-config.yaml lacks {section} as the plug-in documents it:\n{example}"
        );
    }
    assert!(!documents("a: 1\n", "a: 2\n"));
    assert!(documents("x:\n  # a: 1\n  b: 2\n", "a: 1\nb: 2\n"));
}

#[test]
fn example_config_parses_to_the_documented_defaults() {
    let parsed = Config::parse(EXAMPLE_CONFIG, []).expect("example config parses");
    assert_eq!(
        parsed,
        example_defaults(),
        "example-config.yaml drifted from the defaults"
    );
}

#[test]
fn example_config_documents_every_field() {
    fn keys(prefix: &str, v: &Value, out: &mut Vec<String>) {
        if let Value::Mapping(m) = v {
            for (k, v) in m {
                let k = format!("{prefix}{}", k.as_str().unwrap_or("?"));
                keys(&format!("{k}."), v, out);
                out.push(k);
            }
        }
    }
    let defaults = serde_norway::to_value(example_defaults()).expect("serialises");
    let example: Value = serde_norway::from_str(EXAMPLE_CONFIG).expect("parses");
    let (mut want, mut have) = (Vec::new(), Vec::new());
    keys("", &defaults, &mut want);
    keys("", &example, &mut have);
    let missing: Vec<_> = want.iter().filter(|k| !have.contains(k)).collect();
    assert!(missing.is_empty(), "example-config.yaml lacks {missing:?}");
}

#[test]
fn example_placeholders_are_refused() {
    let err = Config::parse(EXAMPLE_CONFIG, [])
        .expect("parses")
        .validate()
        .expect_err("placeholders refused")
        .to_string();
    assert!(
        err.contains("example.org") && err.contains("server_name"),
        "{err}"
    );
}
