//! Registry credentials, pure: the secret JSON formats we accept, registry key
//! normalisation (Docker Hub → `https://index.docker.io/v1/`, ECR refused), and the
//! compact `ECS_ENGINE_AUTH_DATA` JSON for both auth types, plus the Docker CLI
//! `config.json` merge. Error messages describe shapes and keys, never values.

use std::collections::BTreeMap;
use std::fmt;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// `ECS_ENGINE_AUTH_TYPE`: how registry credentials are encoded in ecs.config.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthType {
    Docker,
    Dockercfg,
}

impl std::fmt::Display for AuthType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Docker => "docker",
            Self::Dockercfg => "dockercfg",
        })
    }
}

/// The one Docker Hub key both ecs-agent and the Docker CLI look up.
pub const DOCKER_HUB: &str = "https://index.docker.io/v1/";

/// One registry's login. `Debug` redacts the password.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub password: String,
    pub email: Option<String>,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .field("email", &self.email)
            .finish()
    }
}

/// Registry key (normalised) → credentials; sorted so the rendering is stable.
pub type AuthMap = BTreeMap<String, Credentials>;

/// A secret or object whose content is not credentials in a shape we know.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("is not JSON (line {line}, column {column})")]
    NotJson { line: usize, column: usize },
    #[error("has an unknown shape: {0}")]
    Shape(String),
    #[error("has an empty {field} for registry {registry}")]
    Empty {
        registry: String,
        field: &'static str,
    },
    #[error("registry {registry:?}: {message}")]
    Registry { registry: String, message: String },
}

/// Normalise a registry key: Docker Hub spellings become [`DOCKER_HUB`]; anything
/// else is `host[:port][/path]`, scheme and trailing `/` stripped, host lower-cased.
/// ECR registries are refused: ecs-agent fetches ECR tokens itself and a token
/// written here would expire after 12 hours.
pub fn normalize_registry(raw: &str) -> Result<String, AuthError> {
    let err = |message: &str| AuthError::Registry {
        registry: raw.to_owned(),
        message: message.to_owned(),
    };
    let trimmed = raw.trim();
    if trimmed.is_empty() {
        return Err(err("empty registry name"));
    }
    if trimmed.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(err("registry names contain no whitespace"));
    }
    let lower = trimmed.to_ascii_lowercase();
    let without_scheme = if lower.starts_with("https://") {
        &trimmed["https://".len()..]
    } else if lower.starts_with("http://") {
        &trimmed["http://".len()..]
    } else {
        trimmed
    };
    let (host, path) = match without_scheme.find('/') {
        Some(i) => (&without_scheme[..i], &without_scheme[i..]),
        None => (without_scheme, ""),
    };
    let host = host.to_ascii_lowercase();
    if host.is_empty() {
        return Err(err("no host name"));
    }
    let path = path.trim_end_matches('/');
    if matches!(
        host.as_str(),
        "docker.io" | "index.docker.io" | "registry-1.docker.io"
    ) {
        if path.is_empty() || path == "/v1" || path == "/v2" {
            return Ok(DOCKER_HUB.to_owned());
        }
        // Clients look Docker Hub up under one key only; a key with a path
        // (`docker.io/myorg`) would be written where nothing ever reads it.
        return Err(err(
            "is Docker Hub with a path; Docker Hub credentials apply to the whole registry \
             and clients look them up only as docker.io: use \"docker.io\"",
        ));
    }
    if is_ecr_host(&host) {
        return Err(err(
            "is an Amazon ECR registry; the ECS agent gets ECR credentials itself from the \
             instance role (ECR tokens expire after 12 h), remove it",
        ));
    }
    Ok(format!("{host}{path}"))
}

/// `ACCOUNT.dkr.ecr[-fips].REGION.amazonaws.com[.cn]`, with or without a port.
fn is_ecr_host(host: &str) -> bool {
    let host = host.split(':').next().unwrap_or(host);
    let labels: Vec<&str> = host.split('.').collect();
    labels.len() >= 6
        && labels[1] == "dkr"
        && (labels[2] == "ecr" || labels[2] == "ecr-fips")
        && (host.ends_with(".amazonaws.com") || host.ends_with(".amazonaws.com.cn"))
}

