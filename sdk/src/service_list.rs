//! The service list that `ee-image` puts into the initramfs and `ee-init`
//! supervises (`/etc/ee/services`).
//!
//! Format (UTF-8 text, one service per line, in start order):
//! `<name> <always|never> <absolute program> [args...]`. Words are split on
//! whitespace; there is no quoting (use a wrapper script for anything
//! more). Blank lines and lines starting with `#` are ignored. Names are
//! unique and use `[A-Za-z0-9_-]`. The list is part of the initrd, so it is
//! measured into RTMR2 with everything else the image holds: services come
//! from the image, never from host-supplied input.

use std::collections::HashSet;

/// Guest path of the service list.
pub const SERVICE_LIST_PATH: &str = "/etc/ee/services";

/// What to do when a service exits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Restart {
    /// Start it again (after a back-off delay).
    Always,
    /// Leave it stopped.
    Never,
}

impl Restart {
    /// The policy's word in the list.
    pub fn as_str(self) -> &'static str {
        match self {
            Restart::Always => "always",
            Restart::Never => "never",
        }
    }
}

/// One service line: `<name> <always|never> <absolute program> [args...]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceSpec {
    /// Unique name used in log lines.
    pub name: String,
    /// Restart policy.
    pub restart: Restart,
    /// Program (absolute path) and arguments.
    pub argv: Vec<String>,
}

/// A malformed service list.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[error("{SERVICE_LIST_PATH} line {line}: {reason}")]
pub struct ServiceListError {
    /// 1-based line number.
    pub line: usize,
    /// What is wrong with it.
    pub reason: String,
}

/// Parse a service list (`#` comments and blank lines ignored).
pub fn parse(text: &str) -> Result<Vec<ServiceSpec>, ServiceListError> {
    let mut specs = Vec::new();
    let mut names = HashSet::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let err = |reason: String| ServiceListError {
            line: i + 1,
            reason,
        };
        let mut words = line.split_whitespace();
        let (Some(name), Some(policy), Some(program)) = (words.next(), words.next(), words.next())
        else {
            return Err(err(
                "expected `<name> <always|never> <program> [args...]`".into()
            ));
        };
        if !valid_name(name) {
            return Err(err(format!(
                "service name {name:?} may only use [A-Za-z0-9_-]"
            )));
        }
        if !names.insert(name.to_owned()) {
            return Err(err(format!("service name {name:?} is used twice")));
        }
        let restart = match policy {
            "always" => Restart::Always,
            "never" => Restart::Never,
            other => {
                return Err(err(format!(
                    "restart policy {other:?} is not `always` or `never`"
                )))
            }
        };
        if !program.starts_with('/') {
            return Err(err(format!("program {program:?} must be an absolute path")));
        }
        let argv = std::iter::once(program)
            .chain(words)
            .map(str::to_owned)
            .collect();
        specs.push(ServiceSpec {
            name: name.to_owned(),
            restart,
            argv,
        });
    }
    Ok(specs)
}

/// Render `services` in the list format, one line each, in order. The
/// result parses back to the same services when each name is valid and
/// unique, the program absolute and no argument empty or holding
/// whitespace (the format has no quoting).
pub fn render<'a>(services: impl IntoIterator<Item = &'a ServiceSpec>) -> String {
    let mut text = String::new();
    for s in services {
        text.push_str(&s.name);
        text.push(' ');
        text.push_str(s.restart.as_str());
        for word in &s.argv {
            text.push(' ');
            text.push_str(word);
        }
        text.push('\n');
    }
    text
}

fn valid_name(name: &str) -> bool {
    name.bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_in_order_skipping_comments_and_round_trips() {
        let text = "# comment\n\nweb always /bin/web --port 80\n  once never /bin/setup  \n";
        let specs = parse(text).unwrap();
        assert_eq!(specs.len(), 2);
        assert_eq!(specs[0].name, "web");
        assert_eq!(specs[0].restart, Restart::Always);
        assert_eq!(specs[0].argv, ["/bin/web", "--port", "80"]);
        assert_eq!(specs[1].restart, Restart::Never);
        assert_eq!(specs[1].argv, ["/bin/setup"]);

        let rendered = render(&specs);
        assert_eq!(
            rendered,
            "web always /bin/web --port 80\nonce never /bin/setup\n"
        );
        assert_eq!(parse(&rendered).unwrap(), specs);
        assert!(parse("").unwrap().is_empty());
        assert!(parse("# only a comment\n\n").unwrap().is_empty());
    }

    #[test]
    fn malformed_lists_name_the_line_and_the_problem() {
        let cases = [
            ("a always\n", 1, "expected"),
            ("a\n", 1, "expected"),
            ("\na sometimes /bin/a\n", 2, "restart policy \"sometimes\""),
            ("a always bin/a\n", 1, "absolute path"),
            ("a always /a\na never /b\n", 2, "used twice"),
            ("a/b always /a\n", 1, "may only use"),
            ("# c\nok always /a\nnaïve always /b\n", 3, "may only use"),
        ];
        for (text, line, needle) in cases {
            let err = parse(text).unwrap_err();
            assert_eq!(err.line, line, "{text:?}");
            let message = err.to_string();
            assert!(
                message.starts_with(&format!("/etc/ee/services line {line}: ")),
                "{message}"
            );
            assert!(message.contains(needle), "{message}");
        }
    }
}
