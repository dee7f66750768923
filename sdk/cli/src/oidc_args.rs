//! `ee deploy`'s GitHub Actions OIDC options: which credential authorises
//! the deploy, and getting the token for the verified agent's audience.
//!
//! The audience names the agent's attested TLS key, so it is known only
//! after the agent was verified; `ee deploy` prints it, and can ask the
//! Actions runtime for a token with it (`--oidc-from-actions`).

use std::io::Read;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use clap::Args;
use easyenclave::agent::{AgentClient, Attested};
use easyenclave::oidc::{DEFAULT_ISSUER, MAX_TOKEN_BYTES};

use crate::Failure;
use easyenclave::percent::encode_component;

/// Environment variable holding an OIDC token.
pub const TOKEN_ENV: &str = "EE_OIDC_TOKEN";
/// The Actions runtime's token endpoint (set when `id-token: write`).
const REQUEST_URL_ENV: &str = "ACTIONS_ID_TOKEN_REQUEST_URL";
/// The bearer token for [`REQUEST_URL_ENV`].
const REQUEST_TOKEN_ENV: &str = "ACTIONS_ID_TOKEN_REQUEST_TOKEN";
/// Time allowed for the Actions runtime to answer.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// OIDC options of `ee deploy`.
#[derive(Args, Debug)]
pub struct OidcArgs {
    /// Authorise the deploy with a GitHub Actions OIDC token read from FILE
    /// (its audience must be the one `ee deploy` prints for the agent). The
    /// token named by --token-env, the workflow's GITHUB_TOKEN, then only
    /// downloads the artifact and publishes the release. Without this
    /// option, a token in $EE_OIDC_TOKEN is used the same way.
    #[arg(long, value_name = "FILE", conflicts_with = "oidc_from_actions")]
    oidc_token_file: Option<PathBuf>,
    /// Ask the Actions runtime for the OIDC token, with the verified agent's
    /// audience ($ACTIONS_ID_TOKEN_REQUEST_URL and
    /// $ACTIONS_ID_TOKEN_REQUEST_TOKEN; the job needs
    /// `permissions: id-token: write`).
    #[arg(long)]
    oidc_from_actions: bool,
    /// The OIDC issuer the agent's measured launch config must name before
    /// an OIDC token is sent (a GitHub Enterprise Server's is
    /// https://HOST/_services/token).
    #[arg(long, value_name = "URL", default_value = DEFAULT_ISSUER)]
    oidc_issuer: String,
    /// Verify the agent, print the audience to request its OIDC token with,
    /// and exit without reading any token or deploying.
    #[arg(long)]
    print_oidc_audience: bool,
}

/// Where the OIDC token comes from, if the deploy uses one.
enum Source {
    File(PathBuf),
    Env,
    Actions,
}

impl OidcArgs {
    fn source(&self) -> Option<Source> {
        if let Some(path) = &self.oidc_token_file {
            return Some(Source::File(path.clone()));
        }
        if self.oidc_from_actions {
            return Some(Source::Actions);
        }
        std::env::var(TOKEN_ENV)
            .ok()
            .filter(|t| !t.is_empty())
            .map(|_| Source::Env)
    }

    /// The expected issuer.
    pub fn issuer(&self) -> &str {
        &self.oidc_issuer
    }

    /// Print what the verified agent says about OIDC deploys (its measured
    /// issuer was already checked against --oidc-issuer with the rest of
    /// the agent, `connect::verify_agent`). With --print-oidc-audience,
    /// print the audience on stdout and report that the command is done.
    pub fn describe(&self, client: &AgentClient, attested: &Attested) -> Result<bool, Failure> {
        let audience = client.oidc_audience();
        let measured = &attested.launch_config.oidc.issuer;
        eprintln!("  OIDC issuer:            {measured} (measured)");
        eprintln!("  OIDC audience:          {audience}");
        if self.print_oidc_audience {
            println!("{audience}");
        }
        Ok(self.print_oidc_audience)
    }

    /// The OIDC token to send, if the deploy uses one: read, fetched from
    /// the Actions runtime for `client`'s audience, or taken from the
    /// environment. Call after [`OidcArgs::describe`] accepted the agent.
    pub fn token(&self, client: &AgentClient) -> Result<Option<String>, Failure> {
        let Some(source) = self.source() else {
            return Ok(None);
        };
        let token = match source {
            Source::File(path) => {
                let mut text = String::new();
                std::fs::File::open(&path)
                    .and_then(|f| f.take(MAX_TOKEN_BYTES as u64 + 1).read_to_string(&mut text))
                    .with_context(|| format!("--oidc-token-file {}", path.display()))?;
                text
            }
            Source::Env => std::env::var(TOKEN_ENV).unwrap_or_default(),
            Source::Actions => request_from_actions(&client.oidc_audience())?,
        };
        let token = token.trim().to_owned();
        if token.is_empty() || token.len() > MAX_TOKEN_BYTES {
            return Err(
                anyhow!("the OIDC token is empty or longer than {MAX_TOKEN_BYTES} bytes").into(),
            );
        }
        Ok(Some(token))
    }
}

/// `GET $ACTIONS_ID_TOKEN_REQUEST_URL&audience=AUD` with the request token,
/// as `actions/toolkit`'s `core.getIDToken` does; the answer's `value`.
fn request_from_actions(audience: &str) -> anyhow::Result<String> {
    let url = std::env::var(REQUEST_URL_ENV).map_err(|_| {
        anyhow!(
            "--oidc-from-actions: ${REQUEST_URL_ENV} is not set (outside GitHub Actions, or the \
             job lacks `permissions: id-token: write`)"
        )
    })?;
    let bearer = std::env::var(REQUEST_TOKEN_ENV)
        .map_err(|_| anyhow!("--oidc-from-actions: ${REQUEST_TOKEN_ENV} is not set"))?;
    let separator = if url.contains('?') { '&' } else { '?' };
    let url = format!("{url}{separator}audience={}", encode_component(audience));
    let agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .timeout_global(Some(REQUEST_TIMEOUT))
        .build()
        .new_agent();
    let mut response = agent
        .get(&url)
        .header("Authorization", &format!("Bearer {bearer}"))
        .header("Accept", "application/json")
        .call()
        .with_context(|| format!("--oidc-from-actions: asking ${REQUEST_URL_ENV}"))?;
    let status = response.status().as_u16();
    let mut body = Vec::new();
    response
        .body_mut()
        .as_reader()
        .take(64 * 1024)
        .read_to_end(&mut body)
        .context("--oidc-from-actions: reading the answer")?;
    if status != 200 {
        bail!(
            "--oidc-from-actions: ${REQUEST_URL_ENV} answered HTTP {status}: {}",
            String::from_utf8_lossy(&body)
                .chars()
                .take(200)
                .collect::<String>()
        );
    }
    #[derive(serde::Deserialize)]
    struct Answer {
        value: String,
    }
    let answer: Answer = serde_json::from_slice(&body)
        .context("--oidc-from-actions: the answer has no string `value`")?;
    Ok(answer.value)
}