/// `{"username","password"[,"email"]}`: the `--registry-secret` format, the same as
/// ECS task `repositoryCredentials`. Other fields are ignored.
pub fn parse_registry_secret(text: &str, registry: &str) -> Result<Credentials, AuthError> {
    let value = parse_json(text)?;
    let Value::Object(obj) = value else {
        return Err(AuthError::Shape(format!(
            "expected an object {{\"username\",\"password\"}}, found {}",
            kind(&value)
        )));
    };
    if !obj.contains_key("username") || !obj.contains_key("password") {
        return Err(AuthError::Shape(format!(
            "expected keys \"username\" and \"password\", found keys {}",
            key_list(&obj)
        )));
    }
    credentials_from_user_pass(&obj, registry)
}

/// Any of the auth-map formats: a Docker `config.json` (`{"auths":{REG:{..}}}`), an
/// ECS `docker` map (`{REG:{"username","password"}}`) or an ECS `dockercfg` map
/// (`{REG:{"auth":b64}}`). Registry keys come back normalised; ECR is refused.
pub fn parse_auth_json(text: &str) -> Result<AuthMap, AuthError> {
    let value = parse_json(text)?;
    let Value::Object(mut obj) = value else {
        return Err(AuthError::Shape(format!(
            "expected an object of registries, found {}",
            kind(&value)
        )));
    };
    let entries = match obj.remove("auths") {
        Some(Value::Object(auths)) => auths,
        Some(other) => {
            return Err(AuthError::Shape(format!(
                "\"auths\" must be an object, found {}",
                kind(&other)
            )))
        }
        None => obj,
    };
    if entries.is_empty() {
        return Err(AuthError::Shape("contains no registries".to_owned()));
    }
    let mut out = AuthMap::new();
    for (registry, entry) in &entries {
        let Value::Object(fields) = entry else {
            let hint = if registry == "username" || registry == "password" {
                " (a {\"username\",\"password\"} secret belongs to --registry-secret REGISTRY=ID)"
            } else {
                ""
            };
            return Err(AuthError::Shape(format!(
                "entry {registry:?} must be an object, found {}{hint}",
                kind(entry)
            )));
        };
        let key = normalize_registry(registry)?;
        let creds = if fields.contains_key("username") || fields.contains_key("password") {
            credentials_from_user_pass(fields, registry)?
        } else if let Some(auth) = fields.get("auth") {
            credentials_from_auth(auth, fields, registry)?
        } else {
            return Err(AuthError::Shape(format!(
                "entry {registry:?} has neither \"auth\" nor \"username\"/\"password\" (keys {})",
                key_list(fields)
            )));
        };
        out.insert(key, creds);
    }
    Ok(out)
}

fn parse_json(text: &str) -> Result<Value, AuthError> {
    // serde_json's error text can quote the input; keep only the position.
    serde_json::from_str(text).map_err(|e| AuthError::NotJson {
        line: e.line(),
        column: e.column(),
    })
}

fn credentials_from_user_pass(
    obj: &Map<String, Value>,
    registry: &str,
) -> Result<Credentials, AuthError> {
    let username = string_field(obj, "username", registry)?;
    if username.contains(':') {
        return Err(AuthError::Shape(format!(
            "\"username\" of {registry:?} contains ':', which Docker's auth format \
             (base64 of username:password, used by dockercfg and config.json) cannot carry; \
             use a username without ':'"
        )));
    }
    let password = string_field(obj, "password", registry)?;
    Ok(Credentials {
        username,
        password,
        email: optional_email(obj, registry)?,
    })
}

fn credentials_from_auth(
    auth: &Value,
    obj: &Map<String, Value>,
    registry: &str,
) -> Result<Credentials, AuthError> {
    let Value::String(encoded) = auth else {
        return Err(AuthError::Shape(format!(
            "\"auth\" of {registry:?} must be a string, found {}",
            kind(auth)
        )));
    };
    let decoded = B64
        .decode(encoded.trim())
        .map_err(|_| AuthError::Shape(format!("\"auth\" of {registry:?} is not valid base64")))?;
    let text = String::from_utf8(decoded).map_err(|_| {
        AuthError::Shape(format!(
            "\"auth\" of {registry:?} is not UTF-8 once decoded"
        ))
    })?;
    let Some((username, password)) = text.split_once(':') else {
        return Err(AuthError::Shape(format!(
            "\"auth\" of {registry:?} is not base64 of \"username:password\""
        )));
    };
    check_nonempty(username, "username", registry)?;
    check_nonempty(password, "password", registry)?;
    Ok(Credentials {
        username: username.to_owned(),
        password: password.to_owned(),
        email: optional_email(obj, registry)?,
    })
}

