//! The cloud's tests, driving a `Cloud` in-process as the daemon does,
//! by topic; `support` is what they share.

mod addresses;
mod record;
mod servers;
mod services;
mod support;
mod zones;
