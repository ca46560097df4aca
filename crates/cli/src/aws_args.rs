//! The AWS options the producers share with the AWS CLI (`--endpoint-url`, `--region`,
//! `--profile`), and `--stack`: resource names read from a deployed stack's outputs, so a
//! user of `sam deploy` never copies a generated table or stream name by hand.
//!
//! A local endpoint (`--endpoint-url`, `AWS_ENDPOINT_URL`, or `--stack local`) gets local
//! defaults: region `us-east-1` and the static test credentials emulators accept, unless
//! the environment or `--profile` give others. The default chains are not used there,
//! because their last resort is the EC2 instance-metadata service: off EC2 that is ten
//! attempts and ~8 s against 169.254.169.254 before an error about an "IMDS session token",
//! and a request sent somewhere the user never named. `--stack local` (or the endpoint of
//! the dev stack) reads `target/dev/stack.json`, which `streamwatch dev up` writes, and
//! resolves the template's `Outputs` against it: the same output names as in AWS.

use std::path::Path;

use aws_config::meta::region::RegionProviderChain;
use aws_config::{Region, SdkConfig};

use crate::Failure;
use crate::dev::{DummyCredentials, STATE_DIR, Stack, template};

/// `--stack local`: the stack `streamwatch dev up` made, not a CloudFormation stack.
pub const LOCAL_STACK: &str = "local";
/// Region of a local endpoint when nothing else names one (moto's and LocalStack's default).
pub const LOCAL_REGION: &str = "us-east-1";

#[derive(clap::Args, Debug, Clone)]
pub struct AwsArgs {
    /// Send every AWS call to this URL (moto, LocalStack, …) instead of AWS's endpoints.
    /// `AWS_ENDPOINT_URL` does the same. Region then defaults to us-east-1 and credentials
    /// to static test ones (unless AWS_ACCESS_KEY_ID, AWS_PROFILE or --profile say otherwise).
    #[arg(long, value_name = "URL")]
    pub endpoint_url: Option<String>,
    /// AWS region (default: `AWS_REGION`, then the profile's).
    #[arg(long)]
    pub region: Option<String>,
    /// Named profile from the AWS config and credentials files.
    #[arg(long)]
    pub profile: Option<String>,
    /// Read the resource names from this CloudFormation stack's outputs (`sam deploy`'s
    /// stack); `local` is the stack `streamwatch dev up` made (target/dev/stack.json).
    #[arg(long, value_name = "NAME")]
    pub stack: Option<String>,
}

/// What a command's calls go through: the SDK config, where it points, and the dev stack
/// when the endpoint is that stack's.
pub struct Aws {
    pub config: SdkConfig,
    /// Where calls go, for messages: the endpoint URL or `AWS (region)`.
    pub endpoint: String,
    /// The dev stack, for `--stack local` or an `--endpoint-url` equal to its endpoint.
    pub local: Option<Stack>,
    stack: Option<String>,
}

impl AwsArgs {
    /// Loads the SDK config once; every client of the command is built from it.
    pub async fn load(&self) -> Result<Aws, Failure> {
        let state_dir = Path::new(STATE_DIR);
        let mut local = None;
        if self.stack.as_deref() == Some(LOCAL_STACK) {
            local = Some(Stack::read(state_dir)?);
        }
        let endpoint = self
            .endpoint_url
            .clone()
            .or_else(|| local.as_ref().map(|s: &Stack| s.endpoint.clone()))
            .or_else(|| std::env::var("AWS_ENDPOINT_URL").ok())
            .filter(|e| !e.is_empty());
        let Some(endpoint) = endpoint else {
            return self.load_aws().await;
        };
        if local.is_none() {
            // The dev stack's own endpoint: its names are known, so --stream/--table may go.
            local = Stack::read(state_dir)
                .ok()
                .filter(|s| same_endpoint(&s.endpoint, &endpoint));
        }
        let fallback = local
            .as_ref()
            .map_or(LOCAL_REGION.to_owned(), |s| s.region.clone());
        let dummy = local
            .as_ref()
            .map(|s| s.credentials.clone())
            .unwrap_or_default();
        let config = local_loader(
            &endpoint,
            self.region.as_deref(),
            self.profile.as_deref(),
            &dummy,
        )
        .region(local_region(
            self.region.as_deref(),
            self.profile.as_deref(),
            fallback,
        ))
        .load()
        .await;
        Ok(Aws {
            config,
            endpoint,
            local,
            stack: self.stack.clone(),
        })
    }