fn string_field(
    obj: &Map<String, Value>,
    field: &'static str,
    registry: &str,
) -> Result<String, AuthError> {
    match obj.get(field) {
        Some(Value::String(s)) => {
            check_nonempty(s, field, registry)?;
            Ok(s.clone())
        }
        Some(other) => Err(AuthError::Shape(format!(
            "\"{field}\" of {registry:?} must be a string, found {}",
            kind(other)
        ))),
        None => Err(AuthError::Shape(format!(
            "\"{field}\" of {registry:?} is missing"
        ))),
    }
}

fn check_nonempty(s: &str, field: &'static str, registry: &str) -> Result<(), AuthError> {
    if s.is_empty() {
        return Err(AuthError::Empty {
            registry: registry.to_owned(),
            field,
        });
    }
    Ok(())
}

fn optional_email(obj: &Map<String, Value>, registry: &str) -> Result<Option<String>, AuthError> {
    match obj.get("email") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(other) => Err(AuthError::Shape(format!(
            "\"email\" of {registry:?} must be a string, found {}",
            kind(other)
        ))),
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn key_list(obj: &Map<String, Value>) -> String {
    let keys: Vec<String> = obj.keys().map(|k| format!("{k:?}")).collect();
    if keys.is_empty() {
        "none".to_owned()
    } else {
        keys.join(", ")
    }
}

#[derive(Serialize)]
struct DockerEntry<'a> {
    username: &'a str,
    password: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    email: Option<&'a str>,
}

#[derive(Serialize)]
struct DockercfgEntry<'a> {
    auth: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    email: Option<&'a str>,
}

/// `base64(username:password)`, the Docker `auth` field.
pub fn basic_auth(c: &Credentials) -> String {
    B64.encode(format!("{}:{}", c.username, c.password))
}

/// The value of `ECS_ENGINE_AUTH_DATA`: compact JSON on one line (serde_json escapes
/// control characters, so a newline in a password stays `\n` inside the string).
pub fn render_auth_data(auths: &AuthMap, auth_type: AuthType) -> String {
    let rendered = match auth_type {
        AuthType::Docker => serde_json::to_string(
            &auths
                .iter()
                .map(|(reg, c)| {
                    (
                        reg.as_str(),
                        DockerEntry {
                            username: &c.username,
                            password: &c.password,
                            email: c.email.as_deref(),
                        },
                    )
                })
                .collect::<BTreeMap<_, _>>(),
        ),
        AuthType::Dockercfg => serde_json::to_string(
            &auths
                .iter()
                .map(|(reg, c)| {
                    (
                        reg.as_str(),
                        DockercfgEntry {
                            auth: basic_auth(c),
                            email: c.email.as_deref(),
                        },
                    )
                })
                .collect::<BTreeMap<_, _>>(),
        ),
    };
    // Serialising maps of strings cannot fail.
    rendered.unwrap_or_default()
}

/// What a config.json merge produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DockerMerge {
    pub text: String,
    /// Managed registries a `credsStore` or a `credHelpers` entry would have
    /// answered instead of what we wrote; overridden for those registries only.
    pub overridden: Vec<String>,
}

