//! AWS SDK and embedded implementations of the ports defined in `streamwatch-core`.
