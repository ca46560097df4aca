//! The `window-aggregator` Lambda function (built in its own issue).

fn main() {}