/// Merge credentials into a Docker CLI `config.json`; every other field and
/// registry is kept. `existing` is the current file's text (None when absent).
///
/// The Docker CLI picks a registry's store like this (docker/cli,
/// cli/config/configfile/file.go, `getConfiguredCredentialStore`): a
/// `credHelpers[registry]` entry if present — even `""` — else `credsStore`; an empty
/// name means the file's own `auths`. So:
/// - `helper` None: our registries get `{"auth": b64}` under `auths` (a stale
///   `username`/`password`/`identitytoken`/`registrytoken` removed: the CLI would send
///   a token instead of our password), and `credHelpers[registry] = ""` wherever a
///   `credsStore` or another helper would otherwise answer for it.
/// - `helper` Some(name): `credHelpers[registry] = name` and no `auths` entry for
///   our registries, so no password is on disk.
pub fn merge_docker_config(
    existing: Option<&str>,
    auths: &AuthMap,
    helper: Option<&str>,
) -> Result<DockerMerge, String> {
    let mut root = match existing.map(str::trim) {
        None | Some("") => Map::new(),
        Some(text) => match serde_json::from_str::<Value>(text) {
            Ok(Value::Object(obj)) => obj,
            Ok(_) => return Err("is not a JSON object".to_owned()),
            Err(e) => {
                return Err(format!(
                    "is not JSON (line {}, column {})",
                    e.line(),
                    e.column()
                ))
            }
        },
    };
    let creds_store = match root.get("credsStore") {
        None | Some(Value::Null) => false,
        Some(Value::String(s)) => !s.is_empty(),
        Some(_) => return Err("has a \"credsStore\" that is not a string".to_owned()),
    };
    let mut helpers = match root.remove("credHelpers") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(h)) => h,
        Some(_) => return Err("has a \"credHelpers\" field that is not an object".to_owned()),
    };
    let mut overridden = Vec::new();
    match helper {
        None => {
            let section = object_field(&mut root, "auths")?;
            for (registry, creds) in auths {
                let entry = section
                    .entry(registry.clone())
                    .or_insert_with(|| Value::Object(Map::new()));
                if !entry.is_object() {
                    *entry = Value::Object(Map::new());
                }
                if let Value::Object(fields) = entry {
                    for stale in ["username", "password", "identitytoken", "registrytoken"] {
                        fields.remove(stale);
                    }
                    fields.insert("auth".to_owned(), Value::String(basic_auth(creds)));
                    if let Some(email) = &creds.email {
                        fields.insert("email".to_owned(), Value::String(email.clone()));
                    }
                }
                let shadowed = match helpers.get(registry) {
                    Some(Value::String(name)) => !name.is_empty(),
                    Some(_) => true,
                    None => creds_store,
                };
                if shadowed {
                    helpers.insert(registry.clone(), Value::String(String::new()));
                    overridden.push(registry.clone());
                }
            }
        }
        Some(name) => {
            if let Some(Value::Object(section)) = root.get_mut("auths") {
                for registry in auths.keys() {
                    section.remove(registry);
                }
            }
            for registry in auths.keys() {
                let other = matches!(helpers.get(registry), Some(Value::String(n)) if !n.is_empty() && n != name);
                if other || (creds_store && !helpers.contains_key(registry)) {
                    overridden.push(registry.clone());
                }
                helpers.insert(registry.clone(), Value::String(name.to_owned()));
            }
        }
    }
    if !helpers.is_empty() {
        root.insert("credHelpers".to_owned(), Value::Object(helpers));
    }
    let mut text = serde_json::to_string_pretty(&Value::Object(root))
        .map_err(|e| format!("cannot be rendered: {e}"))?;
    text.push('\n');
    Ok(DockerMerge { text, overridden })
}

