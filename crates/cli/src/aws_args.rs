//! The AWS options the producers share with the AWS CLI (`--endpoint-url`, `--region`,
//! `--profile`), and `--stack`: resource names read from a deployed stack's outputs, so a
//! user of `sam deploy` never copies a generated table or stream name by hand.

use aws_config::{Region, SdkConfig};

use crate::Failure;

#[derive(clap::Args, Debug, Clone)]
pub struct AwsArgs {
    /// Send every AWS call to this URL (moto, LocalStack, …) instead of AWS's endpoints.
    /// `AWS_ENDPOINT_URL` does the same.
    #[arg(long, value_name = "URL")]
    pub endpoint_url: Option<String>,
    /// AWS region (default: `AWS_REGION`, then the profile's).
    #[arg(long)]
    pub region: Option<String>,
    /// Named profile from the AWS config and credentials files.
    #[arg(long)]
    pub profile: Option<String>,
    /// Read the resource names from this CloudFormation stack's outputs (`sam deploy`'s stack).
    #[arg(long, value_name = "NAME")]
    pub stack: Option<String>,
}

impl AwsArgs {
    /// Loads the SDK config once; every client of the command is built from it.
    pub async fn load(&self) -> Result<SdkConfig, Failure> {
        let mut loader = streamwatch_adapters::aws::defaults();
        if let Some(profile) = &self.profile {
            loader = loader.profile_name(profile);
        }
        if let Some(region) = &self.region {
            loader = loader.region(Region::new(region.clone()));
        }
        if let Some(url) = &self.endpoint_url {
            loader = loader.endpoint_url(url);
        }
        let config = loader.load().await;
        // Without a region every call fails with a less helpful message; say it up front.
        if config.region().is_none() {
            return Err(Failure::usage(
                "no AWS region: pass --region or set AWS_REGION",
            ));
        }
        Ok(config)
    }

    /// The name to use: `explicit` when given (`flag` names it in messages), else the stack's
    /// `output`; a usage error when neither is given.
    pub async fn resolve(
        &self,
        config: &SdkConfig,
        explicit: Option<&str>,
        flag: &str,
        output: &str,
    ) -> Result<String, Failure> {
        if let Some(name) = explicit {
            return Ok(name.to_owned());
        }
        let Some(stack) = &self.stack else {
            return Err(Failure::usage(format!("need {flag} NAME or --stack NAME")));
        };
        stack_output(config, stack, output).await
    }
}

/// One output of a deployed stack, by key.
pub async fn stack_output(config: &SdkConfig, stack: &str, key: &str) -> Result<String, Failure> {
    let client = aws_sdk_cloudformation::Client::new(config);
    let described = client
        .describe_stacks()
        .stack_name(stack)
        .send()
        .await
        .map_err(|e| {
            let e = streamwatch_adapters::aws::classify("DescribeStacks", e);
            Failure::runtime(format!("cannot describe stack {stack}: {}", e.source))
        })?;
    let Some(found) = described.stacks().first() else {
        return Err(Failure::runtime(format!("stack {stack} not found")));
    };
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
