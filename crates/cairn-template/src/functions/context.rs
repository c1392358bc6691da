//! What the function library needs from its caller.

use std::path::PathBuf;

/// What the function library needs from its caller.
#[derive(Debug, Clone)]
pub struct FunctionContext {
    /// The directory `file('path')` reads relative to (the template's
    /// directory). Paths may not leave it.
    pub base_dir: PathBuf,
    /// The clock `utc_now()` reads; the library never reads the system clock.
    pub now: ::time::OffsetDateTime,
    /// Whether `utc_now` is available at all. ARM allows `utcNow` only in
    /// parameter defaults, so callers turn this on only while evaluating
    /// those.
    pub allow_utc_now: bool,
}