/// `root[key]` as an object, created empty when absent.
fn object_field<'a>(
    root: &'a mut Map<String, Value>,
    key: &str,
) -> Result<&'a mut Map<String, Value>, String> {
    match root
        .entry(key.to_owned())
        .or_insert_with(|| Value::Object(Map::new()))
    {
        Value::Object(section) => Ok(section),
        _ => Err(format!("has an \"{key}\" field that is not an object")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn creds(u: &str, p: &str) -> Credentials {
        Credentials {
            username: u.into(),
            password: p.into(),
            email: None,
        }
    }

    #[test]
    fn docker_hub_spellings_normalise() {
        for raw in [
            "docker.io",
            "index.docker.io",
            "registry-1.docker.io",
            "https://index.docker.io/v1/",
            "https://index.docker.io/v1",
            "http://docker.io",
            "DOCKER.IO",
            "https://registry-1.docker.io/v2/",
            "docker.io/",
        ] {
            assert_eq!(normalize_registry(raw).unwrap(), DOCKER_HUB, "{raw}");
        }
    }

    #[test]
    fn other_registries_lose_scheme_and_lowercase_host() {
        assert_eq!(
            normalize_registry("https://Registry.GitLab.com/").unwrap(),
            "registry.gitlab.com"
        );
        assert_eq!(
            normalize_registry("Quay.io:8443/Some/Path").unwrap(),
            "quay.io:8443/Some/Path"
        );
        assert_eq!(
            normalize_registry("ghcr.io").unwrap(),
            "ghcr.io",
            "already normal"
        );
    }

    #[test]
    fn docker_hub_with_a_path_is_refused() {
        for raw in [
            "docker.io/myorg",
            "https://index.docker.io/myorg/",
            "registry-1.docker.io/x",
        ] {
            let err = normalize_registry(raw).unwrap_err().to_string();
            assert!(err.contains("Docker Hub with a path"), "{raw}: {err}");
        }
    }

    #[test]
    fn username_with_colon_is_refused() {
        let err = parse_registry_secret(r#"{"username":"a:b","password":"CANARY"}"#, "ghcr.io")
            .unwrap_err()
            .to_string();
        assert!(err.contains("contains ':'"), "{err}");
        assert!(!err.contains("CANARY"));
        let err = parse_auth_json(r#"{"ghcr.io":{"username":"a:b","password":"p"}}"#).unwrap_err();
        assert!(err.to_string().contains("contains ':'"), "{err}");
    }

    fn merged(existing: &str, helper: Option<&str>) -> (Value, Vec<String>) {
        let mut m = AuthMap::new();
        m.insert("ghcr.io".into(), creds("u", "p"));
        let out = merge_docker_config(Some(existing), &m, helper).unwrap();
        (serde_json::from_str(&out.text).unwrap(), out.overridden)
    }

    #[test]
    fn docker_config_merge_drops_stale_tokens() {
        let (v, _) = merged(
            r#"{"auths":{"ghcr.io":{"auth":"eDp5","identitytoken":"T","registrytoken":"R"},"other.io":{"identitytoken":"keep"}}}"#,
            None,
        );
        assert_eq!(
            v["auths"]["ghcr.io"],
            serde_json::json!({"auth": B64.encode("u:p")})
        );
        assert_eq!(v["auths"]["other.io"]["identitytoken"], "keep");
    }

    #[test]
    fn docker_config_merge_overrides_only_real_shadows() {
        let (v, o) = merged(r#"{"credsStore":"desktop"}"#, None);
        assert_eq!(v["credHelpers"]["ghcr.io"], "");
        assert_eq!(v["credsStore"], "desktop");
        assert_eq!(o, ["ghcr.io"]);
        let (v, o) = merged(
            r#"{"credHelpers":{"ghcr.io":"ecr-login","x.io":"y"}}"#,
            None,
        );
        assert_eq!(v["credHelpers"]["ghcr.io"], "");
        assert_eq!(v["credHelpers"]["x.io"], "y");
        assert_eq!(o, ["ghcr.io"]);
        let (v, o) = merged(r#"{"credHelpers":{"x.io":"y"}}"#, None);
        assert!(v["credHelpers"].get("ghcr.io").is_none());
        assert!(
            o.is_empty(),
            "a helper for other registries shadows nothing"
        );
        let (_, o) = merged(
            r#"{"credsStore":"desktop","credHelpers":{"ghcr.io":""}}"#,
            None,
        );
        assert!(o.is_empty(), "already overridden");
    }

    #[test]
    fn docker_config_merge_with_credential_helper_keeps_no_password() {
        let (v, o) = merged(
            r#"{"auths":{"ghcr.io":{"auth":"b2xkOm9sZA=="},"other.io":{"auth":"eA=="}},"credHelpers":{"ghcr.io":"ecr-login"}}"#,
            Some("shipshape"),
        );
        assert!(v["auths"].get("ghcr.io").is_none());
        assert_eq!(v["auths"]["other.io"]["auth"], "eA==");
        assert_eq!(v["credHelpers"]["ghcr.io"], "shipshape");
        assert_eq!(o, ["ghcr.io"]);
        assert!(!v.to_string().contains(&B64.encode("u:p")));
    }

    #[test]
    fn ecr_registries_are_refused() {
        for raw in [
            "123456789012.dkr.ecr.eu-west-1.amazonaws.com",
            "https://123456789012.dkr.ecr.us-east-1.amazonaws.com/",
            "123456789012.dkr.ecr-fips.us-east-1.amazonaws.com",
            "123456789012.dkr.ecr.cn-north-1.amazonaws.com.cn",
        ] {
            let err = normalize_registry(raw).unwrap_err().to_string();
            assert!(err.contains("ECR"), "{raw}: {err}");
        }
        assert!(normalize_registry("ecr.example.com").is_ok());
    }

    #[test]
    fn empty_or_spaced_registry_is_refused() {
        assert!(normalize_registry("").is_err());
        assert!(normalize_registry("https://").is_err());
        assert!(normalize_registry("a b").is_err());
    }

    #[test]
    fn registry_secret_basic() {
        let c = parse_registry_secret(r#"{"username":"u","password":"p"}"#, "r").unwrap();
        assert_eq!(c, creds("u", "p"));
    }

    #[test]
    fn registry_secret_with_email_and_extra_fields() {
        let c = parse_registry_secret(
            r#"{"username":"u","password":"p","email":"e@x","note":1}"#,
            "r",
        )
        .unwrap();
        assert_eq!(c.email.as_deref(), Some("e@x"));
    }

    #[test]
    fn registry_secret_not_json_reports_position_only() {
        let err = parse_registry_secret("hunter2-not-json", "r").unwrap_err();
        assert!(matches!(err, AuthError::NotJson { .. }));
        assert!(!err.to_string().contains("hunter2"));
    }

    #[test]
    fn registry_secret_unknown_shape() {
        let err = parse_registry_secret(r#"{"user":"u","pass":"sekrit"}"#, "r").unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("unknown shape"), "{msg}");
        assert!(!msg.contains("sekrit"), "{msg}");
        assert!(parse_registry_secret(r#"["u","p"]"#, "r").is_err());
        assert!(parse_registry_secret(r#""u:p""#, "r").is_err());
    }

    #[test]
    fn registry_secret_empty_fields() {
        let err = parse_registry_secret(r#"{"username":"","password":"p"}"#, "r").unwrap_err();
        assert!(err.to_string().contains("empty username"), "{err}");
        let err = parse_registry_secret(r#"{"username":"u","password":""}"#, "r").unwrap_err();
        assert!(err.to_string().contains("empty password"), "{err}");
    }

    #[test]
    fn registry_secret_non_string_password() {
        let err = parse_registry_secret(r#"{"username":"u","password":12345}"#, "r").unwrap_err();
        assert!(err.to_string().contains("must be a string"), "{err}");
        assert!(!err.to_string().contains("12345"));
    }

    #[test]
    fn auth_json_docker_config_format() {
        let auth = B64.encode("u1:p:1");
        let text = format!(
            r#"{{"auths":{{"https://index.docker.io/v1/":{{"auth":"{auth}"}},"ghcr.io":{{"username":"u2","password":"p2"}}}},"credsStore":"x"}}"#
        );
        let map = parse_auth_json(&text).unwrap();
        assert_eq!(map[DOCKER_HUB], creds("u1", "p:1"));
        assert_eq!(map["ghcr.io"], creds("u2", "p2"));
    }

    #[test]
    fn auth_json_ecs_docker_map() {
        let map = parse_auth_json(r#"{"docker.io":{"username":"u","password":"p","email":"e"}}"#)
            .unwrap();
        assert_eq!(map[DOCKER_HUB].email.as_deref(), Some("e"));
    }

    #[test]
    fn auth_json_ecs_dockercfg_map() {
        let text = format!(r#"{{"quay.io":{{"auth":"{}"}}}}"#, B64.encode("me:pw"));
        assert_eq!(
            parse_auth_json(&text).unwrap()["quay.io"],
            creds("me", "pw")
        );
    }

    #[test]
    fn auth_json_rejects_user_pass_secret_with_hint() {
        let err = parse_auth_json(r#"{"username":"u","password":"p"}"#).unwrap_err();
        assert!(err.to_string().contains("--registry-secret"), "{err}");
    }

    #[test]
    fn auth_json_rejects_bad_base64_and_missing_colon() {
        assert!(parse_auth_json(r#"{"r":{"auth":"%%%"}}"#).is_err());
        let text = format!(r#"{{"r":{{"auth":"{}"}}}}"#, B64.encode("nocolon"));
        assert!(parse_auth_json(&text).is_err());
        let text = format!(r#"{{"r":{{"auth":"{}"}}}}"#, B64.encode(":p"));
        assert!(matches!(
            parse_auth_json(&text).unwrap_err(),
            AuthError::Empty { .. }
        ));
    }

    #[test]
    fn auth_json_rejects_empty_and_entries_without_credentials() {
        assert!(parse_auth_json("{}").is_err());
        assert!(parse_auth_json(r#"{"auths":{}}"#).is_err());
        assert!(parse_auth_json(r#"{"r":{"identitytoken":"t"}}"#).is_err());
        assert!(parse_auth_json(r#"{"auths":[]}"#).is_err());
    }

    #[test]
    fn auth_json_refuses_ecr() {
        let err = parse_auth_json(
            r#"{"1.dkr.ecr.eu-west-1.amazonaws.com":{"username":"AWS","password":"t"}}"#,
        )
        .unwrap_err();
        assert!(err.to_string().contains("ECR"), "{err}");
    }

    #[test]
    fn render_docker_is_compact_and_round_trips() {
        let nasty = "p\"w\\d$x=y' z ü\u{1F600}\nend";
        let mut m = AuthMap::new();
        m.insert("ghcr.io".into(), creds("user", nasty));
        let out = render_auth_data(&m, AuthType::Docker);
        assert!(!out.contains('\n'));
        assert!(!out.contains(": "));
        let back: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(back["ghcr.io"]["password"], nasty);
        assert_eq!(back["ghcr.io"]["username"], "user");
        assert!(back["ghcr.io"].get("email").is_none());
    }

    #[test]
    fn render_dockercfg_has_auth_and_no_auths_wrapper() {
        let mut m = AuthMap::new();
        m.insert(
            DOCKER_HUB.into(),
            Credentials {
                username: "u".into(),
                password: "p=ü".into(),
                email: Some("e@x".into()),
            },
        );
        let out = render_auth_data(&m, AuthType::Dockercfg);
        let back: Value = serde_json::from_str(&out).unwrap();
        assert!(back.get("auths").is_none());
        let auth = back[DOCKER_HUB]["auth"].as_str().unwrap();
        assert_eq!(B64.decode(auth).unwrap(), "u:p=ü".as_bytes());
        assert_eq!(back[DOCKER_HUB]["email"], "e@x");
    }

    #[test]
    fn render_is_stable() {
        let mut m = AuthMap::new();
        m.insert("b.io".into(), creds("u", "p"));
        m.insert("a.io".into(), creds("u", "p"));
        let out = render_auth_data(&m, AuthType::Docker);
        assert!(out.starts_with(r#"{"a.io":"#), "{out}");
        assert_eq!(out, render_auth_data(&m, AuthType::Docker));
    }

    #[test]
    fn debug_redacts_password() {
        let text = format!("{:?}", creds("user", "hunter2"));
        assert!(!text.contains("hunter2"));
        assert!(text.contains("<redacted>"));
    }

    #[test]
    fn docker_config_merge_keeps_other_fields() {
        let existing = r#"{"auths":{"other.io":{"auth":"eA=="}},"credHelpers":{"x":"y"},"detachKeys":"ctrl-q"}"#;
        let mut m = AuthMap::new();
        m.insert("ghcr.io".into(), creds("u", "p"));
        let out = merge_docker_config(Some(existing), &m, None).unwrap().text;
        let v: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["auths"]["other.io"]["auth"], "eA==");
        assert_eq!(v["auths"]["ghcr.io"]["auth"], B64.encode("u:p"));
        assert_eq!(v["credHelpers"]["x"], "y");
        assert_eq!(v["detachKeys"], "ctrl-q");
        // Merging again gives the same bytes (idempotent).
        assert_eq!(merge_docker_config(Some(&out), &m, None).unwrap().text, out);
    }

    #[test]
    fn docker_config_merge_new_file_and_bad_file() {
        let mut m = AuthMap::new();
        m.insert("ghcr.io".into(), creds("u", "p"));
        let out = merge_docker_config(None, &m, None).unwrap().text;
        assert!(out.contains("\"auths\""));
        assert!(merge_docker_config(Some("[1]"), &m, None).is_err());
        assert!(merge_docker_config(Some("{nope"), &m, None).is_err());
        assert!(merge_docker_config(Some(r#"{"auths":1}"#), &m, None).is_err());
    }
}
