//! The `metrics-publisher` Lambda function (built in its own issue).

fn main() {}