    /// Real AWS: the SDK's default chains (which may ask the instance-metadata service; on
    /// EC2 that is where credentials are).
    async fn load_aws(&self) -> Result<Aws, Failure> {
        let mut loader = streamwatch_adapters::aws::defaults();
        if let Some(profile) = &self.profile {
            loader = loader.profile_name(profile);
        }
        if let Some(region) = &self.region {
            loader = loader.region(Region::new(region.clone()));
        }
        let config = loader.load().await;
        // Without a region every call fails with a less helpful message; say it up front.
        let Some(region) = config.region() else {
            return Err(
                Failure::usage("no AWS region: pass --region or set AWS_REGION")
                    .hint("for the local stack: --stack local (after `streamwatch dev up`)"),
            );
        };
        Ok(Aws {
            endpoint: format!("AWS ({region})"),
            config,
            local: None,
            stack: self.stack.clone(),
        })
    }
}

/// The config loader for an emulator at `endpoint`, with no instance-metadata lookups:
/// credentials from `profile`, else `AWS_PROFILE`, else `AWS_ACCESS_KEY_ID`, else the static
/// test pair emulators accept. The caller sets the region.
pub fn local_loader(
    endpoint: &str,
    region: Option<&str>,
    profile: Option<&str>,
    dummy: &DummyCredentials,
) -> aws_config::ConfigLoader {
    let loader = streamwatch_adapters::aws::defaults().endpoint_url(endpoint);
    let profile = profile
        .map(str::to_owned)
        .or_else(|| std::env::var("AWS_PROFILE").ok().filter(|p| !p.is_empty()));
    let loader = match profile {
        Some(name) => {
            let provider = aws_config::profile::ProfileFileCredentialsProvider::builder()
                .profile_name(&name)
                .build();
            loader.profile_name(&name).credentials_provider(provider)
        }
        None if std::env::var_os("AWS_ACCESS_KEY_ID").is_some() => loader.credentials_provider(
            aws_config::environment::EnvironmentVariableCredentialsProvider::new(),
        ),
        None => loader.credentials_provider(aws_sdk_dynamodb::config::Credentials::new(
            &dummy.access_key_id,
            &dummy.secret_access_key,
            None,
            None,
            "streamwatch-local",
        )),
    };
    match region {
        Some(r) => loader.region(Region::new(r.to_owned())),
        None => loader,
    }
}

/// The region for a local endpoint: `--region`, `AWS_REGION`/`AWS_DEFAULT_REGION`, the
/// profile's, then `fallback` — never the instance-metadata service.
fn local_region(
    explicit: Option<&str>,
    profile: Option<&str>,
    fallback: String,
) -> RegionProviderChain {
    let mut chain = RegionProviderChain::first_try(explicit.map(|r| Region::new(r.to_owned())))
        .or_else(aws_config::environment::EnvironmentVariableRegionProvider::new());
    let profile = profile
        .map(str::to_owned)
        .or_else(|| std::env::var("AWS_PROFILE").ok().filter(|p| !p.is_empty()));
    if let Some(name) = profile {
        chain = chain.or_else(
            aws_config::profile::ProfileFileRegionProvider::builder()
                .profile_name(&name)
                .build(),
        );
    }
    chain.or_else(Region::new(fallback))
}

/// Whether two endpoint URLs name the same server (`localhost` and `127.0.0.1` alike).
fn same_endpoint(a: &str, b: &str) -> bool {
    let norm = |s: &str| {
        s.trim_end_matches('/')
            .replacen("://localhost", "://127.0.0.1", 1)
    };
    norm(a) == norm(b)
}

impl Aws {
    /// The name to use: `explicit` when given (`flag` names it in messages), else the
    /// stack's `output` (the dev stack's when the endpoint is its); a usage error when
    /// neither is given.
    pub async fn resolve(
        &self,
        explicit: Option<&str>,
        flag: &str,
        output: &str,
    ) -> Result<String, Failure> {
        if let Some(name) = explicit {
            return Ok(name.to_owned());
        }
        if let Some(stack) = &self.local
            && self.stack.as_deref().is_none_or(|s| s == LOCAL_STACK)
        {
            return local_output(stack, output);
        }
        let Some(stack) = &self.stack else {
            return Err(Failure::usage(format!("need {flag} NAME or --stack NAME"))
                .hint("for the local stack: --stack local (after `streamwatch dev up`)"));
        };
        stack_output(self, stack, output).await
    }

