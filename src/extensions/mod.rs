//! Extensions: what Sidekiq Pro and Enterprise charge for, built on the public seam
//! ([`crate::middleware`] and [`crate::plugins`]) rather than inside the processor, so a
//! server that does not use one pays nothing for it.
//!
//! - [`Expiry`]: jobs that expire (`expires_in`), discarded unrun once too late.
//!
//! A server turns an extension on by itself where it can tell it is needed (a registered
//! worker declares `expires_in`), or when told ([`crate::ServerConfig::expiring_jobs`]).

mod expiry;

pub use expiry::Expiry;
