//! MQTT topic filters: validation and matching (`+` one level, `#` the rest).

/// Whether `filter` is a valid MQTT topic filter: not empty, `#` only as the last level, and
/// `+` / `#` only as whole levels.
#[must_use]
pub fn is_valid_filter(filter: &str) -> bool {
    if filter.is_empty() || filter.contains('\0') {
        return false;
    }
    let levels: Vec<&str> = filter.split('/').collect();
    levels.iter().enumerate().all(|(i, level)| match *level {
        "#" => i == levels.len() - 1,
        "+" => true,
        other => !other.contains('+') && !other.contains('#'),
    })
}

/// Whether `topic` (a concrete topic name) matches `filter`. Topics starting with `$` are only
/// matched by filters starting with the same level, as the spec says.
#[must_use]
pub fn matches(filter: &str, topic: &str) -> bool {
    if topic.starts_with('$') && !filter.starts_with('$') {
        return false;
    }
    let mut topic_levels = topic.split('/');
    for level in filter.split('/') {
        match level {
            "#" => return true,
            "+" => {
                if topic_levels.next().is_none() {
                    return false;
                }
            }
            exact => {
                if topic_levels.next() != Some(exact) {
                    return false;
                }
            }
        }
    }
    topic_levels.next().is_none()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_match_as_the_spec_says() {
        assert!(matches("sensors/+/temp", "sensors/kitchen/temp"));
        assert!(!matches("sensors/+/temp", "sensors/kitchen/hall/temp"));
        assert!(matches("sensors/#", "sensors/kitchen/temp"));
        assert!(
            matches("sensors/#", "sensors"),
            "# also matches the parent level"
        );
        assert!(!matches("sensors/+", "sensors"));
        assert!(matches("a/b", "a/b"));
        assert!(!matches("a/b", "a/b/c"));
        assert!(!matches("#", "$SYS/broker/uptime"));
        assert!(matches("$SYS/#", "$SYS/broker/uptime"));
    }

    #[test]
    fn filters_are_validated() {
        for good in ["a", "a/+/c", "#", "a/#", "+", "+/+"] {
            assert!(is_valid_filter(good), "{good}");
        }
        for bad in ["", "a/#/c", "a+/b", "a/b#", "#/a"] {
            assert!(!is_valid_filter(bad), "{bad}");
        }
    }
}