    /// The stack's parameter values: the dev stack's, a deployed stack's (DescribeStacks), or
    /// none without `--stack` (the template's defaults then apply).
    pub async fn stack_parameters(
        &self,
    ) -> Result<std::collections::BTreeMap<String, String>, Failure> {
        if let Some(stack) = &self.local
            && self.stack.as_deref().is_none_or(|s| s == LOCAL_STACK)
        {
            return Ok(stack.parameters.clone());
        }
        let Some(stack) = &self.stack else {
            return Ok(Default::default());
        };
        let found = describe_stack(self, stack).await?;
        Ok(found
            .parameters()
            .iter()
            .filter_map(|p| {
                Some((
                    p.parameter_key()?.to_owned(),
                    p.parameter_value()?.to_owned(),
                ))
            })
            .collect())
    }

    /// A template parameter of the dev stack (`WindowSeconds`, …), when the endpoint is its.
    pub fn local_parameter(&self, name: &str) -> Option<&str> {
        self.local
            .as_ref()
            .and_then(|s| s.parameters.get(name))
            .map(String::as_str)
    }
}

/// One of the template's `Outputs`, resolved against the dev stack's resources.
fn local_output(stack: &Stack, key: &str) -> Result<String, Failure> {
    let tpl = template::load(&stack.template).map_err(Failure::runtime)?;
    let value = &tpl["Outputs"][key]["Value"];
    if value.is_null() {
        return Err(Failure::runtime(format!(
            "the template ({}) has no output {key}",
            stack.template.display()
        )));
    }
    let ctx = template::Context {
        region: stack.region.clone(),
        parameters: stack.parameters.clone(),
        resources: stack.resources.clone(),
        ..Default::default()
    };
    ctx.string(value).map_err(|e| {
        Failure::runtime(format!("the local stack has no output {key} ({e})"))
            .hint("re-create it with `streamwatch dev up`")
    })
}

/// One output of a deployed stack, by key.
async fn stack_output(aws: &Aws, stack: &str, key: &str) -> Result<String, Failure> {
    let found = describe_stack(aws, stack).await?;
    let outputs = found.outputs();
    outputs
        .iter()
        .find(|o| o.output_key() == Some(key))
        .and_then(|o| o.output_value())
        .map(str::to_owned)
        .ok_or_else(|| {
            let keys: Vec<&str> = outputs.iter().filter_map(|o| o.output_key()).collect();
            Failure::runtime(format!(
                "stack {stack} has no output {key} (outputs: {})",
                if keys.is_empty() {
                    "none".to_owned()
                } else {
                    keys.join(", ")
                }
            ))
        })
}

/// A deployed stack's description.
async fn describe_stack(
    aws: &Aws,
    stack: &str,
) -> Result<aws_sdk_cloudformation::types::Stack, Failure> {
    let client = aws_sdk_cloudformation::Client::new(&aws.config);
    let described = client
        .describe_stacks()
        .stack_name(stack)
        .send()
        .await
        .map_err(|e| {
            let call = crate::failure::SdkCall::read("DescribeStacks", &e, &aws.endpoint);
            let mut failure =
                Failure::runtime(format!("cannot describe stack {stack}: {}", call.line))
                    .detail(Some(call.debug));
            if aws.endpoint.starts_with("http")
                && call.kind != crate::failure::CallKind::Unreachable
            {
                failure =
                    failure.hint("for the stack `streamwatch dev up` made, pass --stack local");
            }
            failure
        })?;
    described
        .stacks()
        .first()
        .cloned()
        .ok_or_else(|| Failure::runtime(format!("stack {stack} not found")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn localhost_and_loopback_are_the_same_endpoint() {
        assert!(same_endpoint(
            "http://127.0.0.1:5000",
            "http://localhost:5000/"
        ));
        assert!(!same_endpoint(
            "http://127.0.0.1:5000",
            "http://127.0.0.1:5001"
        ));
    }
}
