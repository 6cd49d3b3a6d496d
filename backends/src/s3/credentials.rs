//! Where an S3 destination's credentials come from: the environment, the
//! config file, or (only when asked) the cloud instance's role.

use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};

/// S3 credentials given in the config file instead of the AWS variables.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct S3Credentials {
    /// The access key id.
    pub access_key_id: String,
    /// The secret access key (never printed).
    pub secret_access_key: String,
    /// A session token, for temporary credentials.
    pub session_token: Option<String>,
}

impl std::fmt::Debug for S3Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Credentials")
            .field("access_key_id", &self.access_key_id)
            .finish_non_exhaustive()
    }
}

impl S3Credentials {
    /// Puts the credentials on `builder`, over whatever it took from the environment.
    pub fn apply(&self, builder: AmazonS3Builder) -> AmazonS3Builder {
        let builder = builder
            .with_access_key_id(&self.access_key_id)
            .with_secret_access_key(&self.secret_access_key);
        match &self.session_token {
            Some(token) => builder.with_token(token),
            None => builder,
        }
    }
}

/// How an S3 destination authenticates, beyond the environment.
#[derive(Debug, Clone, Default)]
pub struct S3Options {
    /// Credentials from the config file, over the environment's.
    pub credentials: Option<S3Credentials>,
    /// Let the client ask the cloud instance-metadata service for credentials
    /// when none are given (`credentials = "instance"` in the config file).
    pub instance_credentials: bool,
}

/// The variables that name a credential source without keys in the environment.
const PROVIDER_VARIABLES: &[&str] = &[
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
];

/// Why a destination built from `builder` cannot be used, when it has no
/// credentials: no keys and no provider variable, so the client would ask
/// the instance-metadata address (which on a laptop answers 403 or hangs).
pub(super) fn missing(builder: &AmazonS3Builder) -> Option<String> {
    let has_keys = builder
        .get_config_value(&AmazonS3ConfigKey::AccessKeyId)
        .is_some();
    let provider = PROVIDER_VARIABLES
        .iter()
        .any(|v| std::env::var_os(v).is_some_and(|x| !x.is_empty()));
    (!has_keys && !provider).then(|| {
        "no S3 credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or \
         aws_access_key_id and aws_secret_access_key for this destination in the config \
         file (credentials = \"instance\" there uses the cloud instance's role)"
            .to_string()
    })
}
