//! The `alerter` Lambda function (built in its own issue).

fn main() {}
