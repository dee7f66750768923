//! The secrets of a deploy: the deployer's GitHub token and the private
//! environment.
//!
//! Both live in memory only, are wiped when dropped ([`zeroize`]), never
//! print (`Debug` shows names, not values) and are scrubbed from anything
//! the agent logs or reports that came from outside its own code (docker's
//! output, error messages) by [`Redactor`].

use std::collections::BTreeMap;
use std::ffi::CString;
use std::fmt;

use zeroize::Zeroizing;

/// A GitHub token, held only for the deploy that presented it.
pub struct Token(Zeroizing<String>);

impl Token {
    /// Wrap a token taken from an `Authorization` header.
    pub fn new(token: &str) -> Self {
        Token(Zeroizing::new(token.to_owned()))
    }

    /// Wrap a token taken out of a request, without another copy.
    pub fn from_owned(token: String) -> Self {
        Token(Zeroizing::new(token))
    }

    /// The token, to hand to the GitHub client.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

/// The workload's private environment: names and values, values wiped on drop.
#[derive(Default)]
pub struct PrivateEnv {
    vars: Vec<(String, Zeroizing<String>)>,
}

impl PrivateEnv {
    /// Take the variables out of a request's map (the map is left empty), so
    /// that the only copy of each value is one that is wiped on drop.
    pub fn take(env: &mut BTreeMap<String, String>) -> Self {
        let vars = std::mem::take(env)
            .into_iter()
            .map(|(name, value)| (name, Zeroizing::new(value)))
            .collect();
        PrivateEnv { vars }
    }

    /// The variable names, in order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.vars.iter().map(|(name, _)| name.as_str())
    }

    /// Number of variables.
    pub fn len(&self) -> usize {
        self.vars.len()
    }

    /// True without variables.
    pub fn is_empty(&self) -> bool {
        self.vars.is_empty()
    }

    /// `NAME=<placeholder>` for every variable: the environment of the
    /// public render of a compose project (see `workload::Policed`).
    pub fn placeholders(&self, placeholder: &str) -> Vec<Zeroizing<CString>> {
        self.vars
            .iter()
            .filter_map(|(name, _)| CString::new(format!("{name}={placeholder}")).ok())
            .map(Zeroizing::new)
            .collect()
    }

    /// `NAME=value` entries for a child's environment, wiped on drop. The
    /// request validation already refused NUL bytes in names and values.
    pub fn entries(&self) -> Vec<Zeroizing<CString>> {
        self.vars
            .iter()
            .filter_map(|(name, value)| {
                // Room for the NUL too: `CString::new` then keeps this
                // buffer instead of copying it into a larger one.
                let mut entry = Zeroizing::new(Vec::with_capacity(name.len() + value.len() + 2));
                entry.extend_from_slice(name.as_bytes());
                entry.push(b'=');
                entry.extend_from_slice(value.as_bytes());
                match CString::new(std::mem::take(&mut *entry)) {
                    Ok(entry) => Some(Zeroizing::new(entry)),
                    Err(nul) => {
                        drop(Zeroizing::new(nul.into_vec()));
                        None
                    }
                }
            })
            .collect()
    }
}

impl fmt::Debug for PrivateEnv {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PrivateEnv")
            .field("names", &self.names().collect::<Vec<_>>())
            .finish()
    }
}

/// Replaces secret values in text with `<redacted NAME>`.
///
/// Applied to every log line, state reason and error message of a deploy,
/// because command output and error texts are not the agent's own words: a
/// compose error can quote an interpolated value.
#[derive(Default)]
pub struct Redactor {
    /// (label, value), longest value first so that a value containing
    /// another is replaced whole.
    secrets: Vec<(String, Zeroizing<String>)>,
}

impl Redactor {
    /// A redactor for the private environment and the deployer's token.
    pub fn new(env: &PrivateEnv, token: Option<&Token>) -> Self {
        let mut secrets: Vec<(String, Zeroizing<String>)> = env
            .vars
            .iter()
            .map(|(name, value)| (name.clone(), value.clone()))
            .collect();
        if let Some(token) = token {
            secrets.push(("github-token".to_owned(), token.0.clone()));
        }
        secrets.retain(|(_, value)| !value.is_empty());
        secrets.sort_by_key(|(_, value)| std::cmp::Reverse(value.len()));
        Redactor { secrets }
    }

    /// `text` with every secret value replaced.
    pub fn redact(&self, text: &str) -> String {
        let mut out = text.to_owned();
        for (label, value) in &self.secrets {
            if out.contains(value.as_str()) {
                out = out.replace(value.as_str(), &format!("<redacted {label}>"));
            }
        }
        out
    }
}

impl fmt::Debug for Redactor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let labels: Vec<&str> = self.secrets.iter().map(|(l, _)| l.as_str()).collect();
        f.debug_struct("Redactor").field("labels", &labels).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> PrivateEnv {
        let mut map: BTreeMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        let env = PrivateEnv::take(&mut map);
        assert!(map.is_empty(), "the request keeps no copy");
        env
    }

    #[test]
    fn entries_and_debug() {
        let env = env(&[("B", "two"), ("A", "one")]);
        let entries: Vec<String> = env
            .entries()
            .iter()
            .map(|c| c.to_str().unwrap().to_owned())
            .collect();
        assert_eq!(entries, ["A=one", "B=two"]);
        let shown = format!("{env:?}");
        assert!(shown.contains("\"A\"") && !shown.contains("one"), "{shown}");
        assert_eq!(format!("{:?}", Token::new("ghp_x")), "Token(<redacted>)");
    }

    #[test]
    fn redaction_replaces_longest_values_first() {
        let env = env(&[("SHORT", "abc"), ("LONG", "abcdef"), ("EMPTY", "")]);
        let token = Token::new("ghp_secret");
        let r = Redactor::new(&env, Some(&token));
        assert_eq!(
            r.redact("x abcdef y abc z ghp_secret"),
            "x <redacted LONG> y <redacted SHORT> z <redacted github-token>"
        );
        assert_eq!(r.redact("nothing here"), "nothing here");
    }
}
